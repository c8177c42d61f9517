"""DPOK on a random-init builtin policy: the two facts its policy term rests on (``specs/trainers.md``, DPOK;
google-research dpok/train_online_pg.py ``_train_policy_func``).

1. A transition replayed under the weights that sampled it has ratio exp(log pi - log pi_old) = 1 to well inside
   the 1e-4 clamp band, whatever else shares its replay batch: otherwise the plain clamp zeroes every policy
   gradient from the first update on and DPOK trains on the KL term alone.
2. The advantage is A = R - V(x_t, c, step) (``v_flag`` 1), not V - R, and A = R without the baseline.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

import trainers.dpok as dpok
from harness.checkpoints import resolve_checkpoint
from harness.sampling import SamplerConfig
from trainers.base import FeedbackBatch
from trainers.sampling import sample_trajectories, transition_stats

PROMPTS = ["a red cube", "a red cube", "two blue balls", "two blue balls"]
SMALL = {"num_inference_steps": 3, "images_per_prompt": 2, "prompts_per_round": 2, "policy_updates": 1,
         "policy_accumulation": 1, "policy_batch_size": 4, "value_batch_size": 4, "value_accumulation": 1}


@pytest.fixture(scope="module")
def setup(builtin_random_ckpt: Path):
    policy = resolve_checkpoint(str(builtin_random_ckpt))
    sampler = SamplerConfig(num_inference_steps=3, guidance_scale=2.0, eta=1.0)
    trajectories = sample_trajectories(policy, PROMPTS, [11, 12, 13, 14], sampler, [0, 0, 1, 1])
    return policy, trajectories


def _method(policy, **overrides) -> dpok.DPOK:
    config = dpok.DPOKConfig.defaults("builtin").override({**SMALL, **overrides})
    accelerator = Accelerator(cpu=True)
    policy.unet = accelerator.prepare(policy.unet)
    return dpok.DPOK(policy, config, accelerator, seed=0)


def test_replayed_fresh_transitions_sit_inside_the_clamp_band(setup) -> None:
    policy, trajectories = setup
    method = _method(copy.deepcopy(policy))
    method.push(trajectories, np.array([1.0, 0.0, 0.0, 1.0]))
    assert len(method.buffer) == 4 * 3
    band = math.log(1 + method.config.ratio_clip)
    for order in (list(range(12)), [11, 3, 7, 0, 5, 9, 1, 10, 2, 8, 6, 4]):  # batch compositions unlike sampling
        batch = [method.buffer[i] for i in order[:6]]
        stats = transition_stats(method.policy, torch.stack([t["latent"] for t in batch]),
                                 torch.stack([t["next_latent"] for t in batch]),
                                 torch.tensor([t["timestep"] for t in batch]), [t["prompt"] for t in batch],
                                 trajectories.config)
        recorded = torch.tensor([t["log_prob"] for t in batch])
        gap = (stats.log_prob.detach().cpu() - recorded).abs().max().item()
        assert gap < band / 100, gap


@pytest.mark.parametrize("baseline", [True, False])
def test_advantage_is_reward_minus_value(setup, baseline: bool, monkeypatch) -> None:
    policy, trajectories = setup
    method = _method(copy.deepcopy(policy), value_baseline=baseline, value_learning_rate=1e-12)
    seen: list[torch.Tensor] = []
    real_loss = dpok.dpok_loss

    def spy(log_prob, old_log_prob, advantages, *args, **kwargs):
        seen.append(advantages.detach().cpu())
        return real_loss(log_prob, old_log_prob, advantages, *args, **kwargs)

    monkeypatch.setattr(dpok, "dpok_loss", spy)
    method.push(trajectories, np.array([1.0, 0.0, 0.0, 1.0]))
    method._ensure_value(trajectories)
    with torch.no_grad():  # V = 0.25 everywhere: last layer zero, bias 0.25 (lr ~0 keeps it there)
        last = method.value.net[-1]
        last.weight.zero_()
        last.bias.fill_(0.25)
    rewards = FeedbackBatch(rewards=np.array([1.0, 0.0, 0.0, 1.0]))
    method.buffer.clear()
    method.update(trajectories, rewards, [])
    drawn = {round(float(a), 4) for a in torch.cat(seen)}
    assert drawn <= ({0.75, -0.25} if baseline else {1.0, 0.0}), drawn
    assert len(drawn) >= 1
