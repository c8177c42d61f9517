"""A training run's folder: whose run it is, its resumable state and its exported checkpoint, each written atomically.

Layout of ``--out``::

    run.json           what the run is (method, checkpoint, feedback, prompts, seed, method config); --resume must match
    state.pt           what a resumed run needs: trainable weights, method state (optimiser, ...), rounds done,
                       metrics, cost, monitor curves
    checkpoint/        the trained policy, loadable with ``--ckpt <out>/checkpoint`` (a full model or a LoRA adapter)
    metrics.jsonl      one line per round
    preferences.jsonl  every strict preference trained on, in the pairwise format; the images are under images/
    summary.json       settings and cost of the finished run

``state.pt`` and ``checkpoint/`` are always saved together after the same round, so the checkpoint a failed run
leaves behind is the state a ``--resume`` continues from.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from harness.builtin.model import BuiltinPolicy
from harness.errors import HarnessError
from harness.policy import Policy
from harness.sd_policy import has_lora
from harness.store import atomic_write_text

RUN_FILE = "run.json"
STATE_FILE = "state.pt"
CHECKPOINT = "checkpoint"


def claim_folder(out: Path, identity: dict, resume: bool, overwrite: bool,
                 relocatable: Mapping[str, str] | None = None) -> dict | None:
    """Check that ``out`` may hold this run, before anything is written; returns the saved state to resume from.

    An empty or missing folder is claimed. A folder holding another harness run is refused unless ``resume`` (the
    run must be the same one: ``identity`` equal to its run.json) or ``overwrite`` (the old run is deleted). A
    non-empty folder that holds no harness run is always refused, so ``--overwrite`` never deletes unrelated files.
    ``resume`` on a folder with no saved state starts from the beginning.

    ``relocatable`` maps a path field of ``identity`` to the field holding its content hash: a dataset moved or
    copied elsewhere is the same data when the hash agrees, so only the hash is compared, and run.json is rewritten
    to the new path (the record then points at data that exists).
    """
    if resume and overwrite:
        raise HarnessError("--resume and --overwrite contradict each other; pass one of them")
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out} is a file; pass a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    run_file = out / RUN_FILE
    if not run_file.is_file():
        raise HarnessError(f"--out {out} is not empty and holds no harness training run; pass a new or empty folder")
    if overwrite:
        shutil.rmtree(out)
        return None
    saved = read_json(run_file)
    if not resume:
        raise HarnessError(f"--out {out} holds another training run ({saved.get('method')} on {saved.get('ckpt')}); "
                           "pass --resume to continue it, --overwrite to replace it, or a new --out")
    wanted = json.loads(json.dumps(identity, default=str))
    moved = {path for path, digest in (relocatable or {}).items()
             if saved.get(path) != wanted.get(path) and digest in wanted and saved.get(digest) == wanted[digest]}
    different = sorted(k for k in wanted if k not in moved and saved.get(k) != wanted[k])
    if different:
        raise HarnessError(f"--resume: the run in {out} has a different {', '.join(different)}; pass the settings it "
                           f"was started with (see {run_file}), or use a new --out")
    if moved:
        write_identity(out, identity)
    state_path = out / STATE_FILE
    if not state_path.is_file():
        return None
    return torch.load(state_path, weights_only=False, map_location="cpu")


def write_identity(out: Path, identity: dict) -> None:
    atomic_write_text(out / RUN_FILE, json.dumps(identity, indent=2, default=str) + "\n")


def save_state(out: Path, state: dict) -> None:
    """``torch.save`` through a temporary file and a rename: a kill leaves the previous state whole."""
    target = out / STATE_FILE
    tmp = target.with_name(f".{STATE_FILE}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, target)


def export_checkpoint(policy: Policy, folder: Path) -> None:
    """Write ``policy`` to ``folder`` as ``--ckpt`` reads it: the LoRA adapter (plus its base's name) when one is
    attached, else the full model; the builtin model in float32, so the exported weights are the trained ones.

    Written beside the old checkpoint and swapped in by renames; a kill between the two renames leaves the old
    checkpoint under ``<folder>.old``.
    """
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    if isinstance(policy, BuiltinPolicy) and not has_lora(policy.unet):
        policy.save(tmp, dtype=torch.float32)
    else:
        policy.save(tmp)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)


def trainable_state(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors training changes (LoRA weights, or the whole denoiser), copied to the CPU."""
    return {n: p.detach().cpu().clone() for n, p in unet.named_parameters() if p.requires_grad}


def load_trainable_state(unet: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    missing = set(trainable_state_names(unet)) - set(weights)
    result = unet.load_state_dict(weights, strict=False)
    if result.unexpected_keys or missing:
        raise HarnessError("the saved training state does not fit this model (different LoRA rank or base?); "
                           "resume with the settings the run was started with, or pass --overwrite")


def trainable_state_names(unet: torch.nn.Module) -> list[str]:
    return [n for n, p in unet.named_parameters() if p.requires_grad]


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise HarnessError(f"{path}: unreadable ({err}); pass --overwrite to start the run again") from None
