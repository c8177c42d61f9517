"""The frozen reference denoiser pi_ref that D3PO (ratios), GRPO (KL) and DPOK (KL) compare the policy against.

``specs/trainers.md``: D3PO's reference is a frozen copy of the UNet taken at the start of the run (the pre-trained
model when starting fresh); Flow-GRPO's is the same network with its LoRA adapter disabled; DPOK's is a frozen copy
of the pre-trained UNet. So: when the policy trains LoRA, the reference is the policy's own unet with adapters
disabled (no extra memory, and exactly the base weights); otherwise it is a deep copy of the unet taken when the
reference is built, with gradients off.

The reference runs through the policy's own :meth:`~harness.policy.Policy.denoise` (so SDXL's extra inputs and the
attention mask are handled once): :meth:`Reference.active` swaps it in for the policy's unet, unwrapped from DDP so
that a reference pass never takes part in gradient synchronisation, and disables autograd.

The reference holds no state of its own in a method's ``state_dict``: it is rebuilt from the weights the method is
constructed on, and the training loop constructs methods on the run's starting weights, also when resuming (the
trained weights are loaded afterwards), so a resumed run keeps the reference of its start. Only a method that
:meth:`Reference.refresh`-es it saves its weights.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from harness.errors import HarnessError
from harness.policy import Policy
from harness.sd_policy import has_lora


def unwrapped(module: nn.Module) -> nn.Module:
    """The bare model under DDP / DataParallel / torch.compile wrappers (what ``accelerator.unwrap_model`` strips)."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel | nn.DataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


class Reference:
    """A frozen reference for ``policy``: see the module docstring for which weights it holds."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        base = unwrapped(policy.unet)
        self.uses_lora = has_lora(base)
        if self.uses_lora:
            self.unet = base
        else:
            self.unet = copy.deepcopy(base).requires_grad_(False).eval()

    @contextmanager
    def active(self) -> Iterator[None]:
        """Within this block ``policy.denoise`` runs the reference, without gradients."""
        trained = self.policy.unet
        self.policy.unet = self.unet
        if self.uses_lora:
            self.unet.disable_adapters()
        try:
            with torch.no_grad():
                yield
        finally:
            if self.uses_lora:
                self.unet.enable_adapters()
            self.policy.unet = trained

    def refresh(self) -> None:
        """Make the policy's current weights the reference (D3PO's human-feedback protocol: "the model fine-tuned
        after each epoch serves as the reference model for the subsequent epoch"). Full-denoiser training only: with
        LoRA the reference is the base under the adapter."""
        if self.uses_lora:
            raise HarnessError("refreshing the reference needs full-denoiser training (lora_rank None); with LoRA the "
                               "reference is the base model under the adapter")
        self.unet.load_state_dict(unwrapped(self.policy.unet).state_dict())

    def state_dict(self) -> dict:
        """The reference weights, for a run that refreshes them (otherwise the loop rebuilds them, see above)."""
        return {} if self.uses_lora else {"unet": self.unet.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.unet.load_state_dict(state["unet"])
