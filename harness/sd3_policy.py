"""Stable Diffusion 3 as a :class:`Policy`: diffusers' MMDiT flow-matching transformer (``SD3Transformer2DModel``),
its three text encoders (two CLIPs and T5) and the flow-matching Euler sampler.

SD3 is a rectified flow (Esser et al., 2024): x_t = (1 − σ) x_0 + σ ε and the transformer predicts the velocity
ε − x_0, so the policy's ``scheduler`` stays diffusers' ``FlowMatchEulerDiscreteScheduler`` (with the checkpoint's
shift) instead of the DDIM the UNet policies switch to. The transformer sits in ``unet``, the slot every trainer
and the generation engine call through :meth:`denoise`; offline trainers build their noised inputs and velocity
targets from the same scheduler (:class:`trainers.offline.Noiser`). The online DDIM trainers (DDPO, D3PO, GRPO,
DPOK) need a stochastic DDIM step with a log-probability, which a flow sampler does not have, so they do not run
on SD3.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
from torch import nn

from harness.policy import Conditioning
from harness.sd_policy import StableDiffusionPolicy

# SD3-Medium's pipeline defaults (diffusers' StableDiffusion3Pipeline.__call__ and the model card): 28 steps, CFG 7.0.
SD3_SAMPLER_DEFAULTS = {"num_inference_steps": 28, "guidance_scale": 7.0, "scheduler": "pipeline"}


class FlowMatchEulerScheduler(FlowMatchEulerDiscreteScheduler):
    """The flow-matching Euler sampler with the two things :mod:`harness.sampling` asks of every scheduler: an
    identity ``scale_model_input`` (a flow transformer takes x_t unscaled; diffusers' SD3 pipeline never scales it)
    and ``init_noise_sigma`` = 1 (sampling starts from x_1 = ε, unit Gaussian noise)."""

    init_noise_sigma = 1.0

    def scale_model_input(self, sample: torch.Tensor, timestep: object = None) -> torch.Tensor:
        return sample


class StableDiffusion3Policy(StableDiffusionPolicy):
    """SD3 / SD3.5: ``Conditioning.embeds`` is the joint CLIP+T5 sequence, ``added["pooled"]`` the pooled CLIP
    embeddings. The unconditional branch is the encoding of "" (SD3 has no zeroed empty prompt)."""

    pipeline_class: ClassVar[type] = StableDiffusion3Pipeline
    load_kwargs: ClassVar[dict] = {}

    def __init__(self, pipeline: StableDiffusion3Pipeline, name: str, fingerprint: str, base: str | None = None
                 ) -> None:
        self.pipeline = pipeline
        # The pipeline keeps diffusers' own class (so save_pretrained writes a folder diffusers reads); the policy
        # samples with the same config through the subclass above.
        self.scheduler = FlowMatchEulerScheduler.from_config(pipeline.scheduler.config)
        self.native_scheduler = self.scheduler
        self.unet, self.vae = pipeline.transformer, pipeline.vae
        self.text_encoder, self.tokenizer = pipeline.text_encoder, pipeline.tokenizer
        self.name, self.fingerprint = name, fingerprint
        self.base, self.base_fingerprint = base or name, fingerprint
        self.sampler_defaults = dict(SD3_SAMPLER_DEFAULTS)
        if self.vae.dtype == torch.float16 and self.vae.config.force_upcast:
            self.vae.to(torch.float32)
        for module in self.modules().values():
            if module is not self.unet:
                module.requires_grad_(False)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.patch_size = self.unet.config.patch_size
        self.default_height = self.default_width = self.unet.config.sample_size * self.vae_scale_factor

    def modules(self) -> dict[str, nn.Module]:
        encoders = {"text_encoder": self.pipeline.text_encoder, "text_encoder_2": self.pipeline.text_encoder_2}
        if self.pipeline.text_encoder_3 is not None:  # SD3 may be run without T5 (zeros in its place)
            encoders["text_encoder_3"] = self.pipeline.text_encoder_3
        return {"unet": self.unet, "vae": self.vae, **encoders}

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        embeds, _, pooled, _ = self.pipeline.encode_prompt(
            prompts, prompts, prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return Conditioning(embeds, added={"pooled": pooled})

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The transformer's velocity prediction; ``timesteps`` are the scheduler's (σ · 1000)."""
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(latents.shape[0])
        return self.unet(hidden_states=latents, timestep=timesteps, encoder_hidden_states=cond.embeds,
                         pooled_projections=cond.added["pooled"]).sample

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        f = self.vae_scale_factor * self.patch_size
        if height % f or width % f:
            raise ValueError(f"{self.name} needs sizes divisible by {f}, got {height}x{width}")
        return (self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
