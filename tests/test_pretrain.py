"""Pretraining is seeded and resumable: a run split in two gives the same weights as one uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness.builtin.pretrain import PretrainConfig, lr_factor, make_batch, pretrain
from harness.errors import HarnessError

TINY = PretrainConfig(steps=4, batch_size=4, warmup_steps=2, checkpoint_every=2, snapshot_every=1000)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_batches_are_a_pure_function_of_seed_and_step() -> None:
    a, caps_a = make_batch(0, 5, 6, 0.1)
    b, caps_b = make_batch(0, 5, 6, 0.1)
    c, _ = make_batch(0, 6, 6, 0.1)
    assert torch.equal(a, b) and caps_a == caps_b and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1 and a.shape == (6, 3, 48, 48)


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    config = PretrainConfig(steps=1000, warmup_steps=100, final_lr_fraction=0.1)
    assert lr_factor(0, config) == pytest.approx(0.01)
    assert lr_factor(99, config) == pytest.approx(1.0)
    assert lr_factor(550, config) == pytest.approx(0.55)
    assert lr_factor(1000, config) == pytest.approx(0.1)


def test_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    straight = pretrain(tmp_path / "straight", TINY, progress=False)
    split_dir = tmp_path / "split"
    pretrain(split_dir, TINY, max_minutes=0.0, progress=False)  # stops after its first step, checkpointed
    assert torch.load(split_dir / "train_state.pt", weights_only=False)["step"] == 1
    resumed = pretrain(split_dir, TINY, progress=False)
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len((split_dir / "log.jsonl").read_text().splitlines()) == TINY.steps


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    pretrain(tmp_path, TINY, max_minutes=0.0, progress=False)
    with pytest.raises(HarnessError, match="different config"):
        pretrain(tmp_path, PretrainConfig(steps=5, batch_size=4, warmup_steps=2), progress=False)
