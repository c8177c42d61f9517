"""DPOK (Fan et al., NeurIPS 2023): KL-regularised policy gradient with a value baseline and a replay buffer.

``specs/trainers.md``, DPOK; official google-research dpok/train_online_pg.py (_train_policy_func,
_train_value_func), reward_model.py (ValueMulti), pipeline_stable_diffusion_extended.py:

- Every sampled step becomes a transition (x_t, x_{t-1}, step, recorded log-prob, reward R of its image, prompt) in a
  FIFO replay buffer of ``buffer_size`` transitions.
- Each round: one value update, then ``policy_updates`` policy updates, each accumulating ``policy_accumulation``
  micro-batches of ``policy_batch_size`` random transitions from the buffer.
- Policy loss (:func:`dpok_loss`), per transition:
  -reward_weight * A * clamp(rho, 1 - ratio_clip, 1 + ratio_clip) + kl_weight * mean((eps_theta - eps_pre)^2),
  rho = exp(log pi_theta - log pi_old) against the log-prob recorded at sampling, A = R - V(x_t, c, step) (or R
  without the value baseline), eps the CFG-guided noise predictions of the policy and of the frozen pre-trained
  reference. The clamp is plain (no PPO min/max): the policy term has zero gradient once rho leaves the band. The KL
  term is the official unweighted MSE (the paper's bound weights it by 1/(2 sigma_t^2)).
- Value function (:class:`ValueFunction`): an MLP on [flattened x_t || pooled text embedding || step embedding]
  regressed on R with MSE (official: CLIP text embedding, hidden layers gated by a per-step embedding; we
  concatenate the step embedding, and pool the policy's own text encoder so any policy works), AdamW lr 1e-4,
  ``value_batch_size`` transitions x ``value_accumulation`` accumulated mini-batches per round.
- Per-round diagnostics in ``update``'s metrics (means over the round's policy draws): ``value_mean`` (V),
  ``advantage_mean`` (A), ``in_band`` (share of draws with 1 - ratio_clip < rho < 1 + ratio_clip, the only ones whose
  policy term has a gradient) and ``kl`` (mean (eps_theta - eps_pre)^2, before kl_weight).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.registry import PromptItem
from harness.errors import HarnessError
from harness.policy import Policy
from trainers.base import FeedbackBatch, MethodConfig, Trajectories
from trainers.methods import GradientMethod, seeded_generator, trainable_steps
from trainers.reference import Reference
from trainers.sampling import encode_conditioning, transition_stats


def dpok_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, eps: torch.Tensor,
              ref_eps: torch.Tensor, reward_weight: float, kl_weight: float, ratio_clip: float) -> torch.Tensor:
    """Per-transition DPOK loss:
    -reward_weight * A * clamp(exp(log_prob - old_log_prob), 1 - ratio_clip, 1 + ratio_clip)
    + kl_weight * mean over C,H,W of (eps - ref_eps)^2.

    The clamp is applied to the log-ratio (same value and gradient) so a far-moved policy cannot overflow exp.
    """
    log_ratio = (log_prob - old_log_prob).clamp(math.log(1 - ratio_clip), math.log(1 + ratio_clip))
    ratio = torch.exp(log_ratio)
    kl = ((eps - ref_eps) ** 2).mean(dim=tuple(range(1, eps.ndim)))
    return -reward_weight * advantages * ratio + kl_weight * kl


class ValueFunction(nn.Module):
    """V(x_t, c, step): an MLP on [flattened latent || pooled text embedding || learned step embedding]."""

    def __init__(self, latent_dim: int, text_dim: int, num_steps: int, hidden: int = 256, step_dim: int = 32) -> None:
        super().__init__()
        self.step_embedding = nn.Embedding(num_steps, step_dim)
        self.net = nn.Sequential(
            nn.Linear(latent_dim + text_dim + step_dim, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, latents: torch.Tensor, text: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        features = torch.cat([latents.flatten(1), text, self.step_embedding(steps)], dim=1)
        return self.net(features).squeeze(1)


def pooled_text(policy: Policy, prompts: list[str]) -> torch.Tensor:
    """Mean of the prompt's token embeddings over its attention mask: a fixed-size text feature for the value net."""
    cond, _ = encode_conditioning(policy, prompts, 1.0)
    mask = cond.mask if cond.mask is not None else torch.ones(cond.embeds.shape[:2], device=cond.embeds.device)
    mask = mask.to(cond.embeds.dtype).unsqueeze(-1)
    return ((cond.embeds * mask).sum(1) / mask.sum(1).clamp(min=1)).float()


