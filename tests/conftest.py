"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1) and single-threaded so the suite is steady on 2 cores."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def builtin_random_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init builtin model folder: the real architecture and loading path, untrained weights."""
    from harness.builtin.model import BuiltinPolicy

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "builtin-random"
    policy = BuiltinPolicy.new()
    policy.sampler_defaults = {"num_inference_steps": 2, "guidance_scale": 2.0, "eta": 0.0}
    policy.save(path)
    return path
