"""The method registry and what every gradient-based method shares: its optimiser, accumulation and stepping.

``METHODS`` maps ``--method`` names to :class:`~trainers.base.OnlineMethod` classes. It is built on first use (PEP 562
module ``__getattr__``) because each method module imports :class:`GradientMethod` from here.

Distributed runs (``accelerate launch``, DDP): every process holds whole prompt groups of the round. One optimiser
step accumulates several backward passes; all but the last run under ``accelerator.no_sync`` and the last one
all-reduces the accumulated gradients, so every process must make the same number of optimiser steps with exactly one
synchronised backward each. Methods therefore cut the *gathered* round (all processes' groups or samples) into
optimiser steps of ``train_batch_size`` units in one seeded order, each process trains the units of a step that it
holds, scaled by ``world_size / units in the step`` so that DDP's gradient average is the mean over the step's
units, and a process holding none of a step's units runs a zero-weighted forward (:meth:`GradientMethod.idle_loss`).
Any number of processes thus makes the same optimiser steps as one process on the same global batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.policy import Policy
from trainers.base import MethodConfig, OnlineMethod, Trajectories
from trainers.sampling import step_stats


class NonFiniteLoss(HarnessError):
    """A loss became NaN or infinite; raised before the optimiser steps, so the weights are still the last good ones
    (the loop stops and keeps the last checkpoint)."""


def _registry() -> dict[str, type[OnlineMethod]]:
    from trainers.d3po import D3PO
    from trainers.ddpo import DDPO, DDPOScoreFunction
    from trainers.dpok import DPOK
    from trainers.grpo import GRPO

    return {cls.name: cls for cls in (D3PO, DDPO, DDPOScoreFunction, GRPO, DPOK)}


def __getattr__(name: str) -> Any:
    if name == "METHODS":
        return _registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_method(name: str) -> type[OnlineMethod]:
    methods = _registry()
    if name not in methods:
        raise HarnessError(f"unknown method {name!r}; known: {', '.join(sorted(methods))}")
    return methods[name]


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integer keys (method seed, round, group ...), the same on every process."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> 1))


class GradientMethod(OnlineMethod):
    """An :class:`OnlineMethod` trained with AdamW over ``policy.trainable_parameters()`` (the config's lr, betas,
    weight decay, eps), gradient-norm clipping through the accelerator and a NaN/inf check before each step.

    Subclasses implement ``update`` with :meth:`optimiser_step`, and extend ``state_dict`` / ``load_state_dict``
    with their own state (the base keeps the optimiser and the round counter).
    """

    def __init__(self, policy: Policy, config: MethodConfig, accelerator: Any, seed: int) -> None:
        super().__init__(policy, config, accelerator, seed)
        check_config(config)
        self.params = policy.trainable_parameters()
        for param in self.params:
            param.requires_grad_(True)
        optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, betas=tuple(config.adam_betas),
                                      weight_decay=config.weight_decay, eps=config.adam_eps)
        self.optimizer = accelerator.prepare_optimizer(optimizer)
        self.rounds = 0  # completed update() calls: keys the per-round random choices, so resume is exact
        self.updates = 0

    # --- distributed bookkeeping -------------------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return int(self.accelerator.num_processes)

    def global_sum(self, value: float) -> float:
        tensor = torch.tensor([float(value)], device=self.accelerator.device)
        return float(self.accelerator.reduce(tensor, "sum").item()) if self.world_size > 1 else float(value)

    def gather_list(self, values: list) -> list:
        """Every process's ``values`` concatenated in process order (picklable items)."""
        if self.world_size == 1:
            return list(values)
        from accelerate.utils import gather_object

        return list(gather_object(list(values)))

    def sync_context(self, last: bool) -> Any:
        """No gradient all-reduce except on the last backward of an optimiser step (it must wrap the forward)."""
        return nullcontext() if last else self.accelerator.no_sync(self.policy.unet)

    def idle_loss(self, trajectories: Trajectories) -> torch.Tensor:
        """A zero loss through the denoiser, for a process without work in an update, so it still joins the
        update's gradient all-reduce (with zero gradient)."""
        return 0.0 * step_stats(self.policy, trajectories, 0, rows=[0]).log_prob.sum()

    # --- one optimiser step ------------------------------------------------------------------------------------
    def optimiser_step(self, micro_losses: list[Callable[[], torch.Tensor]]) -> dict[str, float]:
        """Backward each micro-batch loss in turn (gradients accumulate; only the last one synchronises), then clip
        and step. Raises :class:`NonFiniteLoss` before stepping when any loss on any process is NaN or infinite.

        Each callable builds its loss inside the right sync context, already scaled for accumulation and for the
        global batch. Returns the summed loss and the gradient norm before clipping.
        """
        total, bad = 0.0, 0.0
        for k, make_loss in enumerate(micro_losses):
            with self.sync_context(last=k == len(micro_losses) - 1):
                loss = make_loss()
                value = float(loss.detach())
                if not math.isfinite(value):
                    bad += 1
                else:
                    total += value
                self.accelerator.backward(loss)
        if self.global_sum(bad) > 0:
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(
                f"non-finite loss in update {self.updates + 1} of {self.name}; that optimiser step was not taken: "
                "lower learning_rate (--set learning_rate=...) or check the feedback for NaN rewards"
            )
        norm = self.accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm)
        # fp16 mixed precision skips steps with inf gradients itself (the grad scaler); elsewhere a NaN/inf gradient
        # from a finite loss would silently poison the weights.
        if self.accelerator.mixed_precision != "fp16" and not math.isfinite(float(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(f"non-finite gradient in update {self.updates + 1} of {self.name}; that optimiser "
                                "step was not taken: lower learning_rate (--set learning_rate=...)")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        return {"loss": total, "grad_norm": float(norm)}

    def check_trajectories(self, trajectories: Trajectories) -> None:
        if trajectories.config.eta <= 0:
            raise HarnessError(f"{self.name} needs stochastic trajectories (eta > 0) to have log-probabilities; got "
                               f"eta={trajectories.config.eta}: use --set eta=1.0")
        if len(trajectories) == 0:
            raise HarnessError(f"{self.name}: a process received no rows; use at least as many prompts per round as "
                               "processes")

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "rounds": self.rounds, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.rounds = int(state["rounds"])
        self.updates = int(state["updates"])


def check_config(config: MethodConfig) -> None:
    """One-line errors for settings outside their meaningful range (``--set`` typos such as lr=-1)."""
    problems = []
    if config.num_inference_steps < 1:
        problems.append(f"num_inference_steps={config.num_inference_steps} (need >= 1)")
    if config.eta <= 0:
        problems.append(f"eta={config.eta} (training needs eta > 0 for a stochastic policy)")
    if config.images_per_prompt < 1 or config.prompts_per_round < 1:
        problems.append("images_per_prompt and prompts_per_round must be >= 1")
    if not config.learning_rate > 0 or not math.isfinite(config.learning_rate):
        problems.append(f"learning_rate={config.learning_rate} (need > 0)")
    if config.weight_decay < 0:
        problems.append(f"weight_decay={config.weight_decay} (need >= 0)")
    if not config.max_grad_norm > 0:
        problems.append(f"max_grad_norm={config.max_grad_norm} (need > 0)")
    if not all(0 <= b < 1 for b in config.adam_betas):
        problems.append(f"adam_betas={config.adam_betas} (each in [0, 1))")
    for name in ("timestep_fraction", "early_steps_fraction"):
        value = getattr(config, name, None)
        if value is not None and not 0 < value <= 1:
            problems.append(f"{name}={value} (need 0 < value <= 1)")
    if problems:
        raise HarnessError(f"bad {type(config).__name__} settings: " + "; ".join(problems))


def trainable_steps(config: Any, num_steps: int) -> int:
    """The steps a method may train on: the first ceil(T * ``early_steps_fraction``) of the T sampled ones.

    Why not all: the per-element Gaussian log-prob of a step, log N(x_{t-1}; mu(x_t), sigma_t^2), has gradient
    (c_t / sigma_t) z with respect to the network output (z the step's sampled noise, c_t the output's coefficient in
    mu). c_t / sigma_t grows towards the end of a schedule: on the builtin 10-step trailing v-prediction sampler it is
    0.16, 0.28, 0.37, 0.46, 0.55, 0.66, 0.81, 1.05, 1.62 and 26 at steps 0-9. The late steps' noise therefore
    dominates every policy gradient while those steps mostly refine shapes already laid out; the rewards judge the
    composition (which objects, how many, where), which the early, high-noise steps set.
    """
    fraction = getattr(config, "early_steps_fraction", 1.0)
    return max(1, math.ceil(num_steps * fraction - 1e-9))


def trained_step_count(config: Any, num_steps: int) -> int:
    """How many steps each trajectory trains on: floor(T' * timestep_fraction), at least 1 (DDPO/D3PO), of the
    T' = :func:`trainable_steps` ones."""
    return max(1, int(trainable_steps(config, num_steps) * config.timestep_fraction))
