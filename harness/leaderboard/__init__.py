"""Leaderboards regenerated from validated records: ``harness leaderboard publish|build|check``.

Layout (``results/``, committed)::

    records/<id>.json            a schema-3 ResultRecord (validated on write and read)
    records/<id>.samples.jsonl   its per-image verdicts (prompt, tag, seed, score, details; no image paths), whose
                                 sha256 the record holds: paired comparisons need them, images are not needed
    LEADERBOARD.md, leaderboard.html, plots/*.svg   written by ``build`` from the records alone (per table: per-tag
                                 bars, score vs cost, and the training curves of the records that carry one)

``build`` is deterministic (no timestamps, sorted rows, fixed bootstrap seed, hand-written SVG), so ``check`` can
rebuild in memory and fail on any difference, and on any record that is invalid, whose samples file was edited, or
whose scores do not follow from its samples under the installed benchmark's aggregation.

Rows are the records as they land: one table per (benchmark, version, world, judge: the perception versions that
scored it); the base row of a trained record is the pretrained record in the same table scored on the same prompts,
seeds and scorer (preferring the one whose model is the training's ``ckpt``). Delta vs base is the paired comparison
of :mod:`harness.compare`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness import stats
from harness.compare import Comparison, Evaluated, compare, incomparable, load_evaluated, record_bench
from harness.errors import DataError, HarnessError
from harness.hashing import stable_hash
from harness.leaderboard import render
from harness.records import (
    ResultRecord,
    attach_statistics,
    prompt_set_hash,
    read_training_summary,
    scorer_hash,
    seed_hash,
    training_from_summary,
    training_summary_beside,
    with_run_details,
)
from harness.store import atomic_write_text

RESULTS = Path("results")
OUTPUTS = ("LEADERBOARD.md", "leaderboard.html")
SCORE_TOLERANCE = 1e-9


@dataclass
class Row:
    """One record on the board, with its base and the paired comparison against it (when comparable)."""

    record_id: str
    evaluated: Evaluated
    base: Row | None = None
    comparison: Comparison | None = None
    not_comparable: str = ""  # why there is no delta against a base

    @property
    def record(self) -> ResultRecord:
        return self.evaluated.record


@dataclass
class Table:
    benchmark: str
    version: str
    world: str
    rows: list[Row]
    judge: str = ""  # the perception versions that scored every row (:func:`judge_of`)
    split: bool = False  # the benchmark, version and world have tables for other judges too

    @property
    def slug(self) -> str:
        judge = f"-{re.sub(r'[^A-Za-z0-9]+', '-', self.judge).strip('-')}" if self.split and self.judge else ""
        return f"{self.benchmark}-{self.world}{judge}"

    @property
    def keys(self) -> list[str]:
        """``overall`` first, then every other score key in the order the first record lists them, except the
        bookkeeping of the rate benchmarks (distortion, safety): counts (``n_judged``...) and the Wilson bounds
        (``overall_low95``...), which are not scores; the bracket beside each score is the bootstrap interval."""
        keys: list[str] = ["overall"]
        for row in self.rows:
            keys += [k for k in row.record.scores if k not in keys and not _bookkeeping(k)]
        return keys


def _bookkeeping(key: str) -> bool:
    return key.startswith("n_") or key.endswith(("_low95", "_high95"))


def record_id(evaluated: Evaluated) -> str:
    """Stable file stem: benchmark, world, method, model, and a hash of what makes the record distinct."""
    r = evaluated.record
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", r.model).strip("_")[-40:] or "model"
    digest = stable_hash([r.checkpoint_fingerprint, r.sampler, scorer_hash(r), r.prompt_set_hash, r.seed_hash,
                          r.training.get("seed"), r.training.get("feedback")])[:10]
    return f"{r.benchmark}-{r.world}-{re.sub(r'[^a-z0-9_-]+', '_', r.method.lower())}-{model}-{digest}"


def training_from_summary_file(summary_path: Path, benchmark: str) -> dict:
    """The ``training`` block of a record from a training run's ``summary.json`` (see
    :func:`harness.records.training_from_summary`), naming the file it came from."""
    training = training_from_summary(read_training_summary(summary_path), benchmark)
    training["summary"] = str(summary_path)
    return training


def publish(run_dir: Path | str, results: Path | str = RESULTS, replicates: int | None = None,
            training_summary: Path | str | None = None) -> Path:
    """Copy a run folder's record and per-image results into ``results/records/`` as a schema-3 record.

    The scores must follow from ``samples.jsonl`` under the installed benchmark's aggregation (refused otherwise),
    and the intervals and hashes are recomputed from the published samples file, so a record of an older schema
    comes out complete. A checkpoint evaluated with plain ``harness eval`` is recorded as ``pretrained``; its method
    and training cost are taken from ``training_summary``, or found as ``summary.json`` beside the checkpoint
    folder. A trained record without a training curve or feedback judge gets them from its run folder when that is
    on this machine (:func:`harness.records.with_run_details`), so publishing a published record again in place adds
    them and changes nothing else. Returns the record path; run ``harness leaderboard build`` afterwards.
    """
    evaluated = load_evaluated(run_dir)
    record = evaluated.record
    if training_summary is None and record.method == "pretrained":
        training_summary = training_summary_beside(record.model)
    if training_summary is not None:
        record.training = training_from_summary_file(Path(training_summary), record.benchmark)
        record.method = record.training["method"]
    # a record written before training curves (or feedback judges) were recorded gets them from its run folder
    record.training = with_run_details(record.training)
    if evaluated.rows is None:
        raise HarnessError(f"{run_dir}: no samples.jsonl beside the record; publish needs the per-image results")
    bench = record_bench(record)
    if bench.version != record.benchmark_version:
        raise HarnessError(f"{run_dir} was scored with {bench.name} v{record.benchmark_version}, this harness has "
                           f"v{bench.version}: re-score it before publishing")
    _check_scores(evaluated, bench)
    record.notes = [n for n in record.notes if not n.startswith("migrated from")] + (
        [f"published from a schema-{_source_version(run_dir)} run folder; intervals and hashes recomputed from "
         "its samples"] if _source_version(run_dir) != 3 else [])
    return write_record(record, evaluated.rows, results, bench.aggregate, replicates=replicates)


def write_record(record: ResultRecord, rows: list[dict], results: Path | str, aggregate: Callable[..., dict],
                 replicates: int | None = None, replaces: Path | None = None) -> Path:
    """Write ``record`` and its per-image ``rows`` as ``records/<id>.json`` + ``<id>.samples.jsonl``: both or
    neither. Returns the record path.

    The rows lose their image paths (a record travels without images); the hashes, intervals and the samples file's
    sha256 are computed from the file as written (:func:`harness.records.attach_statistics`). Both files are written
    in a staging folder beside the records and read back as every reader reads them (schema, samples hash), then
    renamed into place, samples first: a reader sees the old pair or the new one, never a record without its
    samples. ``replaces``: a published record (and its samples file) that the new one supersedes, removed after the
    new pair is in place, unless it is the same file.
    """
    rows = [{k: v for k, v in row.items() if k != "image"} for row in rows]
    record.prompt_set_hash, record.seed_hash = prompt_set_hash(rows), seed_hash(rows)
    stem = record_id(Evaluated(record, rows, Path(f"{record.benchmark}.json")))
    folder = Path(results) / "records"
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".staging-"))
    try:
        samples = staging / f"{stem}.samples.jsonl"
        samples.write_text("".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in rows))
        attach_statistics(record, samples, aggregate, replicates=replicates)
        record.save(staging / f"{stem}.json")
        load_evaluated(staging / f"{stem}.json")
        os.replace(samples, folder / samples.name)
        os.replace(staging / f"{stem}.json", folder / f"{stem}.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    path = folder / f"{stem}.json"
    if replaces is not None and replaces.resolve() != path.resolve():
        old_samples = _samples_file_of(replaces)
        replaces.unlink(missing_ok=True)
        if old_samples is not None and old_samples.resolve() != (folder / samples.name).resolve():
            old_samples.unlink(missing_ok=True)
    return path


def _samples_file_of(record_path: Path) -> Path | None:
    """The samples file a record names (read before the record is removed); None when it cannot be read."""
    try:
        name = json.loads(record_path.read_text()).get("samples", {}).get("file")
    except (OSError, ValueError, AttributeError):
        return None
    return record_path.parent / name if isinstance(name, str) and name else None


def _source_version(run_dir: Path | str) -> int:
    path = Path(run_dir)
    path = path / "result.json" if path.is_dir() else path
    return int(json.loads(path.read_text()).get("schema_version", 0))


def _check_scores(evaluated: Evaluated, bench: object) -> None:
    from harness.records import rows_to_results

    assert evaluated.rows is not None
    fresh = bench.aggregate(rows_to_results(evaluated.rows))  # type: ignore[attr-defined]
    for key, value in evaluated.record.scores.items():
        got = fresh.get(key, math.nan)
        both_nan = (value is None or math.isnan(value)) and math.isnan(got)
        if not both_nan and (value is None or not math.isclose(got, value, rel_tol=SCORE_TOLERANCE,
                                                               abs_tol=SCORE_TOLERANCE)):
            raise DataError(f"{evaluated.source}: score {key}={value} does not follow from its per-image results "
                            f"({got:.6g}); the record or its samples were edited")


def load_board(results: Path | str = RESULTS) -> list[Evaluated]:
    """Every published record, validated, with its samples; raises on the first invalid one."""
    folder = Path(results) / "records"
    paths = sorted(p for p in folder.glob("*.json")) if folder.is_dir() else []
    return [load_evaluated(p) for p in paths]


def judge_of(record: ResultRecord) -> str:
    """The perception backends' versions that scored ``record`` (e.g. ``oracle@18``), as one label."""
    return "/".join(sorted({str(v) for v in record.perception.values()}))


