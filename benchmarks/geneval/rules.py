"""GenEval's scoring rules as pure functions (djghosh13/geneval, ``evaluation/evaluate_images.py``).

Boxes are (x1, y1, x2, y2) in pixels with y growing downward. Each rule carries its formula in the docstring and
is checked against hand-computed cases in ``tests/test_geneval_rules.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
COLOR_TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")


@dataclass(frozen=True)
class GenEvalOptions:
    """The evaluator's ``--options``; defaults are the official ones."""

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0  # NMS IoU threshold; 1.0 disables NMS
    position_threshold: float = 0.1
    bgcolor: str = "#999"


@dataclass(frozen=True)
class Detected:
    """One kept detection: its box, score and instance mask."""

    box: tuple[float, float, float, float]
    score: float
    mask: np.ndarray


def compute_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU with pixel-inclusive areas, as the official code: area = max(x2 - x1 + 1, 0) max(y2 - y1 + 1, 0)."""

    def area(r: Sequence[float]) -> float:
        return max(r[2] - r[0] + 1, 0) * max(r[3] - r[1] + 1, 0)

    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0


def filter_class(boxes: np.ndarray, scores: np.ndarray, masks: np.ndarray, threshold: float, max_objects: int,
                 max_overlap: float) -> list[Detected]:
    """One class's detections as GenEval keeps them.

    Sort by score (descending, ties as ``np.argsort(scores)[::-1]`` orders them), keep score > threshold
    (strict), keep the first ``max_objects``, then greedy NMS: a box survives only if its IoU with every kept box is
    below ``max_overlap``; 1.0, the default, disables NMS entirely.
    """
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(scores)[::-1]
    order = [int(i) for i in order if scores[i] > threshold][:max_objects]
    kept: list[Detected] = []
    for i in order:
        box = tuple(float(v) for v in boxes[i])
        if max_overlap != 1.0 and any(compute_iou(k.box, box) >= max_overlap for k in kept):
            continue
        kept.append(Detected(box, float(scores[i]), masks[i]))
    return kept


def relative_position(a: Sequence[float], b: Sequence[float], margin: float = 0.1) -> set[str]:
    """Relations of box ``a`` with respect to box ``b``.

    off = centre(a) - centre(b); per axis rev = max(|off| - margin (size_a + size_b), 0) sign(off); if every |rev|
    < 1e-3 there is no relation; else (dx, dy) = rev / ||off||_2 and "left of" if dx < -0.5, "right of" if
    dx > 0.5, "above" if dy < -0.5, "below" if dy > 0.5 (several may hold).
    """
    ca = np.array([(a[0] + a[2]) / 2, (a[1] + a[3]) / 2])
    cb = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
    size_a = np.array([a[2] - a[0], a[3] - a[1]])
    size_b = np.array([b[2] - b[0], b[3] - b[1]])
    off = ca - cb
    rev = np.maximum(np.abs(off) - margin * (size_a + size_b), 0) * np.sign(off)
    if np.all(np.abs(rev) < 1e-3):
        return set()
    dx, dy = rev / np.linalg.norm(off)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


ColorOf = Callable[[str, list[Detected]], list[str]]


def judge(detected: dict[str, list[Detected]], metadata: dict, color_of: ColorOf, position_threshold: float = 0.1
          ) -> tuple[bool, list[str]]:
    """GenEval's verdict on one image: (correct, failure reasons). Include clauses are ANDed, excludes ORed.

    For each include ``{class, count[, color][, position]}`` in order: ``found`` = the ``count`` most confident
    detections of the class; fewer than ``count`` fails. With a colour, at least ``count`` of ``found`` must be
    classified as it. With ``position: [relation, k]``, every (object, target) pair over ``found`` and the objects
    matched by include ``k`` must have ``relation`` in :func:`relative_position`. An exclude ``{class, count}``
    fails when the class has ``count`` or more kept detections. ``color_of(class, objects)`` names their colours.
    Reason strings match the official ones, except that several relations are listed in sorted order (the
    official code joins a Python set, whose order varies between runs).
    """
    correct = True
    reasons: list[str] = []
    matched_groups: list[list[Detected] | None] = []
    for req in metadata.get("include", []):
        cls, count = req["class"], req["count"]
        found = detected.get(cls, [])[:count]
        matched = True
        if len(found) < count:
            correct = matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = color_of(cls, found)
                if colors.count(req["color"]) < count:
                    correct = matched = False
                    reasons.append(
                        f"expected {req['color']} {cls}>={count}, found "
                        f"{colors.count(req['color'])} {req['color']}; and "
                        + ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    )
            if "position" in req and matched:
                relation, target_group = req["position"]
                targets = matched_groups[target_group]
                if targets is None:
                    correct = matched = False
                    reasons.append(f"no target for {cls} to be {relation}")
                else:
                    for obj in found:
                        for target in targets:
                            true_relations = relative_position(obj.box, target.box, position_threshold)
                            if relation not in true_relations:
                                correct = matched = False
                                reasons.append(
                                    f"expected {cls} {relation} target, found "
                                    f"{' and '.join(sorted(true_relations)) or 'no relation'} target"
                                )
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        cls, count = req["class"], req["count"]
        if len(detected.get(cls, [])) >= count:
            correct = False
            reasons.append(f"expected {cls}<{count}, found {len(detected[cls])}")
    return correct, reasons


def aggregate_tags(tags: Sequence[str], correct: Sequence[bool]) -> dict[str, float]:
    """Per-tag accuracy over images, and ``overall`` = the unweighted mean of the tag accuracies."""
    per_tag: dict[str, list[bool]] = {}
    for tag, ok in zip(tags, correct):
        per_tag.setdefault(tag, []).append(bool(ok))
    scores = {tag: float(np.mean(v)) for tag, v in per_tag.items()}
    return {"overall": float(np.mean(list(scores.values()))) if scores else float("nan"), **scores}
