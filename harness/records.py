"""``ResultRecord``: one benchmark score with everything needed to reproduce and compare it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import DataError, json_object_line
from harness.hashing import stable_hash
from harness.schemas import load_schema, validate
from harness.store import _finite, atomic_write_json

if TYPE_CHECKING:
    from benchmarks.registry import SampleResult

# 2: comparability label (comparable_to_published, comparability_reasons). 3: JSON Schema validated on write and
# read; prompt-set, seed and scorer hashes; bootstrap intervals and standard errors on every score; the per-sample
# file's hash; migration notes.
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
UNKNOWN_COMPARABILITY = "unknown: schema_version 1 record, written before comparability labels existed"
MIGRATED_NOTE = ("migrated from schema_version {version}: no confidence intervals and no prompt-set, seed or scorer "
                 "hash (publish the run folder again to compute them from its samples.jsonl)")
TRACKED_PACKAGES = ("harness", "torch", "diffusers", "transformers", "accelerate", "peft", "open_clip_torch",
                    "numpy", "scipy", "pillow", "spacy")


@dataclass
class ResultRecord:
    """A benchmark result. ``scores`` holds ``overall`` plus one entry per tag/category (0-1 unless noted).

    ``comparable_to_published`` says whether the scores may be set beside the benchmark's published tables: True
    only when the run followed the official protocol in everything that changes a score (perception checkpoints,
    sampler, rule versions), with ``comparability_reasons`` listing each deviation otherwise; None (unknown) for a
    record written before the label existed (schema_version 1).

    Schema 3 adds what a fair comparison needs: ``prompt_set_hash`` (every prompt's index, text and tag),
    ``seed_hash`` (every image's seed), ``scorer_hash`` (the benchmark's scorer id: rules, options, perception
    backends and versions), and on every score a bootstrap interval (``intervals[key] = [low, high]``) and standard
    error, computed from the per-image verdicts in ``samples`` (the file beside the record, with its sha256) by
    :func:`harness.stats.resample`. ``harness/schemas/result_record.schema.json`` is checked on every save and load.
    """

    benchmark: str
    benchmark_version: str
    world: str
    model: str
    checkpoint_fingerprint: str
    scores: dict[str, float]
    n_prompts: int
    n_images: int
    seeds: dict
    sampler: dict
    perception: dict[str, str]
    options: dict = field(default_factory=dict)
    method: str = "pretrained"
    training: dict = field(default_factory=dict)
    wall_time_s: dict[str, float] = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    created: str = ""
    comparable_to_published: bool | None = None
    comparability_reasons: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    prompt_set_hash: str = ""
    seed_hash: str = ""
    scorer_hash: str = ""
    intervals: dict[str, list[float | None]] = field(default_factory=dict)
    standard_errors: dict[str, float | None] = field(default_factory=dict)
    bootstrap: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The record as strict JSON data (NaN and infinities as null), validated against the schema."""
        data = _finite(asdict(self))
        assert isinstance(data, dict)
        errors = record_errors(data)
        if errors:
            raise DataError(f"result record for {self.benchmark} / {self.model} is invalid: {'; '.join(errors[:3])}")
        return data

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> ResultRecord:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"cannot read result record {path}: {err}") from None
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise DataError(f"{path} has schema_version {version}, expected one of {READABLE_VERSIONS}; "
                            "upgrade harness to read it")
        if version == 1:  # written before the comparability label: read as unknown, never as comparable
            data.update(comparable_to_published=None, comparability_reasons=[UNKNOWN_COMPARABILITY])
        if version in (1, 2):
            data["notes"] = [*data.get("notes", []), MIGRATED_NOTE.format(version=version)]
            data["schema_version"] = SCHEMA_VERSION
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"{path}: unknown result record field(s) {', '.join(unknown)}; not a harness record "
                            "or written by a newer harness")
        try:
            record = cls(**data)
        except TypeError as err:  # a required field is missing
            raise DataError(f"{path} is not a valid result record: {err}") from None
        errors = record_errors(_finite(asdict(record)))  # type: ignore[arg-type]
        if errors:
            raise DataError(f"{path} is not a valid result record: {'; '.join(errors[:3])}")
        return record


