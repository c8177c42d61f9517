"""Feedback sources named on the command line as ``--feedback KIND:ARG`` (issue 13, ``specs/trainers.md``).

* ``objective:NAME``: an objective as a proxy for a person (D3PO's "relative scale of objectives"). Builtin world,
  read from pixels by the oracle with GenEval's rules on each prompt item's GenEval-style metadata (tag, include,
  exclude): ``geneval``, ``geneval-partial``, ``counting-error``, ``distorted``; and the builtin judges of D3PO's two
  human-feedback experiments, exactly as the benchmarks measure them: ``distortion`` (the ``distortion`` benchmark's
  oracle judge) and ``unsafe`` (the ``safety`` benchmark's red-cross rule). Any world: ``jpeg-compressibility``,
  ``jpeg-incompressibility``, ``brightness`` (the definitions of DDPO's and D3PO's ``rewards.py``).
* ``simulated:NAME?noise=P&model=flip|bt&seed=S&temperature=T&ties=Q``: a simulated annotator comparing the pairs
  of each prompt's group by objective NAME, with label noise (:class:`SimulatedFeedback`).
* ``labels:FILE_OR_FOLDER[?round=DIR]``: recorded human choices joined to a recorded round (``trainers/labels.py``,
  ``trainers/rounds.py``); training then runs on that round instead of sampling.
* ``human[?KEY=VALUE&...]``: people labelling each sampled round on the labeling page while the loop waits
  (``trainers/human.py``, ``harness.labeling``).
* ``reward:NAME|PATH``: a scalar reward model: a learned one (a folder written by ``harness train-reward``) or a
  real-world scorer from local weights (``trainers/reward_model.py``).

Every scalar source fills ``rewards`` (higher is better) and derives the within-group ``preferences`` from them: all
pairs of a prompt's group, the higher reward winning, equal rewards a tie; ``labels_used`` counts the compared pairs
(what a person would have judged).

``evaluate`` takes the rows' sampling seeds as an optional keyword (``seeds=``): the simulated annotator keys its
noise on them so that a resumed or re-batched run draws the same labels; the other sources ignore them.
"""

from __future__ import annotations

import io
import math
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image

from benchmarks.geneval.benchmark import GenEval, object_crop
from benchmarks.geneval.rules import COLORS, Detected, filter_class, judge
from benchmarks.registry import WORLDS, PromptItem, get_benchmark
from harness.errors import HarnessError
from harness.hashing import stable_hash
from harness.perception.base import Detections
from trainers.base import Feedback, FeedbackBatch, Preference, Trajectories
from trainers.labels import LabelSet, pairs_from_scores, read_labels
from trainers.rounds import load_round

KINDS = ("objective", "simulated", "labels", "reward")


# --- objectives ----------------------------------------------------------------------------------------------------


class Objective(ABC):
    """A per-image value computed from pixels (and, for GenEval objectives, the prompt item's metadata).

    ``penalty`` objectives measure something bad (1 = distorted): as feedback their reward is the negated value.
    """

    name: str
    worlds: tuple[str, ...] = WORLDS
    penalty = False

    @abstractmethod
    def values(self, images: list[Image.Image], items: list[PromptItem]) -> np.ndarray: ...

    def scorer_id(self) -> dict:
        return {"objective": self.name}


class JpegSize(Objective):
    """DDPO's (in)compressibility: the JPEG size in kB (bytes / 1000) of the RGB image saved at quality 95.

    ``jpeg-incompressibility`` is the size, ``jpeg-compressibility`` its negative ([DDPO] ``rewards.py``).
    """

    def __init__(self, name: str, sign: float) -> None:
        self.name, self.sign = name, sign

    def values(self, images: list[Image.Image], items: list[PromptItem]) -> np.ndarray:
        sizes = []
        for image in images:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=95)
            sizes.append(buffer.tell() / 1000)
        return self.sign * np.array(sizes, dtype=np.float64)


class Brightness(Objective):
    """D3PO's ``light_reward``: the mean pixel value over all pixels and channels, on the [0, 1] scale."""

    name = "brightness"

    def values(self, images: list[Image.Image], items: list[PromptItem]) -> np.ndarray:
        return np.array([np.asarray(img.convert("RGB"), dtype=np.float64).mean() / 255 for img in images])


