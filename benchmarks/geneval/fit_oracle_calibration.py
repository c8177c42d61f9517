"""Can the oracle's score be fitted to the eye labels instead of set by hand? Leave-one-batch-out over eye batches.

    python -m benchmarks.geneval.fit_oracle_calibration --images /tmp/v14cache                 # v17 study, 1-17
    python -m benchmarks.geneval.fit_oracle_calibration --images /tmp/v14cache --model rich    # richer evidence, 1-26

The oracle (``harness/builtin/oracle.py``) scores each object it reads as a product of hand-set ramps over four
components (template fit, distinctness from the runner-up shape, colour coherence, blend strength). This script asks
whether a score *fitted* to what a person saw does better than those ramps on batches it was not fitted on:

1. Calibration set: every reading of every image of eye-label batches 1-17 (``BATCH_FILES[:17]``; batch 18 and later
   are the project's unseen test batches and are never read), with its four components, labelled *named* when the
   eye listed an object of that shape and colour (:func:`named_readings`).
2. Models, each monotone in every component and fitted on 16 batches, then scoring the 17th:
   ``ramps``, v17's own product of ramps with the ten end points re-fitted on the readings of a prompt's own classes
   (the only ones GenEval's rules look at; a decision loss: a named reading is
   penalised below GenEval's counting threshold 0.9, any other above its detection threshold 0.3 and 0.9, plus a pull
   towards v17's end points of strength ``--pull``; :func:`fit_ramps`), and ``logistic``, a logistic regression with
   non-negative weights on the clipped components, fitted on the readings of a prompt's own classes whose v17 score is
   below 0.98 and scoring only those (:func:`fit_logistic`; saturated readings keep v17's score).
3. Per held-out batch, GenEval's verdicts with the re-scored readings (which objects exist, their shapes, boxes and
   colours unchanged, as the oracle's ``_settle`` changes only the score) against v17's, over the sure eye labels:
   towards / away from the eye, false positives; and the object-level calibration (share of named readings above
   0.9, share of other readings above 0.3).

Result (oracle v17, the 4,080 images of batches 1-17 read from ``/tmp/v14cache``, 3,440 sure labels): nothing fitted
here beats v17's hand-set ramps in a way that matters. ``ramps`` (pull 10) moves 2 verdicts towards the eye and 1 away
(false positives 20 -> 20), its end points fitted on all 17 batches within 0.013 of v17's, and it lets more readings
the eye did not name above 0.3 (1,519 -> 1,554 of 1,844); without the pull, 10 towards and 17 away (false positives
20 -> 25). ``logistic``: 8 towards, 14 away, false positives 20 -> 25. The cause is in the data, not the model: of
the 999 readings of a prompt's classes that the eye did not name (mostly shapes it called a blob "between cross and
diamond" and the like), 712 have every component at its ramp's full value, as 6,433 of the 6,650 named ones do, so no
score monotone in these four components can put them apart; among the 286 such readings scored 0.3-0.9, 124 are
named. A better score needs evidence the components do not carry.

Oracle v18 scores a small object that fits its shape closely on a second distinctness ramp
(``oracle.distinct_score``); ``ramps_score`` is v17's product and leaves it out, as the study above was v17's.

The components are recorded by wrapping the oracle's ``confidence``, ``_read_cut`` and ``_settle`` for the duration
of the read (:func:`read_with_components`), so the readings are the oracle's own, bit for bit.

Richer evidence (``--model rich``, oracle v18, all eye batches 1-26 by default, ``--batches`` to choose). Does
evidence the four ramped components do not carry separate what the eye names from what it does not?

* Features per reading (:func:`cut_evidence`, recorded by also wrapping ``_shape_fits`` during the read, and
  :func:`reading_features`), 57 in all: the best IoU of each of the 8 shapes (``match_shape``'s first pass, soft and
  hard mask together; exact per shape), the read shape's fit margin over each shape and over the runner-up, the raw
  components (fit, log distinctness, coherence, strength: unclipped, so beyond the ramps' full points), pixels, box
  width/height/log area/aspect, fill of the box, size class, stripes, touching another object, neck-split piece,
  tight (hole) re-read, enclosed hole area, the enclosed dip of the blend weights, shape and colour one-hot, the
  oracle's score, and the reading's place in the image (readings, readings of its shape, its rank among them, that
  rank against the count the prompt asks of the shape).
* Model (:func:`leave_one_batch_out`): an L2 logistic regression (weights of any sign, ``--l2`` 0.01 on standardised
  features; :func:`fit_logistic`) of P(named) over the readings of a prompt's classes of the 25 other batches; it
  moves only the held-out batch's readings of its prompt's classes, and only their score (:func:`rescore`): below
  ``low`` to at most 0.15 (under GenEval's detection), above ``high`` to at least 0.95 (over its counting threshold),
  else v18's. The cuts are chosen per held-out batch on the other 25 batches' own out-of-batch P (each predicted by
  a fit without it and without the held-out batch), by the GenEval verdicts they move towards the eye there
  (``--cuts verdicts``, :func:`verdict_gain`) or by object-level bands (``--cuts bands``, :func:`rescore_gain`).
  ``--label shape`` (default) learns :attr:`Reading.named_shape` (the eye listed the shape, any colour),
  ``shape-colour`` the study's ``named``.

Result (v18, the 6,240 images of batches 1-26 read from ``/tmp/v14cache``, 13,247 readings, 5,020 sure labels;
v18 agrees with 0.963 of them, FP 34): **no gain in GenEval verdicts**, though the features carry real object-level
signal. Default run (shape label, verdict cuts, l2 0.01): 5 verdicts towards the eye, 5 away over the 26 held-out
batches (0.963 -> 0.963), false positives 34 -> 38; per batch at most 1 towards or 1 away (batches 17, 18, 23,
24, 26 one towards; 1, 8, 12, 20, 21 one away); v18's unseen 21-26: 3 towards, 1 away, FP 12 -> 12. Pooled per
tag: counting 0.942 -> 0.943 (4 towards, 3 away, FP 15 -> 17), two_object 0.939 -> 0.938 (1 / 2, FP 14 -> 16),
color_attr 0.980, colors 0.986, position 0.989, single_object 0.984 unchanged. The cuts chosen were mostly none
below (low 0, demote nothing; 0.1-0.15 in three folds) and high 0.7-0.9: it promotes, it barely demotes.
Object level (named by shape and colour): named readings above 0.9 0.976 -> 0.981 (9,953 -> 10,006 of 10,201), other
readings above 0.3 0.820 -> 0.822 (2,499 -> 2,505 of 3,046). Variants, same features (each over all 26 held-out
batches): the study's shape-and-colour label with verdict cuts 5 towards / 6 away (FP 39); l2 0.1: 9 / 5 (FP 38); l2
0.001: 6 / 7 (FP 38); shape label l2 0.1: 4 / 6 (FP 39); shape-and-colour label with band cuts (object level): 5 /
20, FP 34 -> 33 (it demotes at P < 0.3 in every fold, dropping 194 more readings the eye did not name below 0.3; 19
of its 20 away are demotions, 9 of them of readings over 0.9 the eye had named). Split by regime (a one-off: the
rich model fitted and applied only on the readings of a prompt's classes scored under 0.9, 653 of them, 234 named by
shape): 4 / 2, FP 34 -> 35 (l2 0.1: 3 / 1, FP 34; over 21-26: 2 / 0, FP 12 -> 11); only on those at full (11,016): 0
/ 0, its demotion cuts never moving a held-out verdict.

Which features carry signal: among the 11,016 readings of a prompt's classes with every component at full (v18
score >= 0.98), 1,036 not named by shape (1,169 by shape and colour), the out-of-batch P(named) has AUC 0.903
(0.879 for the shape-and-colour label), where the four ramped components have none (they are all at full). Single
features there (AUC named vs not): fit margin over the runner-up 0.836, log distinctness 0.826 (both past the
ramp's full 1.2), the margins over cross 0.809, diamond 0.804, star 0.794, fit (past 0.8) 0.728, pixels 0.724, box
width/area 0.69; hole dip, stripes and touching near 0.5. Largest standardised weights: margin over the runner-up
+0.43, rank beyond the asked count -0.42, is cross -0.24, margin over cross +0.21, is ring +0.19, log distinctness
+0.19, aspect -0.18, rank -0.18, strength +0.18, fit +0.17.

Why the object-level signal does not become verdicts: what decides a verdict is a handful of readings, and the eye's
per-object labels point the wrong way on many of the rest. Using the eye's own labels as P (a perfect model, printed
at the end of a rich run): with the shape-and-colour label, demoting every unnamed reading and promoting every named
one moves 61 towards and 61 away (demoting alone 24 / 61: 250 of the 1,616 unnamed readings of a prompt's classes
are shapes the eye named in another colour); with the shape label, 63 towards, 1 away (0.963 -> 0.976; demote only
23 / 0, promote only 40 / 1). Of the readings of a prompt's classes over 0.3, demoting one alone moves a verdict
towards the eye for 90 (23 of them unnamed by shape) and away for 5,272 (this and the AUCs and the promotion rule
below measured once with :func:`verdict_gain`, reading by reading; not part of the CLI). So the attainable gain is
~63 verdicts of 5,020, two thirds of it promotions of named readings scored under 0.9 (22 of the 38 whose promotion
alone helps score under 0.3: blobs the eye still named), and the demotions that help are 23 needles among ~5,300
readings whose demotion hurts; the model's out-of-batch P separates those that help from those that hurt with AUC
0.62 (demotion) and 0.45 (promotion), not enough to act on. (For the lead, no model: promoting every reading of a
prompt's classes scored <= 0.9 to 0.95 moves 33 towards, 7 away, FP 34 -> 38 over batches 1-26; only those over 0.3:
15 / 3, FP 34 -> 34.)
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import minimize
from scipy.stats import rankdata

import harness.builtin.oracle as oracle
from benchmarks.geneval.eye_labels import BATCH_FILES, EyeLabel, load_labels, oracle_verdicts, regenerate
from harness.builtin.world import COLORS

SEEN_BATCHES = tuple(range(1, 18))  # the v17 study's batches (18 and later were its unseen test batches)
DETECT, COUNT = 0.3, 0.9  # GenEval's detection threshold and its threshold on counting prompts
# v17's end points, in the order the ramps model fits them.
V17_ENDS = np.array([*oracle.FIT_RAMP, *oracle.SMALL_FIT_RAMP, *oracle.DISTINCT_RAMP, *oracle.COHERENCE_RAMP,
                     *oracle.STRENGTH_RAMP])
SATURATED = 0.98  # the logistic model leaves readings scoring at least this to v17 (every component at full)


@dataclasses.dataclass
class Reading:
    """One oracle reading of one labelled image, with its score components and the eye's verdict on it."""

    batch: int
    key: str  # "<batch>:<label index>"
    position: int  # index in the oracle's list for the image
    components: tuple[float, float, float, float]  # fit, distinctness, coherence, strength
    small: bool
    named: bool  # the eye listed an object of this shape and colour (see named_readings)
    asked: bool  # the shape is one of the prompt's classes (the only readings GenEval's rules look at)
    score: float  # the oracle's (v17's when the study above was run)
    features: dict[str, float] = dataclasses.field(default_factory=dict)  # richer evidence (reading_features)
    named_shape: bool = False  # the eye listed an object of this shape, of any colour (named_readings)


