"""Paired comparison of two evaluations of the same prompts and seeds (``harness compare A B``).

A and B are run folders (``result.json`` + ``samples.jsonl``) or published records (``<id>.json`` with its
``<id>.samples.jsonl``). The comparison is refused, with the reason, unless both scored the same benchmark version
in the same world with the same scorer (rules, options, perception backends) on the same prompts with the same seeds:
only then is image k of prompt p the same draw for both, and the per-image differences are the model's doing.

Reported, with ``delta = B - A`` (A is the reference):
* per score key (overall and each tag), the delta and its paired bootstrap interval: both result sets are resampled
  with the *same* prompt draws (stratified by tag) and the benchmark's own aggregation is applied to each;
* a test on the per-image verdicts paired by (prompt, seed): the exact McNemar test when every verdict is pass/fail
  (GenEval), the Wilcoxon signed-rank test on continuous scores (T2I-CompBench, DPG-Bench);
* a verdict line: "B is better than A (p = 0.003)", "B is worse ...", or "no significant difference" at alpha 0.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from benchmarks.registry import Benchmark, get_benchmark
from harness import stats
from harness.errors import DataError, HarnessError
from harness.records import (
    ResultRecord,
    file_sha256,
    prompt_set_hash,
    read_sample_rows,
    rows_to_results,
    scorer_hash,
    seed_hash,
)

ALPHA = 0.05


@dataclass
class Evaluated:
    """A result record with its per-image rows (None when the record has no samples file beside it)."""

    record: ResultRecord
    rows: list[dict] | None
    source: Path

    @property
    def label(self) -> str:
        return f"{self.record.method} ({self.record.model})"


def load_evaluated(path: Path | str) -> Evaluated:
    """Read a run folder or a record file, with its samples, checking the samples against the record's hash."""
    path = Path(path)
    record_path = path / "result.json" if path.is_dir() else path
    if not record_path.is_file():
        raise HarnessError(f"{path}: neither a run folder with result.json nor a result record file")
    record = ResultRecord.load(record_path)
    name = record.samples.get("file") or "samples.jsonl"
    samples_path = record_path.parent / name
    rows = None
    if samples_path.is_file():
        expected = record.samples.get("sha256")
        if expected and file_sha256(samples_path) != expected:
            raise DataError(f"{samples_path} does not match the sha256 in {record_path}: the per-image results were "
                            "changed after the record was written; re-run or re-publish the evaluation")
        rows = read_sample_rows(samples_path)
    return Evaluated(record, rows, record_path)


def record_bench(record: ResultRecord) -> Benchmark:
    """The installed benchmark configured with the record's scorer options (its aggregation depends on them)."""
    bench = get_benchmark(record.benchmark)
    options = getattr(bench, "options", None)
    known = {f.name for f in fields(options)} if is_dataclass(options) else set()
    chosen = {k: str(v) for k, v in record.options.items() if k in known}
    return get_benchmark(record.benchmark, options=chosen) if chosen else bench


def incomparable(a: Evaluated, b: Evaluated) -> list[str]:
    """Why A and B cannot be compared image by image (empty: they can)."""
    ra, rb = a.record, b.record
    reasons = []
    for name, x, y in (("benchmark", ra.benchmark, rb.benchmark), ("world", ra.world, rb.world),
                       ("benchmark version", ra.benchmark_version, rb.benchmark_version)):
        if x != y:
            reasons.append(f"different {name} ({x} vs {y})")
    if reasons:
        return reasons
    if scorer_hash(ra) != scorer_hash(rb):
        what = [f"{role}: {ra.perception.get(role)} vs {rb.perception.get(role)}"
                for role in sorted(set(ra.perception) | set(rb.perception))
                if ra.perception.get(role) != rb.perception.get(role)]
        reasons.append("different scorer (" + ("; ".join(what) or "rules or scorer options differ") + ")")
    for side in (a, b):
        if side.rows is None:
            reasons.append(f"{side.source}: no per-image results beside the record, so images cannot be paired")
    if a.rows is None or b.rows is None:
        return reasons
    if prompt_set_hash(a.rows) != prompt_set_hash(b.rows):
        pa = {r["prompt_index"]: r["prompt"] for r in a.rows}
        pb = {r["prompt_index"]: r["prompt"] for r in b.rows}
        differ = sorted(set(pa) ^ set(pb)) + sorted(i for i in set(pa) & set(pb) if pa[i] != pb[i])
        reasons.append(f"different prompts ({len(pa)} vs {len(pb)} prompts, {len(differ)} differ; e.g. index "
                       f"{differ[0] if differ else '?'})")
    elif seed_hash(a.rows) != seed_hash(b.rows):
        sa = {(r["prompt_index"], r["image_index"]): r["seed"] for r in a.rows}
        sb = {(r["prompt_index"], r["image_index"]): r["seed"] for r in b.rows}
        differ = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
        reasons.append(f"different seeds ({len(differ)} images differ; e.g. prompt {differ[0][0]} image "
                       f"{differ[0][1]}: {sa.get(differ[0])} vs {sb.get(differ[0])})")
    return reasons


