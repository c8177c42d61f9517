"""DDIM sampling with classifier-free guidance over any :class:`~harness.policy.Policy`.

Each image owns a generator seeded with its own seed, so an image depends only on (checkpoint, prompt, seed,
sampler config) and the batch it was generated in does not change it beyond floating-point kernel choices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from harness.policy import Conditioning, Policy


@dataclass(frozen=True)
class SamplerConfig:
    """Everything that decides how a sample is drawn; recorded with every image and result."""

    num_inference_steps: int = 20
    guidance_scale: float = 3.0
    eta: float = 0.0  # DDIM eta: 0 is deterministic given the initial noise; > 0 adds per-step noise
    height: int | None = None  # None: the policy's native resolution
    width: int | None = None
    scheduler: str = "ddim"

    def resolved(self, policy: Policy) -> SamplerConfig:
        """Fill the resolution from the policy so the recorded config is complete."""
        return replace(self, height=self.height or policy.default_height, width=self.width or policy.default_width)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_policy(cls, policy: Policy, **overrides: object) -> SamplerConfig:
        """The policy's own defaults (e.g. from its model_index.json), then explicit ``overrides`` (None = keep)."""
        defaults = {k: v for k, v in getattr(policy, "sampler_defaults", {}).items() if k in cls.__dataclass_fields__}
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**defaults).resolved(policy)


def initial_noise(policy: Policy, seeds: list[int], config: SamplerConfig
                  ) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Starting latents, one generator per image (also used for the per-step noise when eta > 0)."""
    shape = policy.latent_shape(config.height, config.width)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
    return noise.to(policy.device, policy.dtype) * policy.scheduler.init_noise_sigma, generators


def guided_output(policy: Policy, latents: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                  uncond: Conditioning | None, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: u + s (c - u), with both branches in one denoiser call."""
    model_input = policy.scheduler.scale_model_input(latents, t)
    if uncond is None or guidance_scale == 1.0:
        return policy.denoise(model_input, t, cond)
    both = policy.denoise(torch.cat([model_input, model_input]), t, uncond.cat(cond))
    u, c = both.chunk(2)
    return u + guidance_scale * (c - u)


@torch.no_grad()
def sample(policy: Policy, prompts: list[str], seeds: list[int], config: SamplerConfig) -> torch.Tensor:
    """uint8 images [B, H, W, 3] for ``prompts`` with one seed each."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if config.scheduler != "ddim":
        raise ValueError(f"unsupported scheduler {config.scheduler!r}; only 'ddim' is implemented")
    config = config.resolved(policy)
    latents, generators = initial_noise(policy, seeds, config)
    cond = policy.encode_prompts(prompts)
    uncond = policy.encode_prompts([""] * len(prompts)) if config.guidance_scale != 1.0 else None
    scheduler = policy.scheduler
    scheduler.set_timesteps(config.num_inference_steps, device=policy.device)
    for t in scheduler.timesteps:
        output = guided_output(policy, latents, t, cond, uncond, config.guidance_scale)
        step_gen = generators if config.eta > 0 else None
        latents = scheduler.step(output, t, latents, eta=config.eta, generator=step_gen).prev_sample
    return policy.decode(latents).cpu()
