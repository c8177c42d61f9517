"""The reward-hacking monitor: held-out benchmark scores and off-target image statistics during training.

A proxy reward can rise while what it stands for falls (DDPO's and D3PO's reward over-optimisation; issue 13,
item 6). So at regular rounds the monitor scores a FIXED held-out subset of a benchmark with the benchmark's own
perception and rule, and records next to it the proxy reward and three statistics no reward here optimises:

* ``distortion_rate``: share of images in which the builtin oracle finds no object scoring above 0.3 (its
  detector's threshold for "noise or a broken blob", ``harness.builtin.oracle.OracleDetector``). Builtin world only
  (None in the real world, which has no oracle).
* ``colour_entropy``: Shannon entropy in bits of the colours seen. Builtin world: of the oracle's colour readings of
  the objects above 0.3 (at most log2 10 = 3.32); real world: of a coarse 4 x 4 x 4 RGB histogram of all pixels (at
  most 6). A collapse to one colour drives it towards 0.
* ``seed_diversity``: mean over prompts of the mean pairwise distance between the images of that prompt (different
  seeds), as mean absolute pixel difference / 255 in [0, 1]. A mode collapse drives it towards 0.

The subset and its image seeds never change during a run, so consecutive measurements differ only through the
weights. Call :meth:`Monitor.measure` on the main process only (it samples with the whole policy).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.registry import Benchmark, PromptItem, get_benchmark
from benchmarks.registry import spread_subset as held_out_subset
from harness.errors import HarnessError
from harness.policy import Policy
from harness.sampling import SamplerConfig, sample
from harness.store import atomic_write_json

log = logging.getLogger(__name__)

DISTORTION_SCORE = 0.3
# Objectives of trainers/feedback.py decided by a benchmark's own perception and rule, by benchmark: training on
# one of them and scoring with that benchmark is "in-reward" (the score is no longer held out).
IN_REWARD_OBJECTIVES = {"geneval": ("geneval", "geneval-exact", "geneval-strict", "geneval-partial", "counting-error")}


def in_reward(feedback_scorer_id: dict | str, benchmark: str) -> bool:
    """True when the training feedback was decided by the same scorer as ``benchmark``.

    ``feedback_scorer_id`` is :meth:`trainers.base.Feedback.scorer_id` (or just the ``--feedback`` spec). It is
    in-reward when it names the benchmark (a ``benchmark`` key: ``trainers.feedback``'s GenEval objectives,
    ``distorted`` included, as they read images through GenEval's own perception), or when the feedback is an
    objective, or a simulated annotator built on one, listed for the benchmark in :data:`IN_REWARD_OBJECTIVES` (e.g.
    ``objective:geneval`` and ``simulated:geneval?noise=0.1`` against GenEval: the oracle detector plus GenEval's
    rule). Learned reward models and recorded human labels are never in-reward.
    """
    name = benchmark.strip().lower().replace("_", "-")
    if isinstance(feedback_scorer_id, dict):
        named = feedback_scorer_id.get("benchmark")
        if isinstance(named, str) and named.strip().lower().replace("_", "-") == name:
            return True
        spec = str(feedback_scorer_id.get("feedback", ""))
    else:
        spec = feedback_scorer_id
    kind, _, arg = spec.partition(":")
    if kind not in ("objective", "simulated"):
        return False
    return arg.split("?")[0].strip().lower() in IN_REWARD_OBJECTIVES.get(name, ())


def hacking_warning(proxy: Sequence[float | None], held_out: Sequence[float], window: int = 3,
                    min_drop: float = 0.03) -> bool:
    """The warning rule, over the last ``window`` measurements (oldest first) that have a proxy reward:
    warn when ``proxy[-1] > proxy[0]`` (the proxy rose) and ``held_out[0] - held_out[-1] >= min_drop`` (the
    held-out score fell by at least ``min_drop``). Endpoints rather than every step, so one flat measurement in
    between does not hide a trend; ``min_drop`` 0.03 is about 4 of 128 held-out images, below which a fixed
    subset's score moves by single images."""
    pairs = [(p, h) for p, h in zip(proxy, held_out) if p is not None and h is not None and not math.isnan(h)]
    if len(pairs) < max(window, 2):
        return False
    (p0, h0), (p1, h1) = pairs[-window], pairs[-1]
    return p1 > p0 and h0 - h1 >= min_drop


def distortion_and_colours(images: list[Image.Image]) -> tuple[float, float]:
    """(distortion rate, colour entropy in bits) from the builtin oracle's readings (module docstring)."""
    from harness.builtin.oracle import read_objects

    distorted, colours = 0, []
    for image in images:
        kept = [r for r in read_objects(image) if r.score > DISTORTION_SCORE]
        distorted += not kept
        colours.extend(r.color for r in kept)
    return distorted / len(images), _entropy(np.unique(colours, return_counts=True)[1]) if colours else 0.0


def pixel_colour_entropy(images: list[Image.Image]) -> float:
    """Entropy in bits of a 4 x 4 x 4 RGB histogram over all pixels of ``images``."""
    pixels = np.concatenate([np.asarray(img.convert("RGB")).reshape(-1, 3) for img in images]) // 64
    bins = pixels[:, 0].astype(np.int64) * 16 + pixels[:, 1] * 4 + pixels[:, 2]
    return _entropy(np.bincount(bins, minlength=64))


def seed_diversity(groups: list[list[np.ndarray]]) -> float:
    """Mean over groups (prompts) of the mean pairwise mean absolute pixel difference / 255."""
    per_prompt = [np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255.0
                           for a, b in combinations(images, 2)]) for images in groups if len(images) > 1]
    return float(np.mean(per_prompt)) if per_prompt else float("nan")


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


