"""Sharded scoring: under ``accelerate launch``/``torchrun`` every process scores its shard of a run's images into
the shared verdict cache, and the main process writes the record a single process writes, from cached verdicts.

The fast tests play both processes of a 2-process run in turn inside this process (``process_state`` replaced, the
barrier a no-op); the slow ones launch 2 real gloo processes, one of them also killed mid-scoring and resumed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.registry import get_benchmark
from harness import api, generation
from harness.api import EvalSettings, _shard_chunks, evaluate
from harness.records import ResultRecord

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "shard_score.py"
# The builtin model (not a random one, whose images all score 0) on 8 prompts spread over GenEval's six tags.
CKPT = "builtin:shapes"
# Each process scores in itself, as the calls are counted here (pools: test_scoring_pool.py).
SETTINGS = {"sample": 8, "score_batch": 4, "scoring_processes": 1}
RUN_FIELDS_THAT_VARY = ("wall_time_s", "environment", "created")  # when and where, not what was measured


@dataclass
class FakeState:
    """The slice of accelerate's PartialState that generation and scoring read, for one process of a fake run."""

    process_index: int
    num_processes: int = 2

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    @property
    def is_local_main_process(self) -> bool:
        return self.is_main_process

    def wait_for_everyone(self) -> None:
        """The processes of a fake run go one after another, so each has already waited for those before it."""


def comparable(record: ResultRecord | dict) -> dict:
    """A record without the fields that differ between two runs measuring the same thing."""
    fields = record if isinstance(record, dict) else record.to_json()
    return {key: value for key, value in fields.items() if key not in RUN_FIELDS_THAT_VARY}


def count_scoring(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[tuple[int, int]]]]:
    """Record every call of GenEval's scorer as (process index, [(prompt index, image index), ...])."""
    calls: list[tuple[int, list[tuple[int, int]]]] = []
    bench_class = type(get_benchmark("geneval"))
    original = bench_class.score

    def counted(self, samples, perception):  # type: ignore[no-untyped-def]
        calls.append((api.process_state().process_index, [(item.index, k) for item, k, _ in samples]))
        return original(self, samples, perception)

    monkeypatch.setattr(bench_class, "score", counted)
    return calls


def as_process(monkeypatch: pytest.MonkeyPatch, index: int, processes: int = 2) -> None:
    state = FakeState(index, processes)
    monkeypatch.setattr(api, "process_state", lambda: state)
    monkeypatch.setattr(generation, "process_state", lambda: state)


def forget_verdicts(store: Path) -> None:
    with sqlite3.connect(store / "index.sqlite") as db:
        db.execute("DELETE FROM scores")
    db.close()


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-process eval of the builtin model (images, verdict cache and run folder) under ``DIR/runs``, a path
    relative to DIR so a copy of DIR run from there writes byte-identical ``samples.jsonl`` files."""
    folder = tmp_path_factory.mktemp("single")
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        evaluate(CKPT, ["geneval"], out="runs", settings=EvalSettings(**SETTINGS), progress=False)
    finally:
        os.chdir(cwd)
    return folder


def the_run(folder: Path) -> Path:
    (run_dir,) = (folder / "runs" / "runs").iterdir()
    return run_dir


def copy_without_verdicts(single_run: Path, to: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The single run's images (and no verdict) in ``to``, the working folder from now on."""
    shutil.copytree(single_run / "runs", to / "runs", ignore=shutil.ignore_patterns("runs"))
    forget_verdicts(to / "runs")
    monkeypatch.chdir(to)
    return to


@pytest.mark.parametrize(("n", "batch", "processes", "chunks"), [
    (32, 4, 2, [(i, i + 4) for i in range(0, 32, 4)]),  # 4 rounds of 2 chunks, each the whole batch
    (64, 256, 2, [(0, 32), (32, 64)]),  # a run smaller than a batch still goes to both processes
    (2212, 256, 2, [(i, min(i + 222, 2212)) for i in range(0, 2212, 222)]),  # GenEval: 5 rounds, 10 x <= 222
    (5, 256, 4, [(0, 2), (2, 4), (4, 5)]),  # fewer samples than 2 per process: the last process gets none
    (7, 3, 1, [(0, 3), (3, 6), (6, 7)]),  # one process: the batches of score_cached
])
def test_shard_chunks_are_the_fewest_even_chunks_within_a_batch(n: int, batch: int, processes: int,
                                                                 chunks: list[tuple[int, int]]) -> None:
    assert _shard_chunks(n, batch, processes) == chunks