@contextmanager
def read_with_components(cut_features: dict[int, dict[str, float]] | None = None
                         ) -> Iterator[dict[int, tuple[float, float, float, float]]]:
    """While active, the oracle records each returned reading's (fit, distinct, coherence, strength) by object id,
    and where ``cut_features`` is given, what its cut showed besides (:func:`cut_evidence`) into it, by the same id.

    ``_read_cut`` computes the FIT_RAMP score (and the oval-ring one) through ``confidence``; the call whose value
    is the reading's score gives its components, and the template fits of the ``match_shape`` call before it (its
    first ``_shape_fits`` call, over the soft and the hard mask: the best IoU of every shape). ``_settle`` replaces a
    small object's reading by a copy with the settled score, which inherits them. Readings are kept alive so that no
    id is reused within one image."""
    components: dict[int, tuple[float, float, float, float]] = {}
    alive: list[oracle.ObjectReading] = []
    calls: list[tuple[float, tuple[float, float, float, float], np.ndarray | None]] = []
    last_fits: list[np.ndarray | None] = [None]
    confidence, read_cut, settle, shape_fits = oracle.confidence, oracle._read_cut, oracle._settle, oracle._shape_fits

    def recording_shape_fits(alpha: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        fits = shape_fits(alpha, *args, **kwargs)
        if alpha.shape[0] == 2:  # match_shape's first call: soft and hard mask
            last_fits[0] = fits.copy()
        return fits

    def recording_confidence(fit: float, distinct: float, coherence: float, strength: float,
                             small: bool = False) -> float:
        value = confidence(fit, distinct, coherence, strength, small)
        if not small:
            calls.append((value, (fit, distinct, coherence, strength), last_fits[0]))
        return value

    def recording_read_cut(*args: object, **kwargs: object) -> oracle.ObjectReading | None:
        calls.clear()
        reading = read_cut(*args, **kwargs)
        if reading is not None:
            matches = [(c, f) for v, c, f in calls if abs(v - reading.score) < 1e-12]
            components[id(reading)] = matches[-1][0]
            if cut_features is not None:
                cut_features[id(reading)] = cut_evidence(matches[-1][1], *args, **kwargs)
            alive.append(reading)
        return reading

    def recording_settle(reading: oracle.ObjectReading) -> oracle.ObjectReading:
        settled = settle(reading)
        components[id(settled)] = components[id(reading)]
        if cut_features is not None:
            cut_features[id(settled)] = cut_features[id(reading)]
        alive.append(settled)
        return settled

    oracle.confidence, oracle._read_cut, oracle._settle = recording_confidence, recording_read_cut, recording_settle
    oracle._shape_fits = recording_shape_fits
    try:
        yield components
    finally:
        oracle.confidence, oracle._read_cut, oracle._settle = confidence, read_cut, settle
        oracle._shape_fits = shape_fits


def cut_evidence(fits: np.ndarray, own: np.ndarray, part: np.ndarray, others: np.ndarray, labels: np.ndarray,
                 weights: np.ndarray, alpha: np.ndarray | None, hidden: np.ndarray | None = None, reach: int = 0
                 ) -> dict[str, float]:
    """What one ``_read_cut`` call saw beyond the four components (its arguments, as the oracle passes them): the
    best IoU of each shape (``fit_<shape>``), the number of pixels, whether the object touches another, whether it
    is a piece of a neck split (``hidden`` given) or a tight re-read for a hole (``alpha`` None), the area of the
    holes its cut encloses, and the enclosed dip of its blend weights: 1 - (lowest weight inside the filled mask's
    interior) / (upper decile of its own weights), near 0 for a solid object, near 1 over a ring's hole even where
    the half cut fills a tinted hole."""
    rows, cols = np.flatnonzero(own.any(1)), np.flatnonzero(own.any(0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    solid = oracle.bridge_rows(own[window])
    holes = oracle._ring_holes(solid)[0]
    interior = oracle._erode4(oracle._fill_holes(solid))
    mine = weights[window]
    peak = float(np.quantile(mine[own[window]], 0.9))
    dip = 1.0 - float(mine[interior].min()) / max(peak, 1e-6) if interior.any() else 0.0
    return {**{f"fit_{shape}": float(f) for shape, f in zip(oracle.SHAPES, fits)},
            "pixels": float(own.sum()), "touches": float((oracle._dilate8(own) & others).any()),
            "split_piece": float(hidden is not None), "tight_cut": float(alpha is None),
            "hole_area": float(np.count_nonzero(holes)), "hole_dip": dip}


def named_readings(objects: tuple[dict, ...], readings: list[oracle.ObjectReading], colour: bool = True
                   ) -> list[bool]:
    """Which readings match an object the eye named: same shape and (``colour``) a colour of the eye's (a two-tone
    "a/b" object matches either), each eye object matched at most once, readings taken by descending score. The eye's
    objects have no boxes, so of two readings of one shape and colour where the eye saw one object, the higher-scored
    is it (the one GenEval would count first); the other is an extra piece. Eye "blob"s match nothing."""
    free = [o for o in objects if o["shape"] != "blob"]
    named = [False] * len(readings)
    for i in sorted(range(len(readings)), key=lambda i: -readings[i].score):
        for j, eye in enumerate(free):
            if eye["shape"] == readings[i].shape and (not colour
                                                      or readings[i].color in str(eye["color"]).split("/")):
                named[i] = True
                del free[j]
                break
    return named


def reading_features(readings: list[oracle.ObjectReading], cut: list[dict[str, float]],
                     parts: list[tuple[float, float, float, float]], include: list[dict]) -> list[dict[str, float]]:
    """Each reading's richer evidence: its cut's (:func:`cut_evidence`), its components (distinctness as its log),
    the margin of its own shape's fit over each shape's and over the runner-up, its box (width, height, log area,
    aspect, share of the box its pixels fill), size class, stripes, shape and colour (one-hot), its oracle score, and
    its place in the image: how many readings there are, how many of its shape, its rank among those (0: highest
    scored) and that rank against the count the prompt asks of its shape (0 where the prompt does not name it)."""
    asked = {c["class"]: c.get("count", 1) for c in include}
    out = []
    for reading, evidence, part in zip(readings, cut, parts, strict=True):
        width, height = reading.box[2] - reading.box[0] + 1, reading.box[3] - reading.box[1] + 1
        fits = np.array([evidence[f"fit_{shape}"] for shape in oracle.SHAPES])
        own_fit = fits[oracle.SHAPES.index(reading.shape)]
        same = [r for r in readings if r.shape == reading.shape]
        rank = next(i for i, r in enumerate(same) if r is reading)
        features = {**evidence, "fit": part[0], "log_distinct": float(np.log(max(part[1], 1e-6))),
                    "coherence": part[2], "strength": part[3],
                    **{f"margin_{shape}": float(own_fit - f) for shape, f in zip(oracle.SHAPES, fits)},
                    "margin_runner_up": float(own_fit - np.sort(fits)[-2]),
                    "width": width, "height": height, "log_area": float(np.log(width * height)),
                    "aspect": max(width, height) / min(width, height),
                    "fill": evidence["pixels"] / (width * height), "small": float(reading.size == "small"),
                    "striped": float(reading.texture == "striped"), "score": reading.score,
                    "readings": float(len(readings)), "same_shape": float(len(same)), "rank": float(rank),
                    "rank_over_asked": float(rank - asked.get(reading.shape, 0) + 1),
                    **{f"is_{shape}": float(reading.shape == shape) for shape in oracle.SHAPES},
                    **{f"is_{color}": float(reading.color == color) for color in COLORS}}
        out.append(features)
    return out


def capture(images_dir: Path | None, batches: tuple[int, ...] = SEEN_BATCHES, rich: bool = False
            ) -> tuple[list[Reading], dict[str, list[oracle.ObjectReading]],
                       dict[int, tuple[list[EyeLabel], list[Image.Image]]]]:
    """The calibration set of eye-label ``batches`` (default 1-17, the study above), each image's readings, and
    each batch's labels and images (from ``b<n>.npy`` in ``images_dir`` where given, else regenerated from the
    checkpoint); ``rich``: each reading with its :func:`reading_features` too."""
    rows, readings_of, loaded = [], {}, {}
    for batch in batches:
        labels = load_labels(BATCH_FILES[batch - 1])
        if images_dir is not None:
            images = [Image.fromarray(a) for a in np.load(images_dir / f"b{batch}.npy")]
        else:
            images = regenerate(labels)
        loaded[batch] = (labels, images)
        for label, image in zip(labels, images, strict=True):
            key = f"{batch}:{label.index}"
            cut: dict[int, dict[str, float]] = {}
            with read_with_components(cut if rich else None) as components:
                readings = oracle.read_objects(image)
                parts = [components[id(r)] for r in readings]
            features = (reading_features(readings, [cut[id(r)] for r in readings], parts,
                                         label.metadata["include"]) if rich else [{}] * len(readings))
            readings_of[key] = readings
            asked = {c["class"] for c in label.metadata["include"]}
            for position, (reading, named, named_shape, part, feature) in enumerate(
                    zip(readings, named_readings(label.objects, readings),
                        named_readings(label.objects, readings, colour=False), parts, features)):
                rows.append(Reading(batch, key, position, part, reading.size == "small", named,
                                    reading.shape in asked, reading.score, feature, named_shape))
    return rows, readings_of, loaded


def ramp(x: np.ndarray, zero: float, full: float) -> np.ndarray:
    return np.clip((x - zero) / max(full - zero, 1e-3), 0.0, 1.0)


def ramps_score(ends: np.ndarray, parts: np.ndarray, small: np.ndarray) -> np.ndarray:
    """v17's score (``oracle.confidence``) with end points ``ends`` (ordered as ``V17_ENDS``)."""
    fit, distinct, coherence, strength = parts.T
    fit_ramp = np.where(small, ramp(fit, ends[2], ends[3]), ramp(fit, ends[0], ends[1]))
    return (fit_ramp * ramp(distinct, ends[4], ends[5]) * ramp(coherence, ends[6], ends[7])
            * ramp(strength, ends[8], ends[9]) * (1 - oracle.TIE_BREAK * (1 - fit)))


def fit_ramps(parts: np.ndarray, small: np.ndarray, named: np.ndarray, pull: float, soft: float = 0.05
              ) -> np.ndarray:
    """End points minimising the mean of softplus((0.9 - s) / soft) over named readings and of
    (softplus((s - 0.3) / soft) + softplus((s - 0.9) / soft)) / 2 over the others, plus ``pull`` times the squared
    distance to v17's; each end point within 0.1 of v17's (Powell)."""
    def loss(ends: np.ndarray) -> float:
        s = ramps_score(ends, parts, small)
        per = np.where(named, np.logaddexp(0, (COUNT - s) / soft),
                       0.5 * np.logaddexp(0, (s - DETECT) / soft) + 0.5 * np.logaddexp(0, (s - COUNT) / soft))
        return float(per.mean() + pull * ((ends - V17_ENDS) ** 2).sum())

    bounds = [(e - 0.1, e + 0.1) for e in V17_ENDS]
    return minimize(loss, V17_ENDS, method="Powell", bounds=bounds, options={"xtol": 1e-4, "ftol": 1e-8}).x


def logistic_features(parts: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Each feature increases with its component: fit, fit of a small object, log distinctness, coherence, strength
    (clipped to where the data lies), and a small-object offset (free sign)."""
    fit = np.clip(parts[:, 0], 0.6, 0.95)
    return np.stack([fit, small * fit, np.log(np.clip(parts[:, 1], 1.0, 2.0)), np.clip(parts[:, 2], 0.4, 1.0),
                     np.clip(parts[:, 3], 0.3, 0.8), small.astype(float)], 1)


def fit_logistic(x: np.ndarray, named: np.ndarray, l2: float = 1e-3, monotone: bool = True
                 ) -> Callable[[np.ndarray], np.ndarray]:
    """P(named | features) by L2-regularised logistic regression on standardised features; ``monotone``: the
    component weights bounded at >= 0 (so the score is monotone in every component), the last weight free.
    The fitted standardised weights (intercept first) are the returned function's ``weights``."""
    mean, std = x.mean(0), x.std(0)
    scale = np.where(std > 1e-9, std, 1.0)  # a feature constant in the fitted rows stays 0 wherever it is applied
    z = (x - mean) / scale

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        logit = z @ w[1:] + w[0]
        p = 1 / (1 + np.exp(-logit))
        grad = np.r_[(p - named).mean(), z.T @ (p - named) / len(named) + 2 * l2 * w[1:]]
        return float((np.logaddexp(0, logit) - named * logit).mean() + l2 * (w[1:] ** 2).sum()), grad

    bounds = ([(None, None)] + [(0, None)] * (x.shape[1] - 1) + [(None, None)] if monotone
              else [(None, None)] * (x.shape[1] + 1))
    w = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds).x

    def predict(new: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(((new - mean) / scale) @ w[1:] + w[0])))

    predict.weights = w  # type: ignore[attr-defined]
    return predict


DEMOTED, PROMOTED = 0.15, 0.95  # where the rich model moves a reading: below GenEval's detection, above its counting
LOW_CUTS = (0.0, 0.003, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)  # 0: demote nothing
HIGH_CUTS = (0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.01)  # 1.01: promote nothing


def rescore(score: np.ndarray, p: np.ndarray, low: float, high: float) -> np.ndarray:
    """The rich model's score: ``min(score, DEMOTED)`` where P(named) ``p`` is below ``low``, ``max(score,
    PROMOTED)`` where it is above ``high``, else the oracle's ``score``."""
    return np.where(p < low, np.minimum(score, DEMOTED), np.where(p > high, np.maximum(score, PROMOTED), score))


def band(score: np.ndarray) -> np.ndarray:
    """0 below GenEval's detection threshold, 1 between it and the counting threshold, 2 above."""
    return (score > DETECT).astype(int) + (score > COUNT)


def rescore_gain(score: np.ndarray, p: np.ndarray, named: np.ndarray, low: float, high: float) -> int:
    """How many bands (:func:`band`) :func:`rescore` moves readings towards the eye, net: a named reading belongs
    in band 2, any other in band 0; the gain is sum |band(score) - want| - sum |band(new) - want|."""
    want = np.where(named.astype(bool), 2, 0)
    new = rescore(score, p, low, high)
    return int(np.abs(band(score) - want).sum() - np.abs(band(new) - want).sum())


def choose_cuts(gain: Callable[[float, float], int]) -> tuple[float, float]:
    """The (low, high) cuts of :func:`rescore` with the largest ``gain(low, high)``, each chosen on its own
    (demotions and promotions touch disjoint readings), of equal gains the one that moves fewest readings; none
    (0, 1.01) where no cut gains."""
    low = max(LOW_CUTS, key=lambda c: (gain(c, 1.01), -c))
    high = max(HIGH_CUTS, key=lambda c: (gain(0.0, c), c))
    return low, high


def verdict_gain(rows: list[Reading], readings_of: dict[str, list[oracle.ObjectReading]],
                 batches: dict[int, tuple[list[EyeLabel], list[Image.Image]]]) -> Callable[[np.ndarray], int]:
    """``gain(scores)``: how many more sure eye labels GenEval's verdicts agree with when the readings take
    ``scores`` (ordered as ``rows``) than with the oracle's own; only the images where a score moved are judged
    again."""
    base = np.array([r.score for r in rows])
    where = {f"{b}:{label.index}": (label, image) for b, (labels, images) in batches.items()
             for label, image in zip(labels, images) if label.sure}
    keys = list(where)
    right = dict(zip(keys, (v == (where[k][0].verdict == "correct") for k, v in zip(keys, _verdicts(
        [where[k][0] for k in keys], [where[k][1] for k in keys], [readings_of[k] for k in keys])))))
    row_key = np.array([r.key for r in rows])

    def gain(scores: np.ndarray) -> int:
        moved = sorted({k for k in row_key[scores != base].tolist() if k in where})
        if not moved:
            return 0
        new = {(r.key, r.position): s for r, s, m in zip(rows, scores, scores != base) if m}
        readings = [_rescored(readings_of[k], [new.get((k, i), r.score) for i, r in enumerate(readings_of[k])])
                    for k in moved]
        verdicts = _verdicts([where[k][0] for k in moved], [where[k][1] for k in moved], readings)
        return sum(int(v == (where[k][0].verdict == "correct")) - int(right[k]) for k, v in zip(moved, verdicts))

    return gain


def feature_matrix(rows: list[Reading]) -> tuple[np.ndarray, list[str]]:
    names = list(rows[0].features)
    return np.array([[r.features[n] for n in names] for r in rows]), names


def leave_one_batch_out(rows: list[Reading], model: str, pull: float, l2: float = 1e-2,
                        judge: Callable[[np.ndarray], int] | None = None, by_shape: bool = False
                        ) -> tuple[np.ndarray, dict[int, tuple[float, float]]]:
    """Each reading's score from the model fitted on the other batches, and for ``rich`` the cuts used on each.

    ``rich``: :func:`fit_logistic` (weights of any sign) on :func:`reading_features` of the readings of a prompt's
    own classes in the other batches; its cuts (:func:`choose_cuts`) are chosen on those batches' own out-of-fold
    probabilities (each of them predicted by a fit without it, nor the held-out batch), so nothing of the held-out
    batch is seen; only the held-out batch's readings of its prompt's classes are re-scored (:func:`rescore`). The
    cuts' gain is ``judge`` of the other batches' re-scored readings (:func:`verdict_gain`: GenEval verdicts) where
    given, else the bands they move towards the eye (:func:`rescore_gain`). ``by_shape``: the rich model learns
    ``named_shape`` (the eye named the shape, in any colour) rather than ``named``."""
    batch = np.array([r.batch for r in rows])
    parts = np.array([r.components for r in rows])
    small = np.array([r.small for r in rows])
    named = np.array([r.named_shape if by_shape and model == "rich" else r.named for r in rows], dtype=float)
    asked = np.array([r.asked for r in rows])
    base = np.array([r.score for r in rows])
    scores = base.copy()
    cuts: dict[int, tuple[float, float]] = {}
    x = feature_matrix(rows)[0] if model == "rich" else logistic_features(parts, small)
    held_out = sorted(set(batch.tolist()))
    for held in held_out:
        test, train = batch == held, batch != held
        if model == "ramps":
            fitted = train & asked
            ends = fit_ramps(parts[fitted], small[fitted], named[fitted], pull)
            scores[test] = ramps_score(ends, parts[test], small[test])
        elif model == "logistic":
            fitted = train & asked & (base < SATURATED)
            predict = fit_logistic(x[fitted], named[fitted])
            rescore_here = test & (base < SATURATED)
            scores[rescore_here] = predict(x[rescore_here])
        elif model == "rich":
            inner = np.zeros(len(rows))
            for other in held_out:
                if other == held:
                    continue
                fitted = train & asked & (batch != other)
                inner[batch == other] = fit_logistic(x[fitted], named[fitted], l2, monotone=False)(x[batch == other])
            pool = train & asked

            def gain(low: float, high: float, pool: np.ndarray = pool, inner: np.ndarray = inner) -> int:
                if judge is None:
                    return rescore_gain(base[pool], inner[pool], named[pool], low, high)
                trial = base.copy()
                trial[pool] = rescore(base[pool], inner[pool], low, high)
                return judge(trial)

            cuts[held] = choose_cuts(gain)
            predict = fit_logistic(x[pool], named[pool], l2, monotone=False)
            here = test & asked
            scores[here] = rescore(base[here], predict(x[here]), *cuts[held])
    return scores, cuts


def auc(x: np.ndarray, positive: np.ndarray) -> float:
    """The probability that a random positive's ``x`` exceeds a random negative's (ties count half):
    the Mann-Whitney U over the product of the two counts."""
    ranks = rankdata(x)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


COUNTERS = ("sure", "base", "new", "towards", "away", "fp_base", "fp_new")


def _rescored(readings: list[oracle.ObjectReading], scores: list[float]) -> list[oracle.ObjectReading]:
    """``readings`` with ``scores``, highest first (as ``read_objects`` reports them)."""
    return sorted((dataclasses.replace(r, score=s) for r, s in zip(readings, scores)), key=lambda r: -r.score)


def _verdicts(labels: list[EyeLabel], images: list[Image.Image], readings: list[list[oracle.ObjectReading]]
              ) -> list[bool]:
    """GenEval's verdicts on ``images`` when the oracle reads each as ``readings`` (looked up by its pixels)."""
    lookup = {np.asarray(image.convert("RGB")).tobytes(): found for image, found in zip(images, readings)}
    read_objects = oracle.read_objects
    oracle.read_objects = lambda image: lookup[np.asarray(image.convert("RGB")).tobytes()]
    try:
        return oracle_verdicts(labels, images)
    finally:
        oracle.read_objects = read_objects


def verdict_table(rows: list[Reading], scores: np.ndarray, readings_of: dict[str, list[oracle.ObjectReading]],
                  batches: dict[int, tuple[list[EyeLabel], list[Image.Image]]]) -> list[dict]:
    """Per batch, the oracle's (``base``) and the re-scored readings' (``new``) GenEval verdicts against the eye's
    sure labels, in all and per GenEval tag (``tags``: the same counters)."""
    new_score = {(r.key, r.position): s for r, s in zip(rows, scores)}
    table = []
    for batch, (labels, images) in batches.items():
        keys = [f"{batch}:{label.index}" for label in labels]
        base = _verdicts(labels, images, [readings_of[k] for k in keys])
        new = _verdicts(labels, images, [_rescored(found, [new_score[k, i] for i in range(len(found))])
                                         for k, found in ((k, readings_of[k]) for k in keys)])
        row: dict = {"batch": batch, **dict.fromkeys(COUNTERS, 0), "tags": {}}
        for label, old, now in zip(labels, base, new):
            if not label.sure:
                continue
            eye = label.verdict == "correct"
            for counts in (row, row["tags"].setdefault(label.tag, dict.fromkeys(COUNTERS, 0))):
                counts["sure"] += 1
                counts["base"] += old == eye
                counts["new"] += now == eye
                counts["fp_base"] += old and not eye
                counts["fp_new"] += now and not eye
                if old != now:
                    counts["towards" if now == eye else "away"] += 1
        table.append(row)
    return table


def object_calibration(rows: list[Reading], scores: np.ndarray) -> str:
    named = np.array([r.named for r in rows])
    return (f"named readings above {COUNT}: {(scores[named] > COUNT).mean():.3f} "
            f"({(scores[named] > COUNT).sum()}/{named.sum()}); other readings above {DETECT}: "
            f"{(scores[~named] > DETECT).mean():.3f} ({(scores[~named] > DETECT).sum()}/{(~named).sum()})")


def table_line(name: object, counts: dict) -> str:
    return (f"{name!s:>12}  {counts['sure']:4d}  {counts['base'] / counts['sure']:.3f}  "
            f"{counts['new'] / counts['sure']:.3f}   {counts['towards']:7d} {counts['away']:4d}  "
            f"{counts['fp_base']:2d} -> {counts['fp_new']}")


def signal_report(rows: list[Reading], l2: float, by_shape: bool) -> list[str]:
    """Which features carry signal: each feature's AUC of named against not named (``by_shape``: ``named_shape``)
    among the readings of a prompt's classes with every component at full (oracle score at least ``SATURATED``),
    the same of the rich model's out-of-batch P(named) (each batch's from a fit on the others), and the
    standardised weights of the rich model fitted on every batch's readings of a prompt's classes, largest first."""
    x, names = feature_matrix(rows)
    named = np.array([r.named_shape if by_shape else r.named for r in rows])
    asked = np.array([r.asked for r in rows])
    full = asked & (np.array([r.score for r in rows]) >= SATURATED)
    aucs = {n: auc(x[full, i], named[full]) for i, n in enumerate(names) if np.ptp(x[full, i]) > 0}
    weights = fit_logistic(x[asked], named[asked].astype(float), l2, monotone=False).weights[1:]
    batch = np.array([r.batch for r in rows])
    out_of_batch = np.zeros(len(rows))
    for held in sorted(set(batch.tolist())):
        fitted = asked & (batch != held)
        out_of_batch[batch == held] = fit_logistic(x[fitted], named[fitted].astype(float), l2,
                                                   monotone=False)(x[batch == held])
    lines = [f"readings of a prompt's classes at full: {full.sum()}, named {named[full].sum()}; AUC of the rich "
             f"model's out-of-batch P(named) there {auc(out_of_batch[full], named[full]):.3f}; single-feature AUC "
             "(named vs not; 0.5 none):"]
    lines += [f"  {n:>18} {a:.3f}" for n, a in sorted(aucs.items(), key=lambda kv: -abs(kv[1] - 0.5))[:15]]
    lines.append("standardised weights, fitted on all batches' readings of a prompt's classes:")
    lines += [f"  {names[i]:>18} {weights[i]:+.3f}" for i in np.argsort(-np.abs(weights))[:15]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of b<n>.npy image arrays (else regenerated)")
    parser.add_argument("--model", choices=("ramps", "logistic", "rich"), default="ramps")
    parser.add_argument("--batches", type=int, nargs="+", help="eye-label batches (default: 1-17; rich: all)")
    parser.add_argument("--pull", type=float, default=10.0, help="ramps: pull towards v17's end points")
    parser.add_argument("--l2", type=float, default=1e-2, help="rich: L2 strength on the standardised weights")
    parser.add_argument("--cuts", choices=("verdicts", "bands"), default="verdicts",
                        help="rich: choose the cuts by the other batches' GenEval verdicts or by object bands")
    parser.add_argument("--label", choices=("shape", "shape-colour"), default="shape",
                        help="rich: a reading is named when the eye listed its shape (any colour) or shape and colour")
    args = parser.parse_args()
    default = tuple(range(1, len(BATCH_FILES) + 1)) if args.model == "rich" else SEEN_BATCHES
    batches = tuple(args.batches) if args.batches else default
    rows, readings_of, loaded = capture(args.images, batches, rich=args.model == "rich")
    judge = verdict_gain(rows, readings_of, loaded) if args.cuts == "verdicts" else None
    scores, cuts = leave_one_batch_out(rows, args.model, args.pull, args.l2, judge, args.label == "shape")
    base = np.array([r.score for r in rows])
    version = f"v{oracle.VERSION}"
    print(f"{len(rows)} readings, {sum(r.named for r in rows)} named by the eye")
    print(f"object level, {version}:          ", object_calibration(rows, base))
    print("object level, left-out fit: ", object_calibration(rows, scores))
    table = verdict_table(rows, scores, readings_of, loaded)
    totals = dict.fromkeys(COUNTERS, 0)
    tags: dict[str, dict[str, int]] = {}
    print(f"       batch  sure   {version}    fitted  towards away  FP {version} -> fitted   cuts")
    for row in table:
        print(table_line(row["batch"], row), "  ", cuts.get(row["batch"], ""))
        for name in COUNTERS:
            totals[name] += row[name]
        for tag, counts in row["tags"].items():
            for name in COUNTERS:
                tags.setdefault(tag, dict.fromkeys(COUNTERS, 0))[name] += counts[name]
    print(table_line("all", totals))
    for tag, counts in sorted(tags.items()):
        print(table_line(tag, counts))
    if args.model == "ramps":
        parts = np.array([r.components for r in rows])
        small = np.array([r.small for r in rows])
        named = np.array([r.named for r in rows], dtype=float)
        asked = np.array([r.asked for r in rows])
        ends = fit_ramps(parts[asked], small[asked], named[asked], args.pull)
        print(f"end points fitted on all {len(batches)} batches:", np.round(ends, 4).tolist())
        print("v17's:                              ", V17_ENDS.tolist())
    if args.model == "rich":
        print("\n".join(signal_report(rows, args.l2, args.label == "shape")))
        asked = np.array([r.asked for r in rows])
        for name in ("named", "named_shape"):
            known = np.array([getattr(r, name) for r in rows], dtype=float)
            for what, low, high in (("demote and promote", 0.5, 0.5), ("demote only", 0.5, 1.01),
                                    ("promote only", 0.0, 0.5)):
                bound = base.copy()
                bound[asked] = rescore(base[asked], known[asked], low, high)
                totals = dict.fromkeys(COUNTERS, 0)
                for row in verdict_table(rows, bound, readings_of, loaded):
                    for counter in COUNTERS:
                        totals[counter] += row[counter]
                print(table_line(f"{name} as P, {what}", totals).strip())


if __name__ == "__main__":
    main()
