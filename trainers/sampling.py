"""DDIM trajectories with per-step log-probabilities: the stochastic policy every online method trains.

With eta > 0 one DDIM step is a Gaussian (``specs/trainers.md``, "The DDIM step as a stochastic policy"):

    x_{t-1} ~ N(mu, sigma_t^2 I),  sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev),
    mu = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev - sigma_t^2) * eps_hat,

where a is the cumulative alpha, (x0_hat, eps_hat) come from the CFG-combined model output (epsilon or v
prediction; x0_hat clipped when the scheduler clips, exactly as diffusers' ``DDIMScheduler.step``) and the previous
timestep is t - num_train_timesteps / num_steps. Its log-probability follows the official DDPO / D3PO / DPOK
convention: the per-element log density -(x - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi), **averaged** over the
latent's C, H, W; ratios, beta and clip ranges of every method are tuned to that mean.

Sampling reuses :func:`harness.sampling.initial_noise` and :func:`harness.sampling.guided_output` (CFG with "" as the
unconditional prompt and the same guidance as evaluation) and draws per-step noise from each image's own generator
the way ``DDIMScheduler.step`` does, so at any eta the images equal ``harness.sampling.sample``'s for the same seeds:
the trained model is evaluated on the distribution family it was trained on.

All tensors of a :class:`~trainers.base.Trajectories` live on the CPU in float32 (latents are small next to the
model, and rounds are saved and gathered from there); :func:`step_stats` moves the rows it needs to the policy.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from diffusers.utils.torch_utils import randn_tensor

from harness.errors import HarnessError
from harness.policy import Conditioning, Policy
from harness.sampling import SamplerConfig, guided_output, initial_noise
from trainers.base import Trajectories

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class StepStats:
    """The policy's Gaussian step at recorded transitions, with gradients (see :func:`step_stats`)."""

    log_prob: torch.Tensor  # [b]: log density of the recorded next latent (mean over C, H, W)
    mean: torch.Tensor  # [b, C, H, W]: mu
    std: torch.Tensor  # [] for one step (step_stats); [b] per row (transition_stats)
    eps: torch.Tensor  # [b, C, H, W]: the CFG-combined noise prediction eps_hat (DPOK's KL compares these)


class GaussianStep(NamedTuple):
    prev_sample: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    eps: torch.Tensor


class Denoiser(Protocol):
    """Something that runs in place of the policy's trainable unet (``trainers.reference.Reference``)."""

    def active(self) -> object:  # a context manager
        ...


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """mean over all non-batch dims of log N(x; mean, std^2), per element:
    -(x - mean)^2 / (2 std^2) - log std - log sqrt(2 pi)."""
    std = std.reshape(std.shape + (1,) * (x.ndim - std.ndim)) if std.ndim else std
    per_element = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - LOG_SQRT_2PI
    return per_element.mean(dim=tuple(range(1, x.ndim)))


def _alphas(scheduler: object, timestep: torch.Tensor, num_inference_steps: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_t, a_prev) as float32 tensors broadcastable over a latent batch, for one timestep or one per row."""
    alphas = scheduler.alphas_cumprod.float()  # type: ignore[attr-defined]
    t = torch.as_tensor(timestep).long().cpu()
    prev = t - scheduler.config.num_train_timesteps // num_inference_steps  # type: ignore[attr-defined]
    final = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float32)  # type: ignore[attr-defined]
    a_t = alphas[t]
    a_prev = torch.where(prev >= 0, alphas[prev.clamp(min=0)], final)
    if t.ndim:
        a_t, a_prev = a_t.view(-1, 1, 1, 1), a_prev.view(-1, 1, 1, 1)
    return a_t, a_prev


def _x0_and_eps(scheduler: object, output: torch.Tensor, latents: torch.Tensor, a_t: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, eps_hat) from the model output, with x0 thresholded/clipped as ``DDIMScheduler.step`` does."""
    config = scheduler.config  # type: ignore[attr-defined]
    b_t = 1 - a_t
    if config.prediction_type == "epsilon":
        x0, eps = (latents - b_t**0.5 * output) / a_t**0.5, output
    elif config.prediction_type == "v_prediction":
        x0, eps = a_t**0.5 * latents - b_t**0.5 * output, a_t**0.5 * output + b_t**0.5 * latents
    elif config.prediction_type == "sample":
        x0, eps = output, (latents - a_t**0.5 * output) / b_t**0.5
    else:
        raise HarnessError(f"unsupported prediction_type {config.prediction_type!r}; expected epsilon, "
                           "v_prediction or sample")
    if config.thresholding:
        x0 = scheduler._threshold_sample(x0)  # type: ignore[attr-defined]
    elif config.clip_sample:
        x0 = x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    return x0, eps


