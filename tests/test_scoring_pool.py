"""Scoring in a pool of processes (:mod:`harness.scoring_pool`) writes the record one process writes.

The builtin model's images of 8 GenEval prompts over the six tags are scored once in this process and once in two
worker processes, from the same stored images: samples, official results and record agree byte for byte but for
when and where the run happened.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest

from benchmarks.registry import get_benchmark
from harness import scoring_pool
from harness.api import EvalSettings, evaluate, select_prompts
from harness.errors import HarnessError
from harness.records import ResultRecord

CKPT = "builtin:shapes"
SETTINGS = {"sample": 8}  # 32 images: 16 chunks of 2 for two processes (scoring_pool.chunk_size)
RUN_FIELDS_THAT_VARY = ("wall_time_s", "environment", "created")
RUN_FILES = ("samples.jsonl", "geneval_results.jsonl")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the run's images and no verdict, under ``DIR/runs`` (relative paths, so runs made from copies
    of DIR write the same bytes)."""
    folder = tmp_path_factory.mktemp("images")
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        evaluate(CKPT, ["geneval"], out="runs", settings=EvalSettings(**SETTINGS, scoring_processes=1),
                 progress=False)
    finally:
        os.chdir(cwd)
    shutil.rmtree(folder / "runs" / "runs")
    with sqlite3.connect(folder / "runs" / "index.sqlite") as db:
        db.execute("DELETE FROM scores")
    db.close()
    return folder


def scored(images: Path, to: Path, processes: int, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict[str, bytes]]:
    """Score a copy of ``images`` in ``to`` with ``processes``; the record's fields that do not vary between runs,
    and the run folder's result files."""
    shutil.copytree(images / "runs", to / "runs")
    monkeypatch.chdir(to)
    (record,) = evaluate(CKPT, ["geneval"], out="runs", progress=False,
                         settings=EvalSettings(**SETTINGS, scoring_processes=processes))
    assert record.environment["generation"]["cached"] == 32  # scored from the stored images, none sampled
    (run_dir,) = (to / "runs" / "runs").iterdir()
    saved = ResultRecord.load(run_dir / "result.json").to_json()
    assert saved == record.to_json()
    fields = {key: value for key, value in saved.items() if key not in RUN_FIELDS_THAT_VARY}
    return fields, {name: (run_dir / name).read_bytes() for name in RUN_FILES}


def test_two_scoring_processes_write_the_record_of_one(images: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pids = tmp_path / "pids"
    bench_class = type(get_benchmark("geneval"))
    original = bench_class.score

    def noted(self, samples, perception):  # type: ignore[no-untyped-def]
        with pids.open("a") as handle:  # a file: the workers' calls happen in other processes
            handle.write(f"{os.getpid()}\n")
        return original(self, samples, perception)

    monkeypatch.setattr(bench_class, "score", noted)
    serial, serial_files = scored(images, tmp_path / "serial", 1, monkeypatch)
    assert set(pids.read_text().split()) == {str(os.getpid())}
    pids.unlink()
    pooled, pooled_files = scored(images, tmp_path / "pooled", 2, monkeypatch)
    workers = set(pids.read_text().split())
    assert len(workers) == 2 and str(os.getpid()) not in workers and len(pids.read_text().split()) == 16
    assert len(set(serial["scores"].values())) > 2  # real verdicts of several values, not all one score
    assert pooled == serial
    assert pooled_files == serial_files


def test_a_failing_chunk_fails_the_run_and_finished_chunks_stay_cached(
        images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench_class = type(get_benchmark("geneval"))
    original = bench_class.score

    def fails_on_prompt(self, samples, perception):  # type: ignore[no-untyped-def]
        if any(item.index == failing for item, _, _ in samples):
            raise ValueError("scorer exploded")
        return original(self, samples, perception)

    store = shutil.copytree(images / "runs", tmp_path / "runs")
    settings = EvalSettings(**SETTINGS, scoring_processes=2)
    bench = get_benchmark("geneval")
    failing = select_prompts(bench.prompts("builtin"), bench, settings)[-1].index  # the last chunk's prompt
    monkeypatch.setattr(bench_class, "score", fails_on_prompt)
    with pytest.raises(ValueError, match="scorer exploded"):
        evaluate(CKPT, ["geneval"], out=store, settings=settings, progress=False)
    with sqlite3.connect(store / "index.sqlite") as db:
        (kept,) = db.execute("SELECT COUNT(*) FROM scores").fetchone()
    db.close()
    assert 0 < kept < 32


def test_only_pixel_readers_are_pooled_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring_pool, "usable_cores", lambda: 8)
    bench = get_benchmark("geneval")
    oracles = bench.perception("builtin")
    assert scoring_pool.auto_processes(oracles) == 8
    assert scoring_pool.auto_processes(oracles, sharded_processes=2) == 4  # each process of a sharded run
    assert scoring_pool.auto_processes(oracles, sharded_processes=16) == 1
    assert scoring_pool.auto_processes({**oracles, "color": type("Clip", (), {"name": "clip"})()}) == 1
    assert scoring_pool.auto_processes({}) == 1
    for name in ("t2i-compbench", "dpg-bench"):
        assert scoring_pool.auto_processes(get_benchmark(name).perception("builtin")) == 8
    # Where processes are spawned rather than forked, the benchmark and its oracles travel pickled.
    again = pickle.loads(pickle.dumps((bench, oracles)))
    assert again[0].scorer_id(again[1]) == bench.scorer_id(oracles)


@pytest.mark.parametrize(("n", "batch", "processes", "size"), [
    (2212, 256, 2, 139),  # GenEval's main job: 16 chunks, 8 per process
    (32, 256, 2, 2),
    (100_000, 256, 2, 256),  # never more than a batch per bench.score call
    (3, 256, 4, 1),
])
def test_chunks_give_every_process_several_within_a_batch(n: int, batch: int, processes: int, size: int) -> None:
    assert scoring_pool.chunk_size(n, batch, processes) == size


def test_a_scoring_process_count_below_one_is_refused() -> None:
    for bad in (0, -2, 1.5, True):
        with pytest.raises(HarnessError, match="--scoring-processes"):
            EvalSettings(scoring_processes=bad)  # type: ignore[arg-type]
