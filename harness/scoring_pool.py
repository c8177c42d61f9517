"""Scoring stored images in a pool of processes, one per core, for scorers that are pure CPU code.

The builtin world's perception (the pixel oracles of :mod:`harness.builtin.oracle` and
:mod:`harness.builtin.oracle_vqa`) is single-threaded Python and numpy (the oracle pins BLAS to one thread), so
scoring after generation left all but one core idle: on the 2-core machine 15 s of the main job's 147 s, the largest
piece of its evaluation overhead. Each image is judged alone against its prompt, so chunks scored in separate
processes give the verdicts one process gives (``tests/test_scoring_pool.py`` checks the records are identical).
Model-backed scorers (a detector or VQA model, usually on an accelerator) stay in the main process: copies of the
model would compete for one device and its memory.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from harness.images import read_rgb

if TYPE_CHECKING:
    from benchmarks.registry import Benchmark, PromptItem

FileSample = tuple["PromptItem", int, Path, str]  # (prompt item, image index in it, image file, verdict key)
PIXEL_READER = "oracle"  # name prefix of the builtin pixel readers: oracle, oracle-vqa, oracle-red-cross, ...
CHUNKS_PER_PROCESS = 8  # chunks dealt to each process: the last one to finish idles at most ~1/8 of its share

_worker: tuple[Benchmark, dict[str, object]] | None = None  # this pool process's benchmark and perception


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call (macOS, Windows)
        return os.cpu_count() or 1


def auto_processes(perception: dict[str, object], sharded_processes: int = 1) -> int:
    """Scoring processes when none is set: the usable cores shared among the run's ``sharded_processes`` when every
    perception backend is one of the builtin world's pixel readers (named ``oracle...``: single-threaded CPU code),
    else 1 (a model-backed judge, even in the builtin world, uses its device best from one process)."""
    if not perception or not all(str(getattr(backend, "name", "")).startswith(PIXEL_READER)
                                 for backend in perception.values()):
        return 1
    return max(1, usable_cores() // max(1, sharded_processes))


def verdicts(bench: Benchmark, perception: dict[str, object], samples: Sequence[FileSample]) -> dict[str, dict]:
    """One ``bench.score`` call over the images of ``samples`` read from their files; the verdicts by key."""
    results = bench.score([(item, k, read_rgb(path)) for item, k, path, _ in samples], perception)
    return {key: asdict(result) for (*_, key), result in zip(samples, results)}


def chunk_size(n: int, batch: int, processes: int) -> int:
    """Samples per chunk: at most ``batch`` (one ``bench.score`` call, one score-cache transaction), and small enough
    that every process gets ``CHUNKS_PER_PROCESS`` chunks, so the processes finish close together."""
    return max(1, min(batch, -(-n // (processes * CHUNKS_PER_PROCESS))))


def score_in_pool(bench: Benchmark, perception: dict[str, object], chunks: Sequence[Sequence[FileSample]],
                  processes: int) -> Iterator[dict[str, dict]]:
    """:func:`verdicts` of every chunk, computed in ``processes`` worker processes; yields each chunk's verdicts as
    it finishes (not in order), so the caller caches finished chunks as the serial loop does.

    Workers are forked where the platform can (Linux): they start in milliseconds with the modules, benchmark and
    perception already loaded, where a spawned worker would import torch and the CLI again (about 2 s of CPU each on
    the 2-core machine, half of what pooling saves there). Forking a process that ran torch is safe here because
    the workers only run numpy and Pillow on image files: no torch call, no accelerator, no store connection. Where
    fork is missing, the benchmark and perception are pickled to spawned workers instead.
    """
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    pool = ProcessPoolExecutor(min(processes, len(chunks)), mp_context=context, initializer=_start,
                               initargs=(bench, perception))
    try:
        pending = {pool.submit(_score_chunk, list(chunk)) for chunk in chunks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:  # an error, an interrupt or a caller that stops early: drop the queued chunks, end the workers
        pool.shutdown(wait=True, cancel_futures=True)


def _start(bench: Benchmark, perception: dict[str, object]) -> None:
    global _worker
    _worker = (bench, perception)


def _score_chunk(chunk: list[FileSample]) -> dict[str, dict]:
    assert _worker is not None, "pool worker without its benchmark"
    return verdicts(*_worker, chunk)
