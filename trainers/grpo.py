"""GRPO on the DDIM Gaussian policy (Flow-GRPO lineage: Liu et al. 2025, github yifan123/flow_grpo).

``specs/trainers.md``, GRPO; official config/grpo.py, scripts/train_sd3.py, flow_grpo/stat_tracking.py:

- k images per prompt each round. Advantages are group-relative (:func:`group_advantages`):
  A_i = (r_i - mean of the prompt's rewards this round) / (std + 1e-4), with std over **all** rewards of the gathered
  batch when ``global_std`` (every official grpo config) or over the prompt's own rewards otherwise; clipped to +-5.
  Samples whose advantage is exactly zero (e.g. a prompt whose k images all got the same reward) are dropped.
- Policy loss per trained step: DDPO's PPO clip (:func:`trainers.ddpo.ddpo_is_loss`), clip_range 1e-4.
- KL to the reference (``kl_beta`` > 0): per sample mean over C,H,W of (mu_theta - mu_ref)^2 / (2 sigma_t^2)
  (:func:`gaussian_kl`), the closed-form KL between the two Gaussian steps, added as kl_beta * KL.

How it differs from DDPO (:mod:`trainers.ddpo`): the same clipped IS loss on the same Gaussian policy, but (1) the
baseline is the mean of k samples of the *same prompt in the same round* instead of a per-prompt FIFO across rounds
(with a batch fallback), so every prompt has a baseline from the first round; (2) the scale is the batch-wide std,
not the prompt's history; (3) zero-advantage samples are skipped; (4) an optional KL term to the frozen reference
(with LoRA: the adapter disabled) limits drift, which DDPO has no term for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from harness.errors import HarnessError
from harness.policy import Policy
from trainers.base import MethodConfig, Trajectories
from trainers.ddpo import DDPO, DDPOConfig
from trainers.reference import Reference
from trainers.sampling import StepStats, transition_stats

GROUP_EPS = 1e-4


def group_advantages(prompts: list[str], rewards: np.ndarray, global_std: bool = True,
                     per_prompt: bool = True) -> np.ndarray:
    """Group-relative advantages: A_i = (r_i - mean_{group(i)} r) / (std + 1e-4), std = population std of all
    rewards (``global_std``) or of the group's; without ``per_prompt``, (r - batch mean) / (batch std + 1e-4)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if not per_prompt:
        return (rewards - rewards.mean()) / (rewards.std() + GROUP_EPS)
    prompts_arr = np.array(prompts, dtype=object)
    advantages = np.empty_like(rewards)
    for prompt in dict.fromkeys(prompts):
        mask = prompts_arr == prompt
        group = rewards[mask]
        std = rewards.std() if global_std else group.std()
        advantages[mask] = (group - group.mean()) / (std + GROUP_EPS)
    return advantages


def gaussian_kl(mean: torch.Tensor, ref_mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, s^2) || N(ref_mean, s^2)) per element, averaged over C,H,W: mean((mean - ref_mean)^2) / (2 s^2);
    ``std`` is per row [b] or one scalar."""
    squared = ((mean - ref_mean) ** 2).mean(dim=tuple(range(1, mean.ndim)))
    return squared / (2 * std**2)


@dataclass
class GRPOConfig(DDPOConfig):
    """GRPO settings. ``defaults("real")``: Flow-GRPO's GenEval config (config/grpo.py geneval_sd3) mapped onto a DDIM
    UNet: 10 sampling steps, CFG 4.5, 24 images per prompt, 48 prompts per round, train batch 6 x accumulation 12 x
    8 GPUs = 576 samples per update (2 updates per epoch), kl_beta 0.04, global std, timestep_fraction 0.99,
    clip_range 1e-4, AdamW 3e-4, LoRA r4. Batch sizes are global (all processes together).

    ``defaults("builtin")``: as the other builtin defaults (10 steps, CFG 2.0, whole UNet, lr 1e-4, 16 images per
    round) with 4 images per prompt (the smallest group whose mean is a usable baseline for a 0/1 reward) and
    kl_beta 0.04 as the official GenEval run.

    Inherited from :class:`~trainers.ddpo.DDPOConfig`: ``per_prompt_stat_tracking`` switches the group
    normalisation (off: whole-batch statistics); ``variant`` and the FIFO fields (``stat_buffer_size``,
    ``stat_min_count``) do not apply to GRPO.
    """

    kl_beta: float = 0.04
    global_std: bool = True
    timestep_fraction: float = 0.99
    images_per_prompt: int = 24
    prompts_per_round: int = 48
    train_batch_size: int = 576
    num_inference_steps: int = 10
    guidance_scale: float = 4.5

    @classmethod
    def defaults(cls, world: str) -> GRPOConfig:
        if world == "builtin":
            return cls(num_inference_steps=10, guidance_scale=2.0, eta=1.0, images_per_prompt=4, prompts_per_round=4,
                       train_batch_size=4, timestep_fraction=1.0, learning_rate=1e-4, lora_rank=None)
        return cls()


class GRPO(DDPO):
    name: ClassVar[str] = "grpo"
    config_class: ClassVar[type[MethodConfig]] = GRPOConfig
    config: GRPOConfig
    variant: ClassVar[str | None] = "is"

    def __init__(self, policy: Policy, config: GRPOConfig, accelerator: Any, seed: int) -> None:
        super().__init__(policy, config, accelerator, seed)
        if config.kl_beta < 0 or config.images_per_prompt < 2:
            raise HarnessError(f"bad grpo settings: kl_beta={config.kl_beta} (need >= 0), images_per_prompt="
                               f"{config.images_per_prompt} (need >= 2: a group of one has no baseline)")
        self.reference = Reference(policy) if config.kl_beta > 0 else None

    def advantages(self, prompts: list[str], rewards: np.ndarray) -> np.ndarray:
        advantages = group_advantages(prompts, rewards, self.config.global_std, self.config.per_prompt_stat_tracking)
        return np.clip(advantages, -self.config.adv_clip_max, self.config.adv_clip_max)

    def trained_rows(self, advantages: np.ndarray) -> list[int]:
        """Samples with a non-zero advantage only (a prompt whose images all scored the same teaches nothing)."""
        return [r for r, a in enumerate(advantages.tolist()) if a != 0]

    def step_loss(self, stats: StepStats, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  trajectories: Trajectories, batch: list[int], step_index: torch.Tensor, conditioning: Any,
                  seen: dict[str, float]) -> torch.Tensor:
        loss = super().step_loss(stats, old_log_prob, advantages, trajectories, batch, step_index, conditioning, seen)
        if self.reference is None:
            return loss
        index = torch.tensor(batch)
        ref = transition_stats(
            self.policy, trajectories.latents[index, step_index], trajectories.latents[index, step_index + 1],
            trajectories.timesteps[step_index], [trajectories.prompts[r] for r in batch], trajectories.config,
            denoiser=self.reference, conditioning=conditioning)
        kl = gaussian_kl(stats.mean, ref.mean, stats.std)
        seen["kl"] += float(kl.detach().sum())
        return loss + self.config.kl_beta * kl