def tables(board: list[Evaluated], replicates: int = stats.REPLICATES) -> list[Table]:
    """Group records into tables, one per benchmark, version, world and judge, and attach each trained row's base
    and paired comparison.

    Records scored by different judges (an oracle version, a substitute detector) never share a table: their scores
    do not compare, and a record whose images or checkpoint are gone cannot be re-judged, so it keeps its own table
    under the judge it names rather than sitting beside rows its judge never saw."""
    groups: dict[tuple[str, str, str, str], list[Row]] = {}
    for ev in board:
        r = ev.record
        groups.setdefault((r.benchmark, r.benchmark_version, r.world, judge_of(r)), []).append(Row(ev.source.stem, ev))
    judges: dict[tuple[str, str, str], int] = {}
    for key in groups:
        judges[key[:3]] = judges.get(key[:3], 0) + 1
    out = []
    for (benchmark, version, world, judge), rows in sorted(groups.items()):
        rows.sort(key=lambda row: (row.record.method != "pretrained", row.record.method, row.record.model,
                                   row.record_id))
        bases = [row for row in rows if row.record.method == "pretrained"]
        for row in rows:
            if row.record.method == "pretrained":
                continue
            _attach_base(row, bases, replicates)
        out.append(Table(benchmark, version, world, rows, judge, judges[(benchmark, version, world)] > 1))
    return out