@dataclass
class KeyDelta:
    key: str
    a: float
    b: float
    delta: float
    interval: tuple[float, float]
    test: str = ""
    p: float | None = None


@dataclass
class Comparison:
    """B against A: per-key deltas with paired intervals, and the per-image test behind the verdict."""

    a: str
    b: str
    benchmark: str
    n_prompts: int
    n_images: int
    keys: list[KeyDelta] = field(default_factory=list)
    test: str = ""
    statistic: dict = field(default_factory=dict)
    p: float = 1.0
    settings: dict = field(default_factory=dict)

    @property
    def overall(self) -> KeyDelta:
        return next(k for k in self.keys if k.key == "overall")

    @property
    def verdict(self) -> str:
        """The plain reading at alpha 0.05, by the per-image test."""
        d = self.overall
        line = f"overall {d.delta:+.4g} [{d.interval[0]:+.4g}, {d.interval[1]:+.4g}], {self.test} p = {self.p:.3g}"
        if self.p < ALPHA and d.delta > 0:
            return f"B is better than A ({line})"
        if self.p < ALPHA and d.delta < 0:
            return f"B is worse than A ({line})"
        return f"no significant difference ({line})"

    @property
    def significant(self) -> bool:
        return self.p < ALPHA and self.overall.delta != 0


def compare(a: Evaluated | Path | str, b: Evaluated | Path | str, replicates: int = stats.REPLICATES,
            seed: int = stats.SEED) -> Comparison:
    """Compare B against A (see the module docstring); raises HarnessError naming why a pair is not comparable."""
    a = a if isinstance(a, Evaluated) else load_evaluated(a)
    b = b if isinstance(b, Evaluated) else load_evaluated(b)
    reasons = incomparable(a, b)
    if reasons:
        raise HarnessError(f"not comparable: {'; '.join(reasons)}")
    assert a.rows is not None and b.rows is not None
    bench = record_bench(a.record)
    if bench.version != a.record.benchmark_version:
        raise HarnessError(f"records were scored with {bench.name} v{a.record.benchmark_version} but this harness has "
                           f"v{bench.version}; its aggregation may differ: re-score both with this version")
    key = lambda r: (r["prompt_index"], r["image_index"])  # noqa: E731
    rows_a, rows_b = sorted(a.rows, key=key), sorted(b.rows, key=key)
    res_a, res_b = rows_to_results(rows_a), rows_to_results(rows_b)
    boot_a, boot_b = stats.resample([bench.aggregate, bench.aggregate], [res_a, res_b], replicates=replicates,
                                    seed=seed)
    result = Comparison(a.label, b.label, bench.name, len({r["prompt_index"] for r in rows_a}), len(rows_a),
                        settings=boot_a.settings)
    scores_a = [r.score for r in res_a]
    scores_b = [r.score for r in res_b]
    binary = stats.is_binary(scores_a) and stats.is_binary(scores_b)
    tags = {r.tag for r in res_a}
    for name in boot_a.point:
        diff = boot_b.draws[name] - boot_a.draws[name]
        delta_boot = stats.Bootstrap({}, {name: diff}, replicates, seed, boot_a.confidence)
        point_a, point_b = boot_a.point[name], boot_b.point.get(name, math.nan)
        entry = KeyDelta(name, point_a, point_b, point_b - point_a, delta_boot.interval(name))
        if name in tags:
            mask = [r.tag == name for r in res_a]
            entry.test, entry.p, _ = _test([s for s, m in zip(scores_a, mask) if m],
                                           [s for s, m in zip(scores_b, mask) if m], binary)
        result.keys.append(entry)
    result.test, result.p, result.statistic = _test(scores_a, scores_b, binary)
    result.overall.test, result.overall.p = result.test, result.p
    return result


def _test(a: list[float], b: list[float], binary: bool) -> tuple[str, float, dict]:
    if binary:
        a_only, b_only, p = stats.mcnemar_exact([x == 1.0 for x in a], [y == 1.0 for y in b])
        return "McNemar", p, {"a_only_pass": a_only, "b_only_pass": b_only}
    kept = [(x, y) for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
    p = stats.wilcoxon_signed_rank([x for x, _ in kept], [y for _, y in kept])
    return "Wilcoxon", p, {"pairs": len(kept)}