@dataclass
class DPOKConfig(MethodConfig):
    """DPOK settings. ``defaults("real")``: train_online_pg.py's defaults (SD 1.5 + LoRA r4, 50 DDIM steps, eta 1,
    CFG 7.5, 6 prompts x 1 image per round, reward_weight 100, kl_weight 0.01, ratio_clip 1e-4, buffer 1000,
    5 policy updates of 12 x 2 transitions, grad clip 0.1, AdamW 1e-5 wd 0, value lr 1e-4, 256 x 5 per round).

    ``defaults("builtin")``: the whole builtin UNet on a CPU with the shared builtin sampling (10 steps, CFG 2.0,
    16 images per round); 4 policy updates per round of 4 micro-batches of 4 transitions (the official 5 x 12
    micro-batches of 2 are 60 policy and 60 reference calls per round, several minutes here; ours took ~40 s per
    round on 2 busy cores), a 640-transition buffer (4 rounds), value batches of 64, and lr 1e-4 as the other
    builtin methods. reward_weight and kl_weight stay official: they set the balance between reward and
    KL, which does not depend on the model size.

    What this gives at the published budget (640 images = 40 rounds, lr 3e-5 on steps 0-5): a transition replayed
    under the weights that sampled it has |log ratio| <= 1.2e-7, so the first update of a round trains on every fresh
    draw; after one full-UNet Adam step many replayed transitions leave the 1e-4 band (``in_band`` 0.30-0.67 of the
    draws in three runs). The value net takes one AdamW step per round (official: 1 per round over thousands of
    rounds), so V lags: ``advantage_mean`` is +0.13 to +0.35 in rounds 1-16 (A close to R in {0, 1}, uncentred
    REINFORCE), then V overshoots the mean reward (0.40-0.47 in rounds 22-40, reward 0.44) and A averages about 0,
    with negative rounds from round 23 on. The update's sign, pairing and KL are checked in ``tests/test_dpok.py``
    (one step raises the log-probs of A > 0 transitions and lowers those of A < 0; at rho = 1 the gradient is
    REINFORCE's; each transition carries its own row, step, timestep, log-prob, reward and prompt; the KL step moves
    eps_theta back to eps_pre; no gradient reaches the value net).

    The first seed-0 run at this recipe (oracle v3 feedback) fell from a training reward of 0.33 (rounds 1-10) to
    0.18 (rounds 31-40) and GenEval to 0.214. The same command re-run with the same code and seed on oracle v7
    feedback sampled the same images pixel for pixel through round 2, where the two oracle versions gave different
    verdicts (round reward 0.25 vs 0.375); from there the runs differ. The re-run's training reward stayed level
    (0.37, 0.46, 0.43, 0.43 per 10 rounds) and its checkpoint scored 0.427 on the first 96 GenEval prompts (oracle v8;
    base 0.463, the first run's checkpoint 0.214) and 0.294 on the first 96 counting/position prompts (base 0.328).
    Without the value baseline (A = R >= 0) the reward went 0.36, 0.38, 0.44, 0.34 (first 96 prompts: 0.395); with
    value lr 1e-3 (V tracks the reward, A averages 0) 0.39, 0.44, 0.34, 0.35 (0.622, but 0.278 on counting/position).
    So the collapse is one outcome of a high-variance process at this budget (a policy step rests on about 3 rewarded
    in-band transitions), not a deterministic fault of the update; several seeds, not one run, should decide DPOK's
    row.
    """

    reward_weight: float = 100.0
    kl_weight: float = 0.01
    ratio_clip: float = 1e-4
    kl_warmup: int = -1  # policy updates before the KL term starts; -1: always on
    value_baseline: bool = True
    reward_filter: bool = False  # clamp rewards at 0 from below (official reward_filter)
    buffer_size: int = 1000
    policy_updates: int = 5
    policy_accumulation: int = 12
    policy_batch_size: int = 2
    value_learning_rate: float = 1e-4
    value_batch_size: int = 256
    value_accumulation: int = 5
    images_per_prompt: int = 1
    prompts_per_round: int = 6
    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 0.1

    @classmethod
    def defaults(cls, world: str) -> DPOKConfig:
        if world == "builtin":
            return cls(num_inference_steps=10, guidance_scale=2.0, eta=1.0, images_per_prompt=4, prompts_per_round=4,
                       policy_updates=4, policy_accumulation=4, policy_batch_size=4, buffer_size=640,
                       value_batch_size=64, learning_rate=1e-4, lora_rank=None)
        return cls()


