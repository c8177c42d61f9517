"""Distortion judges: does an image show a malformed picture (noise, nothing recognisable, a broken shape)?

``DistortionJudge`` is the interface the distortion benchmark scores with; three kinds implement it:

* :class:`OracleDistortionJudge` (builtin world): reads the image with the builtin oracle (``read_objects``) and
  calls it distorted for any of three reasons, each a thing a person labelling D3PO's "1 hand" images would call
  deformed in the shapes world:

  - ``noise``: more than ``NOISE_SHARE`` (25 %) of the pixels outside every named object (dilated by 2 px, its
    soft edge) differ from the background grey by more than the oracle's noise floor (``ALPHA_FLOOR``, 25 RGB
    units). A clean generated background stays at 8-17 units; the base model's pure-noise images are speckled
    all over;
  - ``no object``: no object scores above GenEval's detection threshold 0.3 (the oracle's "nothing a person would
    name": the ``distorted`` objective of ``trainers/feedback.py`` and the training monitor use the same rule);
  - ``malformed``: a foreground blob (8-connected pixels the oracle counts as foreground) of at least
    ``MALFORMED_AREA`` pixels (half the smallest clean object, a small star) that no named object covers: a shape no
    template fits (read with a score of at most 0.3: a shape a person could read as two, a ragged smear), two shapes
    merged into one blob larger than any object the world draws (the oracle drops those), a smear beside an
    otherwise fine object.

* :class:`ImageClassifierJudge` (any world): a pluggable image classifier for real images: any transformers
  image-classification model in a local folder; the image is distorted when the summed probability of the labels
  named as distorted exceeds ``threshold``. No standard distortion classifier exists; bring one (e.g. trained on the
  labeling page's flags) and record its folder hash.

* :class:`~harness.perception.human_labels.LabelJudge`: human flags from a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image
from scipy import ndimage

from harness.errors import HarnessError
from harness.perception.human_labels import Flag

DETECTION_THRESHOLD = 0.3  # GenEval's detection threshold: above it the oracle names the object
NOISE_SHARE = 0.25
NOISE_DILATION = 2  # px around every object read that belong to its soft edge, not to the background
MALFORMED_AREA = 19  # half the smallest clean object (a small star covers 38 px)


@runtime_checkable
class DistortionJudge(Protocol):
    """Flags distorted images; ``seeds`` (None where unknown) matter only to judges that look labels up by seed."""

    name: str
    version: str

    def judge(self, images: list[Image.Image], prompts: list[str], seeds: list[int | None]) -> list[Flag]: ...


class OracleDistortionJudge:
    """The builtin world's automatic judge (module docstring): noise, no object, or a malformed blob."""

    name = "oracle-distortion"

    def __init__(self) -> None:
        from harness.builtin.oracle import VERSION

        self.version = f"{VERSION}.1"  # the oracle's version, then this rule's

    def judge(self, images: list[Image.Image], prompts: list[str], seeds: list[int | None]) -> list[Flag]:
        return [self.judge_one(image) for image in images]

    def judge_one(self, image: Image.Image) -> Flag:
        from harness.builtin.oracle import ALPHA_FLOOR, FOREGROUND_DISTANCE, read_objects
        from harness.builtin.world import BACKGROUND

        readings = read_objects(image)
        named = [r for r in readings if r.score > DETECTION_THRESHOLD]
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        contrast = np.sqrt(((pixels - np.array(BACKGROUND, dtype=np.float32)) ** 2).sum(-1))
        covered = np.zeros(contrast.shape, dtype=bool)
        for reading in named:
            covered |= reading.mask
        if covered.any():  # an object's soft edge belongs to it, not to the background
            covered = ndimage.binary_dilation(covered, iterations=NOISE_DILATION)
        outside = contrast[~covered]
        noise = float((outside > ALPHA_FLOOR).mean()) if outside.size else 0.0
        blobs, count = ndimage.label((contrast > FOREGROUND_DISTANCE) & ~covered, structure=np.ones((3, 3), bool))
        areas = np.bincount(blobs.ravel(), minlength=count + 1)[1:]
        malformed = sorted((int(a) for a in areas if a >= MALFORMED_AREA), reverse=True)
        reasons = [why for why, hit in (("noise", noise > NOISE_SHARE), ("no object", not named),
                                        ("malformed", bool(malformed))) if hit]
        best = max((r.score for r in readings), default=0.0)
        details = {"noise_share": round(noise, 4), "best_score": round(best, 4),
                   "objects": [f"{r.color} {r.shape}" for r in named], "malformed_px": malformed}
        return Flag(bool(reasons), float(bool(reasons)), ", ".join(reasons), details)


class ImageClassifierJudge:
    """A transformers image classifier from a local folder as a distortion (or any flag) judge.

    score = sum of the softmax probabilities of ``labels`` (sigmoid per label for a multi-label model), flagged when
    score > ``threshold``. ``labels`` are names from the model's ``id2label``; unknown names are an error.
    """

    name = "image-classifier"

    def __init__(self, model: str | Path, labels: tuple[str, ...], threshold: float = 0.5, device: str = "cpu",
                 batch_size: int = 32) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        from harness.hashing import fingerprint

        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise HarnessError(f"classifier_model {model}: not a folder; pass a local transformers "
                               "image-classification model folder (config.json, weights, preprocessor_config.json)")
        try:
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            self.model = AutoModelForImageClassification.from_pretrained(folder, local_files_only=True).to(device)
        except (OSError, ValueError) as err:
            raise HarnessError(f"classifier_model {folder}: cannot load an image classifier ({err})") from None
        self.model.eval()
        names = {str(v): int(k) for k, v in self.model.config.id2label.items()}
        unknown = [label for label in labels if label not in names]
        if not labels or unknown:
            raise HarnessError(f"classifier_labels {','.join(labels) or '(none)'}: name the distorted classes among "
                               f"the model's labels {sorted(names)}")
        self.indices = [names[label] for label in labels]
        self.labels, self.threshold, self.device, self.batch_size = labels, threshold, device, batch_size
        self.multi_label = self.model.config.problem_type == "multi_label_classification"
        self.version = f"{folder.name}@{fingerprint(folder)[:12]}:{'+'.join(labels)}>{threshold:g}"

    def judge(self, images: list[Image.Image], prompts: list[str], seeds: list[int | None]) -> list[Flag]:
        import torch

        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = [img.convert("RGB") for img in images[start : start + self.batch_size]]
            inputs = self.processor(images=chunk, return_tensors="pt").to(self.device)
            with torch.no_grad():
                logits = self.model(**inputs).logits.float()
            probs = logits.sigmoid() if self.multi_label else logits.softmax(-1)
            for score in probs[:, self.indices].sum(-1).clamp(max=1.0).tolist():
                out.append(Flag(score > self.threshold, score, f"p({'+'.join(self.labels)}) = {score:.3f}"))
        return out
