"""``Policy``: the one interface that generation, scoring and every trainer see of a text-to-image model.

A policy is a denoiser (``unet``) in some latent space, a text conditioning, a noise ``scheduler`` and a ``decode``
from latents to pixels. The builtin tiny model and Stable Diffusion 1.x/2.x/XL implement it, so a trainer or the
generation engine has a single code path for all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from harness.errors import CheckpointError


@dataclass
class Conditioning:
    """Text conditioning for a batch: token embeddings, their attention mask and any extra UNet inputs (SDXL)."""

    embeds: torch.Tensor  # [B, L, D]
    mask: torch.Tensor | None = None  # [B, L], 1 = attend
    added: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def cat(self, other: Conditioning) -> Conditioning:
        """Batch two conditionings (classifier-free guidance runs unconditional and conditional together)."""
        mask = None
        if self.mask is not None or other.mask is not None:
            mask = torch.cat([_ones_if_none(self), _ones_if_none(other)])
        added = {k: torch.cat([v, other.added[k]]) for k, v in self.added.items()}
        return Conditioning(torch.cat([self.embeds, other.embeds]), mask, added)

    def select(self, index: torch.Tensor | slice) -> Conditioning:
        mask = None if self.mask is None else self.mask[index]
        return Conditioning(self.embeds[index], mask, {k: v[index] for k, v in self.added.items()})


def _ones_if_none(c: Conditioning) -> torch.Tensor:
    if c.mask is not None:
        return c.mask
    return torch.ones(c.embeds.shape[:2], dtype=torch.long, device=c.embeds.device)


class Policy(ABC):
    """A text-to-image diffusion model as trainers and generation need it.

    Attributes:
        name: the ``--ckpt`` string it was resolved from.
        fingerprint: content hash of the weights and configs; part of every image cache key.
        unet: the denoiser (``nn.Module``), called only through :meth:`denoise`.
        scheduler: a diffusers scheduler; its ``prediction_type`` says what :meth:`denoise` returns.
        default_height, default_width: the native resolution in pixels.
        world: which benchmark vocabulary it draws: "builtin" (the shapes world) or "real" (natural images).
    """

    world: str = "real"
    name: str
    fingerprint: str
    unet: nn.Module
    scheduler: object
    default_height: int
    default_width: int

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    _numerics_key: dict[str, object] | None = None

    @property
    def numerics_key(self) -> dict[str, object]:
        """What decides this policy's pixels besides checkpoint, prompt, seed and sampler: ``{}`` for float32 eager
        on a CPU, else ``{"numerics": {...}}`` (device type, dtype, compile, slicing; :mod:`harness.numerics`). It
        joins every image key and the record's sampler. Set by :func:`harness.numerics.place` and the lazy loaders;
        otherwise read off the weights' device and dtype."""
        if self._numerics_key is None:
            from harness.numerics import numerics_key

            return numerics_key(self.device, self.dtype)
        return self._numerics_key

    @numerics_key.setter
    def numerics_key(self, value: dict[str, object]) -> None:
        self._numerics_key = dict(value)

    @abstractmethod
    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """Text conditioning for each prompt (the empty string gives the unconditional branch)."""

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The denoiser's raw output (noise or v, per ``scheduler.config.prediction_type``)."""
        kwargs = {}
        if cond.added:
            kwargs["added_cond_kwargs"] = cond.added
        if cond.mask is not None:
            kwargs["encoder_attention_mask"] = cond.mask
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(latents.shape[0])
        return self.unet(latents, timesteps, encoder_hidden_states=cond.embeds, **kwargs).sample

    @abstractmethod
    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(channels, h, w) of the latent for an image of ``height`` x ``width`` pixels."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> uint8 images [B, H, W, 3]."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters a trainer updates: LoRA weights when adapters are attached, else the whole denoiser."""
        params = [p for n, p in self.unet.named_parameters() if "lora_" in n]
        return params or list(self.unet.parameters())

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write a checkpoint that ``--ckpt path`` resolves back to an equivalent policy."""

    def to(self, device: torch.device | str) -> Policy:
        for module in self.modules().values():
            module.to(device)
        return self

    def modules(self) -> dict[str, nn.Module]:
        """Named torch modules, for ``to``, ``eval`` and hashing."""
        return {"unet": self.unet}


@dataclass(frozen=True)
class PolicyHeader:
    """What a run needs of a checkpoint before it knows whether anything must be sampled: its name, world, image
    cache fingerprint, native size and sampler defaults. Read from the checkpoint's configs; no weights."""

    name: str
    world: str
    fingerprint: str
    default_height: int
    default_width: int
    sampler_defaults: dict = field(default_factory=dict)


class LazyPolicy(Policy):
    """A :class:`Policy` whose weights load on first use: a run whose images are all cached never loads them.

    The header answers ``name``, ``world``, ``fingerprint``, the native size and ``sampler_defaults``; anything else
    (``unet``, ``scheduler``, ``encode_prompts``, ``latent_shape``...) loads the policy once through ``load`` and is
    answered by it. The loaded policy must agree with the header on every header field, else a
    :class:`~harness.errors.CheckpointError`: a header read wrongly would otherwise name images under keys that the
    model's own fingerprint does not make.
    """

    def __init__(self, header: PolicyHeader, load: Callable[[], Policy],
                 numerics_key: dict[str, object] | None = None) -> None:
        """``numerics_key``: the placement ``load`` will give the weights (default float32 on a CPU, ``{}``), known
        before loading so that cached images are found without loading."""
        self._header, self._load, self._policy = header, load, None
        self._numerics_key = dict(numerics_key or {})
        self.name, self.world, self.fingerprint = header.name, header.world, header.fingerprint
        self.default_height, self.default_width = header.default_height, header.default_width
        self.sampler_defaults = dict(header.sampler_defaults)

    @property
    def loaded(self) -> bool:
        return self._policy is not None

    def policy(self) -> Policy:
        """The loaded policy (loading it now if this is the first use)."""
        if self._policy is None:
            policy = self._load()
            wrong = [f"{f.name} {getattr(self._header, f.name)!r} vs {getattr(policy, f.name, None)!r}"
                     for f in fields(PolicyHeader) if getattr(policy, f.name, None) != getattr(self._header, f.name)]
            if wrong:
                raise CheckpointError(f"{self.name}: its configs and its loaded model disagree ({'; '.join(wrong)}); "
                                      "repair the checkpoint folder or resolve it eagerly (resolve_checkpoint)")
            self._policy = policy
        return self._policy

    def __getattr__(self, attr: str) -> object:
        # Only reached for attributes the proxy itself lacks: unet, scheduler, text_encoder, tokenizer, base...
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.policy(), attr)

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        return self.policy().encode_prompts(prompts)

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.policy().denoise(latents, timesteps, cond)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return self.policy().latent_shape(height, width)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.policy().decode(latents)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.policy().trainable_parameters()

    def save(self, path: Path) -> None:
        self.policy().save(path)

    def to(self, device: torch.device | str) -> LazyPolicy:
        self.policy().to(device)
        return self

    def modules(self) -> dict[str, nn.Module]:
        return self.policy().modules()
