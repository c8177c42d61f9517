"""The perception protocols that benchmarks score with, and the ``Detections`` type every detector returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image


@dataclass
class Detections:
    """Instance detections for one image, in descending score order within each label.

    boxes: float [N, 4] as (x1, y1, x2, y2) in pixels; scores: float [N]; labels: N class names;
    masks: bool [N, H, W] instance masks (GenEval's colour check composites the object on grey through its mask).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]
    masks: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.masks.shape[0] != n:
            raise ValueError(
                f"inconsistent detections: {n} labels, boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"masks {self.masks.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls, height: int, width: int) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [], np.zeros((0, height, width), bool))

    def of_class(self, label: str) -> Detections:
        """The detections of one class, highest score first."""
        idx = [i for i, lab in enumerate(self.labels) if lab == label]
        idx.sort(key=lambda i: -float(self.scores[i]))
        return Detections(self.boxes[idx], self.scores[idx], [self.labels[i] for i in idx], self.masks[idx])


@runtime_checkable
class Detector(Protocol):
    """Finds object instances of a fixed vocabulary of class names."""

    name: str
    version: str
    classes: tuple[str, ...]

    def detect(self, images: list[Image.Image]) -> list[Detections]: ...


@runtime_checkable
class ColorClassifier(Protocol):
    """Names the colour of an object crop, among a given list of colour names."""

    name: str
    version: str

    def classify(self, crops: list[Image.Image], class_names: list[str], colors: list[str]) -> list[str]: ...


@runtime_checkable
class VQA(Protocol):
    """Answers yes/no questions about images with a probability-like score of "yes" in [0, 1].

    ``images[i]`` is asked ``questions[i]``; pass the same image several times to ask it several questions.
    """

    name: str
    version: str

    def yes_probability(self, images: list[Image.Image], questions: list[str]) -> list[float]: ...


@runtime_checkable
class ImageTextScorer(Protocol):
    """Scores how well ``texts[i]`` describes ``images[i]`` (CLIPScore-style similarity)."""

    name: str
    version: str

    def similarity(self, images: list[Image.Image], texts: list[str]) -> list[float]: ...
