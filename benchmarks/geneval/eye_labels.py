"""Eye-labelled generated images: does the oracle agree with a person looking at what ``builtin:shapes`` draws?

The labels are GenEval verdicts on the builtin world's GenEval prompts, so this module lives with GenEval (the
builtin world knows no benchmark); the label file stays beside the oracle it calibrated.

The label file ``harness/builtin/eye_labels.jsonl`` holds one line per generated image: the checkpoint
fingerprint, the GenEval prompt and its metadata, the seed and the sampler config that regenerate the image
bit-for-bit from the committed checkpoint (no image is committed), what a person saw in it (``objects``: shape,
colour, texture, size), the person's verdict under the tag's GenEval rule (``correct`` / ``wrong`` / ``unsure``) and
a note. The draw is fixed: :func:`draw_specs` picks prompts of each tag and seeds from ``random.Random(DRAW_SEED)``;
"strong" images use the checkpoint's own sampler (10 DDIM steps, guidance 2.0), "weak" ones 3 DDIM steps, which
draw softer, noisier and more often broken shapes.

Split, fixed before any tuning: images with an even seed form the tuning half, odd seeds the held-out half.

How the images were labelled (blind to the oracle: contact sheets of 30 images upscaled x4 with nearest-neighbour,
with index and prompt only, and x8 close-ups of the small or doubtful ones; labels were written once and not
changed after the oracle's verdicts were seen, so the few geometric misjudgements of the eye stay in):

* An object counts when a person would name its shape at once at 48 x 48: the outline is closed and the shape is
  the one a viewer names without hesitating (a ring needs a visible hole; a star needs points; a cross four arms; a
  heart lobes and a point; a triangle three corners). ``objects`` lists what was seen: ``shape`` is "blob" for a
  shape nobody would name, ``color`` "a/b" for a two-tone object, ``texture`` null where it was not readable.
* A blob that could be two shapes (a round square, a circle with a dent, a four-lobed blob between cross and
  diamond, a ragged few-pixel star) is not an object of either shape; if the verdict hangs on it, it is ``unsure``.
* Merged objects (touching into one silhouette) count when each part is still plainly its own shape; when the
  count hangs on whether a merged block is one or two objects, the verdict is ``unsure``.
* Speckle, smears, faint stains and full-canvas noise are not objects: a canvas of noise is ``wrong`` for every tag.
* Colour is the colour a person names for the body (white stripes, or black ones on white, do not change it). When
  two objects of the asked class have different colours, GenEval's verdict depends on which one its detector ranks
  first, so the verdict is ``unsure``.
* Counting needs exactly the number asked of clearly recognised objects of that shape (objects of other shapes do
  not matter, as in GenEval); a possible extra blob of the same shape makes it ``unsure``.
* Position applies GenEval's rule by eye: the centre offset must point within about 60 degrees of the asked
  direction after the 0.1 x (box sizes) margin, so a 45-degree diagonal counts for both of its directions;
  offsets near the edge of that cone are ``unsure``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from functools import cache
from itertools import groupby
from pathlib import Path

from PIL import Image

import harness.builtin
from benchmarks.geneval.benchmark import GenEval
from benchmarks.geneval.prompts import TAGS, builtin_metadata
from benchmarks.registry import PromptItem
from harness.errors import DataError, HarnessError

LABEL_FILE = Path(harness.builtin.__file__).with_name("eye_labels.jsonl")
# Batch 2: labelled after oracle v3 was set, the oracle not run on it until every label was written; the only
# labels that never steered an oracle change (both halves of batch 1 were looked at while tuning v2 and v3).
BATCH2_FILE = LABEL_FILE.with_name("eye_labels_batch2.jsonl")
LABEL_FILES = (LABEL_FILE, BATCH2_FILE)
CHECKPOINT = "builtin:shapes"
DRAW_SEED = "eye-labels:1"
BATCH2_DRAW_SEED = "eye-labels:2"
BATCH2_PER_TAG = 40
STRONG_PER_TAG = 60
WEAK_PER_TAG = 20
# The weak source: the same checkpoint with too few DDIM steps (its own sampler uses 10).
WEAK_SAMPLER = {"num_inference_steps": 3}
VERDICTS = ("correct", "wrong", "unsure")
# Images per sampler call, as they were generated for labelling (see regenerate).
GENERATION_BATCH = 40


@dataclass(frozen=True)
class Spec:
    """One image to generate: which prompt, which seed, which sampler overrides ("strong": none)."""

    index: int  # position in the label file
    source: str  # "strong" or "weak"
    prompt_index: int  # into builtin_metadata()
    seed: int
    sampler: dict


def half_of(seed: int) -> str:
    """The fixed split: even seeds tune, odd seeds are held out."""
    return "tuning" if seed % 2 == 0 else "heldout"


@cache
def _metadata() -> tuple[dict, ...]:
    return tuple(builtin_metadata())


def draw_specs() -> list[Spec]:
    """The labelled images, in label-file order: per tag, STRONG_PER_TAG strong then WEAK_PER_TAG weak ones."""
    rng = random.Random(DRAW_SEED)
    metadata = _metadata()
    specs: list[Spec] = []
    for source, per_tag, sampler in (("strong", STRONG_PER_TAG, {}), ("weak", WEAK_PER_TAG, WEAK_SAMPLER)):
        for tag in TAGS:
            indices = [i for i, m in enumerate(metadata) if m["tag"] == tag]
            for _ in range(per_tag):
                specs.append(Spec(len(specs), source, rng.choice(indices), rng.randrange(2**31), dict(sampler)))
    return specs


def draw_batch2_specs() -> list[Spec]:
    """Batch 2's images, in label-file order: per tag, BATCH2_PER_TAG with the checkpoint's own sampler."""
    rng = random.Random(BATCH2_DRAW_SEED)
    metadata = _metadata()
    specs: list[Spec] = []
    for tag in TAGS:
        indices = [i for i, m in enumerate(metadata) if m["tag"] == tag]
        for _ in range(BATCH2_PER_TAG):
            specs.append(Spec(len(specs), "strong", rng.choice(indices), rng.randrange(2**31), {}))
    return specs


@dataclass(frozen=True)
class EyeLabel:
    """One line of the label file: the image's recipe, what a person saw in it and the person's verdict."""

    index: int
    source: str
    checkpoint: str
    fingerprint: str
    prompt_index: int
    prompt: str
    tag: str
    metadata: dict
    seed: int
    sampler: dict  # the resolved SamplerConfig, as recorded with every generated image
    objects: tuple[dict, ...]  # {"shape", "color", "texture", "size"}; texture None where not readable
    verdict: str
    note: str
    batch: int = 1

    @property
    def half(self) -> str:
        return half_of(self.seed)

    @property
    def group(self) -> str:
        """"batch2" for the unseen batch, else batch 1's half."""
        return "batch2" if self.batch == 2 else self.half

    @property
    def sure(self) -> bool:
        return self.verdict != "unsure"