class GenEvalObjective(Objective):
    """GenEval's verdict and its graded variants, read by the builtin oracle with ``benchmarks.geneval``'s rules.

    Each image is read exactly as the GenEval benchmark reads it (same detector, colour classifier, options and
    thresholds: the counting threshold 0.9 for ``counting`` prompts, 0.3 otherwise), then:

    * ``geneval``: 1 if :func:`~benchmarks.geneval.rules.judge` calls the image correct, else 0 (the benchmark's
      per-image score);
    * ``geneval-exact``: ``geneval`` and, for every class the prompt names, no more detected instances than the
      prompt asks for in all (the sum of its include clauses' counts): what a person asking for "a photo of a
      diamond" wants. GenEval's rule checks presence only (at least n) for five of its six tags, so a model trained
      on ``geneval`` learns to draw extra objects and loses on counting, the one tag that penalises them; this
      objective removes that incentive (measured on the builtin world: it does not help, see
      docs/training-results.md, "Why counting falls");
    * ``geneval-strict``: ``geneval`` with every object held to GenEval's counting threshold (0.9) on every tag, not
      only on counting prompts: an object counts only where the reader is sure of it. Why: on the builtin world an
      older, stricter oracle (v2, which failed touching and doubtful objects) taught D3PO better than the newer one
      as the benchmark scores it (docs/training-results.md, "What moves D3PO": +2.8 points paired on two seeds), so
      a teacher that rewards only objects read clearly is worth testing as a proxy; the benchmark itself keeps
      GenEval's thresholds;
    * ``geneval-partial``: the fraction of the prompt's clauses that hold, each judged alone by ``judge``: an include
      clause ``{class, count[, color]}`` on its own; a position clause together with its target clause (so it holds
      when the target is found and the relation holds for every pair, as in ``judge``); an exclude clause
      ``{class, count}`` when fewer than ``count`` are detected. Include and exclude clauses count alike, so the
      credit is 1 exactly when ``geneval`` is 1 (a counting prompt that draws too many objects misses its exclude);
    * ``counting-error``: -Σ over include clauses of |detected instances of the clause's class - requested count|
      (colours and positions ignored; 0 is best);
    * ``distorted``: 1 when the oracle finds no object of any class scoring above GenEval's detection threshold
      (0.3): noise, a smear, nothing recognisable. A penalty: as feedback the reward is -1 for a distorted image.
      This is only the "no object" reason of the distortion benchmark's judge (it misses pure-noise backgrounds
      behind a named object and malformed or merged blobs); ``distortion`` (:class:`JudgeObjective`) is the whole
      judge. ``distorted`` keeps its narrower meaning because ranked datasets were built with it.
    """

    worlds = ("builtin",)

    def __init__(self, name: str) -> None:
        self.name = name
        self.penalty = name == "distorted"
        self.benchmark = GenEval()
        self.perception = self.benchmark.perception("builtin")

    def scorer_id(self) -> dict:
        return {"objective": self.name, **self.benchmark.scorer_id(self.perception)}

    def values(self, images: list[Image.Image], items: list[PromptItem]) -> np.ndarray:
        detections = self.perception["detector"].detect(images)
        if self.name == "distorted":
            threshold = self.benchmark.options.threshold
            return np.array([float(not np.any(d.scores > threshold)) for d in detections])
        for item in items:
            if not isinstance(item.metadata.get("include"), list):
                raise HarnessError(f"objective:{self.name} needs GenEval-style metadata (tag, include[, exclude]) on "
                                   f"every training prompt; {item.prompt!r} has none (use builtin:geneval-train "
                                   "prompts or a JSONL prompt file with metadata)")
        out = []
        for image, item, dets in zip(images, items, detections):
            detected = self._kept(dets, item)

            def color_of(cls: str, objs: list[Detected], image: Image.Image = image) -> list[str]:
                crops = [object_crop(image, o, self.benchmark.options.bgcolor) for o in objs]
                return self.perception["color"].classify(crops, [cls] * len(crops), list(COLORS))

            out.append(self._value(detected, item.metadata, color_of))
        return np.array(out, dtype=np.float64)

    def _kept(self, dets: Detections, item: PromptItem) -> dict[str, list[Detected]]:
        """Per-class detections kept as :meth:`GenEval.score` keeps them (threshold by tag, max objects, NMS)."""
        options = self.benchmark.options
        strict = item.tag == "counting" or self.name == "geneval-strict"
        threshold = options.counting_threshold if strict else options.threshold
        detected = {}
        for cls in dict.fromkeys(dets.labels):
            own = dets.of_class(cls)
            kept = filter_class(own.boxes, own.scores, own.masks, threshold, options.max_objects, options.max_overlap)
            if kept:
                detected[cls] = kept
        return detected

    def _value(self, detected: dict[str, list[Detected]], metadata: dict, color_of: object) -> float:
        position_threshold = self.benchmark.options.position_threshold
        if self.name in ("geneval", "geneval-strict"):
            return float(judge(detected, metadata, color_of, position_threshold)[0])
        if self.name == "geneval-exact":
            wanted: dict[str, int] = {}
            for clause in metadata["include"]:
                wanted[clause["class"]] = wanted.get(clause["class"], 0) + clause["count"]
            extra = any(len(detected.get(cls, [])) > n for cls, n in wanted.items())
            return float(judge(detected, metadata, color_of, position_threshold)[0] and not extra)
        include, exclude = metadata["include"], metadata.get("exclude", [])
        if self.name == "counting-error":
            return float(-sum(abs(len(detected.get(c["class"], [])) - c["count"]) for c in include))
        clauses = []
        for clause in include:
            if "position" in clause:
                relation, target = clause["position"]
                clauses.append({"include": [include[target], {**clause, "position": [relation, 0]}]})
            else:
                clauses.append({"include": [clause]})
        clauses += [{"include": [], "exclude": [clause]} for clause in exclude]
        held = [judge(detected, c, color_of, position_threshold)[0] for c in clauses]
        return float(np.mean(held)) if held else 1.0


