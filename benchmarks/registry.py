"""Benchmarks are declared once and found by name, in the manner of lm-evaluation-harness's task registry.

A benchmark is data (prompts with the structured spec its rules need) plus a few hooks: which seeds to draw,
which perception backends to use in a world, how to score one image, and how to aggregate.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from PIL import Image

from harness.errors import HarnessError

WORLDS = ("builtin", "real")
BUILTIN_NOT_COMPARABLE = ("builtin world: the shapes world's own prompts, model and pixel oracle; no published table "
                          "exists to compare with")


def sampler_deviations(official: dict, sampler: dict) -> list[str]:
    """One reason per sampler setting that differs from the official generation's (``"pipeline:PNDMScheduler"``
    counts as ``"pipeline"``); nothing when ``sampler`` is empty (images made elsewhere)."""
    reasons = []
    for key, want in official.items():
        have = sampler.get(key)
        if key == "scheduler" and isinstance(have, str):
            have = have.split(":", 1)[0]
        if have is not None and have != want:
            reasons.append(f"sampler: {key}={have}, the official generation uses {want}")
    return reasons


TAG_MEANS = "tag-means"  # Benchmark.aggregate_form: per-tag image means, overall = their unweighted mean


@dataclass(frozen=True)
class PromptItem:
    """One prompt and the structured spec scoring needs (for GenEval: its metadata line)."""

    index: int
    prompt: str
    tag: str
    metadata: dict = field(hash=False)


def spread_subset(items: list[PromptItem], n: int, seed: int) -> list[PromptItem]:
    """``n`` prompts spread evenly over the tags (in order of first appearance), drawn without replacement by a
    generator seeded with ``seed``, in benchmark order: per-tag scores stay defined and GenEval's overall (the mean
    of tag accuracies) is not dominated by the largest tag. The reward-hacking monitor's held-out set and
    ``EvalSettings.sample`` (a seeded evaluation subsample) both use it."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_tag: dict[str, list[int]] = {}
    for position, item in enumerate(items):
        by_tag.setdefault(item.tag, []).append(position)
    quota = {tag: 0 for tag in by_tag}
    for k in range(min(n, len(items))):  # round-robin over tags that still have prompts left
        open_tags = [t for t in by_tag if quota[t] < len(by_tag[t])]
        quota[open_tags[k % len(open_tags)]] += 1
    chosen = [p for tag, positions in by_tag.items()
              for p in rng.choice(positions, size=quota[tag], replace=False).tolist()]
    return [items[p] for p in sorted(chosen)]


@dataclass
class SampleResult:
    """The verdict on one image: ``score`` is 1.0/0.0 for pass/fail benchmarks."""

    prompt_index: int
    image_index: int
    tag: str
    score: float
    details: dict = field(default_factory=dict)


Sample = tuple[PromptItem, int, Image.Image]


@dataclass
class FolderContents:
    """What an official-layout image folder holds: prompts with their image files, and what had to be skipped."""

    items: list[PromptItem]
    images: list[list[Path]]
    skipped: list[str] = field(default_factory=list)  # one line per skipped sample or prompt, with the reason