def record_errors(data: dict) -> list[str]:
    """Violations of ``harness/schemas/result_record.schema.json`` (empty: valid), and of what the schema cannot say:
    every series of a training curve has one value per point."""
    errors = validate(data, load_schema("result_record"))
    training = data.get("training")
    curve = training.get("curve") if isinstance(training, dict) else None
    if not errors and isinstance(curve, dict):
        n = len(curve.get("round", curve.get("step", [])))
        errors += [f"$.training.curve.{key}: {len(values)} values for {n} points" for key, values in curve.items()
                   if isinstance(values, list) and len(values) != n]
    return errors


def read_sample_rows(path: Path) -> list[dict]:
    """The per-image rows of a ``samples.jsonl`` (see :func:`harness.api.write_samples`)."""
    try:
        lines = Path(path).read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read per-sample results {path}: {err}") from None


def rows_to_results(rows: list[dict]) -> list[SampleResult]:
    """Per-image verdicts as the benchmark's aggregation takes them (a null score is NaN: an excluded image)."""
    from benchmarks.registry import SampleResult

    return [SampleResult(r["prompt_index"], r["image_index"], r["tag"],
                         float("nan") if r["score"] is None else float(r["score"]), r.get("details") or {})
            for r in rows]


def prompt_set_hash(rows: list[dict]) -> str:
    """Hash of the prompts a run scored: each prompt's index, text and tag (image order and seeds excluded)."""
    prompts = sorted({(r["prompt_index"], r["prompt"], r["tag"]) for r in rows})
    return stable_hash(prompts)


def seed_hash(rows: list[dict]) -> str:
    """Hash of every image's (prompt index, image index, seed): equal only when the same images were drawn."""
    return stable_hash(sorted((r["prompt_index"], r["image_index"], r["seed"]) for r in rows))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


RUN_OPTIONS = ("limit", "tags", "skipped")  # options that select prompts: compared through the prompt-set hash


def scorer_hash(record: ResultRecord) -> str:
    """Hash of what decides a verdict besides the image: benchmark and version, perception backends with their
    versions (weight hashes where a backend names them), and the scorer's options (rule versions, quirks)."""
    options = {k: v for k, v in record.options.items() if k not in RUN_OPTIONS}
    return stable_hash([record.benchmark, record.benchmark_version, record.perception, options])


def attach_statistics(record: ResultRecord, samples_path: Path, aggregate: Callable[[list[SampleResult]], dict],
                      replicates: int | None = None, previous: ResultRecord | None = None) -> None:
    """Fill the schema-3 fields of ``record`` from the per-image verdicts in ``samples_path``: hashes of the prompt
    set, seeds and scorer, and a bootstrap interval and standard error on every score (see :mod:`harness.stats`).

    ``previous``: an earlier record of the same run. When its samples file had the same sha256, its scores are
    equal, its bootstrap settings are those this one would use and it was written by the same code (git commit),
    its intervals are copied instead of drawn again: the seeded bootstrap is a function of exactly those, and its
    1000 aggregations are most of a cached re-run's time."""
    from harness import stats

    rows = read_sample_rows(samples_path)
    record.prompt_set_hash = prompt_set_hash(rows)
    record.seed_hash = seed_hash(rows)
    record.scorer_hash = scorer_hash(record)
    record.samples = {"file": Path(samples_path).name, "sha256": file_sha256(samples_path), "rows": len(rows)}
    if not rows:
        return
    replicates = replicates or stats.REPLICATES
    settings = {"method": stats.METHOD, "replicates": replicates, "seed": stats.SEED, "confidence": stats.CONFIDENCE}
    if (previous is not None and previous.samples == record.samples and previous.scores == record.scores
            and all(previous.bootstrap.get(key) == value for key, value in settings.items())
            and set(previous.intervals) == set(previous.standard_errors) == set(record.scores)
            and previous.environment.get("git_commit") == record.environment.get("git_commit")):
        record.intervals, record.standard_errors = previous.intervals, previous.standard_errors
        record.bootstrap = previous.bootstrap
        return
    (boot,) = stats.resample([aggregate], [rows_to_results(rows)], replicates=replicates)
    record.intervals = {key: [_rounded(v) for v in boot.interval(key)] for key in record.scores}
    record.standard_errors = {key: _rounded(boot.standard_error(key)) for key in record.scores}
    record.bootstrap = boot.settings


