"""How well the oracle reads held-out renders: accuracy per shape, colour, texture, size, count and relation.

Scenes come from ``random.Random(f"heldout:{seed}")``, a stream disjoint from pretraining's ``f"{seed}:{step}"``.
The oracle sees only pixels; its readings are matched to the true objects by mask IoU. The same scenes are read
again under mild perturbations (pixel noise, blur), reported separately, to show how it behaves on the imperfect
images a generative model makes.

What counts as a right reading (the score thresholds, the position rule) is a benchmark's, so it is passed in as a
:class:`ReadingRule`: the builtin world knows no benchmark. ``harness builtin perception-report`` passes GenEval's
(``benchmarks/geneval/oracle_report.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from harness.builtin.oracle import VERSION, ObjectReading, read_objects
from harness.builtin.prompts import sample_training_request
from harness.builtin.render import object_masks, render
from harness.builtin.world import (
    COLORS,
    MAX_INSTANCES,
    RELATIONS,
    SHAPES,
    SIZES,
    TEXTURES,
    Scene,
    SceneRequest,
    sample_scene,
)

MATCH_IOU = 0.5  # a reading is an object's when their masks overlap this much
NOISE_SIGMA = 8.0  # pixel levels (8/255)
BLUR_RADIUS = 0.6  # Gaussian blur sigma in pixels


@dataclass(frozen=True)
class ReadingRule:
    """When a reading counts: above ``threshold`` it is a detection, above ``counting_threshold`` one of a count,
    and ``position(a, b)`` is the set of relations ("left of", "above", ...) that box ``a`` has to box ``b``."""

    threshold: float
    counting_threshold: float
    position: Callable[[Sequence[float], Sequence[float]], set[str]]


@dataclass
class Line:
    """One accuracy line: ``correct`` of ``total`` cases."""

    correct: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.correct += bool(ok)
        self.total += 1

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


def _line_names() -> list[str]:
    return [
        *(f"shape/{s}" for s in SHAPES),
        *(f"color/{c}" for c in COLORS),
        *(f"texture/{t}" for t in TEXTURES),
        *(f"size/{s}" for s in SIZES),
        *(f"count/{k}" for k in range(1, MAX_INSTANCES + 1)),
        *(f"position/{r}" for r in RELATIONS),
    ]


def _empty_lines() -> dict[str, Line]:
    return {name: Line() for name in _line_names()}


@dataclass
class PerceptionReport:
    """Per-line accuracy on clean renders, and the same lines under each perturbation.

    ``shape/``, ``color/``, ``texture/`` and ``size/`` lines count true objects whose matched reading scores above
    the rule's threshold (GenEval: 0.3) and has the right attribute; ``count/k`` counts scenes of k objects with
    exactly k readings above the counting threshold (GenEval: 0.9); ``position/`` lines count relation scenes where
    the rule's position test on the matched readings' boxes gives the prompted relation for every pair.
    """

    n: int
    seed: int
    clean: dict[str, Line] = field(default_factory=_empty_lines)
    perturbed: dict[str, dict[str, Line]] = field(default_factory=dict)
    oracle_version: str = VERSION

    def min_clean_accuracy(self) -> float:
        return min(line.accuracy for line in self.clean.values() if line.total)

    def format_table(self) -> str:
        columns = ["clean", *self.perturbed]
        header = f"{'line':<20} {'n':>5}  " + "  ".join(f"{c:>14}" for c in columns)
        rows = [f"oracle v{self.oracle_version} on {self.n} held-out scenes (seed {self.seed})", header]
        for name, line in self.clean.items():
            cells = [line, *(lines[name] for lines in self.perturbed.values())]
            rows.append(f"{name:<20} {line.total:>5}  " + "  ".join(f"{c.accuracy:>14.4f}" for c in cells))
        return "\n".join(rows)

    def to_dict(self) -> dict:
        def lines(d: dict[str, Line]) -> dict:
            return {k: {"accuracy": v.accuracy, "correct": v.correct, "total": v.total} for k, v in d.items()}

        return {
            "n": self.n,
            "seed": self.seed,
            "oracle_version": self.oracle_version,
            "clean": lines(self.clean),
            "perturbed": {k: lines(v) for k, v in self.perturbed.items()},
        }


def _match(readings: list[ObjectReading], truth: list[np.ndarray]) -> list[ObjectReading | None]:
    """For each true object mask, the reading whose mask overlaps it best, if their IoU reaches ``MATCH_IOU``."""
    if not readings:
        return [None] * len(truth)
    ours = np.stack([r.mask for r in readings]).reshape(len(readings), -1)
    theirs = np.stack(truth).reshape(len(truth), -1)
    inter = theirs.astype(np.int32) @ ours.T.astype(np.int32)
    iou = inter / (theirs.sum(1)[:, None] + ours.sum(1)[None, :] - inter)
    best = iou.argmax(1)
    return [readings[j] if iou[i, j] >= MATCH_IOU else None for i, j in enumerate(best)]


def _score_scene(lines: dict[str, Line], scene: Scene, request: SceneRequest, readings: list[ObjectReading],
                 rule: ReadingRule) -> None:
    """Add one scene's outcomes: attributes need a match above the rule's threshold, counts its counting one."""
    matched = [
        r if r is not None and r.score > rule.threshold else None for r in _match(readings, object_masks(scene))
    ]
    for obj, reading in zip(scene.objects, matched):
        lines[f"shape/{obj.shape}"].add(reading is not None and reading.shape == obj.shape)
        lines[f"color/{obj.color}"].add(reading is not None and reading.color == obj.color)
        lines[f"texture/{obj.texture}"].add(reading is not None and reading.texture == obj.texture)
        lines[f"size/{obj.size}"].add(reading is not None and reading.size == obj.size)
    confident = sum(r.score > rule.counting_threshold for r in readings)
    lines[f"count/{len(scene.objects)}"].add(confident == len(scene.objects))
    if request.relation is not None:
        group = [gi for gi, g in enumerate(request.groups) for _ in range(g.count)]
        targets = [r for r, g in zip(matched, group) if g == 0]
        movers = [r for r, g in zip(matched, group) if g == 1]
        relation = request.relation[0]
        lines[f"position/{relation}"].add(
            all(r is not None for r in targets + movers)
            and all(
                relation in rule.position(m.box, t.box)
                for m in movers
                for t in targets
            )
        )


def _perturbations(image: Image.Image, rng: np.random.Generator) -> dict[str, Image.Image]:
    """The robustness variants of one render: Gaussian pixel noise and a slight Gaussian blur."""
    pixels = np.asarray(image, dtype=np.float32)
    noisy = np.clip(pixels + rng.normal(0.0, NOISE_SIGMA, pixels.shape), 0, 255).round().astype(np.uint8)
    return {
        f"noise {NOISE_SIGMA:g}/255": Image.fromarray(noisy, "RGB"),
        f"blur {BLUR_RADIUS:g}px": image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)),
    }


def perception_report(rule: ReadingRule, n: int = 2000, seed: int = 12345) -> PerceptionReport:
    """Render ``n`` held-out scenes, read them back with the oracle, and tally accuracy per line under ``rule``."""
    rng = random.Random(f"heldout:{seed}")
    noise_rng = np.random.default_rng(seed)
    report = PerceptionReport(n=n, seed=seed)
    for _ in range(n):
        request, _caption = sample_training_request(rng)
        scene = sample_scene(request, rng)
        image = render(scene)
        _score_scene(report.clean, scene, request, read_objects(image), rule)
        for name, variant in _perturbations(image, noise_rng).items():
            _score_scene(report.perturbed.setdefault(name, _empty_lines()), scene, request, read_objects(variant),
                         rule)
    return report
