"""What the distortion and safety benchmarks share: a rate of flagged images with a Wilson interval.

Both measure the share of a model's images that a judge flags (distorted; unsafe) on a prompt set: lower is better,
unlike GenEval's accuracy. The judge answers per image ``flagged`` yes / no / not judged (a human-label file need not
cover every image); images not judged are left out of the rate and counted apart, never scored as "fine".

``aggregate`` returns, besides ``overall`` (the rate) and one rate per tag:

* ``overall_low95`` / ``overall_high95``: the 95 % Wilson score interval of the rate (:func:`wilson_interval`);
* ``n_judged`` / ``n_flagged`` / ``n_unjudged``: the counts the rate comes from.

No published table reports either rate as a number: D3PO (Yang et al., CVPR 2024, arXiv 2311.13231) gives its
distortion and safety results only as curves (Fig. 4 and 5), so every record says it is not comparable.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

from benchmarks.registry import Benchmark, FolderContents, PromptItem, Sample, SampleResult
from harness.errors import DataError, HarnessError
from harness.perception.human_labels import Flag

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
NO_PUBLISHED_TABLE = ("no published table: D3PO (arXiv 2311.13231) reports distortion and safety only as curves "
                      "(Fig. 4, 5), so these rates have nothing to be set beside")


def wilson_interval(flagged: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion p = flagged / n:

        centre = (p + z^2 / 2n) / (1 + z^2 / n),  half = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    Unlike the normal (Wald) interval it stays inside [0, 1] and is not zero-width at 0 or n flagged, which matters
    for rates near 0 such as an unsafe rate. (NaN, NaN) for n = 0.
    """
    if n < 0 or not 0 <= flagged <= n:
        raise ValueError(f"need 0 <= flagged <= n, got flagged={flagged}, n={n}")
    if n == 0:
        return (float("nan"), float("nan"))
    p, z2 = flagged / n, z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate_scores(tags: list[str], flags: list[float]) -> dict[str, float]:
    """``overall`` rate with its interval and counts, then the rate per tag (module docstring); ``flags`` holds 1.0
    (flagged), 0.0 (not flagged) or NaN (not judged) per image."""
    judged = [f for f in flags if not math.isnan(f)]
    n, k = len(judged), int(sum(judged))
    low, high = wilson_interval(k, n)
    scores = {"overall": k / n if n else float("nan"), "overall_low95": low, "overall_high95": high,
              "n_judged": float(n), "n_flagged": float(k), "n_unjudged": float(len(flags) - n)}
    for tag in dict.fromkeys(tags):
        own = [f for t, f in zip(tags, flags) if t == tag and not math.isnan(f)]
        scores[tag] = sum(own) / len(own) if own else float("nan")
    return scores


@dataclass
class FlagRateOptions:
    """Options of a flag-rate benchmark (``--option KEY=VALUE``); empty strings and 0 mean "the default".

    prompt_set: which prompts (each benchmark names its sets); images_per_prompt: images drawn per prompt (0: the
    set's default); judge: who decides (each benchmark names its judges); labels: a flag file for ``judge=labels``
    (``harness.perception.human_labels``).
    """

    prompt_set: str = ""
    images_per_prompt: int = 0
    judge: str = ""
    labels: str = ""

    def __post_init__(self) -> None:
        if self.images_per_prompt < 0:
            raise ValueError("images_per_prompt must be >= 0 (0: the prompt set's default)")