JUDGE_BENCHMARKS = {"distortion": "distortion", "unsafe": "safety"}  # objective -> the benchmark whose judge it is


class JudgeObjective(Objective):
    """A flag-rate benchmark's own builtin judge as a penalty: 1 when it flags the image, else 0.

    D3PO's human-feedback experiments (arXiv 2311.13231, Fig. 4 and 5) have people flag images as deformed or
    unsafe, and then count the flags on the same kind of images: the feedback and the measurement are the same
    judgment. In the builtin world the simulated person (``simulated:distortion?noise=P``) therefore uses exactly the
    judge the benchmark scores with, built by the benchmark itself with its default builtin options, so the two can
    never drift apart:

    * ``distortion``: the ``distortion`` benchmark's ``oracle`` judge
      (:class:`harness.perception.distortion.OracleDistortionJudge`: noise, no object named above 0.3, or a
      malformed / merged blob);
    * ``unsafe``: the ``safety`` benchmark's ``oracle`` judge (:class:`harness.perception.safety.OracleSafetyRule`:
      the oracle names a red cross).

    As feedback the reward is -value (flagged images lose to unflagged ones; two flagged or two clean images tie).
    Gains on that benchmark are in-reward by design (``scorer_id`` names it), as in the paper.
    """

    worlds = ("builtin",)
    penalty = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.benchmark = get_benchmark(JUDGE_BENCHMARKS[name])
        self.perception = self.benchmark.perception("builtin")
        self.judge = self.perception["judge"]

    def scorer_id(self) -> dict:
        return {"objective": self.name, **self.benchmark.scorer_id(self.perception)}

    def values(self, images: list[Image.Image], items: list[PromptItem]) -> np.ndarray:
        flags = self.judge.judge(images, [item.prompt for item in items], [None] * len(images))  # type: ignore[attr-defined]
        if any(flag.flagged is None for flag in flags):
            raise HarnessError(f"objective:{self.name}: the judge left an image unjudged; an automatic judge must "
                               "decide every image")
        return np.array([float(flag.flagged) for flag in flags], dtype=np.float64)


OBJECTIVES = ("geneval", "geneval-exact", "geneval-strict", "geneval-partial", "counting-error", "distorted",
              "distortion", "unsafe", "jpeg-compressibility", "jpeg-incompressibility", "brightness")


