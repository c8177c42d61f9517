"""One update of each method on a random-init builtin policy; registry, NaN guard, exact resume, a D3PO toy run."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from diffusers import DDIMScheduler
from torch import nn

from benchmarks.registry import PromptItem
from harness.checkpoints import resolve_checkpoint
from harness.errors import HarnessError
from harness.policy import Conditioning, Policy
from harness.sampling import SamplerConfig
from trainers.base import FeedbackBatch, OnlineMethod, Preference, Trajectories
from trainers.methods import METHODS, NonFiniteLoss, get_method
from trainers.sampling import sample_trajectories

PROMPTS = ["a red cube", "a red cube", "two blue balls", "two blue balls"]
GROUPS = [0, 0, 1, 1]
ITEMS = [PromptItem(g, p, "single_object", {}) for p, g in zip(PROMPTS, GROUPS, strict=True)]
TINY = {"num_inference_steps": 2, "images_per_prompt": 2, "prompts_per_round": 2}


@pytest.fixture(scope="module")
def base_policy(builtin_random_ckpt: Path):
    return resolve_checkpoint(str(builtin_random_ckpt))


@pytest.fixture(scope="module")
def trajectories(base_policy) -> Trajectories:
    config = SamplerConfig(num_inference_steps=2, guidance_scale=2.0, eta=1.0)
    return sample_trajectories(base_policy, PROMPTS, [1, 2, 3, 4], config, GROUPS, shared_noise=True)


def _method(name: str, policy, seed: int = 0, **overrides) -> OnlineMethod:
    cls = get_method(name)
    config = cls.config_class.defaults("builtin").override({**TINY, **overrides})
    accelerator = Accelerator(cpu=True)
    policy.unet = accelerator.prepare(policy.unet)
    return cls(policy, config, accelerator, seed)


def _feedback(rewards: list[float]) -> FeedbackBatch:
    prefs = []
    for i in range(len(rewards)):
        for j in range(i + 1, len(rewards)):
            if GROUPS[i] == GROUPS[j]:
                winner = int(np.sign(np.nan_to_num(rewards[i] - rewards[j])))
                prefs.append(Preference(i, j, winner))  # type: ignore[arg-type]
    return FeedbackBatch(rewards=np.array(rewards), preferences=prefs, labels_used=len(prefs))


def _weights(policy) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in policy.unet.parameters()]).clone()


def test_registry_names_and_unknown_method() -> None:
    assert set(METHODS) == {"d3po", "ddpo", "ddpo-sf", "grpo", "dpok"}
    with pytest.raises(HarnessError, match="known: d3po, ddpo, ddpo-sf, dpok, grpo"):
        get_method("ppo")
    for cls in METHODS.values():
        real, builtin = cls.config_class.defaults("real"), cls.config_class.defaults("builtin")
        assert builtin.lora_rank is None and real.lora_rank == 4
        assert builtin.num_inference_steps == 10 and builtin.guidance_scale == 2.0 and builtin.eta == 1.0


@pytest.mark.parametrize("name", ["d3po", "ddpo", "ddpo-sf", "grpo", "dpok"])
def test_one_update_changes_weights_with_finite_metrics(name: str, base_policy, trajectories) -> None:
    policy = copy.deepcopy(base_policy)
    extra = {"policy_updates": 1, "policy_accumulation": 1, "policy_batch_size": 2, "value_batch_size": 4,
             "value_accumulation": 1} if name == "dpok" else {}
    method = _method(name, policy, **extra)
    before = _weights(policy)
    metrics = method.update(trajectories, _feedback([1.0, 0.0, 0.0, 1.0]), ITEMS)
    assert metrics, metrics
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert metrics["updates"] >= 1
    assert not torch.equal(_weights(policy), before)
    # the frozen reference (if any) did not move with the policy
    reference = getattr(method, "reference", None)
    if reference is not None:
        assert torch.equal(torch.cat([p.flatten() for p in reference.unet.parameters()]), before)


def test_d3po_skips_ties_and_needs_preferences(base_policy, trajectories) -> None:
    policy = copy.deepcopy(base_policy)
    method = _method("d3po", policy)
    before = _weights(policy)
    metrics = method.update(trajectories, _feedback([1.0, 1.0, 0.0, 0.0]), ITEMS)  # two ties only
    assert metrics["pairs"] == 0 and metrics["ties"] == 2
    assert torch.equal(_weights(policy), before)  # no optimiser step at all (AdamW would move weights)


def test_nan_loss_raises_before_the_step(base_policy, trajectories) -> None:
    policy = copy.deepcopy(base_policy)
    method = _method("ddpo", policy, per_prompt_stat_tracking=False)
    before = _weights(policy)
    with pytest.raises(NonFiniteLoss, match="non-finite loss"):
        method.update(trajectories, _feedback([1.0, float("nan"), 0.0, 1.0]), ITEMS)
    assert torch.equal(_weights(policy), before)


def test_out_of_range_settings_are_one_line_errors(base_policy) -> None:
    with pytest.raises(HarnessError, match="learning_rate"):
        _method("ddpo", copy.deepcopy(base_policy), learning_rate=-1.0)
    with pytest.raises(HarnessError, match="eps"):
        _method("d3po", copy.deepcopy(base_policy), eps=1.5)


def test_resume_from_state_dict_is_exact(base_policy, trajectories) -> None:
    """Two rounds straight == one round, save (weights + method state), fresh objects, load, second round."""
    feedback = [_feedback([1.0, 0.0, 0.0, 1.0]), _feedback([0.0, 1.0, 1.0, 0.0])]
    straight = copy.deepcopy(base_policy)
    method = _method("ddpo", straight, stat_min_count=2)
    for fb in feedback:
        method.update(trajectories, fb, ITEMS)

    first = copy.deepcopy(base_policy)
    method = _method("ddpo", first, stat_min_count=2)
    method.update(trajectories, feedback[0], ITEMS)
    saved_weights, saved_state = copy.deepcopy(first.unet.state_dict()), copy.deepcopy(method.state_dict())
    resumed = copy.deepcopy(base_policy)
    resumed.unet.load_state_dict(saved_weights)
    method = _method("ddpo", resumed, stat_min_count=2)
    method.load_state_dict(saved_state)
    method.update(trajectories, feedback[1], ITEMS)
    assert torch.equal(_weights(resumed), _weights(straight))


class _ToyUNet(nn.Module):
    """eps = a per-channel 1x1 map of the input plus a bias: enough to learn "brighter" within a few updates."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                **kwargs: object) -> SimpleNamespace:
        return SimpleNamespace(sample=self.mix(sample))


