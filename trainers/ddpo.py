"""DDPO (Black et al., 2023): policy-gradient RL on the DDIM Gaussian policy with a scalar reward.

``specs/trainers.md``, DDPO; official kvablack/ddpo-pytorch scripts/train.py and stat_tracking.py:

- Advantages: rewards are gathered over all processes; each prompt keeps a FIFO of its last ``stat_buffer_size``
  rewards that persists across rounds; new rewards are appended first, then the FIFO's mean/std normalise them, or
  the whole gathered batch's when the FIFO holds fewer than ``stat_min_count``: A = (r - mean) / (std + 1e-6)
  (population std). Without tracking: batch mean/std with + 1e-8. A is clipped to +-adv_clip_max = 5.
- DDPO-IS loss per trained step (:func:`ddpo_is_loss`): rho = exp(log pi_theta - log pi_old), pi_old being the
  log-prob recorded at sampling; loss = mean_batch max(-A rho, -A clip(rho, 1 - eps, 1 + eps)), eps = 1e-4.
- DDPO-SF (the paper's score-function variant, ``variant = "sf"`` or method ``ddpo-sf``; not in the official code):
  loss = -A log pi_theta per step (:func:`ddpo_sf_loss`); at rho = 1 its gradient equals IS's.
- Step order shuffled independently per sample each inner epoch; the first floor(T * timestep_fraction) steps of
  that order are trained; every trained step does its own backward and gradients accumulate over all trained steps
  of a ``train_batch_size`` batch before one optimiser step (the loss averaged over steps, as accelerate's
  accumulation does in the official code).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from benchmarks.registry import PromptItem
from harness.errors import HarnessError
from harness.policy import Policy
from trainers.base import FeedbackBatch, MethodConfig, Trajectories
from trainers.methods import GradientMethod, seeded_generator, trainable_steps, trained_step_count
from trainers.sampling import StepStats, encode_conditioning, transition_stats


def ddpo_is_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                 clip_range: float) -> torch.Tensor:
    """PPO-style clipped importance-sampling loss, per sample:
    max(-A * rho, -A * clip(rho, 1 - clip_range, 1 + clip_range)), rho = exp(log_prob - old_log_prob)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    return torch.maximum(unclipped, clipped)