def get_objective(name: str, world: str) -> Objective:
    """The objective ``name`` in ``world``; an unknown name or one the world lacks is a one-line error."""
    if world not in WORLDS:
        raise HarnessError(f"unknown world {world!r}; use one of {', '.join(WORLDS)}")
    builders = {
        "geneval": lambda: GenEvalObjective("geneval"),
        "geneval-exact": lambda: GenEvalObjective("geneval-exact"),
        "geneval-strict": lambda: GenEvalObjective("geneval-strict"),
        "geneval-partial": lambda: GenEvalObjective("geneval-partial"),
        "counting-error": lambda: GenEvalObjective("counting-error"),
        "distorted": lambda: GenEvalObjective("distorted"),
        "distortion": lambda: JudgeObjective("distortion"),
        "unsafe": lambda: JudgeObjective("unsafe"),
        "jpeg-compressibility": lambda: JpegSize("jpeg-compressibility", -1.0),
        "jpeg-incompressibility": lambda: JpegSize("jpeg-incompressibility", 1.0),
        "brightness": Brightness,
    }
    builtin_only = {"geneval", "geneval-exact", "geneval-strict", "geneval-partial", "counting-error", "distorted",
                    "distortion", "unsafe"}
    available = [n for n in OBJECTIVES if world == "builtin" or n not in builtin_only]
    if name not in available:
        why = "is builtin-world only (it reads pixels with the oracle)" if name in builtin_only else "is unknown"
        raise HarnessError(f"objective {name!r} {why}; objectives in the {world} world: {', '.join(available)}")
    return builders[name]()


# --- shared helpers ------------------------------------------------------------------------------------------------


def group_preferences(rewards: np.ndarray, groups: list[int]) -> list[Preference]:
    """All pairs (i < j) of rows with the same group, winner by the higher reward, equal rewards a tie."""
    rows_of: dict[int, list[int]] = {}
    for row, group in enumerate(groups):
        rows_of.setdefault(group, []).append(row)
    prefs = []
    for rows in rows_of.values():
        prefs.extend(Preference(i, j, w) for i, j, w in pairs_from_scores(rows, [float(rewards[r]) for r in rows]))
    return prefs


def scalar_batch(rewards: np.ndarray, groups: list[int], details: dict | None = None) -> FeedbackBatch:
    prefs = group_preferences(rewards, groups)
    return FeedbackBatch(rewards=np.asarray(rewards, dtype=np.float64), preferences=prefs, labels_used=len(prefs),
                         details=details or {})


def _check_batch(images: list[Image.Image], items: list[PromptItem], groups: list[int]) -> None:
    if not len(images) == len(items) == len(groups):
        raise ValueError(f"feedback needs one item and group per image: {len(images)} images, {len(items)} items, "
                         f"{len(groups)} groups")


# --- sources -------------------------------------------------------------------------------------------------------


class ObjectiveFeedback(Feedback):
    kind = "objective"

    def __init__(self, spec: str, objective: Objective) -> None:
        self.spec, self.objective = spec, objective

    def evaluate(self, images: list[Image.Image], items: list[PromptItem], groups: list[int],
                 seeds: list[int] | None = None) -> FeedbackBatch:
        _check_batch(images, items, groups)
        values = self.objective.values(images, items)
        rewards = -values if self.objective.penalty else values
        return scalar_batch(rewards, groups, {"objective": values.tolist()})

    def scorer_id(self) -> dict:
        return {"feedback": self.spec, **self.objective.scorer_id()}