class Benchmark(ABC):
    name: str
    version: str
    description: str
    images_per_prompt: int
    worlds: tuple[str, ...]
    data_dir: Path | None = None  # where official data files are looked up first (see harness.data)
    backend_settings: tuple[str, ...] = ()  # attributes naming perception models, settable with --option
    # Whether ``aggregate`` reads ``prompt_index`` (groups images by prompt, as DPG-Bench does): the bootstrap then
    # gives a prompt drawn twice fresh indices; an aggregation of (tag, score) pairs alone skips that copying.
    aggregate_reads_prompts: bool = True
    # TAG_MEANS when ``aggregate`` is exactly: per tag, the plain mean of its images' scores, and ``overall``, the
    # unweighted mean of those tag means (GenEval, T2I-CompBench). The bootstrap then draws it in numpy for every
    # replicate at once, bit for bit, instead of calling ``aggregate`` once per replicate (harness.stats); None: no
    # such promise.
    aggregate_form: str | None = None

    @abstractmethod
    def prompts(self, world: str) -> list[PromptItem]:
        """The benchmark's prompt set in ``world`` ("builtin" or "real")."""

    @abstractmethod
    def seeds(self, item: PromptItem, world: str) -> list[int]:
        """One seed per image of ``item``, following the benchmark's seed protocol."""

    @abstractmethod
    def perception(self, world: str) -> dict[str, object]:
        """The default perception backends in ``world``, by role (e.g. detector, color)."""

    @abstractmethod
    def score(self, samples: list[Sample], perception: dict[str, object]) -> list[SampleResult]:
        """Verdicts for ``(item, image index, image)`` samples, in order."""

    @abstractmethod
    def aggregate(self, results: list[SampleResult]) -> dict[str, float]:
        """``overall`` plus one score per tag, by the benchmark's official rule."""

    def scorer_id(self, perception: dict[str, object]) -> dict:
        """What determines a verdict besides the image: cache key for per-image scores."""
        return {
            "benchmark": self.name,
            "version": self.version,
            "perception": {role: f"{p.name}@{p.version}" for role, p in perception.items()},
        }

    def write_outputs(self, run_dir: Path, items: list[PromptItem], results: list[SampleResult],  # noqa: B027
                      image_paths: list[list[Path]]) -> None:
        """Write any official-format output files into ``run_dir`` (default: none beyond our own)."""

    def configure(self, overrides: dict[str, str]) -> None:
        """Apply ``--option KEY=VALUE`` pairs: fields of ``self.options`` (typed like their defaults) and
        perception model names in ``backend_settings``."""
        options = getattr(self, "options", None)
        known = [f.name for f in fields(options)] if is_dataclass(options) else []
        for key, raw in overrides.items():
            if key in known:
                current = getattr(options, key)
                try:
                    value = _coerce(raw, type(current))
                except ValueError:
                    raise HarnessError(f"--option {key}={raw}: expected a {type(current).__name__}") from None
                try:
                    options = replace(options, **{key: value})
                except ValueError as err:  # the options' own check (e.g. a choice among named rule versions)
                    raise HarnessError(f"--option {key}={raw}: {err}") from None
            elif key in self.backend_settings:
                setattr(self, key, raw)
            else:
                raise HarnessError(f"unknown option {key!r} for {self.name}; known: "
                                   f"{', '.join([*known, *self.backend_settings]) or 'none'}")
        if options is not None:
            self.options = options

    def official_generation(self, world: str) -> dict:
        """Sampler settings of the benchmark's official generation script in ``world`` (empty: it names none)."""
        return {}

    def generation_defaults(self, world: str) -> dict:
        """Sampler settings a run uses unless overridden (explicit CLI options win): the official ones."""
        return self.official_generation(world)

    def comparability(self, world: str, sampler: dict, perception: dict[str, object], tags: list[str]) -> list[str]:
        """Why this run's scores cannot be set beside the published tables; empty when they can.

        Default: the builtin world never can; in the real world, every sampler setting that differs from
        :meth:`official_generation` is a reason (``sampler`` is empty for images made elsewhere: not judged).
        Benchmarks add their perception backends and rule versions.
        """
        if world == "builtin":
            return [BUILTIN_NOT_COMPARABLE]
        return sampler_deviations(self.official_generation(world), sampler)

    def world_of(self, items: list[PromptItem]) -> str:
        """The world a prompt set read from an image folder belongs to (override when both are possible)."""
        return "real" if "real" in self.worlds else self.worlds[0]

    def read_image_folder(self, folder: Path) -> FolderContents:
        """Prompts and image paths of images made elsewhere, in the benchmark's official layout."""
        raise HarnessError(f"scoring an image folder is not supported for {self.name!r} yet")

    def check_world(self, world: str) -> None:
        if world not in self.worlds:
            raise HarnessError(f"benchmark {self.name!r} does not support the {world!r} world yet "
                               f"(supported: {', '.join(self.worlds)})")


_REGISTRY: dict[str, Callable[[], Benchmark]] = {}
# Subpackages that register benchmarks on import; imported lazily so `bench list` stays fast.
_MODULES = ("benchmarks.geneval", "benchmarks.t2i_compbench", "benchmarks.dpg_bench", "benchmarks.distortion",
            "benchmarks.safety")


def register(name: str) -> Callable[[type[Benchmark]], type[Benchmark]]:
    def wrap(cls: type[Benchmark]) -> type[Benchmark]:
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def available() -> dict[str, Benchmark]:
    _load_all()
    return {name: factory() for name, factory in sorted(_REGISTRY.items())}


def _coerce(raw: str, kind: type) -> object:
    if kind is bool:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(raw)
        return raw.lower() in ("true", "1", "yes")
    return kind(raw)


def get_benchmark(name: str, data_dir: Path | str | None = None, options: dict[str, str] | None = None
                  ) -> Benchmark:
    _load_all()
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise HarnessError(f"unknown benchmark {name!r}; available: {', '.join(sorted(_REGISTRY))} "
                           "(see `harness bench list`)")
    bench = _REGISTRY[key]()
    bench.data_dir = Path(data_dir) if data_dir else None
    bench.configure(options or {})
    return bench
