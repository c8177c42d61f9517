"""What the experiment-table scripts share: their command line, their statistics and how a run's records are kept.

Every table script (``online_methods``, ``offline_methods``, ``human_feedback``) runs a list of steps, each leaving
``table-record.json`` written last and atomically, skips a step whose record exists, resumes a partial one, and
rebuilds its Markdown table from whatever records exist; the pieces they share live here so that a fix to the
interval, to the argument checks or to the run loop reaches all of them. A script describes its work as a
:class:`Plan` of :class:`PlannedStep` (where the step's record lives, how to tell it finished, how to run it) and
hands it to :func:`run_steps`, which owns ``--dry-run``, ``--table-only``, the progress lines, the one-line errors and
the atomic ``table.md``; what a record holds and where it lives stays with each script.

Evaluation (:func:`evaluation_plan`): each benchmark of a table is evaluated in full, on its first ``--limit``
prompts (smoke tests), or on a seeded subsample (``--subsample BENCH=N``, ``--subsample-seed``: N prompts spread
evenly over the benchmark's tags by :func:`benchmarks.registry.spread_subset`, the same prompts and image seeds for
every model, so paired differences stay exact; the online and offline tables take it, ``human_feedback`` does not).
The choice is stored in their table records as ``{"limit", "sample", "sample_seed"}`` per benchmark and in the
result records' ``options``, with a comparability reason: a subsample's numbers are not comparable with
full-benchmark ones.

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
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.records import ResultRecord, file_sha256
from harness.stats import t_interval  # noqa: F401  (the tables call common.t_interval)
from harness.store import atomic_write_text

RECORD = "table-record.json"
# What every builtin table trains and evaluates: the committed model, the training prompts, the benchmarks.
CKPT = "builtin:shapes"
PROMPTS = "builtin:geneval-train"
BENCHMARKS = ("geneval", "t2i-compbench")
DEFAULT_SEEDS = (0, 1, 2)


# --- statistics --------------------------------------------------------------------------------------------------


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


# --- evaluation protocol -----------------------------------------------------------------------------------------


def parse_subsample(texts: Sequence[str], benchmarks: Sequence[str]) -> dict[str, int | None]:
    """``--subsample BENCH=N`` (N prompts) or ``BENCH=all`` (the full protocol) per benchmark."""
    result: dict[str, int | None] = {}
    for text in texts:
        bench, equals, value = text.partition("=")
        bench, value = bench.strip(), value.strip()
        if not equals or bench not in benchmarks or not (value == "all" or (value.isdigit() and int(value) >= 1)):
            raise HarnessError(f"--subsample {text!r}: expected BENCH=N (N >= 1) or BENCH=all with BENCH one of "
                               f"{', '.join(benchmarks)}")
        result[bench] = None if value == "all" else int(value)
    return result


def evaluation_plan(benchmarks: Sequence[str], limit: int | None, subsample: Mapping[str, int | None],
                    subsample_seed: int) -> dict[str, dict]:
    """Each benchmark's evaluation as a table record stores it: ``limit`` (first N prompts), ``sample`` (a seeded
    subsample of N prompts; None: every prompt) and ``sample_seed`` (None when not subsampled)."""
    return {bench: {"limit": limit, "sample": subsample.get(bench),
                    "sample_seed": subsample_seed if subsample.get(bench) is not None else None}
            for bench in benchmarks}


def eval_settings(api: object, entry: dict) -> object:
    """The ``harness.api.EvalSettings`` of one benchmark's evaluation entry."""
    return api.EvalSettings(limit=entry["limit"], sample=entry["sample"], sample_seed=entry["sample_seed"] or 0)


def eval_text(entry: dict) -> str:
    """One evaluation entry in words, for plans and errors."""
    parts = [f"limit {entry['limit']}" if entry.get("limit") is not None else "",
             f"a subsample of {entry['sample']} (seed {entry.get('sample_seed')})"
             if entry.get("sample") is not None else ""]
    return ", ".join(p for p in parts if p) or "the full protocol"


def check_evaluation(path: Path, made: Mapping[str, dict], wanted: Mapping[str, dict]) -> None:
    """Refuse a record whose benchmarks were evaluated otherwise than this run would (one table, one protocol);
    benchmarks the record does not have are not compared."""
    for bench, want in wanted.items():
        if bench in made and made[bench] != want:
            raise HarnessError(f"{path} evaluated {bench} with {eval_text(made[bench])}, not {eval_text(want)}; "
                               "use the same --limit/--subsample or another --out")


def evaluation_line(bench: str, entry: dict) -> str:
    """A table's note on how ``bench`` was evaluated (says when it is not the full protocol)."""
    if entry.get("sample") is not None:
        return (f"- {bench}: a subsample of {entry['sample']} prompts spread evenly over its tags, drawn with seed "
                f"{entry.get('sample_seed')}, all images of each prompt; the same prompts and image seeds for every "
                "model (not the full protocol).")
    if entry.get("limit") is not None:
        return f"- {bench}: **smoke test**, the first {entry['limit']} prompts only, not the official protocol."
    return f"- {bench}: the full protocol."


def bench_label(bench: str, runs: Sequence[dict]) -> str:
    """The benchmark's column name, with its subsample or limit when it was not evaluated in full (from the first
    record that has it)."""
    entry = next((r["evaluation"][bench] for r in runs if bench in r.get("evaluation", {})), {})
    n = next((r["n_prompts"][bench] for r in runs if bench in r.get("n_prompts", {})), None)
    if entry.get("sample") is not None:
        return f"{bench} ({n or entry['sample']}-prompt subsample)"
    if entry.get("limit") is not None:
        return f"{bench} (first {n or entry['limit']} prompts)"
    return bench