class DPOK(GradientMethod):
    name: ClassVar[str] = "dpok"
    signal: ClassVar[str] = "rewards"
    config_class: ClassVar[type[MethodConfig]] = DPOKConfig
    config: DPOKConfig

    def __init__(self, policy: Policy, config: DPOKConfig, accelerator: Any, seed: int) -> None:
        super().__init__(policy, config, accelerator, seed)
        counts = (config.buffer_size, config.policy_updates, config.policy_accumulation, config.policy_batch_size,
                  config.value_batch_size, config.value_accumulation)
        if min(counts) < 1 or config.kl_weight < 0 or not 0 < config.ratio_clip < 1:
            raise HarnessError("bad dpok settings: buffer_size, policy_* and value_* counts must be >= 1, kl_weight "
                               f">= 0 and 0 < ratio_clip < 1 (got ratio_clip={config.ratio_clip})")
        self.reference = Reference(policy)
        self.buffer: deque[dict] = deque(maxlen=config.buffer_size)
        self.value: ValueFunction | None = None
        self.value_optimizer: torch.optim.Optimizer | None = None
        self.value_state: dict | None = None  # loaded before the value net exists (it is sized on first data)
        self.seen = self._no_draws()

    # --- replay buffer -----------------------------------------------------------------------------------------
    def push(self, trajectories: Trajectories, rewards: np.ndarray) -> None:
        """Add every trainable step (:func:`~trainers.methods.trainable_steps`) of every trajectory as a transition
        (FIFO beyond buffer_size)."""
        text = pooled_text(self.policy, trajectories.prompts).cpu()
        for row in range(len(trajectories)):
            for k in range(trainable_steps(self.config, trajectories.num_steps)):
                self.buffer.append({
                    "latent": trajectories.latents[row, k], "next_latent": trajectories.latents[row, k + 1],
                    "step": k, "timestep": int(trajectories.timesteps[k]),
                    "log_prob": float(trajectories.log_probs[row, k]), "reward": float(rewards[row]),
                    "prompt": trajectories.prompts[row], "text": text[row],
                })

    @staticmethod
    def _no_draws() -> dict[str, float]:
        return dict.fromkeys(("draws", "value", "advantage", "in_band", "kl"), 0.0)

    def _draw(self, count: int, *keys: int) -> list[dict]:
        gen = seeded_generator(self.seed, self.rounds, *keys)
        picks = torch.randint(len(self.buffer), (count,), generator=gen).tolist()
        return [self.buffer[i] for i in picks]

    # --- value function ----------------------------------------------------------------------------------------
    def _ensure_value(self, trajectories: Trajectories) -> None:
        if self.value is not None:
            return
        latent_dim = int(np.prod(trajectories.latents.shape[2:]))
        text_dim = int(self.buffer[0]["text"].numel())
        with torch.random.fork_rng(devices=[]):  # the value net's init depends only on the run's seed
            torch.manual_seed(self.seed)
            self.value = ValueFunction(latent_dim, text_dim, trajectories.num_steps).to(self.accelerator.device)
        self.value_optimizer = torch.optim.AdamW(self.value.parameters(), lr=self.config.value_learning_rate)
        if self.value_state is not None:
            self.value.load_state_dict(self.value_state["net"])
            self.value_optimizer.load_state_dict(self.value_state["optimizer"])
            self.value_state = None

    def value_of(self, batch: list[dict]) -> torch.Tensor:
        device = self.accelerator.device
        latents = torch.stack([t["latent"] for t in batch]).to(device)
        text = torch.stack([t["text"] for t in batch]).to(device)
        steps = torch.tensor([t["step"] for t in batch], device=device)
        return self.value(latents, text, steps)

    def _rewards(self, batch: list[dict]) -> torch.Tensor:
        rewards = torch.tensor([t["reward"] for t in batch], dtype=torch.float32, device=self.accelerator.device)
        return rewards.clamp(min=0) if self.config.reward_filter else rewards

    def update_value(self) -> float:
        """One value step: MSE(V, R) over ``value_accumulation`` accumulated random mini-batches; gradients averaged
        over processes so every process keeps the same value net."""
        assert self.value is not None and self.value_optimizer is not None
        total = 0.0
        for k in range(self.config.value_accumulation):
            batch = self._draw(self.config.value_batch_size, 1, k)
            loss = F.mse_loss(self.value_of(batch), self._rewards(batch)) / self.config.value_accumulation
            loss.backward()
            total += float(loss.detach())
        if self.world_size > 1:
            for param in self.value.parameters():
                param.grad = self.accelerator.reduce(param.grad, "mean")
        self.value_optimizer.step()
        self.value_optimizer.zero_grad(set_to_none=True)
        return total

    # --- policy ------------------------------------------------------------------------------------------------
    def update(self, trajectories: Trajectories, feedback: FeedbackBatch, items: list[PromptItem]) -> dict[str, float]:
        self.check_trajectories(trajectories)
        if feedback.rewards is None or len(feedback.rewards) != len(trajectories):
            raise HarnessError(f"dpok trains on scalar rewards; the feedback gave none for this round's "
                               f"{len(trajectories)} images: use objective:, simulated: or reward: feedback")
        rewards = np.asarray(feedback.rewards, dtype=np.float64)
        self.push(trajectories, rewards)
        self._ensure_value(trajectories)
        value_loss = self.update_value() if self.config.value_baseline else 0.0
        self.seen = self._no_draws()
        results = []
        for u in range(self.config.policy_updates):
            use_kl = self.config.kl_warmup < 0 or self.updates >= self.config.kl_warmup
            micro = [self._draw(self.config.policy_batch_size, 2, u, m)
                     for m in range(self.config.policy_accumulation)]
            results.append(self.optimiser_step([lambda b=b, kl=use_kl: self._policy_loss(b, trajectories, kl)
                                                for b in micro]))
        self.rounds += 1
        draws = max(self.seen["draws"], 1.0)
        return {
            "loss": float(np.mean([r["loss"] for r in results])),
            "grad_norm": float(np.mean([r["grad_norm"] for r in results])),
            "value_loss": value_loss,
            "value_mean": self.seen["value"] / draws,
            "advantage_mean": self.seen["advantage"] / draws,
            "in_band": self.seen["in_band"] / draws,
            "kl": self.seen["kl"] / draws,
            "reward_mean": float(rewards.mean()),
            "buffer": float(len(self.buffer)),
            "updates": float(len(results)),
        }

    def _policy_loss(self, batch: list[dict], trajectories: Trajectories, use_kl: bool) -> torch.Tensor:
        config = trajectories.config
        latents = torch.stack([t["latent"] for t in batch])
        next_latents = torch.stack([t["next_latent"] for t in batch])
        timesteps = torch.tensor([t["timestep"] for t in batch])
        prompts = [t["prompt"] for t in batch]
        conditioning = encode_conditioning(self.policy, prompts, config.guidance_scale)
        stats = transition_stats(self.policy, latents, next_latents, timesteps, prompts, config,
                                 conditioning=conditioning)
        device = stats.log_prob.device
        ref_eps = stats.eps.detach()
        if use_kl:
            ref_eps = transition_stats(self.policy, latents, next_latents, timesteps, prompts, config,
                                       denoiser=self.reference, conditioning=conditioning).eps
        rewards = self._rewards(batch)
        advantages = rewards
        if self.config.value_baseline:
            with torch.no_grad():
                advantages = rewards - self.value_of(batch)
        old = torch.tensor([t["log_prob"] for t in batch], dtype=torch.float32, device=device)
        log_ratio = stats.log_prob.detach() - old
        band = (math.log(1 - self.config.ratio_clip), math.log(1 + self.config.ratio_clip))
        seen = self.seen  # diagnostics per round (update's metrics): V, A, share of draws inside the clamp band, KL
        seen["draws"] += len(batch)
        seen["value"] += float((rewards - advantages).sum())
        seen["advantage"] += float(advantages.sum())
        seen["in_band"] += float(((log_ratio > band[0]) & (log_ratio < band[1])).sum())
        seen["kl"] += float(((stats.eps.detach() - ref_eps) ** 2).mean(dim=tuple(range(1, ref_eps.ndim))).sum())
        kl_weight = self.config.kl_weight if use_kl else 0.0
        loss = dpok_loss(stats.log_prob, old, advantages.to(device), stats.eps, ref_eps, self.config.reward_weight,
                         kl_weight, self.config.ratio_clip)
        return loss.mean() / self.config.policy_accumulation

    def state_dict(self) -> dict:
        value = self.value_state
        if self.value is not None and self.value_optimizer is not None:
            value = {"net": self.value.state_dict(), "optimizer": self.value_optimizer.state_dict()}
        return {**super().state_dict(), "value": value, "buffer": list(self.buffer)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.buffer = deque(state["buffer"], maxlen=self.config.buffer_size)
        self.value, self.value_optimizer, self.value_state = None, None, state["value"]