def _attach_base(row: Row, bases: list[Row], replicates: int) -> None:
    if not bases:
        row.not_comparable = "no pretrained record in this table"
        return
    usable = [b for b in bases if not incomparable(b.evaluated, row.evaluated)]
    if not usable:
        row.not_comparable = "; ".join(incomparable(bases[0].evaluated, row.evaluated))
        return
    wanted = row.record.training.get("ckpt")
    row.base = next((b for b in usable if b.record.model == wanted), usable[0])
    row.comparison = compare(row.base.evaluated, row.evaluated, replicates=replicates)


def published_entries() -> list[dict]:
    """The cited published numbers (``harness/leaderboard/published.json``)."""
    return json.loads(resources.files(__name__).joinpath("published.json").read_text())["entries"]


def render_all(results: Path | str = RESULTS, replicates: int = stats.REPLICATES,
               board: list[Evaluated] | None = None) -> dict[str, str]:
    """Every leaderboard file (path relative to ``results`` -> text), built from the records alone (``board``: those
    records already loaded by :func:`load_board`)."""
    board = load_board(results) if board is None else board
    built = tables(board, replicates)
    files = {"LEADERBOARD.md": render.markdown(built, published_entries(), len(board)),
             "leaderboard.html": render.html(built, published_entries(), len(board))}
    for table in built:
        files.update(render.plots(table))
    return files


def build(results: Path | str = RESULTS) -> list[Path]:
    """Write the leaderboard files and remove plots no record produces any more; returns the paths written."""
    results = Path(results)
    files = render_all(results)
    for stale in sorted((results / "plots").glob("*.svg")):
        if f"plots/{stale.name}" not in files:
            stale.unlink()
    written = []
    for name, text in sorted(files.items()):
        path = results / name
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)
        written.append(path)
    return written


def check(results: Path | str = RESULTS) -> list[str]:
    """Problems with the committed leaderboard, one line each (empty: it is exactly what the records produce)."""
    results = Path(results)
    problems = []
    try:
        board = load_board(results)
    except HarnessError as err:
        return [str(err)]
    samples_files = {p.name for p in (results / "records").glob("*.samples.jsonl")}
    for ev in board:
        r = ev.record
        if ev.rows is None:
            problems.append(f"{ev.source}: no per-image results file {r.samples.get('file')!r} beside it")
            continue
        samples_files.discard(r.samples.get("file", ""))
        for name, stored, fresh in (("prompt_set_hash", r.prompt_set_hash, prompt_set_hash(ev.rows)),
                                    ("seed_hash", r.seed_hash, seed_hash(ev.rows)),
                                    ("scorer_hash", r.scorer_hash, scorer_hash(r))):
            if stored != fresh:
                problems.append(f"{ev.source}: {name} does not match its contents; the record was edited")
        try:
            bench = record_bench(r)
            if bench.version == r.benchmark_version:
                _check_scores(ev, bench)
        except HarnessError as err:
            problems.append(str(err))
    problems += [f"{results / 'records' / name}: samples file without a record" for name in sorted(samples_files)]
    if problems:
        return problems
    files = render_all(results, board=board)
    for name, text in sorted(files.items()):
        path = results / name
        if not path.is_file():
            problems.append(f"{path} is missing: run `harness leaderboard build`")
        elif path.read_text() != text:
            problems.append(f"{path} differs from what the records produce: run `harness leaderboard build`")
    for stale in sorted((results / "plots").glob("*.svg")):
        if f"plots/{stale.name}" not in files:
            problems.append(f"{stale} is produced by no record: run `harness leaderboard build`")
    return problems
