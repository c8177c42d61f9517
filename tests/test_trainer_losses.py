"""Each method's loss and advantage rule on fixed tensors, against hand-computed values (specs/trainers.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers.d3po import d3po_loss
from trainers.ddpo import PerPromptStatTracker, ddpo_is_loss, ddpo_sf_loss
from trainers.dpok import ValueFunction, dpok_loss
from trainers.grpo import gaussian_kl, group_advantages


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --- D3PO ---------------------------------------------------------------------------------------------------------
def test_d3po_loss_inside_band_matches_formula_and_gradient() -> None:
    log_prob = torch.tensor([[0.05, -0.02]], requires_grad=True)
    ref = torch.tensor([[0.0, 0.0]])
    signs = torch.tensor([[1.0, -1.0]])  # image 0 preferred
    loss = d3po_loss(log_prob, ref, signs, beta=0.1, eps=0.1)
    z = 0.1 * (0.05 - (-0.02))  # both ratios inside [0.9, 1.1]: log r = the log-prob differences
    assert loss.item() == pytest.approx(-math.log(_sigmoid(z)), rel=1e-6)
    loss.sum().backward()
    # d/dlp0 = -(1 - sigmoid(z)) * beta, d/dlp1 = +(1 - sigmoid(z)) * beta
    g = (1 - _sigmoid(z)) * 0.1
    torch.testing.assert_close(log_prob.grad, torch.tensor([[-g, g]]), rtol=1e-5, atol=1e-8)


def test_d3po_clamp_zeroes_gradient_outside_band() -> None:
    # ratio 0 = e^0.5 = 1.65 (> 1.1, clamped); ratio 1 = e^-0.05 = 0.95 (inside)
    log_prob = torch.tensor([[0.5, -0.05]], requires_grad=True)
    loss = d3po_loss(log_prob, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), beta=0.1, eps=0.1)
    z = 0.1 * (math.log(1.1) + 0.05)
    assert loss.item() == pytest.approx(-math.log(_sigmoid(z)), rel=1e-6)
    loss.sum().backward()
    assert log_prob.grad[0, 0].item() == 0.0
    assert log_prob.grad[0, 1].item() == pytest.approx((1 - _sigmoid(z)) * 0.1, rel=1e-5)


def test_d3po_tie_contributes_no_gradient() -> None:
    log_prob = torch.tensor([[0.03, -0.04]], requires_grad=True)
    loss = d3po_loss(log_prob, torch.zeros(1, 2), torch.zeros(1, 2), beta=0.1, eps=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    loss.sum().backward()
    assert torch.count_nonzero(log_prob.grad) == 0


def test_d3po_loss_is_symmetric_in_pair_order() -> None:
    lp, ref = torch.tensor([[0.02, -0.03]]), torch.tensor([[0.01, 0.0]])
    a = d3po_loss(lp, ref, torch.tensor([[1.0, -1.0]]), 0.1, 0.1)
    b = d3po_loss(lp.flip(-1), ref.flip(-1), torch.tensor([[-1.0, 1.0]]), 0.1, 0.1)
    torch.testing.assert_close(a, b)


# --- DDPO ---------------------------------------------------------------------------------------------------------
def test_ddpo_is_loss_clips_like_ppo() -> None:
    old = torch.zeros(4)
    log_prob = torch.tensor([0.2, 0.2, -0.2, 1e-5], requires_grad=True)
    adv = torch.tensor([1.0, -1.0, 1.0, 2.0])
    loss = ddpo_is_loss(log_prob, old, adv, clip_range=1e-4)
    r = math.exp(0.2)
    expected = [
        max(-1 * r, -1 * (1 + 1e-4)),  # A > 0, rho above band: clipped term is the max -> constant
        max(1 * r, 1 * (1 + 1e-4)),  # A < 0, rho above band: unclipped -> gradient flows
        max(-math.exp(-0.2), -(1 - 1e-4)),  # A > 0, rho below band: unclipped (pessimistic)
        -2 * math.exp(1e-5),  # inside the band: the plain IS term
    ]
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-6)
    loss.sum().backward()
    grads = log_prob.grad.tolist()
    assert grads[0] == 0.0
    assert grads[1] == pytest.approx(r, rel=1e-5)
    assert grads[2] == pytest.approx(-math.exp(-0.2), rel=1e-5)
    assert grads[3] == pytest.approx(-2 * math.exp(1e-5), rel=1e-5)


def test_ddpo_sf_loss() -> None:
    log_prob = torch.tensor([-1.0, 0.5], requires_grad=True)
    loss = ddpo_sf_loss(log_prob, torch.tensor([2.0, -1.0]))
    np.testing.assert_allclose(loss.detach().numpy(), [2.0, 0.5])
    loss.sum().backward()
    np.testing.assert_allclose(log_prob.grad.numpy(), [-2.0, 1.0])


def test_per_prompt_stats_fall_back_to_batch_then_use_fifo_across_rounds() -> None:
    tracker = PerPromptStatTracker(buffer_size=4, min_count=3)
    prompts = ["a", "a", "b", "b"]
    first = tracker.update(prompts, np.array([1.0, 3.0, 10.0, 20.0]))
    batch = np.array([1.0, 3.0, 10.0, 20.0])
    np.testing.assert_allclose(first, (batch - batch.mean()) / (batch.std() + 1e-6))  # 2 < min_count: batch stats
    second = tracker.update(["a", "a"], np.array([5.0, 7.0]))
    fifo = np.array([1.0, 3.0, 5.0, 7.0])  # the buffer persisted: 4 >= min_count, per-prompt stats
    np.testing.assert_allclose(second, (np.array([5.0, 7.0]) - fifo.mean()) / (fifo.std() + 1e-6))
    third = tracker.update(["a"], np.array([9.0]))
    fifo = np.array([3.0, 5.0, 7.0, 9.0])  # FIFO of 4: the oldest reward left
    np.testing.assert_allclose(third, (9.0 - fifo.mean()) / (fifo.std() + 1e-6))
    restored = PerPromptStatTracker(4, 3)
    restored.load_state_dict(tracker.state_dict())
    assert list(restored.stats["a"]) == [3.0, 5.0, 7.0, 9.0]
    assert restored.stats["a"].maxlen == 4


# --- GRPO ---------------------------------------------------------------------------------------------------------
def test_group_advantages_hand_example() -> None:
    prompts = ["p", "p", "p", "q", "q", "q"]
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    # group means 1/3 and 1; global population std of all six rewards: sqrt(4/6 * 2/6) = sqrt(2)/3
    global_std = math.sqrt(2) / 3
    expected = [(1 - 1 / 3) / (global_std + 1e-4), (-1 / 3) / (global_std + 1e-4), (-1 / 3) / (global_std + 1e-4),
                0, 0, 0]
    np.testing.assert_allclose(group_advantages(prompts, rewards, global_std=True), expected, rtol=1e-9)
    own_std = math.sqrt(2) / 3  # p's own std happens to equal the global one; q's is 0
    local = group_advantages(prompts, rewards, global_std=False)
    np.testing.assert_allclose(local[:3], [(2 / 3) / (own_std + 1e-4), (-1 / 3) / (own_std + 1e-4),
                                           (-1 / 3) / (own_std + 1e-4)], rtol=1e-9)
    np.testing.assert_allclose(local[3:], 0)
    flat = group_advantages(prompts, rewards, per_prompt=False)
    np.testing.assert_allclose(flat, (rewards - 4 / 6) / (global_std + 1e-4))


def test_gaussian_kl_matches_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(1)
    mean, ref = torch.randn(2, 3, 2, 2, generator=gen), torch.randn(2, 3, 2, 2, generator=gen)
    std = torch.tensor([0.3, 0.7])
    kl = gaussian_kl(mean, ref, std)
    s = std.view(2, 1, 1, 1)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean, s),
                                                 torch.distributions.Normal(ref, s)).mean((1, 2, 3))
    torch.testing.assert_close(kl, expected)


# --- DPOK ---------------------------------------------------------------------------------------------------------
def test_dpok_loss_on_fixed_tensors() -> None:
    log_prob = torch.tensor([1e-5, 0.3], requires_grad=True)
    old = torch.zeros(2)
    adv = torch.tensor([0.5, -2.0])
    eps = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 0.0]]]])
    ref_eps = torch.tensor([[[[0.0, 0.0]]], [[[1.0, 1.0]]]])
    loss = dpok_loss(log_prob, old, adv, eps, ref_eps, reward_weight=100.0, kl_weight=0.01, ratio_clip=1e-4)
    expected = [-100 * 0.5 * math.exp(1e-5) + 0.01 * (1 + 4) / 2,  # ratio inside the band
                -100 * -2.0 * (1 + 1e-4) + 0.01 * 1.0]  # ratio e^0.3 clamped to 1 + 1e-4
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-6)
    loss.sum().backward()
    assert log_prob.grad[1].item() == 0.0  # plain clamp: no policy gradient outside the band
    assert log_prob.grad[0].item() == pytest.approx(-50 * math.exp(1e-5), rel=1e-5)


def test_value_function_lowers_its_mse() -> None:
    torch.manual_seed(0)
    latents = torch.randn(32, 3, 4, 4)
    text = torch.randn(32, 8)
    steps = torch.randint(0, 5, (32,))
    target = latents.mean((1, 2, 3)) * 3 + text[:, 0]
    value = ValueFunction(48, 8, 5, hidden=32)
    optimiser = torch.optim.AdamW(value.parameters(), lr=1e-3)
    before = torch.nn.functional.mse_loss(value(latents, text, steps), target).item()
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(value(latents, text, steps), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = torch.nn.functional.mse_loss(value(latents, text, steps), target).item()
    assert after < 0.2 * before
