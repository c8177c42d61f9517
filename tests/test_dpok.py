"""DPOK on a random-init builtin policy: the two facts its policy term rests on (``specs/trainers.md``, DPOK;
google-research dpok/train_online_pg.py ``_train_policy_func``).

1. A transition replayed under the weights that sampled it has ratio exp(log pi - log pi_old) = 1 to well inside
   the 1e-4 clamp band, whatever else shares its replay batch: otherwise the plain clamp zeroes every policy
   gradient from the first update on and DPOK trains on the KL term alone.
2. The advantage is A = R - V(x_t, c, step) (``v_flag`` 1), not V - R, and A = R without the baseline.
3. The direction of one update (the probes behind "DPOK's training reward fell" in docs/training-results.md): each
   replayed transition carries its own row, step, timestep, log-prob, reward and prompt; one step raises the log-probs
   of A > 0 transitions and lowers those of A < 0; at rho = 1 with kl_weight 0 the gradient is REINFORCE's,
   -reward_weight / (B * accumulation) * sum (R - V) grad log pi, with no gradient into the value net; the KL step moves
   eps_theta back towards the reference's.
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


# --- 3. the direction of one update ---

def _fresh_batch(method: dpok.DPOK) -> list[dict]:
    return list(method.buffer)


def _batch_log_probs(method: dpok.DPOK, batch: list[dict], config) -> torch.Tensor:
    with torch.no_grad():
        return transition_stats(method.policy, torch.stack([t["latent"] for t in batch]),
                                torch.stack([t["next_latent"] for t in batch]),
                                torch.tensor([t["timestep"] for t in batch]), [t["prompt"] for t in batch],
                                config).log_prob.cpu()


def test_buffer_pairs_each_transition_with_its_own_row_step_and_reward(setup) -> None:
    policy, trajectories = setup
    method = _method(copy.deepcopy(policy))
    rewards = np.array([0.9, 0.1, 0.4, 0.7])
    method.push(trajectories, rewards)
    steps = trajectories.num_steps
    for index, t in enumerate(method.buffer):
        row, k = divmod(index, steps)
        assert t["step"] == k and t["timestep"] == int(trajectories.timesteps[k])
        assert torch.equal(t["latent"], trajectories.latents[row, k])
        assert torch.equal(t["next_latent"], trajectories.latents[row, k + 1])
        assert t["log_prob"] == pytest.approx(float(trajectories.log_probs[row, k]))
        assert t["reward"] == pytest.approx(rewards[row]) and t["prompt"] == trajectories.prompts[row]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_update_moves_log_probs_with_the_sign_of_the_advantage(setup, sign: float) -> None:
    """A = R (no baseline, KL off): one small policy step must raise sum_i A_i log pi(x_{t-1,i} | x_{t,i}) of its
    batch, so with every A = +1 the batch's log-probs go up and with every A = -1 they go down. (On the last of the
    3 steps, sigma_t is so small that even lr 1e-5 overshoots the maximum of the Gaussian and *lowers* log pi: the
    early steps are the ones the recipe trains.)"""
    policy, trajectories = setup
    method = _method(copy.deepcopy(policy), value_baseline=False, kl_weight=0.0, learning_rate=1e-6,
                     early_steps_fraction=0.6)
    method.push(trajectories, np.full(4, sign))
    batch = _fresh_batch(method)
    before = _batch_log_probs(method, batch, trajectories.config)
    method.optimiser_step([lambda: method._policy_loss(batch, trajectories, False)])
    change = _batch_log_probs(method, batch, trajectories.config) - before
    assert len(batch) == 4 * 2
    assert (sign * change > 0).float().mean() >= 0.75, change
    assert sign * float(change.mean()) > 1e-6, change


@pytest.mark.parametrize("baseline", [True, False])
def test_policy_gradient_is_reinforce_at_ratio_one(setup, baseline: bool) -> None:
    """On fresh draws (rho = 1) with kl_weight 0 the DPOK gradient is the REINFORCE one,
    -reward_weight / (B * accumulation) * sum_i (R_i - V_i) grad log pi_i, with V constant (no gradient reaches
    the value net, and the value net's output does not enter the gradient except as that constant)."""
    policy, trajectories = setup
    method = _method(copy.deepcopy(policy), value_baseline=baseline, kl_weight=0.0, policy_accumulation=3)
    rewards = np.array([1.0, 0.0, 0.0, 1.0])
    method.push(trajectories, rewards)
    method._ensure_value(trajectories)
    with torch.no_grad():
        method.value.net[-1].weight.zero_()
        method.value.net[-1].bias.fill_(0.3)
    batch = _fresh_batch(method)
    method._policy_loss(batch, trajectories, False).backward()
    got = [p.grad.clone() for p in method.params]
    assert all(p.grad is None for p in method.value.parameters())
    method.policy.unet.zero_grad(set_to_none=True)
    stats = transition_stats(method.policy, torch.stack([t["latent"] for t in batch]),
                             torch.stack([t["next_latent"] for t in batch]),
                             torch.tensor([t["timestep"] for t in batch]), [t["prompt"] for t in batch],
                             trajectories.config)
    advantage = torch.tensor([t["reward"] for t in batch]) - (0.3 if baseline else 0.0)
    (-method.config.reward_weight * (advantage * stats.log_prob).mean() / 3).backward()
    want = [p.grad for p in method.params]
    scale = max(float(w.abs().max()) for w in want)
    assert scale > 0
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-4 * scale, rtol=1e-3)


def test_kl_term_pulls_the_policy_back_to_the_reference(setup) -> None:
    """A = 0 (rewards 0, no baseline): the step follows only kl_weight * mean((eps - eps_ref)^2), so a policy moved
    away from its reference comes back: the MSE on the batch falls."""
    policy, trajectories = setup
    method = _method(copy.deepcopy(policy), value_baseline=False, kl_weight=1.0, learning_rate=1e-6)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in method.params:
            p.add_(1e-2 * torch.randn(p.shape, generator=gen) * (p.abs().mean() + 1e-3))
    method.push(trajectories, np.zeros(4))
    batch = _fresh_batch(method)

    def kl() -> float:
        args = (torch.stack([t["latent"] for t in batch]), torch.stack([t["next_latent"] for t in batch]),
                torch.tensor([t["timestep"] for t in batch]), [t["prompt"] for t in batch], trajectories.config)
        with torch.no_grad():
            eps = transition_stats(method.policy, *args).eps
            ref = transition_stats(method.policy, *args, denoiser=method.reference).eps
        return float(((eps - ref) ** 2).mean())

    before = kl()
    assert before > 0
    method.optimiser_step([lambda: method._policy_loss(batch, trajectories, True)])
    assert kl() < before