def test_two_processes_score_their_shards_and_the_main_one_writes_the_record_of_one(
        single_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (the_run(single_run) / "samples.jsonl").read_bytes()
    record = ResultRecord.load(the_run(single_run) / "result.json")
    assert len(set(record.scores.values())) > 2  # real verdicts of several values, not all one score
    copy_without_verdicts(single_run, tmp_path, monkeypatch)
    calls = count_scoring(monkeypatch)
    for index in (1, 0):  # the main process last, as it waits for the others before writing the record
        as_process(monkeypatch, index)
        records = evaluate(CKPT, ["geneval"], out="runs", settings=EvalSettings(**SETTINGS), progress=False)
        assert len(records) == (index == 0)
    assert (the_run(tmp_path) / "samples.jsonl").read_bytes() == expected
    assert comparable(records[0]) == comparable(record)
    # 32 images in 8 chunks of 4 (_shard_chunks): process 1 scored chunks 1, 3, 5, 7, process 0 the others, and the
    # main process's aggregation found every verdict cached (no call after the shards).
    rows = [json.loads(line) for line in expected.decode().splitlines()]
    order = [(row["prompt_index"], row["image_index"]) for row in rows]
    assert [(index, samples) for index, samples in calls] == \
        [(1, order[i : i + 4]) for i in range(4, 32, 8)] + [(0, order[i : i + 4]) for i in range(0, 32, 8)]


def test_a_corrupt_image_in_a_shard_is_regenerated_by_all_processes_together(
        single_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (the_run(single_run) / "samples.jsonl").read_bytes()
    copy_without_verdicts(single_run, tmp_path, monkeypatch)
    first = Path(json.loads(expected.decode().splitlines()[0])["image"])  # process 0's first chunk
    original = first.read_bytes()
    first.write_bytes(b"not a png")
    repairs: list[int] = []
    real_generate = api.generate

    def counted_generate(*args, **kwargs):  # type: ignore[no-untyped-def]
        repairs.append(api.process_state().process_index)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(api, "generate", counted_generate)
    for index in (1, 0):
        as_process(monkeypatch, index)
        evaluate(CKPT, ["geneval"], out="runs", settings=EvalSettings(**SETTINGS), progress=False)
    # Each process generates once; process 0 reads its unscored images, finds the corrupt one and repairs with the
    # sharded generator. (Process 1 went first here, while the file was still there; in a real run the barrier
    # before the check makes every process see it gone, so all call the generator together.)
    assert repairs == [1, 0, 0]
    assert first.read_bytes() == original  # sampled again in its whole batch: the same bits
    assert (the_run(tmp_path) / "samples.jsonl").read_bytes() == expected


def test_one_process_caches_each_finished_chunk_so_an_interrupted_scoring_resumes(
        single_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (the_run(single_run) / "samples.jsonl").read_bytes()
    copy_without_verdicts(single_run, tmp_path, monkeypatch)
    bench_class = type(get_benchmark("geneval"))
    original = bench_class.score
    done: list[int] = []

    def dies_on_the_third(self, samples, perception):  # type: ignore[no-untyped-def]
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(len(samples))
        return original(self, samples, perception)

    monkeypatch.setattr(bench_class, "score", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        evaluate(CKPT, ["geneval"], out="runs", settings=EvalSettings(**SETTINGS), progress=False)
    with sqlite3.connect(tmp_path / "runs" / "index.sqlite") as db:
        (kept,) = db.execute("SELECT COUNT(*) FROM scores").fetchone()
    db.close()
    assert kept == 8  # the two chunks of 4 finished before the interruption
    monkeypatch.setattr(bench_class, "score", original)
    calls = count_scoring(monkeypatch)
    evaluate(CKPT, ["geneval"], out="runs", settings=EvalSettings(**SETTINGS), progress=False)
    assert sum(len(samples) for _, samples in calls) == 32 - 8
    assert (the_run(tmp_path) / "samples.jsonl").read_bytes() == expected


WRITER = """
import sys
from harness.store import ImageStore
store, name = ImageStore(sys.argv[1]), sys.argv[2]
for i in range(150):
    store.put_scores({f"{name}-{i}-{j}": {"score": i * 10 + j} for j in range(10)}, "scorer")
    assert len(store.cached_scores([f"{name}-{i}-{j}" for j in range(10)], "scorer")) == 10
"""


def test_the_store_takes_concurrent_verdict_writers(tmp_path: Path) -> None:
    """Two processes committing verdicts as fast as they can into one store: SQLite's lock, waited on for up to the
    store's busy timeout, lets every transaction through ("database is locked" would fail a writer)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name], env=env, stderr=subprocess.PIPE,
                                text=True) for name in ("a", "b")]
    errors = [writer.communicate(timeout=300)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM scores").fetchone() == (2 * 150 * 10,)
    db.close()


# Real processes: the GenEval sample of 16 prompts (64 images) in chunks of 8, so each process has 4 chunks.
LAUNCHED = ["16", "8"]


def launch(folder: Path, processes: int, port: int, crash_at: int = 0, batch_size: int = 0,
           overlap: bool = False) -> subprocess.CompletedProcess:
    """``overlap`` False: every verdict is left to the scoring after generation (the sharded scoring under test);
    True: each process scores the batches it writes, as ``harness eval`` does by default."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    prefix = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(port)]
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run([*prefix, str(SCRIPT), CKPT, "runs", *LAUNCHED, str(crash_at), str(batch_size),
                           str(int(overlap))], cwd=folder, env=env, capture_output=True, text=True, timeout=900)


def unused_port() -> int:
    """A second free port (conftest's free_port gives one per test): the first launch's may still be held."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scored(done: subprocess.CompletedProcess) -> dict[int, list[tuple[int, int]]]:
    """The samples each process handed to the scorer, by process index."""
    by_process: dict[int, list[tuple[int, int]]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("scored "):
            _, index, samples = line.split(" ", 2)
            by_process.setdefault(int(index), []).extend(map(tuple, json.loads(samples)))
    return by_process


@pytest.fixture(scope="module")
def launched_single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("launched") / "one"
    done = launch(folder, 1, 0)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, done


@pytest.mark.slow
def test_two_launched_processes_score_halves_and_write_the_record_of_one(
        launched_single: tuple[Path, subprocess.CompletedProcess], tmp_path: Path, free_port: int) -> None:
    one, one_done = launched_single
    done = launch(tmp_path / "two", 2, free_port)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "records 0 1" in done.stdout and "records 1 0" in done.stdout
    assert (the_run(tmp_path / "two") / "samples.jsonl").read_bytes() == (the_run(one) / "samples.jsonl").read_bytes()
    records = [json.loads((the_run(folder) / "result.json").read_text()) for folder in (one, tmp_path / "two")]
    assert comparable(records[1]) == comparable(records[0])
    alone, shards = scored(one_done), scored(done)
    assert list(alone) == [0] and len(alone[0]) == 64
    assert sorted(shards) == [0, 1] and len(shards[0]) == len(shards[1]) == 32  # even halves, each scored once
    assert sorted(shards[0] + shards[1]) == sorted(alone[0])


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_where_it_stopped(
        launched_single: tuple[Path, subprocess.CompletedProcess], tmp_path: Path, free_port: int) -> None:
    one, _ = launched_single
    folder = tmp_path / "two"
    killed = launch(folder, 2, free_port, crash_at=2)  # process 1 dies before its third chunk
    assert killed.returncode != 0
    before = scored(killed)
    assert len(before[1]) == 16  # its 2 finished chunks
    with sqlite3.connect(folder / "runs" / "index.sqlite") as db:
        (kept,) = db.execute("SELECT COUNT(*) FROM scores").fetchone()
    db.close()
    # Every chunk process 1 finished was cached; process 0, stopped by torchrun, may be stopped between scoring a
    # chunk and caching it.
    assert 16 <= kept <= sum(map(len, before.values()))
    # The last image is in process 1's last chunk, never scored: corrupt, it must be regenerated on resuming.
    rows = (the_run(one) / "samples.jsonl").read_text().splitlines()
    last = folder / json.loads(rows[-1])["image"]
    original = last.read_bytes()
    last.write_bytes(b"\x89PNG truncated")
    done = launch(folder, 2, unused_port())
    assert done.returncode == 0, done.stderr[-3000:]
    after = scored(done)
    assert len(after[1]) == 16 and sum(map(len, after.values())) == 64 - kept  # only what was missing
    assert not set(before[1]) & {sample for samples in after.values() for sample in samples}
    assert last.read_bytes() == original
    assert (the_run(folder) / "samples.jsonl").read_bytes() == (the_run(one) / "samples.jsonl").read_bytes()
    records = [json.loads((the_run(f) / "result.json").read_text()) for f in (one, folder)]
    assert comparable(records[1]) == comparable(records[0])


@pytest.mark.slow
def test_two_processes_scoring_while_generating_score_what_each_wrote(tmp_path: Path, free_port: int) -> None:
    """With scoring while generating, each process scores the batches it sampled (whole batches are dealt
    round-robin), every image once, and the record is the 1-process run's byte for byte."""
    one = launch(tmp_path / "one", 1, 0, batch_size=16, overlap=True)
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(tmp_path / "two", 2, free_port, batch_size=16, overlap=True)
    assert two.returncode == 0, two.stderr[-3000:]
    alone, shards = scored(one), scored(two)
    assert list(alone) == [0] and len(alone[0]) == 64
    assert sorted(shards) == [0, 1] and len(shards[0]) == len(shards[1]) == 32  # 2 batches of 16 each
    assert sorted(shards[0] + shards[1]) == sorted(alone[0])
    assert (the_run(tmp_path / "two") / "samples.jsonl").read_bytes() == \
        (the_run(tmp_path / "one") / "samples.jsonl").read_bytes()
