"""Generation engine and store: content-keyed cache, resume, corrupt files, sharding across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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