def _rounded(value: float) -> float | None:
    """12 significant digits: stable across platforms' last-bit float differences, far below any score's precision."""
    return None if math.isnan(value) else float(f"{value:.12g}")


# The training run's settings and cost that a trained checkpoint's records carry (``harness train`` writes them to
# ``<run>/summary.json`` beside ``<run>/checkpoint/``; online and offline runs name some keys differently).
TRAINING_KEYS = ("method", "ckpt", "feedback", "feedback_scorer", "dataset", "config", "seed", "prompts", "overlap",
                 "budget", "budget_unit", "steps", "cost", "rounds", "monitor")


def read_training_summary(path: Path) -> dict:
    """A training run's ``summary.json``; a one-line DataError when it is unreadable or not one."""
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read the training summary {path}: {err}; re-run `harness train --resume` to "
                        "rewrite it, or evaluate a copy of the checkpoint folder") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("method"), str):
        raise DataError(f"{path} is not a harness training summary (no method); pass the run's summary.json, or "
                        "evaluate a copy of the checkpoint folder")
    return summary


def training_summary_beside(ckpt: str | Path) -> Path | None:
    """``<run>/summary.json`` when ``ckpt`` is a training run's ``<run>/checkpoint`` folder, else None."""
    path = Path(ckpt).expanduser()
    summary = path.parent / "summary.json"
    return summary if path.name == "checkpoint" and path.is_dir() and summary.is_file() else None


def training_from_summary(summary: dict, benchmark: str) -> dict:
    """A record's ``training`` field for ``benchmark`` from a run summary, as ``train-and-eval`` writes it.

    ``in_reward``: the run's own per-benchmark verdict (``trainers.monitor.in_reward``, stored in summaries since
    schema 3); for an older summary True when the feedback's scorer names the benchmark, else None (unknown).
    """
    training = {key: summary[key] for key in TRAINING_KEYS if key in summary}
    verdicts = summary.get("in_reward")
    if isinstance(verdicts, dict) and benchmark in verdicts:
        training["in_reward"] = verdicts[benchmark]
    else:
        scorer = summary.get("feedback_scorer")
        named = scorer.get("benchmark") if isinstance(scorer, dict) else None
        training["in_reward"] = True if named == benchmark else None
    return training


# A record's training curve (``training["curve"]``): what a run's ``metrics.jsonl`` logs per round (online) or per
# optimiser step (offline), joined by round with the reward-hacking monitor's measurements (``monitor.curves`` in the
# summary, or ``<run>/monitor/monitor.json``), at most CURVE_POINTS points so a record stays a few KB.
CURVE_POINTS = 100
CURVE_METRICS = ("images_sampled", "reward", "loss")  # metrics.jsonl keys; reward: the proxy reward's mean
CURVE_MONITOR = ("held_out", "distortion_rate", "colour_entropy", "seed_diversity")
CUMULATIVE = ("round", "step", "images_sampled")  # a group of rounds keeps its last value, the others their mean
MONITOR_FILE = Path("monitor") / "monitor.json"


