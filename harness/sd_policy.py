"""Stable Diffusion 1.x/2.x and XL as a :class:`Policy`, and the LoRA adapter format that every policy shares.

A policy keeps the loaded diffusers pipeline whole, so prompt encoding and ``save_pretrained`` are diffusers' own code
rather than copies of it, but swaps its scheduler for a DDIM scheduler built from the same config: our samplers and
trainers are DDIM, and the noise schedule and ``prediction_type`` (epsilon for SD 1.x/XL, v for SD 2.x-768) carry
over unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from peft.utils import get_peft_model_state_dict
from torch import nn

from harness.policy import Conditioning, Policy

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' own file name, so its loaders read our adapters
ADAPTER_INFO = "harness_adapter.json"  # names the base an adapter was trained on


def ddim_from(scheduler: object) -> DDIMScheduler:
    """DDIM with the pipeline's noise schedule and ``prediction_type``.

    ``clip_sample`` is forced off, as diffusers' SD pipelines do: clipping x0 to [-1, 1] suits pixel models, not
    latents, and DDIM's default is on, so a config that omits it (SD 1.5's PNDM config) would otherwise clip.
    """
    return DDIMScheduler.from_config(scheduler.config, clip_sample=False)


def has_lora(unet: nn.Module) -> bool:
    return bool(getattr(unet, "peft_config", None))


def save_lora_adapter(unet: nn.Module, path: Path, base: str, base_fingerprint: str) -> None:
    """Write the UNet's LoRA adapter and a JSON naming its base, so ``--ckpt path`` rebuilds the adapted model.

    The weights file is diffusers' LoRA format (``unet.``-prefixed PEFT keys, the ``LoraConfig`` in the safetensors
    metadata so rank and alpha survive), which ``pipe.load_lora_weights`` reads too. Works for any
    ``UNet2DConditionModel``, the builtin model's included.
    """
    path = Path(path)
    (adapter,) = unet.active_adapters()
    StableDiffusionPipeline.save_lora_weights(
        path,
        unet_lora_layers=get_peft_model_state_dict(unet, adapter_name=adapter),
        unet_lora_adapter_metadata=unet.peft_config[adapter].to_dict(),
        weight_name=LORA_WEIGHTS,
    )
    info = {"base": base, "base_fingerprint": base_fingerprint}
    (path / ADAPTER_INFO).write_text(json.dumps(info, indent=2) + "\n")


def load_lora_adapter(unet: nn.Module, folder: Path) -> None:
    """Attach the adapter in ``folder`` (written by :func:`save_lora_adapter` or a diffusers/PEFT trainer)."""
    unet.load_lora_adapter(str(folder), weight_name=LORA_WEIGHTS, prefix="unet", adapter_name="default")


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3], rounded as diffusers' image processor does."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


class StableDiffusionPolicy(Policy):
    """SD 1.x/2.x: one CLIP text encoder, no attention mask (the UNet was trained attending to padding too)."""

    pipeline_class: ClassVar[type] = StableDiffusionPipeline
    # The harness never runs the pipeline's __call__, so the 1.2 GB safety checker is never loaded (safety is scored
    # by the safety benchmark instead).
    load_kwargs: ClassVar[dict] = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    def __init__(self, pipeline: StableDiffusionPipeline, name: str, fingerprint: str, base: str | None = None) -> None:
        """``base`` is the canonical ``--ckpt`` of these weights, recorded when a LoRA trained on them is saved."""
        # The checkpoint's own scheduler (PNDM for SD 1.5, Euler for SDXL) stays available, untouched, for
        # `--scheduler pipeline` (harness.sampling); everything else samples with the DDIM built from its config.
        self.native_scheduler = pipeline.scheduler
        pipeline.register_modules(scheduler=ddim_from(pipeline.scheduler))
        self.pipeline = pipeline
        self.unet, self.vae, self.scheduler = pipeline.unet, pipeline.vae, pipeline.scheduler
        self.text_encoder, self.tokenizer = pipeline.text_encoder, pipeline.tokenizer
        self.name, self.fingerprint = name, fingerprint
        self.base, self.base_fingerprint = base or name, fingerprint
        if self.vae.dtype == torch.float16 and self.vae.config.force_upcast:
            self.vae.to(torch.float32)  # the SDXL VAE overflows in fp16; diffusers upcasts it for the same reason
        # Only the UNet is ever trained; frozen encoders build no autograd graph, yet gradients still reach latents
        # through decode (reward backpropagation).
        for module in self.modules().values():
            if module is not self.unet:
                module.requires_grad_(False)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.default_height = self.default_width = self.unet.config.sample_size * self.vae_scale_factor

    @classmethod
    def from_pretrained(cls, folder: Path, name: str, fingerprint: str, dtype: torch.dtype, base: str) -> Policy:
        """Load a diffusers folder without network access."""
        pipeline = cls.pipeline_class.from_pretrained(
            folder, dtype=dtype, local_files_only=True, variant=_weights_variant(Path(folder)), **cls.load_kwargs
        )
        return cls(pipeline, name, fingerprint, base)

    @classmethod
    def from_single_file(
        cls, file: Path, config: Path, name: str, fingerprint: str, dtype: torch.dtype, base: str
    ) -> Policy:
        """Load one original-layout (CompVis/SGM) weights file, with the diffusers configs read from ``config``."""
        pipeline = cls.pipeline_class.from_single_file(
            str(file), config=str(config), dtype=dtype, local_files_only=True, **cls.load_kwargs
        )
        return cls(pipeline, name, fingerprint, base)

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder}

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        embeds, _ = self.pipeline.encode_prompt(prompts, self.device, 1, False)
        return Conditioning(embeds)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        f = self.vae_scale_factor
        if height % f or width % f:
            raise ValueError(f"{self.name} needs sizes divisible by {f}, got {height}x{width}")
        return (self.unet.config.in_channels, height // f, width // f)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        config = self.vae.config
        latents = latents.to(self.vae.device, self.vae.dtype)
        if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
            mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents)
            std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
        return _to_uint8(self.vae.decode(latents).sample)

    def save(self, path: Path) -> None:
        """A full diffusers folder, or, with LoRA attached, only the adapter (megabytes, not gigabytes)."""
        if has_lora(self.unet):
            save_lora_adapter(self.unet, Path(path), self.base, self.base_fingerprint)
        else:
            self.pipeline.save_pretrained(path, safe_serialization=True)


class StableDiffusionXLPolicy(StableDiffusionPolicy):
    """SDXL: two text encoders, plus the pooled embedding and size micro-conditioning in ``Conditioning.added``."""

    pipeline_class: ClassVar[type] = StableDiffusionXLPipeline
    load_kwargs: ClassVar[dict] = {"add_watermarker": False}

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "text_encoder_2": self.pipeline.text_encoder_2}

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """Embeddings as diffusers' pipeline makes them; ``""`` gives exactly its unconditional branch.

        With ``force_zeros_for_empty_prompt`` (SDXL base) that branch is all zeros, not the encoding of "".
        """
        embeds, _, pooled, _ = self.pipeline.encode_prompt(
            prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        if self.pipeline.config.force_zeros_for_empty_prompt:
            empty = torch.tensor([p == "" for p in prompts], device=embeds.device)
            embeds = embeds.masked_fill(empty[:, None, None], 0.0)
            pooled = pooled.masked_fill(empty[:, None], 0.0)
        time_ids = self._time_ids(self.default_height, self.default_width, len(prompts), embeds)
        return Conditioning(embeds, added={"text_embeds": pooled, "time_ids": time_ids})

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """As the base class, with ``time_ids`` rebuilt for sizes other than the native one, as diffusers does."""
        height, width = (s * self.vae_scale_factor for s in latents.shape[-2:])
        if (height, width) != (self.default_height, self.default_width):
            time_ids = self._time_ids(height, width, len(cond), cond.embeds)
            cond = Conditioning(cond.embeds, cond.mask, {**cond.added, "time_ids": time_ids})
        return super().denoise(latents, timesteps, cond)

    @staticmethod
    def _time_ids(height: int, width: int, batch: int, like: torch.Tensor) -> torch.Tensor:
        """SDXL's micro-conditioning: (original size, crop top-left, target size), uncropped at the sampled size."""
        ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=like.dtype, device=like.device)
        return ids.repeat(batch, 1)


def _weights_variant(folder: Path) -> str | None:
    """``"fp16"`` when the UNet has only fp16-variant weights (a common way to download SDXL), else the default."""
    unet = folder / "unet"
    if any(unet.glob("diffusion_pytorch_model.fp16*")) and not any(unet.glob("diffusion_pytorch_model.[sb]*")):
        return "fp16"
    return None
