"""Classifier-free guidance runs the UNet's text-free prefix once (harness.cfg_prefix), and only where that is exact."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch

from harness import cfg_prefix
from harness.builtin.model import BuiltinPolicy
from harness.policy import Conditioning
from harness.sampling import SamplerConfig, guided_output, sample


def _batches_seen(module: torch.nn.Module, unet: torch.nn.Module) -> list[int]:
    """Rows of the first input of every call of ``module`` (recorded after the halving pre-hook, so the hooks are
    installed on ``unet`` first)."""
    cfg_prefix.install(unet)
    seen: list[int] = []

    def record(mod: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        first = args[0] if args else kwargs["hidden_states"]
        seen.append(first.shape[0])

    module.register_forward_pre_hook(record, with_kwargs=True)
    return seen


def _plain(policy: BuiltinPolicy, x: torch.Tensor, t: torch.Tensor, cond: Conditioning,
           uncond: Conditioning, scale: float) -> torch.Tensor:
    """CFG exactly as before the prefix sharing: one call on [x; x], no halving."""
    both = policy.denoise(torch.cat([x, x]), t, uncond.cat(cond))
    u, c = both.chunk(2)
    return u + scale * (c - u)


def test_the_builtin_prefix_is_conv_in_and_the_first_down_block(policy: BuiltinPolicy) -> None:
    unet = policy.unet
    assert cfg_prefix.prefix_modules(unet) == [unet.conv_in, unet.down_blocks[0]]
    assert cfg_prefix.prefix_modules(torch.nn.Linear(2, 2)) == []


def test_guided_output_runs_the_prefix_on_one_half_and_equals_the_plain_call(policy: BuiltinPolicy) -> None:
    torch.manual_seed(0)
    n = 16
    x = torch.randn(n, 27, 16, 16)
    t = torch.tensor(999)
    cond = policy.encode_prompts(["a photo of two red stars"] * n)
    uncond = policy.encode_prompts([""] * n)
    with torch.no_grad():
        plain = _plain(policy, x, t, cond, uncond, 2.0)
        seen_down = _batches_seen(policy.unet.down_blocks[0], policy.unet)
        seen_mid = _batches_seen(policy.unet.down_blocks[1], policy.unet)
        shared = guided_output(policy, x, t, cond, uncond, 2.0)
    # The prefix saw one half, the first cross-attention block the whole CFG batch.
    assert seen_down == [n] and seen_mid == [2 * n]
    torch.testing.assert_close(shared, plain, rtol=0, atol=1e-5)
    # Outside duplicated_halves (e.g. a trainer's own batch) nothing is halved.
    with torch.no_grad():
        policy.denoise(torch.cat([x, x]), t, uncond.cat(cond))
    assert seen_down == [n, 2 * n]


def test_nothing_is_halved_with_gradients_on_or_when_the_halves_differ(policy: BuiltinPolicy) -> None:
    torch.manual_seed(1)
    x = torch.randn(4, 27, 16, 16)
    t = torch.tensor(500)
    cond = policy.encode_prompts(["a photo of a star"] * 4)
    seen = _batches_seen(policy.unet.down_blocks[0], policy.unet)
    with torch.no_grad(), cfg_prefix.duplicated_halves():
        policy.denoise(torch.cat([x, x + 1]), t, cond.cat(cond))  # the two halves differ: full batch
        policy.denoise(x[:3], t, cond.select(slice(0, 3)))  # odd batch: full batch
    with cfg_prefix.duplicated_halves():  # gradients on: a trainer's backward needs the plain graph
        out = policy.denoise(torch.cat([x, x]), t, cond.cat(cond))
    assert out.requires_grad
    assert seen == [8, 3, 8]


def test_the_hooks_install_once_keep_the_state_dict_and_survive_a_deep_copy(builtin_random_ckpt: Path) -> None:
    policy = BuiltinPolicy.load(builtin_random_ckpt)  # no test hooks of its own
    keys = list(policy.unet.state_dict())
    cfg_prefix.install(policy.unet)
    hooks = len(policy.unet.conv_in._forward_pre_hooks)
    cfg_prefix.install(policy.unet)
    assert len(policy.unet.conv_in._forward_pre_hooks) == hooks
    assert list(policy.unet.state_dict()) == keys
    copy.deepcopy(policy.unet)  # a trainer's frozen reference
    pickle.dumps(policy.unet)


@pytest.mark.parametrize("n", [16, 5])
def test_sampled_images_are_the_same_with_the_shared_prefix(builtin_random_ckpt: Path, n: int) -> None:
    """Whole sampling loop: the images equal those of the plain CFG call (a fresh policy, so no hooks at first)."""
    config = SamplerConfig(num_inference_steps=3, guidance_scale=2.0)
    prompts, seeds = ["a photo of three blue circles"] * n, list(range(n))
    plain_policy = BuiltinPolicy.load(builtin_random_ckpt)

    def no_sharing(*args: object, **kwargs: object) -> None:
        return None

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cfg_prefix, "install", no_sharing)
        plain = sample(plain_policy, prompts, seeds, config)
    shared_policy = BuiltinPolicy.load(builtin_random_ckpt)
    shared = sample(shared_policy, prompts, seeds, config)
    assert getattr(shared_policy.unet, cfg_prefix._HOOKED, False)
    assert torch.equal(shared, plain)