# --- command line ------------------------------------------------------------------------------------------------


def table_parser(prog: str, doc: str | None, out_example: str, budget: int | None, budget_help: str,
                 seeds: Sequence[int] = DEFAULT_SEEDS, subsample: Mapping[str, int] | None = None
                 ) -> argparse.ArgumentParser:
    """The flags every table script takes: --out, --seeds, --budget, --limit, --store, --dry-run, --table-only, and
    with ``subsample`` (the default subsample per benchmark; empty: every benchmark in full) --subsample and
    --subsample-seed (each script adds its own)."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.tables.{prog}",
                                     description=(doc or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help=f"folder of the records, e.g. {out_example}")
    parser.add_argument("--seeds", default=",".join(map(str, seeds)),
                        help=f"training seeds (default {','.join(map(str, seeds))})")
    parser.add_argument("--budget", type=int, default=budget, help=budget_help)
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate only the first N prompts of each benchmark (smoke tests; not the protocol)")
    if subsample is not None:
        default = ",".join(f"{b}={n}" for b, n in subsample.items()) or "none: every benchmark in full"
        parser.add_argument("--subsample", action="append", default=[], metavar="BENCH=N",
                            help="evaluate a seeded subsample of N prompts spread over the tags (or BENCH=all); "
                                 f"default {default}")
        parser.add_argument("--subsample-seed", type=int, default=0, help="seed of the --subsample draw (default 0)")
    parser.add_argument("--store", type=Path, default=None,
                        help="image store for the evaluations (default <out>/store; keep it out of git)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what is finished, run nothing")
    parser.add_argument("--table-only", action="store_true", help="rebuild table.md from the finished records")
    return parser


def parse_table_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, lists: Sequence[str] = (),
                     positive: Sequence[str] = ("budget", "limit")) -> argparse.Namespace:
    """Parse ``argv``; --seeds becomes integers and each flag named in ``lists`` a list of its comma-separated
    values. A usage error (exit 2) when --seeds or a list is empty, or a flag named in ``positive`` is below 1."""
    args = parser.parse_args(argv)
    args.seeds = parse_seeds(parser, args.seeds)
    for name in lists:
        setattr(args, name, split_list(getattr(args, name)))
    problems = [f"--{name.replace('_', '-')} must be >= 1 (got {getattr(args, name)})" for name in positive
                if getattr(args, name) is not None and getattr(args, name) < 1]
    problems += [f"--{name} must not be empty" for name in ("seeds", *lists) if not getattr(args, name)]
    if problems:
        parser.error("; ".join(problems))
    return args


def split_list(text: str) -> list[str]:
    """A comma-separated flag value, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_seeds(parser: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        return [int(s) for s in split_list(text)]
    except ValueError:
        parser.error(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2")
        raise  # parser.error exits; this line only tells the type checker so


# --- running a plan ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedStep:
    """One unit of a table's work as :func:`run_steps` sees it.

    ``folder``: where the step's record lives (progress lines name it relative to ``--out``); ``what``: its plan
    line; ``finished()``: its record when it has finished under this run's protocol, else None (a record of another
    protocol raises a HarnessError); ``run(api)``: does the step with ``harness.api`` (or a stand-in), writing its
    record last; ``adopt``: the step takes a finished run from elsewhere rather than training one."""

    folder: Path
    what: str
    finished: Callable[[], dict | None]
    run: Callable[[object], object]
    adopt: bool = False


@dataclass
class Plan:
    """A table's steps in order, its Markdown from whatever records exist, and the lines a dry run prints after
    the steps."""

    steps: list[PlannedStep]
    table: Callable[[], str]
    notes: list[str] = field(default_factory=list)


def run_steps(out: Path, make_plan: Callable[[], Plan], dry_run: bool = False, table_only: bool = False,
              api: object | None = None, echo: Callable[[str], None] = print) -> int:
    """Run a table's plan and return the exit code: 0, or 2 after a one-line ``error:`` on stderr for a
    HarnessError (bad input or a record of another protocol, raised while planning or running).

    ``dry_run``: print each step as ``STATE FOLDER: WHAT`` (``done``, ``adopt`` or ``to do``) and the notes, run
    nothing, write nothing. ``table_only``: rebuild ``<out>/table.md`` and run nothing. Otherwise each step in order:
    skipped when finished (its record is written last, so a killed step is never taken as finished and reruns,
    resuming what it saved), else run, and the table rebuilt after it so a partial table is always on disk; the
    table is written through a temporary file and a rename. ``harness.api`` is imported only when a step runs."""
    try:
        plan = make_plan()
        if dry_run:
            for step in plan.steps:
                state = "done" if step.finished() is not None else "adopt" if step.adopt else "to do"
                echo(f"{state:6} {step.folder}: {step.what}")
            for note in plan.notes:
                echo(note)
            return 0
        if not table_only:
            for step in plan.steps:
                label = step.folder.relative_to(out)
                if step.finished() is not None:
                    echo(f"skip   {label} (finished)")
                    continue
                echo(f"{'adopt' if step.adopt else 'run':6} {label}")
                if api is None:
                    import harness.api as api
                step.run(api)
                atomic_write_text(out / "table.md", plan.table())
        atomic_write_text(out / "table.md", plan.table())
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    echo(f"table: {out / 'table.md'}")
    return 0