def _gaussian_step(scheduler: object, model_output: torch.Tensor, timestep: torch.Tensor, latents: torch.Tensor,
                   eta: float, prev_latents: torch.Tensor | None = None,
                   generator: torch.Generator | list[torch.Generator] | None = None,
                   num_inference_steps: int | None = None) -> GaussianStep:
    steps = num_inference_steps or scheduler.num_inference_steps  # type: ignore[attr-defined]
    output, latents = model_output.float(), latents.float()
    a_t, a_prev = (a.to(latents.device) for a in _alphas(scheduler, timestep, steps))
    x0, eps = _x0_and_eps(scheduler, output, latents, a_t)
    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = eta * variance**0.5
    # Same operation order as DDIMScheduler.step, so float32 results match harness.sampling bit for bit.
    mean = a_prev**0.5 * x0 + (1 - a_prev - std**2) ** 0.5 * eps
    if prev_latents is None:
        prev_latents = mean
        if eta > 0:
            noise = randn_tensor(output.shape, generator=generator, device=output.device, dtype=output.dtype)
            prev_latents = mean + std * noise
    std_rows = std.flatten() if std.ndim else std
    log_prob = gaussian_log_prob(prev_latents.detach().float(), mean, std_rows)
    return GaussianStep(prev_latents, log_prob, mean, std_rows, eps)


