"""``harness train``: bad input, resume to the same weights, checkpoints that ``--ckpt`` loads, NaN losses, and the
preference log. The model is the random-init builtin model with 2 DDIM steps, so a round takes about a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.api import EvalSettings, evaluate
from harness.checkpoints import resolve_checkpoint
from harness.errors import HarnessError
from trainers import loop
from trainers.loop import train

ROOT = Path(__file__).resolve().parents[1]
# Two prompts x two images per round, two DDIM steps: the smallest run that still has a preference per prompt.
SMALL = {"num_inference_steps": "2", "prompts_per_round": "2", "images_per_prompt": "2", "learning_rate": "1e-5"}
FEEDBACK = "objective:brightness"
PROMPTS = "builtin:geneval-train"


def run(ckpt: Path, out: Path, budget: int = 8, **kwargs: object) -> loop.TrainResult:
    settings = {**SMALL, **kwargs.pop("settings", {})}
    return train("d3po", str(ckpt), FEEDBACK, PROMPTS, budget, out, seed=3, settings=settings, progress=False,
                 **kwargs)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "state.pt", weights_only=False)["weights"]


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


@pytest.mark.parametrize(
    ("budget", "settings", "message"),
    [
        (3, {}, "smaller than one round"),
        (8, {"learning_rate": "0"}, "learning_rate must be > 0"),
        (8, {"learning_rate": "-1e-5"}, "learning_rate must be > 0"),
        (8, {"eta": "0"}, "eta must be > 0"),
        (8, {"images_per_prompt": "1"}, "images_per_prompt must be >= 2"),
        (8, {"lora_rank": "0"}, "lora_rank must be >= 1"),
        (8, {"save_every": "0"}, "save_every must be >= 1"),
        (8, {"no_such_setting": "1"}, "unknown setting"),
        (8, {"learning_rate": "fast"}, "--set learning_rate=fast"),
        (8, {"shared_noise": "maybe"}, "expected true or false"),
    ],
)
def test_bad_settings_fail_before_any_work(builtin_random_ckpt: Path, tmp_path: Path, budget: int,
                                           settings: dict, message: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(HarnessError, match=message):
        run(builtin_random_ckpt, out, budget=budget, settings=settings)
    assert not out.exists()


def test_unknown_method_and_feedback_are_errors(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="nosuchmethod"):
        train("nosuchmethod", str(builtin_random_ckpt), FEEDBACK, PROMPTS, 8, tmp_path / "a", progress=False)
    with pytest.raises(HarnessError):
        train("d3po", str(builtin_random_ckpt), "objective:nosuch", PROMPTS, 8, tmp_path / "b", settings=SMALL,
              progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_output_folder_of_another_run_is_refused(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = run(builtin_random_ckpt, out, budget=4)
    before = listing(out)
    with pytest.raises(HarnessError, match="holds another training run"):
        run(builtin_random_ckpt, out, budget=4)
    with pytest.raises(HarnessError, match="different seed"):
        train("d3po", str(builtin_random_ckpt), FEEDBACK, PROMPTS, 4, out, seed=4, settings=SMALL, resume=True,
              progress=False)
    with pytest.raises(HarnessError, match="contradict"):
        run(builtin_random_ckpt, out, budget=4, resume=True, overwrite=True)
    assert listing(out) == before  # nothing of the old run was touched
    again = run(builtin_random_ckpt, out, budget=4, overwrite=True)
    assert again.checkpoint == first.checkpoint
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    with pytest.raises(HarnessError, match="holds no harness training run"):
        run(builtin_random_ckpt, stranger, budget=4, overwrite=True)
    assert (stranger / "notes.txt").read_text() == "keep me"


def test_kill_and_resume_reach_the_same_weights(builtin_random_ckpt: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    budget = 12  # 3 rounds of 4 images
    whole = run(builtin_random_ckpt, tmp_path / "whole", budget=budget, settings={"save_every": "3"})
    assert whole.summary["rounds"] == 3 and whole.summary["cost"]["images_sampled"] == 12

    real_round = loop._one_round

    def killed_in_round_three(state: loop._Run) -> dict:
        if state.round == 2:
            raise KeyboardInterrupt
        return real_round(state)

    out = tmp_path / "split"
    monkeypatch.setattr(loop, "_one_round", killed_in_round_three)
    with pytest.raises(KeyboardInterrupt):
        run(builtin_random_ckpt, out, budget=budget, settings={"save_every": "2"})
    monkeypatch.undo()
    assert torch.load(out / "state.pt", weights_only=False)["round"] == 2
    assert not list(out.rglob("*.tmp"))
    resumed = run(builtin_random_ckpt, out, budget=budget, resume=True, settings={"save_every": "2"})
    assert resumed.summary["rounds"] == 3 and resumed.summary["cost"]["images_sampled"] == 12
    a, b = weights(tmp_path / "whole"), weights(out)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bit-identical: every draw of a round is a function of (seed, r)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [1, 2, 3]
    assert (out / "preferences.jsonl").read_text() == (tmp_path / "whole" / "preferences.jsonl").read_text()
    check_preference_log(out)


def check_preference_log(out: Path) -> None:
    """Every strict pair in the pairwise format, its images on disk, the winner the brighter image."""
    rows = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert rows, "brightness never ties on random-init images, so every pair is strict"
    for row in rows:
        assert set(row) == {"prompt", "image_w", "image_l", "seed_w", "seed_l", "source", "round"}
        assert row["source"] == FEEDBACK and row["seed_w"] != row["seed_l"]
        brightness = [np.asarray(Image.open(out / row[k]).convert("RGB"), dtype=float).mean()
                      for k in ("image_w", "image_l")]
        assert brightness[0] > brightness[1]


def test_full_checkpoint_loads_with_ckpt_and_evaluates(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    result = run(builtin_random_ckpt, tmp_path / "run", budget=4, settings={"learning_rate": "1e-3"})
    trained = resolve_checkpoint(str(result.checkpoint))
    saved = weights(tmp_path / "run")
    for name, param in trained.unet.named_parameters():
        assert torch.equal(param, saved[name]), name  # exported in float32: the trained weights exactly
    base = resolve_checkpoint(str(builtin_random_ckpt))
    assert any(not torch.equal(p, q) for p, q in zip(base.unet.parameters(), trained.unet.parameters()))
    (record,) = evaluate(str(result.checkpoint), ["geneval"], out=tmp_path / "eval",
                         settings=EvalSettings(limit=1), progress=False)
    assert record.checkpoint_fingerprint != base.fingerprint and record.n_images == 4
    # `harness eval --ckpt RUN/checkpoint` records the training from the run's summary.json, as train-and-eval does
    assert record.method == "d3po" and record.training["feedback"] == FEEDBACK
    assert record.training["seed"] == 3 and record.training["config"]["learning_rate"] == 1e-3
    assert record.training["in_reward"] is False and record.training["checkpoint"] == str(result.checkpoint)
    (geneval_trained,) = evaluate(str(result.checkpoint), ["geneval"], out=tmp_path / "eval",
                                  settings=EvalSettings(limit=1), method="pretrained", training={}, progress=False)
    assert geneval_trained.method == "pretrained"  # an explicit training={} is the caller's word, not overridden
    (tmp_path / "run" / "summary.json").write_text("{not json")
    with pytest.raises(HarnessError, match="cannot read the training summary"):
        evaluate(str(result.checkpoint), ["geneval"], out=tmp_path / "eval", settings=EvalSettings(limit=1),
                 progress=False)


def test_lora_run_saves_an_adapter_that_names_its_base(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    result = run(builtin_random_ckpt, tmp_path / "run", budget=4, settings={"lora_rank": "2"})
    files = {p.name for p in result.checkpoint.iterdir()}
    assert files == {"pytorch_lora_weights.safetensors", "harness_adapter.json"}
    assert json.loads((result.checkpoint / "harness_adapter.json").read_text())["base"] == str(builtin_random_ckpt)
    trained = resolve_checkpoint(str(result.checkpoint))
    lora = {n: p for n, p in trained.unet.named_parameters() if "lora_" in n}
    assert lora and all(p.shape[0] == 2 or p.shape[1] == 2 for p in lora.values())
    saved = weights(tmp_path / "run")
    assert {n for n in saved} == set(lora) and all(torch.equal(saved[n], lora[n]) for n in lora)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(builtin_random_ckpt: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from trainers.methods import NonFiniteLoss, get_method

    method = get_method("d3po")
    real_update, rounds = method.update, []

    def nan_in_round_two(self: object, *args: object) -> dict:
        rounds.append(1)
        if len(rounds) == 2:
            raise NonFiniteLoss("the loss is nan")
        return real_update(self, *args)

    monkeypatch.setattr(method, "update", nan_in_round_two)
    out = tmp_path / "run"
    with pytest.raises(HarnessError, match=r"round 2: .*last good checkpoint \(after round 1\)") as stopped:
        run(builtin_random_ckpt, out, budget=8)
    assert torch.load(out / "state.pt", weights_only=False)["round"] == 1
    resolve_checkpoint(str(out / "checkpoint"))  # still loads
    assert not (out / "summary.json").exists()
    # The advice is a command that works: --resume with another learning rate is refused (the config is the run's
    # identity), the same command with a lower learning_rate and --overwrite (or a new --out) trains.
    advice = str(stopped.value)
    assert "--set learning_rate=<below 1e-05>" in advice and "--overwrite" in advice and "new --out" in advice
    lower = {"learning_rate": "5e-6"}
    with pytest.raises(HarnessError, match="different config"):
        run(builtin_random_ckpt, out, budget=8, settings=lower, resume=True)
    assert run(builtin_random_ckpt, out, budget=8, settings=lower, overwrite=True).summary["rounds"] == 2
    assert run(builtin_random_ckpt, tmp_path / "new", budget=8, settings=lower).summary["rounds"] == 2


def test_cli_train_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "harness", "train", "--method", "d3po", "--feedback", FEEDBACK, "--budget", "1",
         "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --budget 1 is smaller than one round"), result.stderr
    assert not out.exists()
