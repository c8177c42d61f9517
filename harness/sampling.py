"""Sampling with classifier-free guidance over any :class:`~harness.policy.Policy`, with DDIM or a named diffusers
scheduler.

Each image owns a generator seeded with its own seed, so an image depends only on (checkpoint, prompt, seed,
sampler config) and the batch it was generated in does not change it beyond floating-point kernel choices.

Schedulers (``SamplerConfig.scheduler``): ``"ddim"`` is the policy's own DDIM scheduler (what the builtin model and the
trainers use); ``"pipeline"`` is the checkpoint's own scheduler as its ``scheduler_config.json`` names it (PNDM for
SD 1.5, Euler for SDXL: what GenEval's official script samples with, since it never replaces it); any other name in
:data:`SCHEDULERS` is that diffusers class built with ``from_config`` from the checkpoint's config, so the noise
schedule and ``prediction_type`` carry over. Every non-DDIM scheduler is a fresh object per call: the policy's own
scheduler is never stepped or reconfigured by it.
"""

from __future__ import annotations

import ctypes
import functools
import inspect
import os
import sys
from dataclasses import asdict, dataclass, replace

import torch

from harness import cfg_prefix
from harness.errors import HarnessError
from harness.policy import Conditioning, Policy

PIPELINE = "pipeline"
# Short names of the diffusers schedulers this loop drives (one model call per step); a diffusers class name
# (e.g. "EulerDiscreteScheduler") is accepted as well.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "lms": "LMSDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "unipc": "UniPCMultistepScheduler",
    "deis": "DEISMultistepScheduler",
    "ddpm": "DDPMScheduler",
}


# glibc malloc settings for denoising loops (see retain_freed_memory): blocks up to 32 MiB (the largest mmap threshold
# glibc accepts on 64-bit) come from the heap, and up to 1 GiB of freed heap is kept for the next step.
MALLOC_MMAP_THRESHOLD = 32 * 2**20
MALLOC_TRIM_THRESHOLD = 2**30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc's malloc.h)


@functools.cache
def retain_freed_memory() -> bool:
    """Keep freed activation memory in the process (glibc only); True when the settings were applied.

    A denoiser call allocates and frees the same few dozen activation tensors (megabytes each) at every step. glibc
    serves blocks above its mmap threshold with a fresh ``mmap`` and returns them with ``munmap`` on free, and
    trims the heap's free top back to the kernel: every step then page-faults its activations in again (zeroed by
    the kernel), which cost about 10 % of the builtin model's sampling time as system time. With these thresholds
    the blocks are reused instead; the process holds its peak heap rather than shrinking between steps. Pixels are
    unchanged (the same kernels run on the same numbers). Applied once per process; left alone where the user set
    malloc's thresholds through the environment, and on platforms without glibc.
    """
    if not sys.platform.startswith("linux") or any(
        name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ) or "threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(None)  # symbols of the running process, its C library included
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError unless the C library is glibc
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # The mmap threshold first: setting either one turns off glibc's dynamic threshold, and the trim threshold alone
    # would leave every block above the 128 KiB default mmapped.
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))


@dataclass(frozen=True)
class SamplerConfig:
    """Everything that decides how a sample is drawn; recorded with every image and result."""

    num_inference_steps: int = 20
    guidance_scale: float = 3.0
    eta: float = 0.0  # DDIM eta: 0 is deterministic given the initial noise; > 0 adds per-step noise
    height: int | None = None  # None: the policy's native resolution
    width: int | None = None
    scheduler: str = "ddim"  # "ddim", "pipeline" (the checkpoint's own) or a name of SCHEDULERS

    def resolved(self, policy: Policy) -> SamplerConfig:
        """Fill the resolution from the policy, and name the class "pipeline" stands for ("pipeline:PNDMScheduler"),
        so the recorded config (and the image cache key) is complete."""
        scheduler = self.scheduler
        if scheduler.split(":", 1)[0] == PIPELINE:
            scheduler = f"{PIPELINE}:{type(native_scheduler(policy)).__name__}"
        return replace(self, height=self.height or policy.default_height, width=self.width or policy.default_width,
                       scheduler=scheduler)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_policy(cls, policy: Policy, **overrides: object) -> SamplerConfig:
        """The policy's own defaults (e.g. from its model_index.json), then explicit ``overrides`` (None = keep)."""
        defaults = {k: v for k, v in getattr(policy, "sampler_defaults", {}).items() if k in cls.__dataclass_fields__}
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**defaults).resolved(policy)


def scheduler_choices() -> list[str]:
    return [PIPELINE, *SCHEDULERS]


def check_scheduler_name(name: str) -> None:
    """One-line error for a scheduler name that is neither "pipeline", a short name nor a diffusers scheduler class."""
    base = name.split(":", 1)[0]
    if base == PIPELINE or name in SCHEDULERS or _diffusers_class(name) is not None:
        return
    raise HarnessError(f"unknown scheduler {name!r}; choose one of {', '.join(scheduler_choices())} "
                       "(or a diffusers scheduler class name such as EulerDiscreteScheduler)")