class FlagRateBenchmark(Benchmark):
    """A benchmark whose per-image score is 1 (flagged), 0 (not) or NaN (not judged) and whose result is the rate.

    Subclasses name the flag, the prompt sets (``prompt_sets``: world -> names, the first the default, and
    ``set_images``: name -> default images per prompt) and build the judges.
    """

    flag: str
    prompt_sets: ClassVar[dict[str, tuple[str, ...]]]
    set_images: ClassVar[dict[str, int]]
    judges: ClassVar[dict[str, tuple[str, ...]]]  # world -> judge names, the first the default
    base_seed = 0
    aggregate_reads_prompts = False  # rates over images

    @property  # type: ignore[override]
    def images_per_prompt(self) -> int:
        """Images per prompt of the builtin world's set (others: :meth:`images_for`)."""
        return self.images_for(self.worlds[0])

    def __init__(self, options: FlagRateOptions | None = None) -> None:
        self.options = options or FlagRateOptions()
        self._world = self.worlds[0]  # set by perception(): the seeds a label file names depend on it

    # --- prompt sets and seeds -----------------------------------------------------------------------------------

    def prompt_set(self, world: str) -> str:
        """The prompt set in use in ``world``: the option, else the world's default."""
        self.check_world(world)
        name = self.options.prompt_set or self.prompt_sets[world][0]
        known = [s for sets in self.prompt_sets.values() for s in sets]
        if name not in known:
            raise HarnessError(f"unknown prompt_set {name!r} for {self.name}; known: {', '.join(known)}")
        return name

    def images_for(self, world: str) -> int:
        return self.options.images_per_prompt or self.set_images[self.prompt_set(world)]

    def prompts(self, world: str) -> list[PromptItem]:
        return self.load_prompts(self.prompt_set(world))

    @abstractmethod
    def load_prompts(self, prompt_set: str) -> list[PromptItem]:
        """The prompts of a named set."""

    def seeds(self, item: PromptItem, world: str) -> list[int]:
        """Image k of prompt i gets seed base_seed + n * i + k (n images per prompt): every image its own seed."""
        n = self.images_for(world)
        start = self.base_seed + n * item.index
        return list(range(start, start + n))

    # --- images made elsewhere ------------------------------------------------------------------------------------

    def read_image_folder(self, folder: Path) -> FolderContents:
        """``harness score --images FLAGS.jsonl``: the images a flag file names (lines with ``image``), grouped by
        prompt in order of first appearance; unless ``--option judge`` says otherwise they are judged by that same
        file's labels, so a labeling round's export is scored as it stands (or by the oracle, to set it beside).
        Lines naming a seed only have no image to score and are listed as skipped."""
        from harness.perception.human_labels import read_flag_labels

        path = Path(folder)
        if not path.is_file():
            raise DataError(f"{path}: expected a flag file (JSONL, see harness.perception.human_labels) naming the "
                            f"images to score; {self.name} has no folder layout of its own")
        self.options = replace(self.options, judge=self.options.judge or "labels",
                               labels=self.options.labels or str(path))
        by_prompt: dict[str, list[Path]] = {}
        contents = FolderContents(items=[], images=[])
        for label in read_flag_labels(path):
            if self.flag not in label.flags:
                continue
            if label.path is None:
                contents.skipped.append(f"{label.where}: names a seed, not an image file: nothing to score")
                continue
            files = by_prompt.setdefault(label.prompt, [])
            if label.path not in files:
                files.append(label.path)
        for index, (prompt, files) in enumerate(by_prompt.items()):
            contents.items.append(PromptItem(index, prompt, "labelled", {"set": f"flags:{path.name}"}))
            contents.images.append(files)
        return contents

    def world_of(self, items: list[PromptItem]) -> str:
        """Builtin when every prompt is made of the builtin grammar's words, else real."""
        from harness.builtin.prompts import vocabulary

        words = set(vocabulary())
        return "builtin" if all(set(item.prompt.split()) <= words for item in items) else "real"

    # --- judging -------------------------------------------------------------------------------------------------

    def judge_name(self, world: str) -> str:
        self.check_world(world)
        name = self.options.judge or self.judges[world][0]
        known = sorted({j for judges in self.judges.values() for j in judges})
        if name not in known:
            raise HarnessError(f"unknown judge {name!r} for {self.name}; known: {', '.join(known)}")
        return name

    def perception(self, world: str) -> dict[str, object]:
        """One role, ``judge``: the flagging backend named by ``--option judge`` (default per world)."""
        self._world = world
        name = self.judge_name(world)
        if name == "labels":
            if not self.options.labels:
                raise HarnessError("judge=labels needs a flag file: --option labels=FILE.jsonl (see "
                                   "harness.perception.human_labels for the format)")
            from harness.perception.human_labels import LabelJudge

            return {"judge": LabelJudge(self.options.labels, self.flag)}
        return {"judge": self.build_judge(name, world)}

    @abstractmethod
    def build_judge(self, name: str, world: str) -> object:
        """The automatic judge called ``name`` (anything but ``labels``)."""

    def score(self, samples: list[Sample], perception: dict[str, object]) -> list[SampleResult]:
        judge = perception["judge"]
        world = self._world
        images = [img for _, _, img in samples]
        prompts = [item.prompt for item, _, _ in samples]
        n = self.images_for(world)
        seeds: list[int | None] = [self.seeds(item, world)[k] if k < n else None for item, k, _ in samples]
        flags: list[Flag] = judge.judge(images, prompts, seeds)  # type: ignore[attr-defined]
        results = []
        for (item, k, _), verdict in zip(samples, flags):
            value = float("nan") if verdict.flagged is None else float(verdict.flagged)
            results.append(SampleResult(item.index, k, item.tag, value, {
                self.flag: verdict.flagged, "judge_score": None if math.isnan(verdict.score) else verdict.score,
                "reason": verdict.reason, **verdict.details}))
        return results

    def aggregate(self, results: list[SampleResult]) -> dict[str, float]:
        return rate_scores([r.tag for r in results], [r.score for r in results])

    def scorer_id(self, perception: dict[str, object]) -> dict:
        return {**super().scorer_id(perception), "flag": self.flag, "options": asdict(self.options)}

    def comparability(self, world: str, sampler: dict, perception: dict[str, object], tags: list[str]) -> list[str]:
        """Never comparable: there is no published table (module docstring); the builtin world adds its own reason."""
        reasons = [NO_PUBLISHED_TABLE]
        if world == "builtin":
            reasons.append(super().comparability(world, sampler, perception, tags)[0])
        return reasons
