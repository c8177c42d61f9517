"""Generation engine and store: content-keyed cache, resume, corrupt files, sharding across processes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import generation
from harness.api import EvalSettings
from harness.builtin.model import BuiltinPolicy
from harness.errors import HarnessError
from harness.generation import GenerationRequest, generate, load_images
from harness.sampling import SamplerConfig, sample
from harness.store import ImageStore

SAMPLER = SamplerConfig(num_inference_steps=2, guidance_scale=2.0)
REQUESTS = [GenerationRequest(f"a photo of {n} stars", seed) for seed, n in enumerate(["two", "three"] * 5)]


def test_sample_depends_only_on_prompt_seed_and_config(policy: BuiltinPolicy) -> None:
    a = sample(policy, ["a photo of a red star", "a photo of a ring"], [7, 8], SAMPLER)
    b = sample(policy, ["a photo of a ring", "a photo of a red star"], [8, 7], SAMPLER)
    assert a.shape == (2, 48, 48, 3) and a.dtype == torch.uint8
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])
    c = sample(policy, ["a photo of a red star"], [9], SAMPLER)
    assert not torch.equal(a[0], c[0])


def test_rerun_hits_the_cache(policy: BuiltinPolicy, tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    first = generate(policy, REQUESTS, SAMPLER, store, batch_size=4, progress=False)
    assert (first.generated, first.cached) == (10, 0)
    again = generate(policy, REQUESTS, SAMPLER, store, batch_size=4, progress=False)
    assert (again.generated, again.cached) == (0, 10)
    assert again.keys == first.keys
    other = generate(policy, REQUESTS, SamplerConfig(num_inference_steps=3, guidance_scale=2.0), store,
                     batch_size=4, progress=False)
    assert other.generated == 10  # a different sampler config is a different image


def test_resume_after_interruption(policy: BuiltinPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(tmp_path)
    real_put, calls = store.put, []

    def crash_after_five(*args: object, **kwargs: object) -> Path:
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(1)
        return real_put(*args, **kwargs)

    monkeypatch.setattr(store, "put", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        generate(policy, REQUESTS, SAMPLER, store, batch_size=4, progress=False)
    monkeypatch.undo()
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written
    resumed = generate(policy, REQUESTS, SAMPLER, store, batch_size=4, progress=False)
    assert (resumed.cached, resumed.generated) == (5, 5)
    fresh = generate(policy, REQUESTS, SAMPLER, ImageStore(tmp_path / "fresh"), batch_size=4, progress=False)
    for k in fresh.keys:
        assert (tmp_path / "fresh" / "images" / k[:2] / f"{k}.png").is_file()


def test_corrupt_cached_image_is_regenerated(policy: BuiltinPolicy, tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    report = generate(policy, REQUESTS[:3], SAMPLER, store, progress=False)
    good = np.asarray(store.load(report.keys[1]))
    path = store.path(report.keys[1])
    path.write_bytes(path.read_bytes()[:40])  # truncated PNG
    images = load_images(store, report, policy, REQUESTS[:3], SAMPLER)
    assert np.array_equal(np.asarray(images[1]), good)
    assert store.load(report.keys[1]) is not None


def test_unwritable_output_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(HarnessError, match="not writable"):
        ImageStore(blocker / "runs")


def test_two_processes_write_the_same_bits_as_one(builtin_random_ckpt: Path, tmp_path: Path, free_port: int) -> None:
    script = Path(__file__).parent / "scripts" / "shard_generate.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    subprocess.run([sys.executable, str(script), str(builtin_random_ckpt), str(single)], check=True, env=env,
                   capture_output=True)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port),
         str(script), str(builtin_random_ckpt), str(sharded)],
        env=env, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("generated") == 2 and "generated 10" not in run.stdout  # the work was split
    a = {p.name: p.read_bytes() for p in (single / "images").rglob("*.png")}
    b = {p.name: p.read_bytes() for p in (sharded / "images").rglob("*.png")}
    assert len(a) == 10 and a == b


RETAIN_PROBE = """
import ctypes, sys, torch
from harness.sampling import retain_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
start = libc.mallinfo2().hblks
before = torch.empty(4 * 2**20)  # 16 MiB, kept alive so glibc's dynamic threshold stays at its 128 KiB start
mapped_before = libc.mallinfo2().hblks - start
applied = retain_freed_memory()
after = torch.empty(4 * 2**20)
print(mapped_before, applied, libc.mallinfo2().hblks - start - mapped_before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_denoising_activations_come_from_the_heap_not_fresh_mappings(monkeypatch: pytest.MonkeyPatch) -> None:
    """retain_freed_memory: a 16 MiB tensor is mmapped (page-faulted in on every step) before, served from the heap
    after (in a fresh process); a malloc threshold the user set in the environment is left alone."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        env.pop(name, None)
    run = subprocess.run([sys.executable, "-c", RETAIN_PROBE], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["1", "True", "0"]
    from harness.sampling import retain_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert retain_freed_memory.__wrapped__() is False  # returns before any mallopt call: this process is untouched


# --- forked generation: 1-thread worker processes on the CPU ------------------------------------------------------


def _pngs(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "images").rglob("*.png")}


def _indexed(root: Path) -> set[str]:
    with sqlite3.connect(root / "index.sqlite") as db:
        return {f"{key}.png" for (key,) in db.execute("SELECT key FROM images")}


def test_forked_workers_write_the_same_bits_as_one_process(policy: BuiltinPolicy, tmp_path: Path) -> None:
    one = generate(policy, REQUESTS, SAMPLER, ImageStore(tmp_path / "one"), batch_size=2, progress=False,
                   processes=1)
    for processes in (2, 3):
        root = tmp_path / f"forked{processes}"
        forked = generate(policy, REQUESTS, SAMPLER, ImageStore(root), batch_size=2, progress=False,
                          processes=processes)
        assert (forked.generated, forked.cached, forked.keys) == (10, 0, one.keys)
        assert (one.forked_processes, forked.forked_processes) == (0, processes)
        assert _pngs(root) == _pngs(tmp_path / "one") and len(_pngs(root)) == 10
        assert _indexed(root) == set(_pngs(root))  # every worker's batches were indexed
    assert not multiprocessing.active_children()


def test_forked_generation_samples_only_what_is_missing(policy: BuiltinPolicy, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "resumed")
    generate(policy, REQUESTS[:4], SAMPLER, store, batch_size=2, progress=False, processes=1)
    resumed = generate(policy, REQUESTS, SAMPLER, store, batch_size=2, progress=False, processes=2)
    assert (resumed.cached, resumed.generated) == (4, 6)
    generate(policy, REQUESTS, SAMPLER, ImageStore(tmp_path / "fresh"), batch_size=2, progress=False, processes=1)
    assert _pngs(tmp_path / "resumed") == _pngs(tmp_path / "fresh")


def test_a_worker_error_stops_the_run_and_keeps_the_finished_batches(policy: BuiltinPolicy, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = generation.sample

    def failing(policy: object, prompts: list[str], seeds: list[int], config: SamplerConfig) -> torch.Tensor:
        if 7 in seeds:  # the fourth of five batches
            raise HarnessError("model broke on seed 7")
        return real(policy, prompts, seeds, config)

    monkeypatch.setattr(generation, "sample", failing)  # inherited by the forked workers
    store = ImageStore(tmp_path)
    with pytest.raises(HarnessError, match="model broke on seed 7"):
        generate(policy, REQUESTS, SAMPLER, store, batch_size=2, progress=False, processes=2)
    assert not multiprocessing.active_children()
    assert not list(tmp_path.rglob("*.tmp")) and _indexed(tmp_path) == set(_pngs(tmp_path))
    written = len(_pngs(tmp_path))
    assert 0 < written < 10 and written % 2 == 0  # whole batches only
    monkeypatch.undo()
    again = generate(policy, REQUESTS, SAMPLER, store, batch_size=2, progress=False, processes=2)
    assert (again.cached, again.generated) == (written, 10 - written)


def test_a_worker_that_dies_is_a_one_line_error(policy: BuiltinPolicy, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real = generation.sample

    def dying(policy: object, prompts: list[str], seeds: list[int], config: SamplerConfig) -> torch.Tensor:
        if 4 in seeds:
            os._exit(3)  # as the kernel's OOM killer would end it: no exception, no result
        return real(policy, prompts, seeds, config)

    monkeypatch.setattr(generation, "sample", dying)
    with pytest.raises(HarnessError, match=r"died \(exit code 3\); run again"):
        generate(policy, REQUESTS, SAMPLER, ImageStore(tmp_path), batch_size=2, progress=False, processes=2)
    assert not multiprocessing.active_children()


def test_interrupting_forked_generation_stops_the_workers_with_whole_files(policy: BuiltinPolicy, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real = generation.sample

    def slow(*args: object) -> torch.Tensor:  # the parent must see a batch before the workers are done
        time.sleep(0.3)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(generation, "sample", slow)
    store = ImageStore(tmp_path)
    sampler = {**SAMPLER.resolved(policy).to_dict(), **policy.numerics_key}
    todo = [(list(range(i, i + 2)), list(range(i, i + 2))) for i in range(0, 10, 2)]
    job = generation._Job(policy, REQUESTS, generation.image_keys(policy, REQUESTS, SAMPLER),
                          SAMPLER.resolved(policy), sampler, store, todo, generation.WRITER_DEPTH)

    def interrupt(n: int) -> None:  # Ctrl-C in the parent once the first batch is reported
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generation._sample_forked(job, 2, interrupt)
    assert not multiprocessing.active_children()
    assert not list(tmp_path.rglob("*.tmp")) and _indexed(tmp_path) == set(_pngs(tmp_path))
    assert 0 < len(_pngs(tmp_path)) < 10


def test_generation_processes_are_one_per_core_for_a_small_cpu_model(policy: BuiltinPolicy,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generation, "usable_cores", lambda: 4)
    assert generation.generation_processes(policy, 35) == 4  # GenEval's main job: 35 batches of 64
    assert generation.generation_processes(policy, 5) == 2  # two batches a worker at least
    assert generation.generation_processes(policy, 3) == 1
    assert generation.generation_processes(policy, 35, requested=6) == 6
    assert generation.generation_processes(policy, 3, requested=6) == 3  # one batch a worker at most
    assert generation.generation_processes(policy, 35, after_write=lambda i, images: None) == 1
    with pytest.raises(HarnessError, match="--generation-processes 2: forked generation cannot run with scoring"):
        generation.generation_processes(policy, 35, requested=2, after_write=lambda i, images: None)
    monkeypatch.setattr(generation, "SMALL_MODEL_PARAMS", 1000)
    assert generation.generation_processes(policy, 35) == 1  # a large model uses the threads of one process
    monkeypatch.setattr(generation, "usable_cores", lambda: 64)
    monkeypatch.setattr(generation, "SMALL_MODEL_PARAMS", 10**9)
    assert generation.generation_processes(policy, 100) == generation.MAX_AUTO_PROCESSES
    monkeypatch.setattr(sys, "platform", "darwin")
    assert generation.generation_processes(policy, 100) == 1  # forking is not safe there
    assert generation.generation_processes(policy, 100, requested=2) == 2  # unless asked for


def test_a_generation_process_count_below_one_is_refused(policy: BuiltinPolicy) -> None:
    for bad in (0, -2, 1.5, True):
        with pytest.raises(HarnessError, match="--generation-processes"):
            EvalSettings(generation_processes=bad)  # type: ignore[arg-type]
    with pytest.raises(HarnessError, match="--generation-processes 0"):
        generation.generation_processes(policy, 10, requested=0)
