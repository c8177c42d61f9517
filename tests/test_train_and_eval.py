"""``train-and-eval`` end to end: train, evaluate base and trained with the same seeds, records carry the training,
and training moved the policy the right way on what it was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harness.api import EvalSettings, train_and_eval
from harness.checkpoints import resolve_checkpoint
from harness.sampling import SamplerConfig
from trainers.loop import image_seed, round_prompts
from trainers.prompts import resolve_training_prompts
from trainers.sampling import sample_trajectories, step_stats

PROMPTS = "builtin:geneval-train"
FEEDBACK = "objective:brightness"
SEED = 0
# One prompt, two images, one D3PO optimiser step (2 DDIM steps accumulated).
SETTINGS = {"num_inference_steps": "2", "prompts_per_round": "1", "images_per_prompt": "2", "learning_rate": "1e-6"}


def round_one_margins(base_ckpt: Path, trained_ckpt: Path, out: Path, config: dict) -> list[float]:
    """D3PO's implicit reward margin of each strict pair of round 1 under the trained weights:
    sum_t [log pi(x^w_t-1 | x^w_t) - log pi_ref(...)] - [the same for the loser], pi_ref being the base that sampled
    them. It is 0 before training; a D3PO step on those pairs raises it (the loss is -log sigmoid(beta * margin))."""
    items = resolve_training_prompts(PROMPTS, "builtin")
    k, p = config["images_per_prompt"], config["prompts_per_round"]
    picks = round_prompts(len(items), p, SEED, 0)
    groups = [row // k for row in range(p * k)]
    seeds = [image_seed(SEED, 0, row) for row in range(p * k)]
    sampler = SamplerConfig(num_inference_steps=config["num_inference_steps"],
                            guidance_scale=config["guidance_scale"], eta=config["eta"])
    base = resolve_checkpoint(str(base_ckpt))
    trajectories = sample_trajectories(base, [items[picks[g]].prompt for g in groups], seeds, sampler, groups,
                                       shared_noise=config["shared_noise"])
    trained = resolve_checkpoint(str(trained_ckpt))
    with torch.no_grad():
        log_probs = torch.stack([step_stats(trained, trajectories, s).log_prob
                                 for s in range(trajectories.num_steps)], dim=1)
    log_ratio = (log_probs - trajectories.log_probs).sum(dim=1)
    row = {seed: r for r, seed in enumerate(seeds)}
    pairs = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    return [float(log_ratio[row[pr["seed_w"]]] - log_ratio[row[pr["seed_l"]]]) for pr in pairs if pr["round"] == 1]


def test_train_and_eval_records_and_moves_the_trained_pairs(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    records = train_and_eval("d3po", str(builtin_random_ckpt), FEEDBACK, PROMPTS, 2, out, ["geneval"],
                             eval_settings=EvalSettings(limit=2), monitor_every=1, seed=SEED, settings=SETTINGS,
                             progress=False)
    base, trained = records
    assert (base.method, trained.method) == ("pretrained", "d3po")
    assert base.seeds == trained.seeds and base.n_images == trained.n_images == 8
    assert base.checkpoint_fingerprint != trained.checkpoint_fingerprint
    training = trained.training
    assert training["method"] == "d3po" and training["feedback"] == FEEDBACK and training["seed"] == SEED
    assert training["config"]["learning_rate"] == 1e-6 and training["prompts"] == PROMPTS
    # what reproduces the run, as `harness eval --ckpt RUN/checkpoint` records it from the summary
    assert training["ckpt"] == str(builtin_random_ckpt) and training["budget"] == 2
    assert training["in_reward"] is False  # brightness is not GenEval's scorer
    assert training["overlap"]["exact_total"] == 0
    cost = training["cost"]
    assert cost["images_sampled"] == 2 and cost["labels_used"] == 1 and cost["peak_memory_mb"] > 0
    assert cost["wall_s"] > 0 and training["rounds"] == 1
    assert training["monitor"]["curves"]["round"] == [0, 1]
    # Moved the right way: the trained pair's D3PO margin is positive (the winner's trajectory became likelier,
    # relative to the reference, than the loser's). One pair and one optimiser step at lr 1e-6 keep the change
    # first-order, so its sign is the loss gradient's: seeds 0-4 gave margins 0.09-0.13, against ~1e-5 of kernel
    # noise. Measured on the objective it trained on; brightness of fresh images on a random-init model did not move
    # consistently (went up or down by seed at lr 1e-3 and 3e-4), so a benchmark gain is measured on builtin:shapes.
    margins = round_one_margins(builtin_random_ckpt, out / "checkpoint", out, training["config"])
    assert len(margins) == 1 and margins[0] > 0.01, margins