_FIELDS = tuple(f for f in EyeLabel.__dataclass_fields__)


def load_labels(path: Path = LABEL_FILE) -> list[EyeLabel]:
    """The label file's lines, checked for the fields, tags and verdicts this module relies on."""
    labels = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg}); each line is one label object") from None
        missing = [f for f in _FIELDS if f not in entry and f != "batch"]
        if missing:
            raise DataError(f"{where}: missing fields {missing}")
        if entry["verdict"] not in VERDICTS or entry["tag"] not in TAGS:
            raise DataError(f"{where}: verdict must be one of {VERDICTS} and tag one of {TAGS}")
        fields = {f: entry[f] for f in _FIELDS if f != "objects" and f in entry}
        labels.append(EyeLabel(**fields, objects=tuple(entry["objects"])))
    return labels


def regenerate(labels: list[EyeLabel]) -> list[Image.Image]:
    """The labelled images, drawn again from the committed checkpoint.

    Images are generated in the batches they were labelled from (runs of equal sampler config, GENERATION_BATCH at
    a time, in file order), because a different batch can move a pixel by one level through floating-point kernel
    choices; a checkpoint whose fingerprint differs from the labels' is refused.
    """
    from harness.checkpoints import resolve_checkpoint
    from harness.sampling import SamplerConfig, sample

    policy = resolve_checkpoint(CHECKPOINT)
    stale = {label.fingerprint for label in labels} - {policy.fingerprint}
    if stale:
        raise HarnessError(f"the labels were made with {CHECKPOINT} {sorted(stale)}, but the checkpoint here is "
                           f"{policy.fingerprint}; the images would differ, so the labels no longer apply")
    images: list[Image.Image] = []
    for _, run in groupby(labels, key=lambda label: json.dumps(label.sampler, sort_keys=True)):
        run = list(run)
        config = SamplerConfig(**run[0].sampler)
        for start in range(0, len(run), GENERATION_BATCH):
            batch = run[start : start + GENERATION_BATCH]
            pixels = sample(policy, [label.prompt for label in batch], [label.seed for label in batch], config)
            images.extend(Image.fromarray(p) for p in pixels.numpy())
    return images


def oracle_verdicts(labels: list[EyeLabel], images: list[Image.Image]) -> list[bool]:
    """GenEval's verdict (builtin perception: the pixel oracle) on each labelled image."""
    bench = GenEval()
    samples = [(PromptItem(label.prompt_index, label.prompt, label.tag, label.metadata), 0, image)
               for label, image in zip(labels, images)]
    return [result.score == 1.0 for result in bench.score(samples, bench.perception("builtin"))]