def native_scheduler(policy: Policy) -> object:
    """The checkpoint's own scheduler (a Stable Diffusion policy keeps it as ``native_scheduler`` when it swaps in
    DDIM); a policy without one (the builtin model) samples natively with its DDIM scheduler."""
    return getattr(policy, "native_scheduler", None) or policy.scheduler


def make_scheduler(policy: Policy, config: SamplerConfig) -> object:
    """The scheduler ``config`` names, checked against ``config.eta`` (only DDIM-like schedulers take eta).

    "ddim" is the policy's own scheduler object (so trainers and the builtin model sample exactly as before); every
    other name is a new object built from the checkpoint's config, which therefore never leaks into later DDIM use.
    """
    check_scheduler_name(config.scheduler)
    name = config.scheduler
    if name == "ddim":
        scheduler = policy.scheduler
        if "eta" not in inspect.signature(scheduler.step).parameters:  # e.g. SD3's flow-matching Euler
            raise HarnessError(f"{policy.name} samples with {type(scheduler).__name__}, which has no DDIM; pass "
                               "--scheduler pipeline (its own sampler)")
    else:
        native = native_scheduler(policy)
        pipeline = name.split(":", 1)[0] == PIPELINE
        cls = type(native) if pipeline else _diffusers_class(SCHEDULERS.get(name, name))
        scheduler = cls.from_config(native.config)  # type: ignore[union-attr]
    if config.eta and "eta" not in inspect.signature(scheduler.step).parameters:
        raise HarnessError(f"eta={config.eta} needs a DDIM-like scheduler; {type(scheduler).__name__} "
                           f"(--scheduler {name}) has no eta: drop --eta or use --scheduler ddim")
    return scheduler


def _diffusers_class(name: str) -> type | None:
    import diffusers  # here, not at the top: importing it costs seconds that a fully cached run never needs

    cls = getattr(diffusers, name, None) if name.endswith("Scheduler") else None
    return cls if isinstance(cls, type) and hasattr(cls, "from_config") else None


def initial_noise(policy: Policy, seeds: list[int], config: SamplerConfig
                  ) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Starting latents for the policy's DDIM scheduler, one generator per image (also used for the per-step noise
    when eta > 0)."""
    noise, generators = _unit_noise(policy, seeds, config)
    return noise * policy.scheduler.init_noise_sigma, generators


def _unit_noise(policy: Policy, seeds: list[int], config: SamplerConfig) -> tuple[torch.Tensor, list[torch.Generator]]:
    shape = policy.latent_shape(config.height, config.width)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
    return noise.to(policy.device, policy.dtype), generators


def guided_output(policy: Policy, latents: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                  uncond: Conditioning | None, guidance_scale: float, scheduler: object | None = None
                  ) -> torch.Tensor:
    """Classifier-free guidance: u + s (c - u), with both branches in one denoiser call (whose text-free prefix
    runs once when gradients are off: :mod:`harness.cfg_prefix`).

    ``scheduler`` scales the model input (sigma-space schedulers such as Euler divide by sqrt(sigma^2 + 1));
    default: the policy's own.
    """
    retain_freed_memory()  # once per process; here so that the trainers' own denoising loops get it as well
    scheduler = scheduler or policy.scheduler
    model_input = scheduler.scale_model_input(latents, t)  # type: ignore[attr-defined]
    if uncond is None or guidance_scale == 1.0:
        return policy.denoise(model_input, t, cond)
    cfg_prefix.install(getattr(policy, "unet", None))
    with cfg_prefix.duplicated_halves():  # the text-free prefix of the UNet runs once for both halves
        both = policy.denoise(torch.cat([model_input, model_input]), t, uncond.cat(cond))
    u, c = both.chunk(2)
    return u + guidance_scale * (c - u)


@torch.no_grad()
def sample(policy: Policy, prompts: list[str], seeds: list[int], config: SamplerConfig) -> torch.Tensor:
    """uint8 images [B, H, W, 3] for ``prompts`` with one seed each."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    config = config.resolved(policy)
    scheduler = make_scheduler(policy, config)
    scheduler.set_timesteps(config.num_inference_steps, device=policy.device)  # type: ignore[attr-defined]
    # Noise is scaled after set_timesteps: a sigma-space scheduler's init_noise_sigma depends on its timesteps.
    noise, generators = _unit_noise(policy, seeds, config)
    latents = noise * scheduler.init_noise_sigma  # type: ignore[attr-defined]
    cond = policy.encode_prompts(prompts)
    uncond = policy.encode_prompts([""] * len(prompts)) if config.guidance_scale != 1.0 else None
    accepts = inspect.signature(scheduler.step).parameters  # type: ignore[attr-defined]
    for t in scheduler.timesteps:  # type: ignore[attr-defined]
        output = guided_output(policy, latents, t, cond, uncond, config.guidance_scale, scheduler)
        kwargs: dict = {}
        if "eta" in accepts:
            kwargs["eta"] = config.eta
        # Per-image generators keep stochastic steps (eta > 0, ancestral schedulers) independent of the batch.
        if "generator" in accepts and (config.eta > 0 or "eta" not in accepts):
            kwargs["generator"] = generators
        latents = scheduler.step(output, t, latents, **kwargs).prev_sample  # type: ignore[attr-defined]
    return policy.decode(latents).cpu()
