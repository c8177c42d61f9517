"""Resolve ``--ckpt`` to a :class:`Policy`, never touching the network (everything loads with ``local_files_only``).

Accepted forms:

- ``builtin:NAME``: the committed builtin model folder ``harness/builtin/checkpoints/NAME/``.
- ``PATH``: a diffusers folder, dispatched on ``model_index.json``'s ``_class_name``; or a LoRA adapter folder written
  by ``Policy.save``, whose ``harness_adapter.json`` names its base.
- ``FILE.safetensors`` / ``FILE.ckpt``: one original-layout (CompVis/SGM) file, the format of most model-site
  downloads. Diffusers needs the pipeline's configs beside the weights; offline they come from, in order,
  (1) the file's own folder if it holds ``model_index.json`` and the component configs (a hub snapshot of
  stable-diffusion-v1-5 is such a folder: weights files are not needed, only ``*.json`` and ``*.txt``), or
  (2) the local HF cache copy of diffusers' default repo for the detected model type (SD 1.x:
  stable-diffusion-v1-5/stable-diffusion-v1-5, SD 2.x: stabilityai/stable-diffusion-2-1, XL:
  stabilityai/stable-diffusion-xl-base-1.0), fetched beforehand with ``hf download REPO --include '*.json'
  --include '*.txt'`` (``hf`` is huggingface_hub's CLI; the older ``huggingface-cli`` is gone from it). Without
  either, the error says exactly that.
- ``ORG/NAME``: a hub id, only if its snapshot is in the local HF cache (a local path of that name wins).
- ``BASE+ADAPTER``: any base above plus a LoRA folder (``pytorch_lora_weights.safetensors``) loaded onto the UNet.

Every user-fixable failure is a one-line :class:`CheckpointError` naming the problem and the fix.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path

import torch
from diffusers.loaders.single_file_utils import (
    DIFFUSERS_DEFAULT_PIPELINE_PATHS,
    infer_diffusers_model_type,
    load_single_file_checkpoint,
)
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors import SafetensorError, safe_open

from harness.builtin.model import PIPELINE_CLASS, BuiltinPolicy
from harness.errors import CheckpointError
from harness.hashing import fingerprint, stable_hash
from harness.numerics import default_dtype
from harness.policy import Policy
from harness.sd3_policy import StableDiffusion3Policy
from harness.sd_policy import (
    ADAPTER_INFO,
    LORA_WEIGHTS,
    StableDiffusionPolicy,
    StableDiffusionXLPolicy,
    has_lora,
    load_lora_adapter,
)

BUILTIN_PREFIX = "builtin:"
BUILTIN_DIR = Path(__file__).parent / "builtin" / "checkpoints"
ADAPTER_SEP = "+"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")

POLICIES: dict[str, type[StableDiffusionPolicy]] = {
    "StableDiffusionPipeline": StableDiffusionPolicy,
    "StableDiffusionXLPipeline": StableDiffusionXLPolicy,
    "StableDiffusion3Pipeline": StableDiffusion3Policy,
}
SD3_UNSUPPORTED = (
    "SD3 single files are not supported yet; pass "
    "a diffusers SD3 folder (model_index.json, transformer/, text_encoder*/, vae/, scheduler/)"
)
SD3_FILE_TYPES = {"sd3", "sd35_medium", "sd35_large"}
# model type (diffusers' single-file detection) -> pipeline class
SINGLE_FILE_TYPES = {
    "v1": "StableDiffusionPipeline",
    "v2": "StableDiffusionPipeline",
    "xl_base": "StableDiffusionXLPipeline",
}
# What loading a missing, truncated or mismatched file raises (diffusers wraps most in OSError/ValueError).
LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, SafetensorError, pickle.UnpicklingError)



def resolve_checkpoint(spec: str, device: str = "cpu", dtype: torch.dtype | None = None) -> Policy:
    """The policy that ``--ckpt spec`` names, on ``device``, in ``dtype`` (default: :func:`default_dtype`)."""
    dtype = dtype or default_dtype(device)
    if ADAPTER_SEP in spec and not Path(spec).exists():
        base, *adapters = spec.split(ADAPTER_SEP)
        if len(adapters) != 1 or not base or not adapters[0]:
            raise CheckpointError(f"{spec!r}: expected BASE+ADAPTER with one adapter folder; merge stacked adapters")
        policy = _resolve_base(base, dtype)
        _attach_adapter(policy, Path(adapters[0]).expanduser(), spec)
    else:
        policy = _resolve_base(spec, dtype)
    return policy.to(device)


def _resolve_base(spec: str, dtype: torch.dtype) -> Policy:
    if spec.startswith(BUILTIN_PREFIX):
        return _load_builtin(spec, dtype)
    path = Path(spec).expanduser()
    if path.is_file():
        return _load_single_file(path, spec, dtype)
    if path.is_dir():
        return _load_folder(path, spec, dtype, str(path.resolve()))
    if HUB_ID.fullmatch(spec):
        snapshot = _cached_snapshot(spec, f"{spec}: not a local path, and not in the local Hugging Face cache")
        return _load_folder(snapshot, spec, dtype, spec)
    raise CheckpointError(
        f"{spec}: no such file or folder; pass builtin:NAME, a diffusers folder, a .safetensors file, "
        "a cached hub id ORG/NAME, or BASE+ADAPTER"
    )


def _load_builtin(spec: str, dtype: torch.dtype) -> Policy:
    folder = BUILTIN_DIR / spec.removeprefix(BUILTIN_PREFIX)
    if not (folder / "model_index.json").is_file():
        available = sorted(p.parent.name for p in BUILTIN_DIR.glob("*/model_index.json"))
        listing = ", ".join(BUILTIN_PREFIX + name for name in available) or "none yet (run `harness builtin pretrain`)"
        raise CheckpointError(f"{spec}: unknown builtin model; available: {listing}")
    return _load_folder(folder, spec, dtype, spec)


def _load_folder(folder: Path, name: str, dtype: torch.dtype, base: str) -> Policy:
    """A diffusers pipeline folder, or an adapter folder whose JSON names its base. ``base`` is the canonical spec."""
    index = folder / "model_index.json"
    if not index.is_file():
        if (folder / ADAPTER_INFO).is_file():
            adapter_base = _read_json(folder / ADAPTER_INFO).get("base")
            if not adapter_base:
                raise CheckpointError(f"{folder / ADAPTER_INFO}: names no base; pass BASE+{name} instead")
            policy = _resolve_base(adapter_base, dtype)
            _attach_adapter(policy, folder, name)
            return policy
        if (folder / LORA_WEIGHTS).is_file():
            raise CheckpointError(f"{folder}: a LoRA adapter without {ADAPTER_INFO} naming its base; pass BASE+{name}")
        raise CheckpointError(
            f"{folder}: no model_index.json, so not a diffusers pipeline folder; pass the folder that holds "
            "model_index.json, or a single .safetensors file"
        )
    class_name = _read_json(index).get("_class_name")
    try:
        if class_name == PIPELINE_CLASS:
            policy = BuiltinPolicy.load(folder, name=name)
            policy.base = base
            if dtype != policy.dtype:
                for module in policy.modules().values():
                    module.to(dtype)
            return policy
        policy_class = _policy_class(class_name, folder)
        return policy_class.from_pretrained(folder, name, fingerprint(folder), dtype, base)
    except LOAD_ERRORS as error:
        raise CheckpointError(
            f"{folder}: cannot load {class_name} ({_first_line(error)}); a weights file is missing, truncated or "
            "corrupt: re-download or re-save the checkpoint"
        ) from error


def _load_single_file(file: Path, name: str, dtype: torch.dtype) -> Policy:
    if file.suffix not in (".safetensors", ".ckpt"):
        raise CheckpointError(f"{file}: not a checkpoint; pass a .safetensors or .ckpt file, or a diffusers folder")
    try:
        model_type = infer_diffusers_model_type(_tensor_shapes(file))
    except LOAD_ERRORS as error:
        raise CheckpointError(
            f"{file}: cannot read it ({_first_line(error)}); the file is truncated or corrupt: re-download it"
        ) from error
    if model_type in SD3_FILE_TYPES:
        raise CheckpointError(f"{file}: {SD3_UNSUPPORTED}")
    if model_type not in SINGLE_FILE_TYPES:
        raise CheckpointError(f"{file}: a {model_type!r} checkpoint; single files must be SD 1.x/2.x/XL text-to-image")
    config, class_name = _single_file_config(file, model_type)
    policy_class = _policy_class(class_name, file)
    try:
        hashes = [fingerprint(file), fingerprint(config, suffixes=(".json", ".txt"))]
        return policy_class.from_single_file(file, config, name, stable_hash(hashes), dtype, str(file.resolve()))
    except LOAD_ERRORS as error:
        raise CheckpointError(
            f"{file}: cannot load it with the configs in {config} ({_first_line(error)}); check that the configs "
            "match the weights (same model family) and that the file is complete"
        ) from error


def _tensor_shapes(file: Path) -> dict[str, torch.Tensor]:
    """Name -> meta tensor of the right shape: all that model-type detection needs, read from the header only."""
    if file.suffix == ".safetensors":
        with safe_open(file, "pt") as handle:
            names = handle.keys()
            return {key: torch.empty(handle.get_slice(key).get_shape(), device="meta") for key in names}
    return load_single_file_checkpoint(str(file))  # pickled .ckpt has no header; torch.load memory-maps it


def _single_file_config(file: Path, model_type: str) -> tuple[Path, str]:
    """The diffusers config folder for a single file and its pipeline class (see the module docstring)."""
    if (file.parent / "model_index.json").is_file():
        return file.parent, _read_json(file.parent / "model_index.json").get("_class_name")
    repo = DIFFUSERS_DEFAULT_PIPELINE_PATHS[model_type]["pretrained_model_name_or_path"]
    problem = f"{file}: no model_index.json beside it, and the configs of {repo} are not in the local HF cache"
    fix = "or move the file into a folder with model_index.json and the component configs"
    return _cached_snapshot(repo, problem, " --include '*.json' --include '*.txt'", fix), SINGLE_FILE_TYPES[model_type]


def _cached_snapshot(repo: str, problem: str, download_args: str = "", fix: str = "or pass a local folder") -> Path:
    """The local HF cache's snapshot of ``repo``; nothing is downloaded."""
    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except LocalEntryNotFoundError as error:
        raise CheckpointError(
            f"{problem}; on a machine with internet run `hf download {repo}{download_args}` "
            f"and copy its HF cache (HF_HOME) here, {fix}"
        ) from error


