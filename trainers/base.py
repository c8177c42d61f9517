"""The types every trainer shares: sampled trajectories, what feedback says about them, and the method interface.

One round of online training (``trainers/loop.py``) is: pick prompts -> :func:`trainers.sampling.sample_trajectories`
-> a :class:`Feedback` turns the decoded images into a :class:`FeedbackBatch` (scalar rewards and/or preference
pairs within each prompt's group) -> an :class:`OnlineMethod` turns trajectories + feedback into gradient steps.
Methods differ only in their loss and in which signal they read (the shape of ``kvablack/ddpo-pytorch``: sampling
with log-probs separated from the training loop).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image

from benchmarks.registry import PromptItem
from harness.policy import Policy
from harness.sampling import SamplerConfig


@dataclass
class Trajectories:
    """A batch of recorded DDIM trajectories (eta > 0), one row per image.

    ``latents[:, k]`` is the input x_t of denoising step k and ``latents[:, k + 1]`` the sample drawn from
    π(x_{t-1} | x_t, c); ``log_probs[:, k]`` is that Gaussian step's log density under the weights that sampled it,
    as the mean over the latent's elements (the DDPO / D3PO / DPOK convention, ``specs/trainers.md``).
    Images with the same ``groups`` value were drawn for the same prompt in this round.
    """

    prompts: list[str]
    groups: list[int]
    seeds: list[int]
    latents: torch.Tensor  # [B, T + 1, C, H, W]
    timesteps: torch.Tensor  # [T], in sampling order
    log_probs: torch.Tensor  # [B, T]
    images: torch.Tensor  # uint8 [B, H, W, 3]
    config: SamplerConfig

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])

    def select(self, index: list[int] | torch.Tensor) -> Trajectories:
        """The rows ``index`` (same order), sharing timesteps and config."""
        rows = torch.as_tensor(index, dtype=torch.long)
        picked = rows.tolist()
        return Trajectories(
            prompts=[self.prompts[i] for i in picked],
            groups=[self.groups[i] for i in picked],
            seeds=[self.seeds[i] for i in picked],
            latents=self.latents[rows],
            timesteps=self.timesteps,
            log_probs=self.log_probs[rows],
            images=self.images[rows],
            config=self.config,
        )

    def pil_images(self) -> list[Image.Image]:
        return [Image.fromarray(img.numpy()) for img in self.images.cpu()]


@dataclass(frozen=True)
class Preference:
    """One compared pair of rows of a :class:`Trajectories` batch (same prompt): ``winner`` is +1 when row ``i`` is
    preferred, -1 when row ``j`` is, 0 for a tie (ties are kept so that they can be counted; D3PO skips them)."""

    i: int
    j: int
    winner: Literal[-1, 0, 1]


@dataclass
class FeedbackBatch:
    """What a feedback source says about one sampled batch.

    ``rewards`` (one float per row, higher is better) is set by every scalar source (objectives, simulated
    annotators' underlying objective, reward models); ``preferences`` by every source that compares images within a
    prompt's group (objectives and reward models derive them from rewards; recorded human labels give them
    directly). ``labels_used`` counts the comparisons a person (or simulated person) would have made, for the cost
    that records report.
    """

    rewards: np.ndarray | None = None
    preferences: list[Preference] = field(default_factory=list)
    labels_used: int = 0
    details: dict = field(default_factory=dict)  # per-source extras (e.g. per-row correctness) for logs and monitors


class Feedback(ABC):
    """A source of rewards or preferences, named on the command line as ``--feedback KIND:ARG``."""

    kind: ClassVar[str]  # "objective" | "simulated" | "labels" | "reward"
    spec: str  # the full ``KIND:ARG`` string, recorded with the run

    @abstractmethod
    def evaluate(self, images: list[Image.Image], items: list[PromptItem], groups: list[int],
                 seeds: list[int] | None = None) -> FeedbackBatch:
        """Rewards and/or within-group preferences for a batch; ``items[r]`` is row r's prompt with its spec.

        ``seeds`` are the rows' image seeds: sources with randomness of their own (simulated annotators) derive it
        from them, so labels depend on the images, not on call order, and a resumed or sharded run sees the same."""

    def scorer_id(self) -> dict:
        """What decides the feedback (its perception and rule), so a run can be marked "in-reward" when the
        benchmark scores with the same thing."""
        return {"feedback": self.spec}


@dataclass
class MethodConfig:
    """Settings every online method has; each method subclasses it with its own fields and official defaults.

    ``defaults(world)`` gives the official defaults for Stable Diffusion ("real") and documented small-scale ones for
    the builtin world; the CLI's ``--set KEY=VALUE`` overrides any field (typed like its default).
    """

    num_inference_steps: int = 20
    eta: float = 1.0
    guidance_scale: float = 5.0
    images_per_prompt: int = 2
    prompts_per_round: int = 10
    shared_noise: bool = False  # all images of a prompt start from the same x_T (D3PO)
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    lora_rank: int | None = 4  # None: train the full denoiser (the builtin world's default)
    # Train only on the first ceil(T * early_steps_fraction) of the T sampled steps (all are still sampled); see
    # trainers.methods.trainable_steps.
    early_steps_fraction: float = 1.0

    @classmethod
    def defaults(cls, world: str) -> MethodConfig:
        return cls()

    def override(self, values: dict[str, Any]) -> MethodConfig:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **values)

    @property
    def images_per_round(self) -> int:
        return self.images_per_prompt * self.prompts_per_round


class OnlineMethod(ABC):
    """An online alignment method: it turns one round of trajectories and their feedback into optimiser steps.

    ``signal`` says what it reads from the :class:`FeedbackBatch`: "preferences" (D3PO) or "rewards" (DDPO, GRPO,
    DPOK). The loop owns the accelerator (DDP), the rounds and checkpointing; the method owns its loss, its
    inner epochs, its optimiser and any state it keeps between rounds (DDPO's per-prompt statistics, DPOK's value
    function), which it exposes through ``state_dict`` / ``load_state_dict`` so a resumed run continues exactly.
    """

    name: ClassVar[str]
    signal: ClassVar[Literal["preferences", "rewards"]]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, policy: Policy, config: MethodConfig, accelerator: Any, seed: int) -> None:
        """``policy.unet`` has already been through ``accelerator.prepare`` (DDP when launched distributed); the
        method builds its optimiser over ``policy.trainable_parameters()`` and its frozen reference, if any."""
        self.policy = policy
        self.config = config
        self.accelerator = accelerator
        self.seed = seed

    @abstractmethod
    def update(self, trajectories: Trajectories, feedback: FeedbackBatch, items: list[PromptItem]) -> dict[str, float]:
        """Train on one round; returns scalar metrics for the logs (loss, clip fraction, KL, ...)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027
        pass
