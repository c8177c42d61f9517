"""D3PO (Yang et al., CVPR 2024): per-step DPO on preferred vs dispreferred trajectories, without a reward model.

Denoising is treated as a multi-step MDP: for every compared pair of images of one prompt, every step of the
preferred trajectory is pushed up and every step of the dispreferred one down, relative to a frozen reference
(``specs/trainers.md``, D3PO; official yk7333/D3PO scripts/train.py):

    r_k = clip(exp(log pi_theta(x^k_{t-1} | x^k_t, c) - log pi_ref(x^k_{t-1} | x^k_t, c)), 1 - eps, 1 + eps)
    L_t = -log sigmoid(beta * (h_0 log r_0 + h_1 log r_1)),   h = (+1, -1) if image 0 wins, (-1, +1) if image 1 wins

with beta = 0.1, eps = 0.1. The log-probs are the mean-over-elements convention of :mod:`trainers.sampling`.
The reference is :class:`~trainers.reference.Reference` (the run's start). k images per prompt give all k(k-1)/2
pairs; ties are skipped (the official code keeps them with h = (0, 0), which has zero gradient). Step order is
shuffled per prompt with one permutation for all its images, so both images of a pair train at the same timesteps;
gradients accumulate over the trained steps of a pair batch (``train_batch_size`` prompts) before one optimiser step,
with the loss averaged over pairs and steps (accelerate's accumulation mean in the official code).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from benchmarks.registry import PromptItem
from harness.errors import HarnessError
from harness.policy import Policy
from trainers.base import FeedbackBatch, MethodConfig, Trajectories
from trainers.methods import GradientMethod, seeded_generator, trainable_steps, trained_step_count
from trainers.reference import Reference
from trainers.sampling import encode_conditioning, transition_stats


def d3po_loss(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, signs: torch.Tensor, beta: float,
              eps: float) -> torch.Tensor:
    """Per-pair D3PO loss at one step: -log sigmoid(beta * sum_k h_k * log clip(exp(lp_k - lp_ref_k), 1-eps, 1+eps)).

    Shapes [n, 2] (the two images of each pair); ``signs`` h is (+1, -1), (-1, +1) or (0, 0) for a tie (constant
    log 2, zero gradient). Outside the band [1 - eps, 1 + eps] the clamp makes a ratio's gradient zero. Computed as
    the log-ratio clamped to [log(1 - eps), log(1 + eps)]: the same value and gradient, without exp overflowing to
    inf (whose masked gradient would be 0 * inf = NaN) when the policy has moved far from the reference.
    """
    log_ratio = (log_prob - ref_log_prob).clamp(math.log(1 - eps), math.log(1 + eps))
    return -F.logsigmoid(beta * (signs * log_ratio).sum(dim=-1))


@dataclass
class D3POConfig(MethodConfig):
    """D3PO settings. ``defaults("real")``: the official config/base.py (SD 1.5 + LoRA r4, 20 DDIM steps, eta 1,
    CFG 5, beta 0.1, eps 0.1, AdamW 3e-5 wd 1e-4, clip 1.0, 10 prompts x 2 batches per GPU, train batch 1, 2 images
    per prompt with shared initial noise: the proxy-objective protocol; 7 in the human one). Batch sizes here are
    global (all processes together): the official per-GPU values are those of a one-GPU run; multiply
    ``prompts_per_round`` and ``train_batch_size`` by the GPU count to match a multi-GPU official run.

    ``defaults("builtin")``: the whole 3.8M-parameter builtin UNet on a CPU, 10 DDIM steps and CFG 2.0 as the
    checkpoint's own sampler. 4 prompts x 4 images per round (6 pairs per prompt; a 0/1 objective such as GenEval
    correctness ties often: 8-15 strict pairs of 24 per round measured on builtin:shapes). What changed from the
    official values, and why (measured with GenEval correctness as the proxy, 640 images, seed 0;
    docs/training-results.md, "How we got there"):
    - ``early_steps_fraction`` 0.6: train on steps 0-5 of 10 only (:func:`~trainers.methods.trainable_steps`). The
      late steps' log-prob gradients are larger (up to 160 times, step 9 against step 0) and carry the sampling
      noise of shape detail, not the composition that the reward judges. With all steps, lr 1e-4 lowered GenEval
      (0.449 to 0.408, 13 rounds); with the last step dropped (0.9), lr 1e-4 turned the background into speckle
      within 8 rounds.
    - ``train_batch_size`` 4: all of a round's strict pairs in one optimiser step, so each step averages 8-15 pairs'
      noise instead of 2-4.
    - lr 3e-5 (the official LoRA value, here on every weight): 1e-5 left GenEval unchanged after 40 rounds
      (0.448); 3e-5 raised it (0.482 with 0.9 of the steps, 0.493 with 0.6).
    beta, eps and the clip stay official: they act on the per-element log-prob convention, not on the model size.
    At this scale they do not act at all: the ratios stay far inside the clamp band (log-ratios below 0.003 in every
    round of three 640-image runs), where the loss is linear in the log-ratios and Adam divides beta out.
    Measured under oracle v11 (docs/training-results.md, "What moves D3PO"): with the same 640 images and 40 optimiser
    steps, ``images_per_prompt`` 8 with ``prompts_per_round`` 2 and ``train_batch_size`` 2 (28 pairs per prompt, about
    twice the strict pairs) raised GenEval by +4.4 points over seeds 0-2 against +1.3 for these defaults; it was picked
    on seed 0, and fresh seeds 3-5 did not confirm it (k = 8 +3.5 / +5.3 / +2.9, k = 4 +4.9 / +5.7 / -0.3: +4.2
    [+2.8, +5.5] over six seeds against +2.4 [-0.2, +4.9], k = 8 - k = 4 paired +1.8 [-0.8, +4.4]), so k = 4 stays.
    ``reference_refresh`` = 1 (the human protocol's per-epoch reference) copies the policy into the reference every
    round, which keeps the ratios inside the clamp band on long runs.
    """

    beta: float = 0.1
    eps: float = 0.1
    timestep_fraction: float = 1.0
    train_batch_size: int = 1  # prompt groups (with all their strict pairs) per optimiser step, over all processes
    # Rounds between copies of the current policy into the reference; 0: the reference stays the run's start
    # (scripts/train.py, rm/train_d3po.py); 1: the human-feedback protocol's "the model fine-tuned after each epoch
    # serves as the reference model for the subsequent epoch". Full-denoiser training only.
    reference_refresh: int = 0
    num_inner_epochs: int = 1
    shared_noise: bool = True
    learning_rate: float = 3e-5

    @classmethod
    def defaults(cls, world: str) -> D3POConfig:
        if world == "builtin":
            return cls(num_inference_steps=10, guidance_scale=2.0, eta=1.0, images_per_prompt=4, prompts_per_round=4,
                       train_batch_size=4, learning_rate=3e-5, early_steps_fraction=0.6, lora_rank=None)
        return cls(num_inference_steps=20, guidance_scale=5.0, eta=1.0, images_per_prompt=2, prompts_per_round=20,
                   learning_rate=3e-5, lora_rank=4)


class D3PO(GradientMethod):
    name: ClassVar[str] = "d3po"
    signal: ClassVar[str] = "preferences"
    config_class: ClassVar[type[MethodConfig]] = D3POConfig
    config: D3POConfig

    def __init__(self, policy: Policy, config: D3POConfig, accelerator: Any, seed: int) -> None:
        super().__init__(policy, config, accelerator, seed)
        if not (config.beta > 0 and 0 < config.eps < 1 and config.train_batch_size >= 1
                and config.reference_refresh >= 0 and config.images_per_prompt >= 2):
            raise HarnessError(f"bad D3PO settings: beta={config.beta} (need > 0), eps={config.eps} (need 0 < eps "
                               f"< 1), train_batch_size={config.train_batch_size} (need >= 1), reference_refresh="
                               f"{config.reference_refresh} (need >= 0), images_per_prompt="
                               f"{config.images_per_prompt} (need >= 2 to form pairs)")
        self.reference = Reference(policy)
        if config.reference_refresh and self.reference.uses_lora:
            raise HarnessError("reference_refresh needs full-denoiser training: set lora_rank to none or "
                               "reference_refresh=0")

    def update(self, trajectories: Trajectories, feedback: FeedbackBatch, items: list[PromptItem]) -> dict[str, float]:
        self.check_trajectories(trajectories)
        refresh = self.config.reference_refresh
        if refresh and self.rounds and self.rounds % refresh == 0:
            self.reference.refresh()
        by_group: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        ties = 0
        for pref in feedback.preferences:
            if trajectories.groups[pref.i] != trajectories.groups[pref.j]:
                raise HarnessError(f"preference between rows {pref.i} and {pref.j} of different prompts; D3PO "
                                   "compares images of the same prompt only")
            if pref.winner == 0:
                ties += 1
            else:
                by_group[trajectories.groups[pref.i]].append((pref.i, pref.j, pref.winner))
        # The round's prompt groups with strict pairs, over all processes: each is trained by the lowest process
        # that holds it (processes hold disjoint groups online; all of them when every process loads a recorded
        # round), and optimiser steps take train_batch_size groups of one seeded global order, so any number of
        # processes makes the same steps on the same pairs.
        pair_counts: dict[int, int] = {}
        owner: dict[int, int] = {}
        for rank, group, count in sorted(self.gather_list(
                [(self.accelerator.process_index, g, len(p)) for g, p in by_group.items()])):
            owner.setdefault(group, rank)
            pair_counts[group] = count
        mine = {g for g, rank in owner.items() if rank == self.accelerator.process_index}
        n_train = trained_step_count(self.config, trajectories.num_steps)
        size = self.config.train_batch_size
        totals: dict[str, float] = defaultdict(float)
        for epoch in range(self.config.num_inner_epochs):
            groups = sorted(pair_counts)
            order = [groups[k] for k in torch.randperm(len(groups), generator=seeded_generator(
                self.seed, self.rounds, epoch)).tolist()]
            perms = {g: torch.randperm(trainable_steps(self.config, trajectories.num_steps), generator=seeded_generator(
                self.seed, self.rounds, epoch, g))[:n_train].tolist() for g in mine}
            for start in range(0, len(order), size):
                chunk = order[start:start + size]
                local = [(g, by_group[g]) for g in chunk if g in mine]
                stats = self._pair_batch(trajectories, local, sum(pair_counts[g] for g in chunk), perms, n_train)
                for key, value in stats.items():
                    totals[key] += value
        self.rounds += 1
        updates = totals["updates"]
        per_update = max(updates, 1.0)
        pair_steps = 2 * max(totals["pair_steps"], 1.0)
        return {
            "loss": totals["loss"] / per_update,
            "grad_norm": totals["grad_norm"] / per_update,
            "clip_frac": totals["clipped"] / pair_steps,
            "log_ratio": totals["log_ratio"] / pair_steps,
            "pairs": float(sum(len(p) for p in by_group.values())),
            "ties": float(ties),
            "updates": updates,
        }

    def _pair_batch(self, trajectories: Trajectories, chunk: list[tuple[int, list[tuple[int, int, int]]]],
                    global_pairs: int, perms: dict[int, list[int]], n_train: int) -> dict[str, float]:
        """One optimiser step over the strict pairs of ``chunk`` (this process's prompt groups of the step), all
        their trained steps; ``global_pairs`` counts the step's pairs over all processes."""
        n_pairs = sum(len(pairs) for _, pairs in chunk)
        scale = self.world_size / (global_pairs * n_train)
        rows = sorted({r for _, pairs in chunk for i, j, _ in pairs for r in (i, j)})
        position = {r: k for k, r in enumerate(rows)}
        conditioning = encode_conditioning(self.policy, [trajectories.prompts[r] for r in rows],
                                           trajectories.config.guidance_scale) if rows else None
        seen = {"clipped": 0.0, "log_ratio": 0.0}

        def step_loss(s: int) -> torch.Tensor:
            if not rows:
                return self.idle_loss(trajectories)
            # Both images of a pair share their prompt's permutation, hence the timestep; prompts of the chunk may
            # be at different steps, which one model call handles (transition_stats).
            steps = torch.tensor([perms[trajectories.groups[r]][s] for r in rows])
            index = torch.tensor(rows)
            args = (trajectories.latents[index, steps], trajectories.latents[index, steps + 1],
                    trajectories.timesteps[steps], [trajectories.prompts[r] for r in rows], trajectories.config)
            current = transition_stats(self.policy, *args, conditioning=conditioning).log_prob
            ref = transition_stats(self.policy, *args, denoiser=self.reference, conditioning=conditioning).log_prob
            pairs = [(position[i], position[j], w) for _, group_pairs in chunk for i, j, w in group_pairs]
            pair_index = torch.tensor([[i, j] for i, j, _ in pairs])
            signs = torch.tensor([[w, -w] for _, _, w in pairs], dtype=current.dtype, device=current.device)
            log_prob, ref_prob = current[pair_index], ref[pair_index]
            log_ratio = (log_prob - ref_prob).detach()
            seen["clipped"] += float(((log_ratio.exp() - 1).abs() > self.config.eps).sum())
            seen["log_ratio"] += float(log_ratio.sum())
            return d3po_loss(log_prob, ref_prob, signs, self.config.beta, self.config.eps).sum() * scale

        result = self.optimiser_step([lambda s=s: step_loss(s) for s in range(n_train)])
        return {**result, **seen, "updates": 1.0, "pair_steps": float(n_pairs * n_train)}

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.config.reference_refresh:
            state["reference"] = self.reference.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.config.reference_refresh:
            self.reference.load_state_dict(state["reference"])
