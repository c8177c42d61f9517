"""What the experiment-table scripts share: their command line, their statistics and how a run's records are kept.

Every table script (``online_methods``, ``offline_methods``, ``human_feedback``) runs a list of steps, each leaving
``table-record.json`` written last and atomically, skips a step whose record exists, resumes a partial one, and
rebuilds its Markdown table from whatever records exist; the pieces they share live here so that a fix to the
interval or to the argument checks reaches all of them.

Statistics:

* :func:`t_interval`: the 95 % t-interval of a mean over seeds, mean +- t_{0.975, n-1} * sd / sqrt(n) (sample sd,
  n - 1 degrees of freedom; undefined for n < 2, shown as the mean with ``n=1``);
* :func:`paired_bootstrap`: the paired bootstrap over prompts of trained - base for one benchmark
  (:func:`harness.compare.compare`: both evaluations resampled with the same prompt draws, stratified by tag, the
  benchmark's own aggregation on each, percentile interval of 1000 replicates).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.records import ResultRecord, file_sha256

RECORD = "table-record.json"
# What every builtin table trains and evaluates: the committed model, the training prompts, the benchmarks.
CKPT = "builtin:shapes"
PROMPTS = "builtin:geneval-train"
BENCHMARKS = ("geneval", "t2i-compbench")
DEFAULT_SEEDS = (0, 1, 2)


# --- statistics --------------------------------------------------------------------------------------------------


@dataclass
class Interval:
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
    from scipy import stats

    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, mean, mean, n)
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def paired_bootstrap(base: Path, trained: Path, key: str = "overall") -> dict[str, float]:
    """trained - base on ``key`` with its 95 % paired bootstrap interval over prompts, from two saved records with
    their samples beside them (``delta``, ``low95``, ``high95``, and the per-image test's ``p``)."""
    from harness.compare import compare

    result = compare(base, trained)
    entry = next(k for k in result.keys if k.key == key)
    return {"delta": entry.delta, "low95": entry.interval[0], "high95": entry.interval[1],
            "p": result.p if key == "overall" else (entry.p if entry.p is not None else math.nan),
            "test": result.test}


def mean_finite(values: Sequence[float | None]) -> float:
    """The mean of the values that are numbers (None and NaN left out); NaN when none is."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan


def points(value: float | None) -> str:
    """A 0-1 score in points (0-100, one decimal); empty for a missing value."""
    return "" if value is None or math.isnan(value) else f"{value * 100:.1f}"


# --- records -----------------------------------------------------------------------------------------------------


def read_json(path: Path) -> dict | None:
    """A step's JSON record, None when it does not exist; an unreadable one is an error naming the fix."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise HarnessError(f"{path}: unreadable ({err}); delete it to redo that step") from None


def samples_in_store(record: ResultRecord, store: Path) -> Path:
    """The ``samples.jsonl`` the evaluation wrote for ``record`` in the image store's run folders, found by its
    sha256 (the record carries it), so no store naming rule is repeated here."""
    wanted = record.samples.get("sha256")
    for path in sorted((Path(store) / "runs").glob(f"{record.benchmark}-*/samples.jsonl")):
        if wanted and file_sha256(path) == wanted:
            return path
    raise HarnessError(f"no samples file with sha256 {wanted} for the {record.benchmark} record of {record.model} "
                       f"under {store}/runs; was the store moved or cleaned during the run?")


def save_records(records: Sequence[ResultRecord], folder: Path, out: Path, store: Path | None = None,
                 name: str = "{benchmark}-{role}") -> tuple[dict[str, dict], list[str], dict]:
    """Save a run's result records as ``<folder>/records/<name>.json``; returns (scores by benchmark and role with
    ``in_reward``, the saved paths relative to ``out``, the trained records' ``training`` block).

    With ``store`` each record also gets its per-image results beside it (``<name>.samples.jsonl``, copied from
    the store and named in the record), so the file is what ``harness leaderboard publish`` and ``harness compare``
    read; without, the record is saved alone (the layout of the earlier tables).
    """
    scores: dict[str, dict] = {}
    saved: list[str] = []
    training: dict = {}
    for record in records:
        role = "trained" if record.training else "base"
        stem = name.format(benchmark=record.benchmark, role=role)
        path = folder / "records" / f"{stem}.json"
        if store is not None:
            samples = path.with_name(f"{stem}.samples.jsonl")
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(samples_in_store(record, store), samples)
            record.samples = {**record.samples, "file": samples.name}
        record.save(path)
        saved.append(str(path.relative_to(out)))
        entry = scores.setdefault(record.benchmark, {})
        entry[role] = record.scores
        if record.training:
            entry["in_reward"] = bool(record.training.get("in_reward"))
            training = record.training
    return scores, saved, training


# --- command line ------------------------------------------------------------------------------------------------


def table_parser(prog: str, doc: str | None, out_example: str, budget: int | None, budget_help: str,
                 seeds: Sequence[int] = DEFAULT_SEEDS) -> argparse.ArgumentParser:
    """The flags every table script takes: --out, --seeds, --budget, --limit, --store, --dry-run, --table-only
    (each script adds its own)."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.tables.{prog}",
                                     description=(doc or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help=f"folder of the records, e.g. {out_example}")
    parser.add_argument("--seeds", default=",".join(map(str, seeds)),
                        help=f"training seeds (default {','.join(map(str, seeds))})")
    parser.add_argument("--budget", type=int, default=budget, help=budget_help)
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate only the first N prompts of each benchmark (smoke tests; not the protocol)")
    parser.add_argument("--store", type=Path, default=None,
                        help="image store for the evaluations (default <out>/store; keep it out of git)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what is finished, run nothing")
    parser.add_argument("--table-only", action="store_true", help="rebuild table.md from the finished records")
    return parser


def split_list(text: str) -> list[str]:
    """A comma-separated flag value, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_seeds(parser: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        return [int(s) for s in split_list(text)]
    except ValueError:
        parser.error(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2")
        raise  # parser.error exits; this line only tells the type checker so