def read_metrics(path: Path) -> list[dict]:
    """The per-round (or per-step) rows of a run's ``metrics.jsonl``; a one-line DataError when unreadable."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the training metrics {path}: {err}") from None
    return [json_object_line(line, f"{path}:{n}", "one metrics object") for n, line in enumerate(lines, 1)
            if line.strip()]


def training_curve(metrics: list[dict], monitor_curves: dict | None = None,
                   max_points: int = CURVE_POINTS) -> dict | None:
    """A compact training curve: per round, ``images_sampled`` (cumulative), the proxy ``reward`` mean and ``loss``
    from ``metrics``, and the monitor's ``held_out`` score, ``distortion_rate``, ``colour_entropy`` and
    ``seed_diversity`` at the rounds it measured (null elsewhere; round 0 is its measurement before training).

    Offline runs log optimiser steps (``step``) instead of rounds. With more than ``max_points`` rows, consecutive
    rows are grouped ``per_point = ceil(rows / max_points)`` at a time (round 0 kept alone): a group keeps its last
    round and image count and the mean of each other series over the rows that have it, so a point is an average,
    never a hand-picked round. Values keep 6 significant digits. None when there is nothing to draw.
    """
    index = "step" if metrics and "round" not in metrics[0] and "step" in metrics[0] else "round"
    rows: dict[int, dict] = {}
    for row in metrics:
        if isinstance(row.get(index), int):
            rows.setdefault(row[index], {}).update({k: row.get(k) for k in CURVE_METRICS if k in row})
    held_out_benchmark = None
    if isinstance(monitor_curves, dict) and isinstance(monitor_curves.get("round"), list):
        for i, round_index in enumerate(monitor_curves["round"]):
            point = rows.setdefault(int(round_index), {})
            for key in CURVE_MONITOR:
                values = monitor_curves.get(key)
                if isinstance(values, list) and i < len(values):
                    point[key] = values[i]
        # the monitor's held_out is its first benchmark's overall score (``trainers.monitor.Monitor.primary``)
        held_out_benchmark = next((k.removesuffix("/overall") for k in monitor_curves if k.endswith("/overall")),
                                  None)
        if 0 in rows and index == "round":
            rows[0].setdefault("images_sampled", 0)
    if not rows:
        return None
    ordered = sorted(rows.items())
    first = [ordered.pop(0)] if ordered[0][0] == 0 and len(ordered) > 1 else []
    per_point = max(1, math.ceil(len(ordered) / max(1, max_points - len(first))))
    groups = [[item] for item in first] + [ordered[i:i + per_point] for i in range(0, len(ordered), per_point)]
    keys = [k for k in (*CURVE_METRICS, *CURVE_MONITOR) if any(k in row for _, row in ordered + first)]
    curve: dict = {"per_point": per_point, index: [group[-1][0] for group in groups]}
    for key in keys:
        curve[key] = [_group_value([row.get(key) for _, row in group], key in CUMULATIVE) for group in groups]
    if held_out_benchmark is not None and "held_out" in curve:
        curve["held_out_benchmark"] = held_out_benchmark
    return curve


def _group_value(values: list, last: bool) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)
               and math.isfinite(v)]
    if not numbers:
        return None
    value = numbers[-1] if last else sum(numbers) / len(numbers)
    return int(value) if last and value.is_integer() else float(f"{value:.6g}")


def run_folder_curve(run_dir: Path, monitor: dict | None = None) -> dict | None:
    """The training curve of a run folder: its ``metrics.jsonl`` joined with the monitor's curves (``monitor`` as
    the run's summary stores it, ``{"curves": ..., "warnings": ...}``, else ``<run>/monitor/monitor.json``)."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    metrics = read_metrics(metrics_path) if metrics_path.is_file() else []
    curves = monitor.get("curves") if isinstance(monitor, dict) else None
    if curves is None and (run_dir / MONITOR_FILE).is_file():
        try:
            curves = json.loads((run_dir / MONITOR_FILE).read_text()).get("curves")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
            raise DataError(f"cannot read the monitor curves {run_dir / MONITOR_FILE}: {err}") from None
    return training_curve(metrics, curves)


def with_run_details(training: dict) -> dict:
    """``training`` with what it lacks filled from the run folder it names (the parent of its ``checkpoint``, or of
    its ``summary``), when that folder is on this machine: its ``curve`` (from ``metrics.jsonl`` and the monitor) and
    its ``feedback_scorer`` (from ``summary.json``: which judge, at which version, made the training signal; a
    record written before either existed gets them when it is published again). Else ``training`` unchanged."""
    if not training:
        return training
    named = training.get("checkpoint") or training.get("summary")
    if not isinstance(named, str) or named.startswith("builtin:"):
        return training
    run_dir = Path(named).expanduser().parent
    filled = dict(training)
    if "curve" not in filled and ((run_dir / "metrics.jsonl").is_file() or (run_dir / MONITOR_FILE).is_file()):
        curve = run_folder_curve(run_dir, training.get("monitor"))
        if curve is not None:
            filled["curve"] = curve
    summary = run_dir / "summary.json"
    if "feedback_scorer" not in filled and summary.is_file():
        with contextlib.suppress(OSError, ValueError):
            scorer = json.loads(summary.read_text()).get("feedback_scorer")
            if isinstance(scorer, dict):
                filled["feedback_scorer"] = scorer
    return filled


def environment_info() -> dict:
    """Package versions, git commit, Python and hardware: what a reader needs to rerun the numbers."""
    versions = {}
    for name in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    info: dict = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu: {_cpu_name()}"
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x {os.cpu_count()}"


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None
