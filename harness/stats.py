"""Uncertainty and paired tests for benchmark scores: prompt bootstrap, McNemar, Wilcoxon.

The unit of resampling is the prompt, not the image: a prompt's images share its difficulty, so resampling images
would understate the spread. Prompts are resampled *within their tag* (a stratified bootstrap) because every
benchmark here fixes how many prompts each tag has by design, and its aggregation (GenEval: overall = mean of the
tag accuracies; DPG-Bench: 100 x mean over prompts; T2I-CompBench: mean per category) is then applied unchanged to
each resample. A prompt drawn again in the same resample gets a fresh ``prompt_index``, so aggregations that group
images by prompt (DPG-Bench) count a prompt drawn twice as two prompts, as the bootstrap requires.

Interval: the percentile interval of the resampled scores at ``confidence`` (default 95%, 1000 replicates, seed 0:
the same samples always give the same interval). Standard error: the standard deviation of the resampled scores.

Across training seeds (:func:`t_interval`) the unit is the training run: a Student t interval over the per-seed
values, the spread between runs that no bootstrap over one run's prompts can show.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmarks.registry import TAG_MEANS, SampleResult

Aggregate = Callable[[list[SampleResult]], dict[str, float]]
REPLICATES = 1000
CONFIDENCE = 0.95
SEED = 0
METHOD = "percentile bootstrap over prompts"


@dataclass
class Interval:
    """A mean over ``n`` values (training seeds) with its confidence interval; low = high = mean when n < 2."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, scale: float = 100.0) -> str:
        if self.n < 2:
            return f"{self.mean * scale:+.1f} (n={self.n})"
        return f"{self.mean * scale:+.1f} [{self.low * scale:+.1f}, {self.high * scale:+.1f}]"

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """mean +- t_{(1+level)/2, n-1} * sd / sqrt(n); low = high = mean when n < 2."""
    from scipy import stats  # imported here: the cached eval path does not load scipy.stats

    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, mean, mean, n)
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


@dataclass
class Bootstrap:
    """Resampled scores: ``draws[key]`` holds one value per replicate (NaN where a replicate had none)."""

    point: dict[str, float]
    draws: dict[str, np.ndarray]
    replicates: int
    seed: int
    confidence: float
    settings: dict = field(default_factory=dict)

    def interval(self, key: str) -> tuple[float, float]:
        values = self.draws[key]
        values = values[~np.isnan(values)]
        if values.size == 0:
            return (math.nan, math.nan)
        alpha = (1 - self.confidence) / 2
        low, high = np.quantile(values, [alpha, 1 - alpha])
        return (float(low), float(high))

    def standard_error(self, key: str) -> float:
        values = self.draws[key]
        values = values[~np.isnan(values)]
        return float(np.std(values, ddof=1)) if values.size > 1 else math.nan


def group_by_prompt(results: Sequence[SampleResult]) -> dict[int, list[SampleResult]]:
    groups: dict[int, list[SampleResult]] = {}
    for r in results:
        groups.setdefault(r.prompt_index, []).append(r)
    return groups


def reads_prompts(aggregate: Aggregate) -> bool:
    """Whether ``aggregate`` may read ``prompt_index``: a benchmark's bound ``aggregate`` answers with the
    benchmark's ``aggregate_reads_prompts``; any other callable is assumed to (the safe side)."""
    return bool(getattr(getattr(aggregate, "__self__", None), "aggregate_reads_prompts", True))


