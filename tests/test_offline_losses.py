"""Diffusion-DPO and RankDPO losses and ψ, checked on fixed tensors against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from trainers.diffusion_dpo import diffusion_dpo_loss
from trainers.offline import Noiser, denoising_errors
from trainers.rankdpo import PAIR_WEIGHT, lambda_weights, rank_positions, rankdpo_loss
from trainers.ranked_data import psi_from_scores, ranking_from_psi


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_diffusion_dpo_matches_the_formula() -> None:
    # pair 0: s_w = 0.30 - 0.32 = -0.02, s_l = 0.50 - 0.45 = 0.05 -> -log σ(-(100/2)(-0.07)) = softplus(-3.5)
    # pair 1: equal improvements -> -log σ(0) = log 2
    loss = diffusion_dpo_loss(t(0.30, 0.2), t(0.32, 0.3), t(0.50, 0.4), t(0.45, 0.5), beta=100.0)
    assert loss[0].item() == pytest.approx(math.log1p(math.exp(-3.5)), rel=1e-12)
    assert loss[1].item() == pytest.approx(math.log(2.0), rel=1e-12)


def test_diffusion_dpo_gradient_pushes_winner_error_down() -> None:
    err_w, err_l = t(0.3).requires_grad_(), t(0.3).requires_grad_()
    diffusion_dpo_loss(err_w, t(0.3), err_l, t(0.3), beta=10.0).sum().backward()
    assert err_w.grad.item() == pytest.approx(2.5)  # (β/2) σ(0)
    assert err_l.grad.item() == pytest.approx(-2.5)


def test_rankdpo_on_two_images_is_weighted_diffusion_dpo() -> None:
    assert pytest.approx(1 - 1 / math.log2(3)) == PAIR_WEIGHT
    err = {"w": 0.31, "w_ref": 0.30, "l": 0.42, "l_ref": 0.47}
    beta = 700.0
    dpo = diffusion_dpo_loss(t(err["w"]), t(err["w_ref"]), t(err["l"]), t(err["l_ref"]), beta=2 * beta).item()
    scores = t(err["w"] - err["w_ref"], err["l"] - err["l_ref"])
    for ranking in ("predicted", "psi"):
        rank = rankdpo_loss(scores, t(1.0, 0.0), beta, ranking=ranking).item()
        assert rank == pytest.approx(PAIR_WEIGHT * dpo, rel=1e-12)


def test_rankdpo_three_images_by_hand() -> None:
    # ψ = (1, 0.5, 0), ranking by ψ: τ = (1, 2, 3); gains 2^ψ = (2, √2, 1); 1/log2(1+τ) = (1, 1/log2 3, 1/2)
    psi, scores, beta = t(1.0, 0.5, 0.0), t(0.1, 0.0, -0.1), 1.0
    inv = [1.0, 1 / math.log2(3), 0.5]
    gain = [2.0, math.sqrt(2), 1.0]
    expected = sum(
        abs(gain[i] - gain[j]) * abs(inv[i] - inv[j]) * softplus(beta * (scores[i].item() - scores[j].item()))
        for i, j in [(0, 1), (0, 2), (1, 2)]
    )
    assert rankdpo_loss(scores, psi, beta, ranking="psi").item() == pytest.approx(expected, rel=1e-12)
    # the model orders them exactly backwards (s ascending = 2, 1, 0): τ = (3, 2, 1), so the weights change
    inv_pred = [0.5, 1 / math.log2(3), 1.0]
    expected_pred = sum(
        abs(gain[i] - gain[j]) * abs(inv_pred[i] - inv_pred[j]) * softplus(scores[i].item() - scores[j].item())
        for i, j in [(0, 1), (0, 2), (1, 2)]
    )
    assert rankdpo_loss(scores, psi, beta, ranking="predicted").item() == pytest.approx(expected_pred, rel=1e-12)


def test_swapping_top_and_bottom_costs_more_than_swapping_the_middle() -> None:
    """Fig. 2's caption: a swap of ranks (1, 4) is penalised more than a swap of (2, 3)."""
    psi = t(1.0, 2 / 3, 1 / 3, 0.0)
    positions = torch.tensor([1, 2, 3, 4])
    weights = lambda_weights(psi, positions)
    assert weights[0, 3].item() == pytest.approx(1 - 1 / math.log2(5), rel=1e-12)
    assert weights[1, 2].item() == pytest.approx(
        (2 ** (2 / 3) - 2 ** (1 / 3)) * (1 / math.log2(3) - 0.5), rel=1e-12)
    ordered = t(-0.3, -0.1, 0.1, 0.3)  # the model agrees with ψ
    swap_ends = t(0.3, -0.1, 0.1, -0.3)
    swap_middle = t(-0.3, 0.1, -0.1, 0.3)
    base = rankdpo_loss(ordered, psi, 5.0).item()
    assert rankdpo_loss(swap_ends, psi, 5.0).item() - base > rankdpo_loss(swap_middle, psi, 5.0).item() - base > 0


def test_ties_contribute_nothing() -> None:
    scores = t(0.2, -0.1).requires_grad_()
    loss = rankdpo_loss(scores, t(0.5, 0.5), 10.0)
    loss.backward()
    assert loss.item() == 0.0
    assert scores.grad.abs().sum().item() == 0.0
    # ψ = (1, 0.5, 0.5): only the pairs with image 0 count, and their weights use the psi-ranking positions
    psi, s = t(1.0, 0.5, 0.5), t(0.0, 0.1, 0.2)
    inv = [1.0, 1 / math.log2(3), 0.5]
    expected = sum((2 - math.sqrt(2)) * abs(inv[0] - inv[j]) * softplus(s[0].item() - s[j].item()) for j in (1, 2))
    assert rankdpo_loss(s, psi, 1.0, ranking="psi").item() == pytest.approx(expected, rel=1e-12)


