"""Classifier-free guidance computes the denoiser's text-free prefix once, not twice.

CFG runs the unconditional and the conditional branch as one batch ``[x; x]`` (:func:`harness.sampling.
guided_output`): both halves hold the *same* latents and timestep, and differ only in the text conditioning. Every
layer a UNet runs before its first use of the text therefore computes the same numbers twice: ``conv_in`` always,
and the leading down blocks without cross-attention whenever the time embedding does not depend on the text. On the
builtin model (first block ``DownBlock2D``) these are 7.8 % of a guided call's FLOPs and 6-7 % of its CPU time;
SDXL's ``DownBlock2D`` takes pooled text embeddings through its time embedding, so there only ``conv_in`` is shared.

While :func:`duplicated_halves` is active (``guided_output`` enters it, only when gradients are off: a trainer's
backward pass keeps the plain batch, so training numerics do not move), a forward pre-hook on each such module checks
that every batched tensor input is one half repeated (``torch.equal``, exact), runs the module on the first half and
a forward hook repeats the output. Where a check fails (an SDXL time embedding that carries the text, a caller that
stacked different latents) the module runs on the whole batch as before, so the result never depends on the hooks
being right about the model. Only CPU batches of at least :data:`MIN_HALF` rows per half are halved (below it the
convolution kernels oneDNN picks depend on the batch size). The hooks leave the module tree and its state dict
unchanged (LoRA and saving see the same modules; inside a ``torch.compile`` graph they stand aside), and the outputs
equal the plain call's bit for bit (tests/test_cfg_prefix.py; the main job writes the same 2,212 files).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn

_DUPLICATED: ContextVar[bool] = ContextVar("harness_cfg_duplicated", default=False)
_HOOKED = "_harness_cfg_prefix_hooks"  # attribute on a UNet whose prefix modules carry the hooks
# Halve only CPU batches of at least this many rows per half. oneDNN picks its convolution kernels (and the way it
# splits them over threads) by batch size, and a row's result can then differ in the last bits: measured on the
# builtin model's first block, a batch of 1-3 rows (one thread) or 5-7 and 9-11 rows (two threads) against a batch of
# 128, none from 12 rows up. From 16 rows per half both the halved and the plain batch are in that range, so halving
# gives the plain call's numbers; smaller batches (a trainer's few images, a run's last few) run as before. On a GPU
# the prefix is a small share (SD's conv_in) and cuDNN's own batch-size heuristics would make halving a numerics
# change, so it stays off there.
MIN_HALF = 16


@contextmanager
def duplicated_halves() -> Iterator[None]:
    """Declare that the denoiser calls inside receive ``[x; x]`` batches (a no-op while gradients are on)."""
    token = _DUPLICATED.set(not torch.is_grad_enabled())
    try:
        yield
    finally:
        _DUPLICATED.reset(token)


def prefix_modules(unet: nn.Module) -> list[nn.Module]:
    """The modules of a diffusers ``UNet2DConditionModel`` that run before the text is first used: ``conv_in``
    and the down blocks up to the first with cross-attention (empty for any other denoiser)."""
    conv_in, down_blocks = getattr(unet, "conv_in", None), getattr(unet, "down_blocks", None)
    if not isinstance(conv_in, nn.Module) or not isinstance(down_blocks, nn.ModuleList):
        return []
    modules = [conv_in]
    for block in down_blocks:
        if getattr(block, "has_cross_attention", False) or getattr(block, "attentions", None):
            break
        modules.append(block)
    return modules


def install(unet: nn.Module | None) -> None:
    """Put the halving hooks on ``unet``'s prefix modules (once per UNet object)."""
    if unet is None or getattr(unet, _HOOKED, False):
        return
    for module in prefix_modules(unet):
        state = _HalfState()
        module.register_forward_pre_hook(state.pre, with_kwargs=True)
        module.register_forward_hook(state.post)
    setattr(unet, _HOOKED, True)


class _HalfState:
    """One module's hooks; which calls run halved is kept per thread (a plain dict, so a UNet with the hooks can
    still be deep-copied, as a trainer's frozen reference is, or pickled)."""

    def __init__(self) -> None:
        self.halved: dict[int, bool] = {}

    def pre(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        self.halved[threading.get_ident()] = False
        if not _DUPLICATED.get() or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return None
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        if not tensors:
            return None
        batch = tensors[0].shape[0] if tensors[0].ndim else 0
        if batch % 2 or batch // 2 < MIN_HALF or tensors[0].device.type != "cpu":
            return None
        half = batch // 2
        batched = [v for v in tensors if v.ndim and v.shape[0] == batch]
        if not all(torch.equal(v[:half], v[half:]) for v in batched):
            return None
        self.halved[threading.get_ident()] = True
        return _map(args, batch, lambda v: v[:half]), _map(kwargs, batch, lambda v: v[:half])

    def post(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if not self.halved.pop(threading.get_ident(), False):
            return None
        return _repeat(output)


def _map(value: Any, batch: int, fn: Any) -> Any:
    """``fn`` applied to every tensor with ``batch`` rows in a (nested) tuple / list / dict of arguments."""
    if isinstance(value, torch.Tensor):
        return fn(value) if value.ndim and value.shape[0] == batch else value
    if isinstance(value, tuple | list):
        return type(value)(_map(v, batch, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map(v, batch, fn) for k, v in value.items()}
    return value


def _repeat(value: Any) -> Any:
    """Every tensor of a module's output stacked twice along the batch: ``[y; y]``."""
    if isinstance(value, torch.Tensor):
        return torch.cat([value, value])
    if isinstance(value, tuple | list):
        return type(value)(_repeat(v) for v in value)
    return value