def ddpo_sf_loss(log_prob: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE (score function), per sample: -A * log pi_theta(x_{t-1} | x_t, c)."""
    return -advantages * log_prob


class PerPromptStatTracker:
    """Per-prompt reward normalisation with a FIFO per prompt that persists across rounds (DDPO's stat_tracking)."""

    def __init__(self, buffer_size: int, min_count: int) -> None:
        self.buffer_size, self.min_count = buffer_size, min_count
        self.stats: dict[str, deque[float]] = {}

    def update(self, prompts: list[str], rewards: np.ndarray) -> np.ndarray:
        """A = (r - mean) / (std + 1e-6): the prompt's FIFO statistics after appending this batch's rewards, or
        the whole batch's while the FIFO holds fewer than ``min_count`` rewards."""
        rewards = np.asarray(rewards, dtype=np.float64)
        prompts_arr = np.array(prompts, dtype=object)
        advantages = np.empty_like(rewards)
        for prompt in dict.fromkeys(prompts):
            mask = prompts_arr == prompt
            fifo = self.stats.setdefault(prompt, deque(maxlen=self.buffer_size))
            fifo.extend(rewards[mask].tolist())
            source = rewards if len(fifo) < self.min_count else np.array(fifo)
            advantages[mask] = (rewards[mask] - source.mean()) / (source.std() + 1e-6)
        return advantages

    def state_dict(self) -> dict:
        return {"stats": {prompt: list(fifo) for prompt, fifo in self.stats.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.stats = {p: deque(values, maxlen=self.buffer_size) for p, values in state["stats"].items()}


@dataclass
class DDPOConfig(MethodConfig):
    """DDPO settings. ``defaults("real")``: the official published runs (config/dgx.py, compressibility): SD + LoRA
    r4, 50 DDIM steps, eta 1, CFG 5, AdamW 3e-4 wd 1e-4, clip 1.0, clip_range 1e-4, adv clip 5, per-prompt tracking
    16/16, 1 image per prompt; 8 GPUs x 8 x 4 = 256 prompts per epoch and train batch 4 x accumulation 2 x 8 GPUs =
    64 samples per update (4 updates per epoch). Batch sizes are global (all processes together).

    ``defaults("builtin")``: the whole builtin UNet on a CPU, with the same sampling as the other methods' builtin
    defaults (10 steps, CFG 2.0, 4 images x 4 prompts = 16 images per round) so budgets compare; 4 samples per update
    (4 updates per round; a round took ~45 s on 2 busy cores, so ~20 rounds in 15 minutes) and lr 1e-4 for full
    fine-tuning (see ``D3POConfig``). Tracking stays official (16/16): training prompts rarely repeat in the builtin
    grammar, so advantages mostly come from the batch statistics, as they would for DDPO on a large prompt set.
    """

    variant: Literal["is", "sf"] = "is"
    clip_range: float = 1e-4
    adv_clip_max: float = 5.0
    per_prompt_stat_tracking: bool = True
    stat_buffer_size: int = 16
    stat_min_count: int = 16
    timestep_fraction: float = 1.0
    train_batch_size: int = 64  # samples per optimiser step, over all processes
    num_inner_epochs: int = 1
    images_per_prompt: int = 1
    prompts_per_round: int = 256
    num_inference_steps: int = 50
    learning_rate: float = 3e-4

    @classmethod
    def defaults(cls, world: str) -> DDPOConfig:
        if world == "builtin":
            return cls(num_inference_steps=10, guidance_scale=2.0, eta=1.0, images_per_prompt=4, prompts_per_round=4,
                       train_batch_size=4, learning_rate=1e-4, lora_rank=None)
        return cls()


class DDPO(GradientMethod):
    name: ClassVar[str] = "ddpo"
    signal: ClassVar[str] = "rewards"
    config_class: ClassVar[type[MethodConfig]] = DDPOConfig
    config: DDPOConfig
    variant: ClassVar[str | None] = None  # fixed by a subclass (ddpo-sf); else the config's

    def __init__(self, policy: Policy, config: DDPOConfig, accelerator: Any, seed: int) -> None:
        super().__init__(policy, config, accelerator, seed)
        variant = self.variant or config.variant
        if variant not in ("is", "sf") or config.train_batch_size < 1 or not config.adv_clip_max > 0:
            raise HarnessError(f"bad {self.name} settings: variant={variant!r} (is or sf), train_batch_size="
                               f"{config.train_batch_size} (>= 1), adv_clip_max={config.adv_clip_max} (> 0)")
        self.loss_variant = variant
        self.tracker = PerPromptStatTracker(config.stat_buffer_size, config.stat_min_count)

    # --- advantages --------------------------------------------------------------------------------------------
    def _gathered(self, trajectories: Trajectories, rewards: np.ndarray) -> tuple[list[str], np.ndarray, int]:
        """All processes' prompts and rewards in process order, and where this process's rows start in them."""
        prompts = self.gather_list(list(trajectories.prompts))
        all_rewards = np.asarray(self.gather_list(rewards.tolist()), dtype=np.float64)
        counts = self.gather_list([len(rewards)])
        return prompts, all_rewards, sum(counts[: self.accelerator.process_index])

    def advantages(self, prompts: list[str], rewards: np.ndarray) -> np.ndarray:
        """Advantages of the gathered batch (see the module docstring), clipped to +-adv_clip_max."""
        if self.config.per_prompt_stat_tracking:
            advantages = self.tracker.update(prompts, rewards)
        else:
            advantages = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
        return np.clip(advantages, -self.config.adv_clip_max, self.config.adv_clip_max)

    def trained_rows(self, advantages: np.ndarray) -> list[int]:
        """Rows (of the gathered batch) to train on: all of them."""
        return list(range(len(advantages)))

    # --- training ----------------------------------------------------------------------------------------------
    def update(self, trajectories: Trajectories, feedback: FeedbackBatch, items: list[PromptItem]) -> dict[str, float]:
        """Optimiser steps take train_batch_size samples of one seeded order of the gathered batch, each process
        training the ones it holds, so any number of processes makes the same steps on the same samples."""
        self.check_trajectories(trajectories)
        if feedback.rewards is None or len(feedback.rewards) != len(trajectories):
            raise HarnessError(f"{self.name} trains on scalar rewards; the feedback gave none for this round's "
                               f"{len(trajectories)} images: use objective:, simulated: or reward: feedback")
        rewards = np.asarray(feedback.rewards, dtype=np.float64)
        prompts, all_rewards, offset = self._gathered(trajectories, rewards)
        all_advantages = self.advantages(prompts, all_rewards)
        advantages = torch.as_tensor(all_advantages[offset:offset + len(rewards)], dtype=torch.float32)
        rows = self.trained_rows(all_advantages)
        metrics: dict[str, float] = defaultdict(float)
        n_updates = 0
        n_train = trained_step_count(self.config, trajectories.num_steps)
        size = self.config.train_batch_size
        for epoch in range(self.config.num_inner_epochs):
            gen = seeded_generator(self.seed, self.rounds, epoch)
            order = [rows[k] for k in torch.randperm(len(rows), generator=gen).tolist()]
            # one step order per gathered row, drawn in the same sequence on every process
            steps = {r: torch.randperm(trainable_steps(self.config, trajectories.num_steps), generator=gen)[:n_train]
                     for r in rows}
            for start in range(0, len(order), size):
                chunk = order[start:start + size]
                local = [r - offset for r in chunk if offset <= r < offset + len(rewards)]
                local_steps = {r - offset: steps[r] for r in chunk if offset <= r < offset + len(rewards)}
                result = self._train_batch(trajectories, local, len(chunk), local_steps, advantages, n_train)
                for key, value in result.items():
                    metrics[key] += value
                n_updates += 1
        self.rounds += 1
        per_update = max(n_updates, 1)
        return {
            **{key: value / per_update for key, value in metrics.items()},
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()),
            "advantage_abs": float(advantages.abs().mean()),
            "trained_samples": float(len(rows)),
            "updates": float(n_updates),
        }

    def _train_batch(self, trajectories: Trajectories, batch: list[int], global_size: int,
                     steps: dict[int, torch.Tensor], advantages: torch.Tensor, n_train: int) -> dict[str, float]:
        """One optimiser step on this process's rows ``batch`` of a step of ``global_size`` samples."""
        scale = self.world_size / (global_size * n_train)
        conditioning = encode_conditioning(self.policy, [trajectories.prompts[r] for r in batch],
                                           trajectories.config.guidance_scale) if batch else None
        seen: dict[str, float] = defaultdict(float)

        def step_loss(j: int) -> torch.Tensor:
            if not batch:
                return self.idle_loss(trajectories)
            index = torch.tensor(batch)
            step_index = torch.stack([steps[r][j] for r in batch])
            stats = transition_stats(
                self.policy, trajectories.latents[index, step_index], trajectories.latents[index, step_index + 1],
                trajectories.timesteps[step_index], [trajectories.prompts[r] for r in batch], trajectories.config,
                conditioning=conditioning)
            old = trajectories.log_probs[index, step_index].to(stats.log_prob.device)
            adv = advantages[index].to(stats.log_prob.device)
            loss = self.step_loss(stats, old, adv, trajectories, batch, step_index, conditioning, seen)
            return loss.sum() * scale

        return {**self.optimiser_step([lambda j=j: step_loss(j) for j in range(n_train)]),
                **{k: v / max(len(batch) * n_train, 1) for k, v in seen.items()}}

    def step_loss(self, stats: StepStats, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  trajectories: Trajectories, batch: list[int], step_index: torch.Tensor, conditioning: Any,
                  seen: dict[str, float]) -> torch.Tensor:
        """Per-sample loss at one trained step (GRPO adds its KL term here)."""
        ratio = torch.exp(stats.log_prob.detach() - old_log_prob)
        seen["clip_frac"] += float(((ratio - 1).abs() > self.config.clip_range).sum())
        seen["approx_kl"] += float(0.5 * ((stats.log_prob.detach() - old_log_prob) ** 2).sum())
        if self.loss_variant == "sf":
            return ddpo_sf_loss(stats.log_prob, advantages)
        return ddpo_is_loss(stats.log_prob, old_log_prob, advantages, self.config.clip_range)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "tracker": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.tracker.load_state_dict(state["tracker"])


class DDPOScoreFunction(DDPO):
    """DDPO-SF: the paper's REINFORCE variant (same as ``--method ddpo --set variant=sf``)."""

    name: ClassVar[str] = "ddpo-sf"
    variant: ClassVar[str | None] = "sf"
