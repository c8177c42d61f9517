"""RankDPO (Karthik et al., 2024, arXiv 2410.18013, "Scalable Ranked Preference Optimization"): DPO over each
prompt's ranked list of k images, weighted like a ranking metric (DCG) as in LambdaLoss.

No official code exists; this follows the paper's Algorithms 1-2 and Fig. 2 as read in ``specs/trainers.md``.
All k images of a prompt are noised with one shared ε and t (the switch ``share_noise`` draws them per image), and
each image gets the Diffusion-DPO score (lower is better: the policy denoises it better than the reference does)

    s_i = ‖target_i − f_θ(x^i_t, t, c)‖² − ‖target_i − f_ref(x^i_t, t, c)‖².

With gains G_i = 2^{ψ_i} (ψ: the averaged pairwise win probability of :func:`trainers.ranked_data.psi_from_scores`),
discounts D(τ) = log2(1 + τ) of rank positions τ = 1..k, and Δ_ij = |2^{ψ_i} − 2^{ψ_j}| · |1/D(τ_i) − 1/D(τ_j)|:

    L = −Σ_{(i, j): ψ_i > ψ_j} Δ_ij · log σ(−β (s_i − s_j))      (summed over the list, no max-DCG normalisation)

Pairs with equal ψ (ties) contribute nothing: G_ij = 0, and there is no preferred side. τ is the policy's
**predicted** ordering (images sorted by s ascending: Fig. 2's caption, and LambdaLoss), or with
``ranking="psi"`` the dataset's ranking (the OCR of Algorithm 2); τ carries no gradient. On a list of two with
ψ = (1, 0), Δ = (2 − 1)·(1 − 1/log2 3) ≈ 0.369 whichever ranking is used, so the loss is exactly
0.369 × Diffusion-DPO with β_DPO = 2β (Diffusion-DPO has β/2 inside): :data:`PAIR_WEIGHT`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from trainers.offline import OfflineConfig, OfflineMethod
from trainers.ranked_data import RankedRow

RankingSource = Literal["predicted", "psi"]
PAIR_WEIGHT = 1.0 - 1.0 / math.log2(3.0)  # Δ of a two-image list with ψ = (1, 0)


def rank_positions(values: torch.Tensor, descending: bool) -> torch.Tensor:
    """1-based rank position τ_i of each entry when sorted (stable: equal values keep index order)."""
    order = torch.sort(values.detach(), descending=descending, stable=True).indices
    positions = torch.empty_like(order)
    positions[order] = torch.arange(1, len(values) + 1, device=values.device)
    return positions


def lambda_weights(psi: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Δ_ij = |2^{ψ_i} − 2^{ψ_j}| · |1/log2(1 + τ_i) − 1/log2(1 + τ_j)|, a [k, k] matrix."""
    gains = torch.pow(2.0, psi.double())
    inverse_discount = 1.0 / torch.log2(1.0 + positions.double())
    return (gains[:, None] - gains[None, :]).abs() * (inverse_discount[:, None] - inverse_discount[None, :]).abs()


def rankdpo_loss(scores: torch.Tensor, psi: torch.Tensor, beta: float, ranking: RankingSource = "predicted",
                 order: torch.Tensor | list[int] | None = None, dcg: bool = True) -> torch.Tensor:
    """The RankDPO loss of one prompt's list (see the module docstring): a scalar.

    ``scores`` [k] are the s_i (with grad), ``psi`` [k] the aggregated win probabilities. With ``ranking="psi"``,
    ``order`` (image indices best first, the dataset's ranking) gives τ; when omitted, ψ descending does.
    ``dcg=False`` (an ablation) sets every Δ_ij to 1: plain DPO summed over the list's preferred pairs.
    """
    if scores.ndim != 1 or scores.shape != psi.shape or len(scores) < 2:
        raise ValueError(f"need matching 1-D scores and psi of length >= 2, got {tuple(scores.shape)}, "
                         f"{tuple(psi.shape)}")
    if ranking == "predicted":
        positions = rank_positions(scores, descending=False)
    elif ranking == "psi":
        if order is None:
            positions = rank_positions(psi, descending=True)
        else:
            positions = torch.empty(len(order), dtype=torch.long, device=scores.device)
            positions[torch.as_tensor(order, device=scores.device)] = torch.arange(1, len(order) + 1,
                                                                                    device=scores.device)
    else:
        raise ValueError(f"ranking must be 'predicted' or 'psi', got {ranking!r}")
    weights = lambda_weights(psi.to(scores.device), positions).to(scores.dtype)
    if not dcg:
        weights = torch.ones_like(weights)
    preferred = psi[:, None] > psi[None, :]  # pair (i, j) with i ranked above j
    pair_losses = F.softplus(beta * (scores[:, None] - scores[None, :]))  # −log σ(−β (s_i − s_j))
    return (weights * pair_losses * preferred.to(scores.device)).sum()


@dataclass
class RankDPOConfig(OfflineConfig):
    """β, lr, batch and steps of RankDPO are not published (``specs/trainers.md``: UNVERIFIED). Default β = 2500, so
    that β·(s_i − s_j) is on the scale of Diffusion-DPO's official (β/2)·(s_w − s_l) at β = 5000; every other default
    is Diffusion-DPO's, so the two methods differ only in their loss. ``ranking`` picks τ (see the module
    docstring)."""

    beta: float = 2500.0
    ranking: RankingSource = "predicted"
    dcg_weights: bool = True  # False: the ablation without gains and discounts (every Δ_ij = 1)


class RankDPO(OfflineMethod):
    """Loss of a micro-batch: the mean over prompts of :func:`rankdpo_loss` of each list."""

    name = "rankdpo"
    config_class = RankDPOConfig
    config: RankDPOConfig

    def loss(self, errors: list[torch.Tensor], ref_errors: list[torch.Tensor], rows: list[RankedRow]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        losses, correct, total = [], 0, 0
        for err, ref, row in zip(errors, ref_errors, rows):
            scores = err - ref
            psi = torch.as_tensor(row.psi, dtype=scores.dtype, device=scores.device)
            losses.append(rankdpo_loss(scores, psi, self.config.beta, self.config.ranking, order=row.ranking,
                                       dcg=self.config.dcg_weights))
            preferred = psi[:, None] > psi[None, :]
            correct += int((preferred & (scores[:, None] < scores[None, :])).sum())
            total += int(preferred.sum())
        return torch.stack(losses).mean(), {"accuracy": correct / max(total, 1), "pairs": float(total)}
