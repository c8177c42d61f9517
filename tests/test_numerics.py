"""Device, dtype, torch.compile and slicing switches (``harness.numerics``): each changes pixels, so each gets its own
image keys and is recorded, while the CPU float32 default keeps every key it had; bad values fail in one line before
anything loads; a device this machine lacks fails only when something must be sampled."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import checkpoints
from harness.api import EvalSettings, evaluate, resolve_lazily
from harness.checkpoints import resolve_checkpoint
from harness.cli import run
from harness.errors import HarnessError
from harness.generation import GenerationRequest, generate, image_keys
from harness.numerics import Numerics, numerics_key, place
from harness.policy import LazyPolicy
from harness.sampling import SamplerConfig
from harness.store import ImageStore, image_key
from tests.tiny_pipelines import save, tiny_sd_pipeline

SAMPLER = SamplerConfig(num_inference_steps=2, guidance_scale=2.0)
REQUESTS = [GenerationRequest("a photo of two rings", seed) for seed in range(4)]


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, list[str]]:
    """The real entry point in this process: exit code and stderr lines."""
    monkeypatch.setattr(sys, "argv", ["harness", *args])
    with pytest.raises(SystemExit) as exited:
        run()
    return int(exited.value.code or 0), capsys.readouterr().err.strip().splitlines()


def test_the_cpu_float32_default_keeps_its_keys_and_every_other_placement_is_named() -> None:
    assert Numerics().key() == {} and Numerics(device="cpu", dtype="fp32").key() == {}
    assert Numerics(dtype="bf16").key() == {"numerics": {"dtype": "bfloat16"}}
    assert Numerics(attention_slicing=True, compile=True).key() == \
        {"numerics": {"compile": True, "attention_slicing": True}}
    # auto dtype follows the device: a CUDA placement is float16 and names its device type, not its index
    assert Numerics(device="cuda:1").key() == {"numerics": {"device": "cuda", "dtype": "float16"}}
    assert numerics_key("cuda:0", torch.float32) == {"numerics": {"device": "cuda"}}
    for numerics in (Numerics(), Numerics(dtype="fp16", vae_slicing=True), Numerics(device="cuda", dtype="bf16")):
        assert Numerics.from_key(numerics.key().get("numerics")).key() == numerics.key()


@pytest.mark.parametrize(("numerics", "message"), [
    (Numerics(dtype="fp8"), "--dtype 'fp8': choose auto, fp32, fp16 or bf16"),
    (Numerics(device="tpu"), "--device 'tpu': not a device this harness runs on; use auto, cpu, cuda or cuda:N"),
    (Numerics(device="mps"), "--device 'mps': not a device"),
])
def test_bad_names_are_refused_before_anything_loads(numerics: Numerics, message: str) -> None:
    with pytest.raises(HarnessError, match=message.replace("(", r"\(")):
        EvalSettings(numerics=numerics)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_a_missing_gpu_fails_in_one_line_only_when_an_image_must_be_sampled(
        builtin_random_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = cli(capsys, monkeypatch, "eval", "--ckpt", str(builtin_random_ckpt), "--bench", "geneval", "--limit",
                    "1", "--out", str(tmp_path), "--device", "cuda")
    assert code != 0 and err == ["error: --device cuda: no CUDA device here (torch.cuda.is_available() is False); "
                                 "use --device cpu, or run where the images were made"]
    assert not list((tmp_path / "runs").glob("*/result.json"))
    # The images of a CUDA run, once in the store (copied from a GPU machine), are found without any GPU.
    policy = resolve_lazily(str(builtin_random_ckpt), Numerics(device="cuda"))
    assert isinstance(policy, LazyPolicy) and policy.numerics_key == {"numerics": {"device": "cuda",
                                                                                    "dtype": "float16"}}
    assert not policy.loaded


def test_bfloat16_images_get_their_own_keys_and_record_and_stay_close_to_float32(
        builtin_random_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = EvalSettings(limit=1)
    (fp32,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=settings, progress=False)
    bf16_settings = EvalSettings(limit=1, numerics=Numerics(dtype="bf16"))
    (bf16,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=bf16_settings, progress=False)
    assert "numerics" not in fp32.sampler and bf16.sampler["numerics"] == {"dtype": "bfloat16"}
    assert bf16.environment["generation"]["generated"] == 4  # none of the float32 images was reused
    assert {k: v for k, v in bf16.sampler.items() if k != "numerics"} == fp32.sampler
    store = ImageStore(tmp_path)
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        rows = db.execute("SELECT prompt, seed, sampler FROM images").fetchall()
    pairs = {(prompt, seed) for prompt, seed, _ in rows}
    assert len(rows) == 8 and len(pairs) == 4  # each (prompt, seed) twice: once per precision
    for prompt, seed in pairs:
        a, b = (np.asarray(store.load(image_key(record.checkpoint_fingerprint, prompt, seed, record.sampler)),
                           dtype=np.int16) for record in (fp32, bf16))
        assert np.abs(a - b).mean() < 8.0  # the same sample in lower precision, not another image

    # The record's sampler names the images: a re-run finds them all and loads no model.
    monkeypatch.setattr(checkpoints, "resolve_checkpoint", lambda *args, **kwargs: pytest.fail("a model load"))
    (again,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=bf16_settings, progress=False)
    assert again.environment["generation"]["cached"] == 4 and again.scores == bf16.scores


def test_the_builtin_model_has_no_vae_to_slice(builtin_random_ckpt: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = cli(capsys, monkeypatch, "eval", "--ckpt", str(builtin_random_ckpt), "--bench", "geneval", "--limit",
                    "1", "--out", str(tmp_path), "--vae-slicing")
    assert code != 0 and len(err) == 1
    assert err[0].startswith("error: --vae-slicing: ") and "has no VAE to slice" in err[0]


def test_slicing_and_compile_switch_the_real_modules_and_name_the_images(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = save(tiny_sd_pipeline(tmp_path / "tok"), tmp_path / "sd")
    plain = resolve_checkpoint(str(folder))
    sliced = resolve_checkpoint(str(folder))
    compiled: list[tuple[torch.nn.Module, dict]] = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append((self, k)))
    place(sliced, Numerics(device="cpu", dtype="fp32", compile=True, attention_slicing=True, vae_slicing=True))
    # Static shapes: the smaller last batch of a run compiles once for its size instead of recompiling dynamically.
    assert compiled == [(sliced.unet, {"dynamic": False})] and sliced.vae.use_slicing
    assert sliced.numerics_key == {"numerics": {"compile": True, "attention_slicing": True, "vae_slicing": True}}
    store = ImageStore(tmp_path / "store")
    a = generate(plain, REQUESTS, SAMPLER, store, batch_size=4, progress=False)
    b = generate(sliced, REQUESTS, SAMPLER, store, batch_size=4, progress=False)
    assert set(a.keys).isdisjoint(b.keys) and b.keys == image_keys(sliced, REQUESTS, SAMPLER)
    for x, y in zip(a.keys, b.keys, strict=True):
        assert np.abs(np.asarray(store.load(x), dtype=np.int16) - np.asarray(store.load(y), dtype=np.int16)).max() <= 1
    place(plain, Numerics(dtype="bf16"))
    assert plain.unet.dtype == torch.bfloat16 and plain.numerics_key == {"numerics": {"dtype": "bfloat16"}}