def _policy_class(class_name: str | None, where: Path) -> type[StableDiffusionPolicy]:
    if class_name in POLICIES:
        return POLICIES[class_name]
    supported = ", ".join([*POLICIES, PIPELINE_CLASS])
    raise CheckpointError(f"{where}: pipeline class {class_name!r} is not supported; supported: {supported}")


def _attach_adapter(policy: Policy, folder: Path, name: str) -> None:
    """Load the LoRA in ``folder`` onto ``policy``'s UNet; the fingerprint then covers base and adapter."""
    if not (folder / LORA_WEIGHTS).is_file():
        raise CheckpointError(
            f"{folder}: no {LORA_WEIGHTS}; ADAPTER must be a LoRA folder saved by a harness trainer or diffusers"
        )
    try:
        load_lora_adapter(policy.unet, folder)
    except LOAD_ERRORS as error:
        raise CheckpointError(
            f"{folder}: cannot load the LoRA onto {policy.name} ({_first_line(error)}); was it trained on this base?"
        ) from error
    if not has_lora(policy.unet):
        raise CheckpointError(f"{folder}: {LORA_WEIGHTS} holds no UNet LoRA weights (keys prefixed 'unet.')")
    info = folder / ADAPTER_INFO
    if info.is_file() and _read_json(info).get("base_fingerprint") != policy.fingerprint:
        warnings.warn(f"{folder} was trained on a base with another fingerprint than {policy.name}", stacklevel=3)
    policy.name = name
    policy.fingerprint = stable_hash([policy.fingerprint, fingerprint(folder / LORA_WEIGHTS)])


def _read_json(file: Path) -> dict:
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{file}: unreadable JSON ({_first_line(error)}); restore or re-save it") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
