"""The committed builtin model: loads through --ckpt, is small, records its training, and draws the world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.api import EvalSettings, evaluate
from harness.checkpoints import BUILTIN_DIR, resolve_checkpoint
from harness.sampling import SamplerConfig, sample

SHAPES_DIR = BUILTIN_DIR / "shapes"


def test_committed_checkpoint_is_small_and_documented() -> None:
    size = sum(p.stat().st_size for p in SHAPES_DIR.rglob("*") if p.is_file())
    assert size < 20_000_000
    training = json.loads((SHAPES_DIR / "training.json").read_text())
    assert training["steps_done"] == training["config"]["steps"] and training["train_minutes"] > 0


def test_builtin_shapes_samples_at_native_resolution() -> None:
    policy = resolve_checkpoint("builtin:shapes")
    assert policy.world == "builtin" and policy.sampler_defaults["num_inference_steps"] > 0
    images = sample(policy, ["a photo of a red circle"] * 2, [0, 1], SamplerConfig.for_policy(policy))
    assert images.shape == (2, 48, 48, 3)


def test_builtin_shapes_draws_what_it_is_asked_often(tmp_path: Path) -> None:
    """A trained model, not noise: on the first 12 single-object prompts many images pass GenEval (0.54 here)."""
    (record,) = evaluate("builtin:shapes", ["geneval"], out=tmp_path, settings=EvalSettings(limit=12),
                         progress=False)
    assert record.scores["single_object"] >= 0.35


@pytest.mark.slow
def test_main_job_end_to_end(tmp_path: Path) -> None:
    """The README's main job: the full builtin GenEval run, then the cached re-run."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "harness", "eval", "--ckpt", "builtin:shapes", "--bench", "geneval",
               "--out", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    assert first.returncode == 0, first.stderr[-2000:]
    record = json.loads(next((tmp_path / "runs").glob("geneval-*/result.json")).read_text())
    assert record["n_images"] == 2212 and 0.2 <= record["scores"]["overall"] <= 0.9
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "2212/2212 cached" in again.stdout + again.stderr