class SimulatedFeedback(Feedback):
    """A simulated annotator: compares every pair of a prompt's group by an objective, with label noise.

    For a pair with objective values r_i, r_j:

    * equal values: a tie (the annotator cannot tell them apart);
    * otherwise, with probability ``ties``: a tie; else the preferred row is the higher value (``model=flip``) or
      drawn by Bradley-Terry, P(i preferred) = sigmoid((r_i - r_j) / temperature) (``model=bt``); then the choice
      is flipped with probability ``noise`` (both models).

    The random numbers of a pair come from ``numpy.random.default_rng([seed, lower row seed, higher row seed,
    hash(prompt)])``: they depend on which images are compared, not on call order or row order, so a resumed run,
    a different batch split or another process draws the same labels. Without ``seeds`` (a caller that does not
    pass them) the batch's call count and row numbers stand in, which is reproducible only for the same call order.
    ``rewards`` are the objective's (noise-free) values, as for any scalar source.
    """

    kind = "simulated"

    def __init__(self, spec: str, objective: Objective, noise: float = 0.0, model: str = "flip", seed: int = 0,
                 temperature: float = 1.0, ties: float = 0.0) -> None:
        self.spec, self.objective = spec, objective
        self.noise, self.model, self.seed, self.temperature, self.ties = noise, model, seed, temperature, ties
        self.calls = 0

    def evaluate(self, images: list[Image.Image], items: list[PromptItem], groups: list[int],
                 seeds: list[int] | None = None) -> FeedbackBatch:
        _check_batch(images, items, groups)
        values = self.objective.values(images, items)
        rewards = -values if self.objective.penalty else values
        self.calls += 1
        keys = list(seeds) if seeds is not None else [self.calls * 1_000_003 + r for r in range(len(images))]
        if len(keys) != len(images):
            raise ValueError(f"{len(keys)} seeds for {len(images)} images")
        truth = group_preferences(rewards, groups)
        prefs = [self._judge(p, rewards, keys, items) for p in truth]
        flipped = sum(p.winner != 0 and p.winner == -t.winner for p, t in zip(prefs, truth))
        details = {"objective": values.tolist(), "true_preferences": [t.winner for t in truth], "flipped": flipped}
        return FeedbackBatch(rewards=rewards, preferences=prefs, labels_used=len(prefs), details=details)

    def _judge(self, pair: Preference, rewards: np.ndarray, keys: list[int], items: list[PromptItem]) -> Preference:
        i, j = pair.i, pair.j
        # Draw for the pair in a fixed orientation (lower key first) so that row order cannot change the outcome.
        lo, hi = (i, j) if (keys[i], i) <= (keys[j], j) else (j, i)
        if pair.winner == 0:
            return pair
        entropy = [self.seed, keys[lo], keys[hi], int(stable_hash(items[i].prompt, 15), 16)]
        u_tie, u_bt, u_flip = np.random.default_rng([k % 2**63 for k in entropy]).random(3)
        if u_tie < self.ties:
            return Preference(i, j, 0)
        diff = float(rewards[lo] - rewards[hi])
        # sigmoid(x) = (1 + tanh(x / 2)) / 2 cannot overflow for large reward gaps.
        lo_wins = u_bt < 0.5 * (1 + math.tanh(diff / (2 * self.temperature))) if self.model == "bt" else diff > 0
        if u_flip < self.noise:
            lo_wins = not lo_wins
        winner = 1 if lo_wins == (lo == i) else -1
        return Preference(i, j, winner)

    def scorer_id(self) -> dict:
        return {"feedback": self.spec, **self.objective.scorer_id()}


class LabelsFeedback(Feedback):
    """Recorded human labels on a recorded round: the loop trains on :meth:`load_round` instead of sampling, and
    :meth:`evaluate` returns the labelled preferences between the rows it is given. Rows are matched to the round
    by their pixels, so any subset or order of the round's images (one process's share under DDP) works."""

    kind = "labels"

    def __init__(self, spec: str, labels: LabelSet) -> None:
        self.spec, self.labels = spec, labels
        self._row_of_image: dict[str, int] | None = None

    def load_round(self) -> tuple[Trajectories, list[PromptItem]]:
        return load_round(self.labels.round.folder)

    def _image_rows(self) -> dict[str, int]:
        if self._row_of_image is None:
            self._row_of_image = {}
            for row, path in enumerate(self.labels.round.images):
                with Image.open(path) as img:
                    self._row_of_image.setdefault(_pixel_key(img), row)
        return self._row_of_image

    def evaluate(self, images: list[Image.Image], items: list[PromptItem], groups: list[int],
                 seeds: list[int] | None = None) -> FeedbackBatch:
        _check_batch(images, items, groups)
        table = self._image_rows()
        batch_row = {}
        for b, image in enumerate(images):
            row = table.get(_pixel_key(image))
            if row is None:
                raise HarnessError(f"labels:{self.labels.round.folder}: image {b} of the batch is not in the recorded "
                                   "round; labels can only judge the round they were made on (train on load_round())")
            batch_row[row] = b
        prefs = [Preference(batch_row[p.i], batch_row[p.j], p.winner) for p in self.labels.preferences
                 if p.i in batch_row and p.j in batch_row]
        return FeedbackBatch(rewards=None, preferences=prefs, labels_used=len(prefs),
                             details={"sources": [str(s) for s in self.labels.sources]})

    def scorer_id(self) -> dict:
        return {"feedback": self.spec, "labels": [str(s) for s in self.labels.sources]}


def _pixel_key(image: Image.Image) -> str:
    rgb = np.asarray(image.convert("RGB"))
    return stable_hash([rgb.shape, rgb.tobytes().hex()])


class RewardFeedback(Feedback):
    """A scalar reward model (learned or pre-trained) scoring (image, prompt)."""

    kind = "reward"

    def __init__(self, spec: str, scorer: object) -> None:
        self.spec, self.scorer = spec, scorer

    def evaluate(self, images: list[Image.Image], items: list[PromptItem], groups: list[int],
                 seeds: list[int] | None = None) -> FeedbackBatch:
        _check_batch(images, items, groups)
        rewards = np.asarray(self.scorer.score(images, [item.prompt for item in items]), dtype=np.float64)
        return scalar_batch(rewards, groups)

    def scorer_id(self) -> dict:
        return {"feedback": self.spec, **self.scorer.scorer_id()}


# --- parsing -------------------------------------------------------------------------------------------------------


def parse_feedback(spec: str, world: str, data_dir: Path | None = None) -> Feedback:
    """The feedback source a ``--feedback KIND:ARG`` string names (see the module docstring for the kinds)."""
    if spec == "human" or spec.startswith("human?"):  # people on the labeling page (trainers/human.py)
        from trainers.human import parse_human

        return parse_human(spec)
    kind, sep, arg = spec.partition(":")
    if not sep or kind not in KINDS or not arg:
        raise HarnessError(f"--feedback {spec!r}: expected KIND:ARG with KIND one of {', '.join(KINDS)} "
                           "(e.g. objective:geneval, simulated:geneval?noise=0.1, labels:ROUND_DIR, reward:PATH), "
                           "or human")
    arg, _, query = arg.partition("?")
    params = _query(spec, query)
    if kind == "objective":
        _no_params(spec, params)
        return ObjectiveFeedback(spec, get_objective(arg, world))
    if kind == "simulated":
        return _simulated(spec, arg, params, world)
    if kind == "labels":
        unknown = set(params) - {"round"}
        if unknown:
            raise HarnessError(f"--feedback {spec!r}: unknown parameter(s) {', '.join(sorted(unknown))}; known: round")
        round_dir = Path(params["round"]) if "round" in params else None
        return LabelsFeedback(spec, read_labels(Path(arg), round_dir))
    from trainers.reward_model import load_reward

    return RewardFeedback(spec, load_reward(arg, world, params, data_dir))


def _query(spec: str, query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise HarnessError(f"--feedback {spec!r}: malformed parameters {query!r}; write KEY=VALUE&KEY=VALUE") from None
    params = dict(pairs)
    if len(params) != len(pairs):
        raise HarnessError(f"--feedback {spec!r}: a parameter is given twice")
    return params


def _no_params(spec: str, params: dict[str, str]) -> None:
    if params:
        raise HarnessError(f"--feedback {spec!r}: objectives take no parameters (got {', '.join(sorted(params))})")


def _simulated(spec: str, name: str, params: dict[str, str], world: str) -> SimulatedFeedback:
    known = {"noise": float, "model": str, "seed": int, "temperature": float, "ties": float}
    unknown = set(params) - set(known)
    if unknown:
        raise HarnessError(f"--feedback {spec!r}: unknown parameter(s) {', '.join(sorted(unknown))}; known: "
                           f"{', '.join(known)}")
    values: dict[str, object] = {}
    for key, raw in params.items():
        try:
            values[key] = known[key](raw)
        except ValueError:
            raise HarnessError(f"--feedback {spec!r}: {key}={raw!r} is not a {known[key].__name__}") from None
    for key in ("noise", "ties"):
        if not 0.0 <= values.get(key, 0.0) <= 1.0:
            raise HarnessError(f"--feedback {spec!r}: {key} must be a probability in [0, 1], got {values[key]}")
    if values.get("model", "flip") not in ("flip", "bt"):
        raise HarnessError(f"--feedback {spec!r}: model must be flip or bt, got {values['model']!r}")
    if not values.get("temperature", 1.0) > 0:
        raise HarnessError(f"--feedback {spec!r}: temperature must be > 0, got {values['temperature']}")
    return SimulatedFeedback(spec, get_objective(name, world), **values)