def test_dcg_weights_off_is_plain_pairwise_dpo() -> None:
    s, psi = t(0.0, 0.1, 0.2), t(1.0, 0.5, 0.0)
    expected = sum(softplus(2.0 * (s[i].item() - s[j].item())) for i, j in [(0, 1), (0, 2), (1, 2)])
    assert rankdpo_loss(s, psi, 2.0, dcg=False).item() == pytest.approx(expected, rel=1e-12)


def test_rank_positions_and_explicit_order() -> None:
    assert rank_positions(t(0.3, -1.0, 0.0), descending=False).tolist() == [3, 1, 2]
    assert rank_positions(t(0.5, 0.5, 1.0), descending=True).tolist() == [2, 3, 1]
    s, psi = t(0.0, 0.1, 0.2), t(0.5, 0.5, 0.0)
    # a stored ranking [1, 0, 2] puts image 1 first: τ = (2, 1, 3)
    by_order = rankdpo_loss(s, psi, 1.0, ranking="psi", order=[1, 0, 2]).item()
    inv = {1: 1.0, 2: 1 / math.log2(3), 3: 0.5}
    tau = [2, 1, 3]
    expected = sum((math.sqrt(2) - 1) * abs(inv[tau[i]] - inv[tau[2]]) * softplus(s[i].item() - s[2].item())
                   for i in (0, 1))
    assert by_order == pytest.approx(expected, rel=1e-12)


def test_rankdpo_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="length >= 2"):
        rankdpo_loss(t(0.1), t(1.0), 1.0)
    with pytest.raises(ValueError, match="matching"):
        rankdpo_loss(t(0.1, 0.2), t(1.0, 0.0, 0.5), 1.0)


def test_psi_by_hand() -> None:
    # model A: image 0 beats 1 and 2, image 1 beats 2; model B: image 1 beats 0 and 2, 0 and 2 tie (no win)
    scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.2]])
    psi = psi_from_scores(scores)
    np.testing.assert_allclose(psi, [2 / 4, 3 / 4, 0 / 4])
    assert ranking_from_psi(psi) == [1, 0, 2]
    assert ranking_from_psi([0.5, 1.0, 0.5]) == [1, 0, 2]  # ties keep generation order
    with pytest.raises(ValueError, match="NaN"):
        psi_from_scores(np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="k >= 2"):
        psi_from_scores(np.array([[0.1]]))


def test_flow_matching_noising_and_velocity_target() -> None:
    """Rectified flow: x_t = (1 - σ) x0 + σ ε, target ε - x0, σ from the shifted training schedule."""
    noiser = Noiser(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0))
    assert noiser.flow
    index = torch.tensor([500, 0])
    x0 = torch.stack([torch.ones(1, 2, 2), -torch.ones(1, 2, 2)])
    noise = torch.full((2, 1, 2, 2), 0.5)
    x_t, timesteps, target = noiser.noised(x0, noise, index)
    # index 500 of 1000: unshifted σ = 0.5 -> shifted 3·0.5 / (1 + 2·0.5) = 0.75; index 0: σ = 1
    assert timesteps.tolist() == pytest.approx([750.0, 1000.0])
    assert x_t[0].flatten().tolist() == pytest.approx([0.25 * 1 + 0.75 * 0.5] * 4)
    assert x_t[1].flatten().tolist() == pytest.approx([0.5] * 4)
    assert target[0].flatten().tolist() == pytest.approx([-0.5] * 4)
    assert target[1].flatten().tolist() == pytest.approx([1.5] * 4)
    # flow-matching Diffusion-DPO on fixed predictions: errors 0.01 / 0.04 (winner), 0.25 / 0.09 (loser)
    err = [denoising_errors(torch.full((1, 1, 2, 2), v), target[i:i + 1]) for i, v in
           [(0, -0.4), (0, -0.3), (1, 1.0), (1, 1.2)]]
    assert [e.item() for e in err] == pytest.approx([0.01, 0.04, 0.25, 0.09])
    loss = diffusion_dpo_loss(*err, beta=10.0).item()
    assert loss == pytest.approx(softplus(5.0 * ((0.01 - 0.04) - (0.25 - 0.09))), rel=1e-6)
    # RankDPO on the same velocity errors: the documented weight again
    scores = torch.cat([err[0] - err[1], err[2] - err[3]])
    assert rankdpo_loss(scores, t(1.0, 0.0).float(), 5.0).item() == pytest.approx(PAIR_WEIGHT * loss, rel=1e-5)


def test_v_prediction_and_epsilon_targets() -> None:
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                              prediction_type="v_prediction")
    x0, noise, index = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0), torch.tensor([300])
    x_t, timesteps, target = Noiser(scheduler).noised(x0, noise, index)
    abar = scheduler.alphas_cumprod[300].item()
    assert timesteps.tolist() == [300]
    assert x_t.flatten()[0].item() == pytest.approx(math.sqrt(abar) * 1 + math.sqrt(1 - abar) * 2, rel=1e-5)
    assert target.flatten()[0].item() == pytest.approx(math.sqrt(abar) * 2 - math.sqrt(1 - abar) * 1, rel=1e-5)
    eps = DDIMScheduler(num_train_timesteps=1000, prediction_type="epsilon")
    assert torch.equal(Noiser(eps).noised(x0, noise, index)[2], noise)