class _TagMeans:
    """A tag-means aggregation (``Benchmark.aggregate_form``) in numpy, every replicate at once: a replicate's tag
    mean is the mean of its drawn prompts' image scores in draw order, and ``overall`` the mean of the tag means in
    stratum (sorted tag) order, as ``aggregate`` computes them on the resample it would be handed. The draws are bit
    for bit those calls' (``tests/test_compare.py``): pass/fail scores sum exactly in any order, so a tag mean is the
    drawn prompts' totals over their image counts; other scores are gathered in draw order and reduced row by row,
    the reduction ``np.mean`` applies to one resample's list."""

    def __init__(self, group: dict[int, list[SampleResult]], order: list[tuple[str, list[int]]]) -> None:
        self.tags = [tag for tag, _ in order]
        self.scores = [np.array([float(r.score) for p in members for r in group[p]]) for _, members in order]
        self.lengths = [np.array([len(group[p]) for p in members]) for _, members in order]
        self.whole = all(np.array_equal(x, np.round(x)) for x in self.scores)  # NaN never equals itself

    def draw(self, chosen: list[np.ndarray]) -> dict[str, np.ndarray]:
        """``chosen[s]``: [replicates, prompts of stratum s] drawn member positions; one array per key."""
        means = [self._tag_means(scores, lengths, c) for scores, lengths, c in zip(self.scores, self.lengths, chosen)]
        return {"overall": np.mean(np.stack(means, axis=1), axis=1), **dict(zip(self.tags, means))}

    def _tag_means(self, scores: np.ndarray, lengths: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        if self.whole:
            totals = np.add.reduceat(scores, starts)
            return totals[chosen].sum(axis=1) / lengths[chosen].sum(axis=1)
        if np.all(lengths == lengths[0]):  # as many images per prompt: a replicate's images are one row
            return np.mean(scores.reshape(len(lengths), -1)[chosen].reshape(len(chosen), -1), axis=1)
        out = np.empty(len(chosen))
        for i, c in enumerate(chosen):
            n = lengths[c]
            ends = np.cumsum(n)
            # image j of the resample: its prompt's first image plus j's place within that prompt's images
            out[i] = np.mean(scores[np.repeat(starts[c] - (ends - n), n) + np.arange(int(ends[-1]))])
        return out

    @classmethod
    def matching(cls, aggregate: Aggregate, group: dict[int, list[SampleResult]],
                 order: list[tuple[str, list[int]]], point: dict[str, float]) -> _TagMeans | None:
        """The fast form of ``aggregate`` when its benchmark declares TAG_MEANS and the form gives ``point`` again on
        the whole set (a guard against a declaration that does not hold); None otherwise."""
        if getattr(getattr(aggregate, "__self__", None), "aggregate_form", None) != TAG_MEANS or not order:
            return None
        fast = cls(group, order)
        whole = {k: float(v[0]) for k, v in fast.draw([np.arange(len(m))[None, :] for _, m in order]).items()}
        if set(whole) != set(point) or not all(_same(whole[k], point[k]) for k in point):
            return None
        return fast


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def resample(aggregates: Sequence[Aggregate], result_sets: Sequence[Sequence[SampleResult]],
             replicates: int = REPLICATES, seed: int = SEED, confidence: float = CONFIDENCE) -> list[Bootstrap]:
    """Bootstrap several result sets *with the same prompt draws* (one set: a plain interval; two sets over the same
    prompts: the paired bootstrap of their difference). Every set must hold the same prompts with the same tags.

    An aggregation whose benchmark declares TAG_MEANS is drawn in numpy (:class:`_TagMeans`, the same prompt draws),
    every other one by calling it on each resample."""
    groups = [group_by_prompt(rs) for rs in result_sets]
    prompts = list(groups[0])
    for other in groups[1:]:
        if sorted(other) != sorted(prompts):
            raise ValueError("paired bootstrap needs the same prompts in every result set")
    strata: dict[str, list[int]] = {}
    for p in prompts:
        strata.setdefault(groups[0][p][0].tag, []).append(p)
    order = [(tag, strata[tag]) for tag in sorted(strata)]
    points = [agg(list(rs)) for agg, rs in zip(aggregates, result_sets)]
    rng = np.random.default_rng(seed)
    # replicate by replicate, stratum by stratum: the order of the random stream every interval was made with
    chosen = [np.empty((replicates, len(members)), dtype=np.int64) for _, members in order]
    for r in range(replicates):
        for s, (_, members) in enumerate(order):
            chosen[s][r] = rng.integers(0, len(members), len(members))
    fresh_base = max(prompts, default=0) + 1
    results: list[dict[str, np.ndarray]] = []
    for g, agg, point in zip(groups, aggregates, points):
        fast = _TagMeans.matching(agg, g, order, point)
        if fast is not None:
            results.append(fast.draw(chosen))
            continue
        draws: dict[str, list[float]] = {k: [] for k in point}
        fresh = reads_prompts(agg)
        for r in range(replicates):
            picks = [(members, chosen[s][r]) for s, (_, members) in enumerate(order)]
            if not fresh:  # the aggregation reads tags and scores only: a repeat draw needs no copy
                values = agg([x for members, drawn in picks for c in drawn for x in g[members[c]]])
            else:
                sample: list[SampleResult] = []
                seen: set[int] = set()
                j = fresh_base
                for members, drawn in picks:
                    for c in drawn:
                        prompt = members[c]
                        if prompt not in seen:  # a first draw keeps its own (unique) index: no copy needed
                            seen.add(prompt)
                            sample.extend(g[prompt])
                        else:  # a repeat draw becomes a prompt of its own, with a fresh index
                            sample.extend(SampleResult(j, x.image_index, x.tag, x.score, x.details) for x in g[prompt])
                            j += 1
                values = agg(sample)
            for key, bucket in draws.items():
                bucket.append(float(values.get(key, math.nan)))
        results.append({k: np.asarray(v, dtype=float) for k, v in draws.items()})
    settings = {"method": METHOD, "unit": "prompt", "strata": "tag", "replicates": replicates, "seed": seed,
                "confidence": confidence}
    return [Bootstrap(point, {k: np.asarray(draw[k], dtype=float) for k in point}, replicates, seed, confidence,
                      settings) for point, draw in zip(points, results)]


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int, float]:
    """Exact McNemar test on paired pass/fail verdicts: ``(n_a_only, n_b_only, two-sided p)``.

    Only discordant pairs carry information: under "no difference" each is equally likely to favour A or B, so
    p = min(1, 2 * P[Binomial(n_a_only + n_b_only, 1/2) <= min(n_a_only, n_b_only)]); p = 1 with no discordant pair.
    """
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    n = a_only + b_only
    if n == 0:
        return a_only, b_only, 1.0
    from scipy import stats as scipy_stats  # here: a second to import, and only the paired tests need it

    p = min(1.0, 2 * float(scipy_stats.binom.cdf(min(a_only, b_only), n, 0.5)))
    return a_only, b_only, p


def wilcoxon_signed_rank(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p for paired continuous scores (zero differences dropped); 1 when all tie."""
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    if diffs.size == 0 or not np.any(diffs != 0):
        return 1.0
    from scipy import stats as scipy_stats

    return float(scipy_stats.wilcoxon(diffs, zero_method="wilcox").pvalue)


def is_binary(scores: Sequence[float]) -> bool:
    """Whether every (non-NaN) score is a pass/fail verdict (0 or 1)."""
    return all(s in (0.0, 1.0) for s in scores if not math.isnan(s))