@dataclass
class Agreement:
    """Eye vs oracle on the sure labels of one group of images.

    ``misses``: the eye says correct, the oracle wrong; ``false_positives``: the eye says wrong, the oracle correct.
    """

    both_correct: int = 0
    both_wrong: int = 0
    misses: int = 0
    false_positives: int = 0

    def add(self, eye_correct: bool, oracle_correct: bool) -> None:
        if eye_correct and oracle_correct:
            self.both_correct += 1
        elif eye_correct:
            self.misses += 1
        elif oracle_correct:
            self.false_positives += 1
        else:
            self.both_wrong += 1

    @property
    def n(self) -> int:
        return self.both_correct + self.both_wrong + self.misses + self.false_positives

    @property
    def agreement(self) -> float:
        return (self.both_correct + self.both_wrong) / self.n if self.n else float("nan")

    def wilson(self, z: float = 1.959964) -> tuple[float, float]:
        """95% Wilson score interval of the agreement: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
        if not self.n:
            return (float("nan"), float("nan"))
        n, p = self.n, self.agreement
        centre = p + z * z / (2 * n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))

    @property
    def kappa(self) -> float:
        """Cohen's kappa (p_o - p_e) / (1 - p_e), p_e from the eye's and the oracle's marginal "correct" rates;
        NaN when both always give the same single verdict (p_e = 1: chance explains everything)."""
        if not self.n:
            return float("nan")
        eye = (self.both_correct + self.misses) / self.n
        oracle = (self.both_correct + self.false_positives) / self.n
        chance = eye * oracle + (1 - eye) * (1 - oracle)
        return (self.agreement - chance) / (1 - chance) if chance < 1 else float("nan")


# "both" is batch 1's two halves together; batch 2 is reported on its own.
HALVES = ("batch2", "heldout", "tuning", "both")
_TITLES = {"batch2": "batch 2, unseen while tuning", "heldout": "batch 1, held-out half",
           "tuning": "batch 1, tuning half", "both": "batch 1, both halves"}


@dataclass
class EyeReport:
    """Agreement per group ("batch2", batch 1's "heldout" and "tuning" halves, "both" of them) and tag (plus
    "all"), over the sure labels; a group without labels is left out of the table."""

    fingerprint: str
    oracle_version: str
    unsure: dict[str, int]
    cells: dict[tuple[str, str], Agreement]

    def format_table(self) -> str:
        rows = [f"oracle v{self.oracle_version} vs eye labels on {CHECKPOINT} ({self.fingerprint}); "
                f"misses = eye correct / oracle wrong, FP = eye wrong / oracle correct"]
        for half in HALVES:
            if not self.cells[(half, "all")].n and not self.unsure[half]:
                continue
            rows.append(f"\n{_TITLES[half]} ({self.unsure[half]} unsure labels left out)")
            rows.append(f"{'tag':<14} {'n':>4} {'agree':>7} {'95% Wilson':>15} {'kappa':>6} {'misses':>7} {'FP':>4}")
            for tag in (*TAGS, "all"):
                cell = self.cells[(half, tag)]
                low, high = cell.wilson()
                rows.append(f"{tag:<14} {cell.n:>4} {cell.agreement:>7.3f} {f'[{low:.3f}, {high:.3f}]':>15} "
                            f"{cell.kappa:>6.3f} {cell.misses:>7} {cell.false_positives:>4}")
        return "\n".join(rows)


def tally(labels: list[EyeLabel], oracle: list[bool]) -> EyeReport:
    """Agreement of the oracle's verdicts with the eye labels, per half and tag."""
    from harness.builtin.oracle import VERSION

    cells = {(half, tag): Agreement() for half in HALVES for tag in (*TAGS, "all")}
    unsure = dict.fromkeys(HALVES, 0)
    for label, verdict in zip(labels, oracle):
        for half in (label.group, "both") if label.batch == 1 else (label.group,):
            if not label.sure:
                unsure[half] += 1
                continue
            for tag in (label.tag, "all"):
                cells[(half, tag)].add(label.verdict == "correct", verdict)
    fingerprints = sorted({label.fingerprint for label in labels})
    return EyeReport(", ".join(fingerprints), VERSION, unsure, cells)


def eye_report(paths: tuple[Path, ...] = LABEL_FILES) -> EyeReport:
    """Regenerate the labelled images (file by file, in the batches they were labelled from), score them with the
    oracle and GenEval's rules, and compare with the eye."""
    labels: list[EyeLabel] = []
    images: list[Image.Image] = []
    for path in paths:
        batch = load_labels(path)
        labels += batch
        images += regenerate(batch)
    return tally(labels, oracle_verdicts(labels, images))
