"""Diffusion-DPO (Wallace et al., 2023; official code SalesforceAIResearch/DiffusionDPO): DPO on offline image pairs.

For a pair (x^w, x^l) of the same prompt c, both images are noised with the **same** noise ε and timestep t, and the
policy and a frozen reference are scored by their denoising error against the training target:

    e^*_θ = ‖target^* − f_θ(x^*_t, t, c)‖²      (mean over C, H, W)
    L = −log σ( −(β/2) · [ (e^w_θ − e^w_ref) − (e^l_θ − e^l_ref) ] )

so the loss falls when the policy improves on the reference more for the winner than for the loser. β = 5000 as the
official launchers set it for SD1.5, SDXL and SDXL-Turbo (``specs/trainers.md``; the paper's T·ω(λ_t) factor is
folded into β). The target is what the denoiser predicts: the noise ε (epsilon models), the velocity
α_t ε − σ_t x_0 (v-prediction, e.g. the builtin model; as the official train.py does through diffusers'
``get_velocity``), or, for flow-matching models (SD3), the rectified-flow velocity ε − x_0 at
x_t = (1 − σ) x_0 + σ ε (Esser et al., 2024, "Scaling Rectified Flow Transformers", eq. 1-3; the same target
diffusers' ``train_dreambooth_sd3.py`` regresses). Putting the velocity error in place of the noise error is how
the DPO literature carries the loss to flow models (e.g. Flow-DPO, Liu et al., 2025, arXiv 2501.13918).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from trainers.offline import OfflineConfig, OfflineMethod
from trainers.ranked_data import RankedRow

OFFICIAL_BETA = 5000.0  # launchers/sd15.sh, sdxl.sh, turbo.sh (with the ½ in the loss)


def diffusion_dpo_loss(
    err_w: torch.Tensor, err_w_ref: torch.Tensor, err_l: torch.Tensor, err_l_ref: torch.Tensor, beta: float
) -> torch.Tensor:
    """Per-pair loss ``−log σ(−(β/2)·[(e_w − e_w_ref) − (e_l − e_l_ref)])`` = softplus((β/2)·(s_w − s_l)).

    Every argument is a per-pair denoising error [B] (see :func:`trainers.offline.denoising_errors`); returns [B].
    """
    s_w = err_w - err_w_ref
    s_l = err_l - err_l_ref
    return F.softplus(0.5 * beta * (s_w - s_l))




def preferred_pairs(row: RankedRow, pairs: Literal["all", "best-worst"]) -> list[tuple[int, int]]:
    """(winner, loser) image indices of a list: every pair with ψ_w > ψ_l, or only the ranking's first and last."""
    psi = row.psi
    if pairs == "best-worst":
        best, worst = row.ranking[0], row.ranking[-1]
        return [(best, worst)] if psi[best] > psi[worst] else []
    k = len(psi)
    return [(i, j) for i in range(k) for j in range(k) if psi[i] > psi[j]]


@dataclass
class DiffusionDPOConfig(OfflineConfig):
    """``pairs``: which pairs of a ranked list are trained on. "all" (default) uses every strictly ordered pair, so
    Diffusion-DPO sees exactly the images and comparisons RankDPO sees, weighted equally; "best-worst" keeps one
    pair per prompt, as a Pick-a-Pic pair file has."""

    beta: float = OFFICIAL_BETA
    pairs: Literal["all", "best-worst"] = "all"


class DiffusionDPO(OfflineMethod):
    """Loss of a micro-batch: the mean over prompts of the mean over their pairs of :func:`diffusion_dpo_loss`
    (lists with no strict pair, all ψ tied, add nothing and are counted in ``tied_lists``)."""

    name = "diffusion-dpo"
    config_class = DiffusionDPOConfig
    config: DiffusionDPOConfig

    def loss(self, errors: list[torch.Tensor], ref_errors: list[torch.Tensor], rows: list[RankedRow]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        losses, correct, total, tied = [], 0, 0, 0
        for err, ref, row in zip(errors, ref_errors, rows):
            pairs = preferred_pairs(row, self.config.pairs)
            if not pairs:
                tied += 1
                continue
            win, lose = (torch.tensor(side, device=err.device) for side in zip(*pairs))
            losses.append(diffusion_dpo_loss(err[win], ref[win], err[lose], ref[lose], self.config.beta).mean())
            margin = (err[win] - ref[win]) - (err[lose] - ref[lose])
            correct += int((margin < 0).sum())
            total += len(pairs)
        if not losses:
            zero = sum(e.sum() for e in errors) * 0.0  # keeps the graph, so backward still runs
            return zero, {"accuracy": 0.0, "pairs": 0.0, "tied_lists": float(tied)}
        metrics = {"accuracy": correct / total, "pairs": float(total), "tied_lists": float(tied)}
        return torch.stack(losses).mean(), metrics
