"""Where and in what precision a policy samples: device, dtype, ``torch.compile``, attention and VAE slicing.

These are speed and memory switches, but each one also changes pixels: a float16 or bfloat16 UNet, a CUDA kernel, a
compiled (fused) graph and a sliced attention or VAE decode all round differently from the float32 eager default, so
an image is no longer bit-identical to the one a CPU run stored. The store promises that an image's key names
everything that decides its pixels, so the resolved choice joins the key and the record's sampler as
``{"numerics": {...}}``, and is left out exactly when it is the float32 eager default on a CPU: every store and record
made before these switches keeps its keys, and a GPU run never reuses (or is mistaken for) a CPU run's images.

``auto`` picks what a user of the machine would: the process's accelerator (``cuda:LOCAL_RANK`` under ``accelerate
launch``/``torchrun``, else the CPU) and float16 there (Stable Diffusion checkpoints ship in it; the SDXL VAE stays in
float32, as diffusers upcasts it), float32 on a CPU (float16 matmuls are slow there).

``compile`` compiles the denoiser with static shapes (``dynamic=False``): a run has one batch size and a smaller last
batch, and each compiles once; left dynamic, the last batch triggered a dynamic-shape recompile, and a 400-image run
spent 206 s generating against 137 s static (both with a cold cache). On the 2-core CPU machine (builtin model,
batch 64) a compiled forward costs 1.43x less CPU than eager, but the compilation (about 15 s per batch size with
inductor's on-disk cache warm, over a minute cold) ate the gain of a 400-image run (generation 61.8 s warm vs 52.6 s
eager); it pays off on long runs and on GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.errors import HarnessError

AUTO = "auto"
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
SWITCHES = ("compile", "attention_slicing", "vae_slicing")


def default_dtype(device: str | torch.device) -> torch.dtype:
    """float16 on CUDA (half the memory; SD checkpoints ship in it), float32 elsewhere (fp16 on CPU is slow)."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def numerics_key(device: str | torch.device, dtype: torch.dtype, **switches: bool) -> dict[str, object]:
    """The image-key entry for a placement: ``{}`` for float32 eager on a CPU, else ``{"numerics": {...}}`` naming
    the device type (not its index: two GPUs of one machine compute alike), the dtype and each switch that is on."""
    fields: dict[str, object] = {}
    if torch.device(device).type != "cpu":
        fields["device"] = torch.device(device).type
    if dtype != torch.float32:
        fields["dtype"] = str(dtype).removeprefix("torch.")
    fields.update({name: True for name in SWITCHES if switches.get(name)})
    return {"numerics": fields} if fields else {}


@dataclass(frozen=True)
class Numerics:
    """How a policy runs: ``device`` auto/cpu/cuda/cuda:N, ``dtype`` auto/fp32/fp16/bf16, and three switches."""

    device: str = AUTO
    dtype: str = AUTO
    compile: bool = False  # torch.compile of the denoiser: slower first batch (compilation), faster after
    attention_slicing: bool = False  # attention in slices: less peak memory for large images, a little slower
    vae_slicing: bool = False  # decode one image at a time: less peak memory for large batches

    @classmethod
    def from_key(cls, entry: dict | None) -> Numerics:
        """The placement a record's ``sampler["numerics"]`` names (absent: float32 eager on a CPU), so a re-score
        looks up and, where needed, regenerates the very images the record scored."""
        entry = entry or {}
        return cls(device=str(entry.get("device", "cpu")), dtype=str(entry.get("dtype", "float32")),
                   **{name: bool(entry.get(name, False)) for name in SWITCHES})

    def validate(self) -> None:
        """Refuse a name no run can honour before anything loads (availability is checked only when the model
        loads: a run whose images are all cached needs no GPU)."""
        if self.dtype != AUTO and self.dtype not in DTYPES:
            raise HarnessError(f"--dtype {self.dtype!r}: choose auto, fp32, fp16 or bf16")
        if self.device == AUTO:
            return
        try:
            device = torch.device(self.device)
        except (RuntimeError, ValueError):
            device = None
        if device is None or device.type not in ("cpu", "cuda"):
            raise HarnessError(f"--device {self.device!r}: not a device this harness runs on; use auto, cpu, cuda or "
                               "cuda:N")

    @property
    def is_auto(self) -> bool:
        return self == Numerics()

    def torch_device(self) -> torch.device:
        if self.device != AUTO:
            return torch.device(self.device)
        if not torch.cuda.is_available():
            return torch.device("cpu")
        from harness.generation import process_state

        return process_state().device  # cuda:LOCAL_RANK under accelerate launch / torchrun

    def torch_dtype(self) -> torch.dtype:
        return default_dtype(self.torch_device()) if self.dtype == AUTO else DTYPES[self.dtype]

    def key(self) -> dict[str, object]:
        """This placement's image-key entry (see :func:`numerics_key`)."""
        return numerics_key(self.torch_device(), self.torch_dtype(),
                            **{name: getattr(self, name) for name in SWITCHES})

    def check_available(self) -> None:
        """One-line error when the device asked for is not on this machine."""
        device = self.torch_device()
        if device.type != "cuda":
            return
        if not torch.cuda.is_available():
            raise HarnessError(f"--device {self.device}: no CUDA device here (torch.cuda.is_available() is False); "
                               "use --device cpu, or run where the images were made")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HarnessError(f"--device {self.device}: this machine has {torch.cuda.device_count()} CUDA "
                               "device(s); pick one of them")

    def apply_switches(self, policy: object) -> None:
        """Turn on compile and slicing on a loaded policy (device and dtype are set when it loads)."""
        name = getattr(policy, "name", "the model")
        if self.attention_slicing:
            if not hasattr(policy.unet, "set_attention_slice"):
                raise HarnessError(f"--attention-slicing: {name}'s denoiser ({type(policy.unet).__name__}) has no "
                                   "sliced attention; leave the switch off")
            policy.unet.set_attention_slice("auto")
        if self.vae_slicing:
            vae = getattr(policy, "vae", None)
            if vae is None or not hasattr(vae, "enable_slicing"):
                raise HarnessError(f"--vae-slicing: {name} has no VAE to slice (the builtin model decodes pixels "
                                   "directly); leave the switch off")
            vae.enable_slicing()
        if self.compile:
            policy.unet.compile(dynamic=False)  # in place: parameters, state dict, LoRA adapters stay where they were


def place(policy: object, numerics: Numerics) -> None:
    """Move and cast an already loaded policy to ``numerics`` and turn its switches on; its image keys follow.

    The SDXL VAE, which overflows in float16, stays in float32 (diffusers' ``force_upcast``)."""
    numerics.check_available()
    device, dtype = numerics.torch_device(), numerics.torch_dtype()
    for part, module in policy.modules().items():
        upcast = part == "vae" and dtype == torch.float16 and getattr(module.config, "force_upcast", False)
        module.to(device=device, dtype=torch.float32 if upcast else dtype)
    numerics.apply_switches(policy)
    policy.numerics_key = numerics.key()