class _ToyPolicy(Policy):
    """A 3 x 4 x 4 pixel-space policy whose denoiser has 12 parameters."""

    world = "builtin"

    def __init__(self) -> None:
        self.unet = _ToyUNet()
        self.scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       prediction_type="sample", timestep_spacing="trailing", set_alpha_to_one=False,
                                       clip_sample=False)
        self.name = self.fingerprint = "toy"
        self.default_height = self.default_width = 4

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        return Conditioning(torch.zeros(len(prompts), 1, 2))

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (3, height, width)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)

    def save(self, path: Path) -> None:
        raise NotImplementedError


def test_d3po_raises_a_fixed_objective_on_a_toy() -> None:
    """Preferences for brighter images (a fixed objective): a few D3PO rounds raise held-out brightness.

    Toy scale: a wider ratio band and beta than the official 0.1/0.1, and the reference refreshed every round (the
    human-feedback protocol), so 4 rounds of 8 images move a 12-parameter denoiser visibly (about +15 of 255)."""
    torch.manual_seed(0)
    policy = _ToyPolicy()
    method = _method("d3po", policy, images_per_prompt=4, learning_rate=3e-2, num_inference_steps=4, eps=0.5,
                     beta=1.0, reference_refresh=1, train_batch_size=1, early_steps_fraction=1.0)
    prompts, groups = ["a"] * 4 + ["b"] * 4, [0] * 4 + [1] * 4
    config = SamplerConfig(num_inference_steps=4, guidance_scale=1.0, eta=1.0)

    def brightness() -> float:
        return float(sample_trajectories(policy, prompts * 8, list(range(1000, 1064)), config,
                                         groups * 8).images.float().mean())

    start = brightness()
    for round_ in range(4):
        batch = sample_trajectories(policy, prompts, [round_ * 8 + k for k in range(8)], config, groups,
                                    shared_noise=True)
        score = batch.images.float().mean((1, 2, 3)).tolist()
        prefs = [Preference(i, j, 1 if score[i] > score[j] else -1)
                 for i in range(8) for j in range(i + 1, 8) if groups[i] == groups[j] and score[i] != score[j]]
        metrics = method.update(batch, FeedbackBatch(rewards=np.array(score), preferences=prefs), ITEMS)
        assert metrics["updates"] == 2
    assert brightness() > start + 8.0


@pytest.mark.parametrize("name", ["d3po", "ddpo", "grpo", "dpok"])
def test_late_steps_outside_the_early_fraction_never_reach_the_loss(name: str, base_policy, trajectories) -> None:
    """With early_steps_fraction=0.5 of 2 steps, the last step's transition (x_1 -> x_0) is not trained on:
    scrambling x_0 changes nothing, while with 1.0 it changes the update."""
    extra = {"policy_updates": 1, "policy_accumulation": 1, "policy_batch_size": 2, "value_batch_size": 4,
             "value_accumulation": 1} if name == "dpok" else {}
    scrambled = copy.copy(trajectories)
    scrambled.latents = trajectories.latents.clone()
    scrambled.latents[:, -1] = torch.randn_like(scrambled.latents[:, -1])

    def updated(traj: Trajectories, fraction: float) -> torch.Tensor:
        policy = copy.deepcopy(base_policy)
        method = _method(name, policy, early_steps_fraction=fraction, **extra)
        method.update(traj, _feedback([1.0, 0.0, 0.0, 1.0]), ITEMS)
        return _weights(policy)

    assert torch.equal(updated(trajectories, 0.5), updated(scrambled, 0.5))
    assert not torch.equal(updated(trajectories, 1.0), updated(scrambled, 1.0))
    with pytest.raises(HarnessError, match=r"early_steps_fraction=0 \(need 0 < value <= 1\)"):
        updated(trajectories, 0)


def test_trainable_steps_counts_the_early_fraction() -> None:
    from trainers.methods import trainable_steps, trained_step_count

    config = get_method("d3po").config_class.defaults("builtin")
    assert [trainable_steps(config.override({"early_steps_fraction": f}), 10) for f in (1.0, 0.9, 0.6, 0.05)] == [
        10, 9, 6, 1]
    assert trained_step_count(config.override({"early_steps_fraction": 0.6, "timestep_fraction": 0.5}), 10) == 3