def ddim_gaussian_step(scheduler: object, model_output: torch.Tensor, timestep: torch.Tensor | int,
                       latents: torch.Tensor, eta: float, prev_latents: torch.Tensor | None = None,
                       generator: torch.Generator | list[torch.Generator] | None = None,
                       num_inference_steps: int | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DDIM step as a Gaussian: (prev_sample, log_prob [B], mean, std), computed in float32.

    ``timestep`` is one timestep or one per row. Without ``prev_latents`` the next latent is drawn (per-image
    generators as in diffusers); with it, ``log_prob`` is that latent's density. ``num_inference_steps`` defaults to
    the scheduler's current setting (it fixes the previous timestep). At eta = 0 the step is deterministic and has no
    density (log_prob is NaN).
    """
    step = _gaussian_step(scheduler, model_output, torch.as_tensor(timestep), latents, eta, prev_latents, generator,
                          num_inference_steps)
    return step.prev_sample, step.log_prob, step.mean, step.std


def encode_conditioning(policy: Policy, prompts: list[str], guidance_scale: float
                        ) -> tuple[Conditioning, Conditioning | None]:
    """(cond, uncond) for CFG: each distinct prompt encoded once, "" as the unconditional branch; no gradients
    (only the denoiser is trained)."""
    unique = sorted(set(prompts))
    with torch.no_grad():
        encoded = policy.encode_prompts([*unique, ""])
    index = torch.tensor([unique.index(p) for p in prompts], device=encoded.embeds.device)
    cond = encoded.select(index)
    uncond = None
    if guidance_scale != 1.0:
        uncond = encoded.select(torch.full_like(index, len(unique)))
    return cond, uncond


def _check(policy: Policy, prompts: list[str], seeds: list[int], groups: list[int], config: SamplerConfig) -> None:
    if not (len(prompts) == len(seeds) == len(groups)):
        raise HarnessError(f"{len(prompts)} prompts, {len(seeds)} seeds and {len(groups)} groups: need one each")
    if not prompts:
        raise HarnessError("no prompts to sample; give at least one")
    if config.scheduler != "ddim":
        raise HarnessError(f"training samples with DDIM only (its step is the Gaussian policy); got scheduler "
                           f"{config.scheduler!r}: use --scheduler ddim")
    if config.eta < 0:
        raise HarnessError(f"eta must be >= 0 (> 0 for training), got {config.eta}")


@torch.no_grad()
def sample_trajectories(policy: Policy, prompts: list[str], seeds: list[int], config: SamplerConfig,
                        groups: list[int], shared_noise: bool = False, batch_size: int | None = None
                        ) -> Trajectories:
    """Sample one image per (prompt, seed) and record every DDIM step.

    Each image owns a generator seeded with its seed, drawing its x_T and then its per-step noise, so a row does not
    depend on the batch it is in. With ``shared_noise`` every image of a group starts from the x_T of the group's
    first row (D3PO's protocol: images of a prompt differ only through the eta noise of later steps); its per-step
    noise is still its own. ``batch_size`` bounds how many images run through the model at once (default: all).
    """
    _check(policy, prompts, seeds, groups, config)
    config = config.resolved(policy)
    scheduler = policy.scheduler
    scheduler.set_timesteps(config.num_inference_steps, device=policy.device)  # type: ignore[attr-defined]
    timesteps = scheduler.timesteps  # type: ignore[attr-defined]
    noise, generators = initial_noise(policy, seeds, config)
    if shared_noise:
        first: dict[int, int] = {}
        noise = noise[[first.setdefault(g, row) for row, g in enumerate(groups)]]
    latents_out, log_probs_out, images_out = [], [], []
    size = batch_size or len(prompts)
    for start in range(0, len(prompts), size):
        rows = slice(start, start + size)
        cond, uncond = encode_conditioning(policy, prompts[rows], config.guidance_scale)
        latents = noise[rows].float()
        recorded, log_probs = [latents.cpu()], []
        for t in timesteps:
            output = guided_output(policy, latents.to(policy.dtype), t, cond, uncond, config.guidance_scale)
            step = _gaussian_step(scheduler, output, t, latents, config.eta, generator=generators[rows],
                                  num_inference_steps=config.num_inference_steps)
            if config.eta > 0 and not float(step.std.min()) > 0:
                raise HarnessError(
                    f"the DDIM step from t={int(t)} has zero variance (a_t equals the final alpha: a scheduler with "
                    "set_alpha_to_one or steps_offset 0 ending at t=0), so it has no log-probability to train; use "
                    "another num_inference_steps or a scheduler config with set_alpha_to_one=False and steps_offset=1")
            latents = step.prev_sample
            recorded.append(latents.cpu())
            log_probs.append(step.log_prob.cpu())
        latents_out.append(torch.stack(recorded, dim=1))
        log_probs_out.append(torch.stack(log_probs, dim=1))
        images_out.append(policy.decode(latents.to(policy.dtype)).cpu())
    return Trajectories(
        prompts=list(prompts),
        groups=list(groups),
        seeds=[int(s) for s in seeds],
        latents=torch.cat(latents_out),
        timesteps=timesteps.cpu().clone(),
        log_probs=torch.cat(log_probs_out),
        images=torch.cat(images_out),
        config=config,
    )


def _guided_per_row(policy: Policy, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning,
                    uncond: Conditioning | None, guidance_scale: float) -> torch.Tensor:
    """:func:`harness.sampling.guided_output` with one timestep per row (it takes one t per call): u + s (c - u),
    both branches in one denoiser call."""
    model_input = policy.scheduler.scale_model_input(latents, timesteps)  # type: ignore[attr-defined]
    if uncond is None or guidance_scale == 1.0:
        return policy.denoise(model_input, timesteps, cond)
    both = policy.denoise(torch.cat([model_input, model_input]), torch.cat([timesteps, timesteps]), uncond.cat(cond))
    u, c = both.chunk(2)
    return u + guidance_scale * (c - u)


def transition_stats(policy: Policy, latents: torch.Tensor, next_latents: torch.Tensor, timesteps: torch.Tensor,
                     prompts: list[str], config: SamplerConfig, denoiser: Denoiser | None = None,
                     conditioning: tuple[Conditioning, Conditioning | None] | None = None) -> StepStats:
    """:class:`StepStats` of arbitrary recorded transitions x_t -> x_{t-1}, one timestep per row (``timesteps``
    [b], the scheduler's t values), WITH gradients unless ``denoiser`` (a frozen reference) is given; ``std`` is per
    row [b].

    All rows go through the denoiser in one CFG call, also when their timesteps differ: under DDP a second forward
    before the same backward would mark parameters ready twice.
    """
    device = policy.device
    cond, uncond = conditioning or encode_conditioning(policy, prompts, config.guidance_scale)
    timesteps = torch.as_tensor(timesteps).long()
    x = latents.to(device, torch.float32)
    model_input = x.to(policy.dtype)
    with denoiser.active() if denoiser is not None else nullcontext():  # type: ignore[attr-defined]
        if bool((timesteps == timesteps[0]).all()):
            t = timesteps[0].to(device)  # one step: exactly the sampler's call
            output = guided_output(policy, model_input, t, cond, uncond, config.guidance_scale)
        else:
            t = timesteps.to(device)
            output = _guided_per_row(policy, model_input, t, cond, uncond, config.guidance_scale)
    step = _gaussian_step(policy.scheduler, output, t, x, config.eta,
                          prev_latents=next_latents.to(device, torch.float32),
                          num_inference_steps=config.num_inference_steps)
    std = step.std.expand(len(timesteps)) if step.std.ndim == 0 else step.std
    return StepStats(step.log_prob, step.mean, std, step.eps)


def step_stats(policy: Policy, trajectories: Trajectories, step: int, rows: list[int] | None = None,
               denoiser: Denoiser | None = None,
               conditioning: tuple[Conditioning, Conditioning | None] | None = None) -> StepStats:
    """Recompute DDIM step ``step`` (index into ``trajectories.timesteps``) for ``rows`` (default: all) with the
    policy's current weights, or the reference's when ``denoiser`` is given: the log-prob of the recorded next
    latent, the Gaussian's mean and std, and eps_hat. Under the weights that sampled them, ``log_prob`` reproduces
    ``trajectories.log_probs[rows, step]`` (up to kernel differences between batch sizes).

    ``conditioning`` (from :func:`encode_conditioning` for exactly these rows) saves re-encoding the prompts when a
    method calls this for every step of the same rows.
    """
    rows = list(range(len(trajectories))) if rows is None else list(rows)
    index = torch.tensor(rows, dtype=torch.long)
    stats = transition_stats(
        policy,
        trajectories.latents[index, step],
        trajectories.latents[index, step + 1],
        trajectories.timesteps[step].expand(len(rows)),
        [trajectories.prompts[r] for r in rows],
        trajectories.config,
        denoiser,
        conditioning,
    )
    stats.std = stats.std[0]
    return stats