class Monitor:
    """Measures a policy on a fixed held-out subset every ``every_rounds`` rounds and keeps the curves.

    ``curves`` maps each series (``proxy_reward``, ``held_out`` = the first benchmark's overall score,
    ``<benchmark>/<score>`` for every aggregate score, the three image statistics, ``hacking_warning``) to a list
    aligned with ``curves["round"]``. Every measurement rewrites ``out_dir/monitor.json`` atomically; a monitor
    created on a folder that already has one with the same settings continues its curves (a resumed run), dropping
    measurements at or after the round it measures next.
    """

    FILE = "monitor.json"

    def __init__(self, world: str, benchmarks: Sequence[str] = ("geneval",), n_prompts: int = 64, seed: int = 0,
                 every_rounds: int = 1, out_dir: Path | str | None = None, images_per_prompt: int = 2,
                 window: int = 3, min_drop: float = 0.03, batch_size: int = 64, data_dir: Path | None = None) -> None:
        if n_prompts < 1 or images_per_prompt < 1 or every_rounds < 1 or window < 2:
            raise HarnessError("monitor settings out of range: n_prompts, images_per_prompt and every_rounds must "
                               f"be >= 1 and window >= 2 (got {n_prompts}, {images_per_prompt}, {every_rounds}, "
                               f"{window})")
        if not benchmarks:
            raise HarnessError("the monitor needs at least one benchmark")
        self.world, self.seed, self.every_rounds = world, seed, every_rounds
        self.window, self.min_drop, self.batch_size = window, min_drop, batch_size
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.benches: dict[str, Benchmark] = {}
        self.subsets: dict[str, list[tuple[PromptItem, list[int]]]] = {}
        for name in benchmarks:
            bench = get_benchmark(name, data_dir)
            bench.check_world(world)
            items = held_out_subset(bench.prompts(world), n_prompts, seed)
            self.benches[bench.name] = bench
            self.subsets[bench.name] = [(item, bench.seeds(item, world)[:images_per_prompt]) for item in items]
        self._perception: dict[str, dict] = {}
        self.history: list[dict] = []
        self.settings = {"world": world, "benchmarks": list(self.benches), "n_prompts": n_prompts, "seed": seed,
                         "images_per_prompt": images_per_prompt, "window": window, "min_drop": min_drop,
                         "held_out": {name: [[item.index, seeds] for item, seeds in subset]
                                      for name, subset in self.subsets.items()}}
        self._load()

    def due(self, round_index: int) -> bool:
        """Whether round ``round_index`` (counted from 0, measured after its update) is a measuring point."""
        return round_index % self.every_rounds == 0

    @property
    def primary(self) -> str:
        return next(iter(self.benches))

    @property
    def curves(self) -> dict[str, list]:
        keys = list(dict.fromkeys(k for entry in self.history for k in entry))
        return {k: [entry.get(k) for entry in self.history] for k in keys}

    @property
    def warnings(self) -> list[int]:
        """Rounds at which the reward-hacking warning fired."""
        return [e["round"] for e in self.history if e.get("hacking_warning")]

    def measure(self, policy: Policy, round_index: int, proxy_reward: float | None) -> dict:
        """Score the held-out subset now; append, check the warning rule, write ``monitor.json``; return the entry."""
        if policy.world != self.world:
            raise HarnessError(f"the monitor was built for the {self.world!r} world but the policy draws "
                               f"{policy.world!r}")
        started = time.monotonic()
        self.history = [e for e in self.history if e["round"] < round_index]
        entry: dict = {"round": int(round_index),
                       "proxy_reward": None if proxy_reward is None else float(proxy_reward)}
        all_images: list[Image.Image] = []
        groups: list[list[np.ndarray]] = []
        with _eval_mode(policy):
            for name, bench in self.benches.items():
                subset = self.subsets[name]
                images = self._sample(policy, bench, subset)
                all_images.extend(images)
                position = 0
                samples = []
                for item, seeds in subset:
                    group = images[position : position + len(seeds)]
                    groups.append([np.asarray(img) for img in group])
                    samples.extend((item, k, img) for k, img in enumerate(group))
                    position += len(seeds)
                results = bench.score(samples, self._perceive(name))
                for key, value in bench.aggregate(results).items():
                    entry[f"{name}/{key}"] = float(value)
        entry["held_out"] = entry[f"{self.primary}/overall"]
        if self.world == "builtin":
            entry["distortion_rate"], entry["colour_entropy"] = distortion_and_colours(all_images)
        else:
            entry["distortion_rate"], entry["colour_entropy"] = None, pixel_colour_entropy(all_images)
        entry["seed_diversity"] = seed_diversity(groups)
        entry["wall_s"] = round(time.monotonic() - started, 2)
        self.history.append(entry)
        entry["hacking_warning"] = hacking_warning([e["proxy_reward"] for e in self.history],
                                                   [e["held_out"] for e in self.history], self.window, self.min_drop)
        if entry["hacking_warning"]:
            log.warning("possible reward hacking at round %d: the proxy reward rose while held-out %s fell by >= %.2f "
                        "over the last %d measurements (%s)", round_index, self.primary, self.min_drop, self.window,
                        ", ".join(f"{e['proxy_reward']:.3f}/{e['held_out']:.3f}" for e in self.history[-self.window:]
                                  if e["proxy_reward"] is not None))
        self.save()
        return entry

    def save(self) -> None:
        if self.out_dir is not None:
            atomic_write_json(self.out_dir / self.FILE, {"settings": self.settings, "warnings": self.warnings,
                                                         "curves": self.curves, "history": self.history})

    def _load(self) -> None:
        path = self.out_dir / self.FILE if self.out_dir is not None else None
        if path is None or not path.is_file():
            return
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise HarnessError(f"{path}: unreadable monitor file ({err}); delete it to start new curves") from None
        if saved.get("settings") != json.loads(json.dumps(self.settings)):
            raise HarnessError(f"{path} holds curves measured with other monitor settings; delete it or use the "
                               "same benchmarks, n_prompts, seed and images per prompt")
        self.history = list(saved.get("history", []))

    def _sample(self, policy: Policy, bench: Benchmark, subset: list[tuple[PromptItem, list[int]]]
                ) -> list[Image.Image]:
        config = SamplerConfig.for_policy(policy, **bench.generation_defaults(self.world))
        prompts = [item.prompt for item, seeds in subset for _ in seeds]
        seeds = [s for _, ss in subset for s in ss]
        images: list[Image.Image] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = sample(policy, prompts[start : start + self.batch_size], seeds[start : start + self.batch_size],
                           config)
            images.extend(Image.fromarray(img.numpy()) for img in batch)
        return images

    def _perceive(self, name: str) -> dict:
        if name not in self._perception:
            self._perception[name] = self.benches[name].perception(self.world)
        return self._perception[name]


@contextmanager
def _eval_mode(policy: Policy) -> Iterator[None]:
    """Evaluation mode for every module of the policy (no dropout), each submodule's own mode restored after."""
    modes = [(m, m.training) for module in policy.modules().values() for m in module.modules()]
    for module in policy.modules().values():
        module.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode
