"""Trajectory sampling (trainers/sampling.py) and the frozen reference (trainers/reference.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from scipy.stats import norm

from harness.checkpoints import resolve_checkpoint
from harness.errors import HarnessError
from harness.sampling import SamplerConfig, sample
from trainers.reference import Reference
from trainers.sampling import ddim_gaussian_step, sample_trajectories, step_stats, transition_stats

PROMPTS = ["a red cube", "two blue balls", "a red cube", "two blue balls"]
SEEDS = [3, 4, 5, 6]
GROUPS = [0, 1, 0, 1]


@pytest.fixture(scope="module")
def policy(builtin_random_ckpt: Path):
    return resolve_checkpoint(str(builtin_random_ckpt))


def _config(eta: float, steps: int = 3) -> SamplerConfig:
    return SamplerConfig(num_inference_steps=steps, guidance_scale=2.0, eta=eta)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_step_log_prob_is_the_closed_form_gaussian(prediction_type: str) -> None:
    """mu and sigma from the DDIM formulas by hand; log-prob = scipy's per-element log density, averaged."""
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", prediction_type=prediction_type,
                              clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(10)
    gen = torch.Generator().manual_seed(0)
    latents, output, prev = (torch.randn(2, 4, 3, 3, generator=gen) for _ in range(3))
    t, eta = 500, 0.7
    _, log_prob, mean, std = ddim_gaussian_step(scheduler, output, t, latents, eta, prev_latents=prev)

    a_t = scheduler.alphas_cumprod[t].double()
    a_prev = scheduler.alphas_cumprod[t - 100].double()
    x, out = latents.double(), output.double()
    if prediction_type == "epsilon":
        eps = out
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    else:
        x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * out
        eps = a_t.sqrt() * out + (1 - a_t).sqrt() * x
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
    mu = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps
    expected = norm.logpdf(prev.double().numpy(), loc=mu.numpy(), scale=float(sigma)).mean(axis=(1, 2, 3))

    assert float(std) == pytest.approx(float(sigma), rel=1e-5)
    torch.testing.assert_close(mean.double(), mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_prob.double().numpy(), expected, rtol=1e-5)
    # torch.distributions agrees as well, per element
    dist = torch.distributions.Normal(mu, sigma)
    np.testing.assert_allclose(log_prob.double().numpy(), dist.log_prob(prev.double()).mean((1, 2, 3)).numpy(),
                               rtol=1e-5)


def test_ddim_step_draws_like_the_scheduler() -> None:
    """Without prev_latents the step samples exactly as DDIMScheduler.step with the same per-image generators."""
    scheduler = DDIMScheduler(num_train_timesteps=1000, prediction_type="v_prediction", clip_sample=True,
                              timestep_spacing="trailing", set_alpha_to_one=False)
    scheduler.set_timesteps(4)
    latents, output = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t = scheduler.timesteps[1]
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    ours, _, _, _ = ddim_gaussian_step(scheduler, output, t, latents, 1.0, generator=gens)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    theirs = scheduler.step(output, t, latents, eta=1.0, generator=gens).prev_sample
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_images_match_harness_sampling(policy, eta: float) -> None:
    """Same seeds, same sampler config: the images evaluation would draw (eta 0, and eta 1 with per-image noise)."""
    trajectories = sample_trajectories(policy, PROMPTS, SEEDS, _config(eta), GROUPS)
    images = sample(policy, PROMPTS, SEEDS, _config(eta))
    assert torch.equal(trajectories.images, images)
    assert trajectories.latents.shape == (4, 4, 27, 16, 16)
    assert trajectories.timesteps.shape == (3,)


def test_recomputed_log_prob_reproduces_recorded(policy) -> None:
    trajectories = sample_trajectories(policy, PROMPTS, SEEDS, _config(1.0), GROUPS)
    assert trajectories.log_probs.shape == (4, 3)
    assert torch.isfinite(trajectories.log_probs).all()
    for step in range(3):
        stats = step_stats(policy, trajectories, step)
        torch.testing.assert_close(stats.log_prob.detach(), trajectories.log_probs[:, step], rtol=0, atol=1e-5)
        assert stats.log_prob.requires_grad
    # a subset of rows (different batch size, so possibly different kernels) agrees closely too
    stats = step_stats(policy, trajectories, 1, rows=[2, 1])
    torch.testing.assert_close(stats.log_prob.detach(), trajectories.log_probs[[2, 1], 1], rtol=0, atol=1e-4)


def test_shared_noise_starts_each_group_from_its_first_seed(policy) -> None:
    shared = sample_trajectories(policy, PROMPTS, SEEDS, _config(1.0), GROUPS, shared_noise=True)
    plain = sample_trajectories(policy, PROMPTS, SEEDS, _config(1.0), GROUPS, batch_size=3)
    assert torch.equal(shared.latents[2, 0], shared.latents[0, 0])
    assert torch.equal(shared.latents[3, 0], shared.latents[1, 0])
    assert torch.equal(shared.latents[:2], plain.latents[:2])
    assert not torch.equal(shared.latents[2, 1], shared.latents[0, 1])  # later steps have their own noise


def test_seeded_per_image_independent_of_batch(policy) -> None:
    whole = sample_trajectories(policy, PROMPTS, SEEDS, _config(1.0), GROUPS)
    alone = sample_trajectories(policy, PROMPTS[3:], SEEDS[3:], _config(1.0), GROUPS[3:])
    torch.testing.assert_close(alone.latents[0], whole.latents[3], rtol=0, atol=1e-5)


def test_bad_sampler_input_is_one_line_error(policy) -> None:
    with pytest.raises(HarnessError, match="seeds"):
        sample_trajectories(policy, PROMPTS, SEEDS[:2], _config(1.0), GROUPS)
    with pytest.raises(HarnessError, match="DDIM"):
        sample_trajectories(policy, PROMPTS, SEEDS, SamplerConfig(scheduler="euler"), GROUPS)


def test_reference_is_frozen_copy(policy) -> None:
    trajectories = sample_trajectories(policy, PROMPTS[:2], SEEDS[:2], _config(1.0), GROUPS[:2])
    reference = Reference(policy)
    with torch.no_grad():
        for p in policy.unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    try:
        ref = step_stats(policy, trajectories, 0, denoiser=reference)
        moved = step_stats(policy, trajectories, 0)
        assert not ref.log_prob.requires_grad
        torch.testing.assert_close(ref.log_prob, trajectories.log_probs[:, 0], rtol=0, atol=1e-5)
        assert not torch.allclose(moved.log_prob.detach(), trajectories.log_probs[:, 0], atol=1e-3)
        assert policy.unet is not reference.unet
    finally:
        for p, q in zip(policy.unet.parameters(), reference.unet.parameters(), strict=True):
            p.data.copy_(q.data)


def test_zero_variance_step_is_refused(policy) -> None:
    """A schedule whose last step has a_t = a_prev (leading spacing, steps_offset 0) has no density there."""
    native = policy.scheduler
    policy.scheduler = DDIMScheduler.from_config(native.config, timestep_spacing="leading", steps_offset=0)
    try:
        with pytest.raises(HarnessError, match="zero variance"):
            sample_trajectories(policy, PROMPTS[:1], SEEDS[:1], _config(1.0, steps=2), GROUPS[:1])
    finally:
        policy.scheduler = native


def test_transitions_at_mixed_steps_match_per_step_stats(policy) -> None:
    """One model call over rows at different timesteps gives each row what its own step's call gives."""
    trajectories = sample_trajectories(policy, PROMPTS, SEEDS, _config(1.0), GROUPS)
    steps = torch.tensor([0, 2, 1, 0])
    rows = torch.arange(4)
    mixed = transition_stats(policy, trajectories.latents[rows, steps], trajectories.latents[rows, steps + 1],
                             trajectories.timesteps[steps], PROMPTS, trajectories.config)
    for row, step in enumerate(steps.tolist()):
        single = step_stats(policy, trajectories, step, rows=[row])
        torch.testing.assert_close(mixed.log_prob[row].detach(), single.log_prob[0].detach(), rtol=0, atol=1e-4)
        torch.testing.assert_close(mixed.eps[row].detach(), single.eps[0].detach(), rtol=1e-4, atol=1e-5)
        assert float(mixed.std[row]) == pytest.approx(float(single.std))


def test_reference_with_lora_is_the_base_under_the_adapter(policy) -> None:
    from peft import LoraConfig

    trajectories = sample_trajectories(policy, PROMPTS[:2], SEEDS[:2], _config(1.0), GROUPS[:2])
    adapted = copy.deepcopy(policy)
    adapted.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, param in adapted.unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # B starts at zero: make the adapter change the output
    last = trajectories.num_steps - 1  # the most sensitive step (smallest sigma_t)
    adapted_before = step_stats(adapted, trajectories, last).log_prob.detach()
    assert not torch.allclose(adapted_before, trajectories.log_probs[:, last], atol=1e-3)
    reference = Reference(adapted)
    assert reference.uses_lora and reference.unet is adapted.unet  # no copy
    ref = step_stats(adapted, trajectories, last, denoiser=reference)
    torch.testing.assert_close(ref.log_prob, trajectories.log_probs[:, last], rtol=0, atol=1e-4)
    moved = step_stats(adapted, trajectories, last).log_prob.detach()  # adapters are back on afterwards
    torch.testing.assert_close(moved, adapted_before, rtol=0, atol=0)
