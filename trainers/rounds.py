"""Recorded sampling rounds on disk: ours, and the official D3PO human-feedback layout (``specs/trainers.md``).

A round is what one sampling pass produced and what a person labels afterwards; training on it later needs the
trajectories as well as the images. Our folder::

    images/NNNNN.png            one image per trajectory row r (5-digit r)
    prompt.json                 the prompts by group, in order (the official file's shape)
    round.json                  per row: image, prompt, group, seed, the prompt item (tag + metadata); sampler config
    trajectories.safetensors    latents [B, T+1, ...], timesteps [T], log_probs [B, T]

The official D3PO sampler (``scripts/sample.py``) writes ``images/NNNNN.png`` with NNNNN = k_per_prompt * row + k,
``prompt.json`` (prompts by row) and ``sample.pkl`` (a pickled dict of tensors: prompt_embeds [N, k, 77, 768],
timesteps [N, T], latents and next_latents [N, k, T, C, H, W]). :func:`load_round` reads either, so a round sampled
by our sampler or by the official one can be labelled and trained on. The rows (images, prompts, groups, seeds) are
read by :func:`harness.rounds.read_round_index`, which the labeling page shares; this module adds the tensors.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from benchmarks.registry import PromptItem
from harness.errors import DataError, HarnessError
from harness.rounds import FORMAT, PROMPT_FILE, ROUND_FILE, UNKNOWN_SEED, VERSION, read_round_index
from harness.sampling import SamplerConfig
from harness.store import atomic_folder
from trainers.base import Trajectories

# The row reader and the seed marker are harness.rounds'; kept importable here beside load_round.
__all__ = ["UNKNOWN_SEED", "load_round", "read_round_index", "save_round"]

TRAJECTORIES_FILE = "trajectories.safetensors"
OFFICIAL_PICKLE = "sample.pkl"
# The official sampler's settings (specs/trainers.md, D3PO "Sampling"): sample.pkl does not record them.
OFFICIAL_SAMPLER = {"guidance_scale": 5.0, "eta": 1.0}


def save_round(folder: Path, trajectories: Trajectories, items: list[PromptItem], overwrite: bool = False) -> Path:
    """Write a round folder (see the module docstring); ``items[r]`` is row r's prompt item.

    The folder is built under a temporary name beside it and renamed into place, so an interrupted save leaves no
    half-written round. An existing folder is refused unless ``overwrite``.
    """
    folder = Path(folder)
    if len(items) != len(trajectories):
        raise ValueError(f"{len(items)} prompt items for {len(trajectories)} trajectories")
    if folder.exists() and not overwrite:
        raise HarnessError(f"{folder} already exists; choose another folder or pass overwrite=True")
    with atomic_folder(folder) as tmp:
        (tmp / "images").mkdir()
        rows = []
        for r, image in enumerate(trajectories.pil_images()):
            name = f"images/{r:05d}.png"
            image.save(tmp / name)
            rows.append({"image": name, "prompt": trajectories.prompts[r], "group": int(trajectories.groups[r]),
                         "seed": int(trajectories.seeds[r]), "item": asdict(items[r])})
        first_prompt = {}
        for prompt, group in zip(trajectories.prompts, trajectories.groups):
            first_prompt.setdefault(group, prompt)
        prompts = list(first_prompt.values())
        (tmp / PROMPT_FILE).write_text(json.dumps(prompts, indent=1))
        meta = {"format": FORMAT, "version": VERSION, "sampler": trajectories.config.to_dict(), "rows": rows}
        (tmp / ROUND_FILE).write_text(json.dumps(meta, indent=1))
        save_file({"latents": trajectories.latents.detach().cpu().contiguous(),
                   "timesteps": trajectories.timesteps.detach().cpu().contiguous(),
                   "log_probs": trajectories.log_probs.detach().cpu().contiguous()}, str(tmp / TRAJECTORIES_FILE))
    return folder


def load_round(folder: Path) -> tuple[Trajectories, list[PromptItem]]:
    """The trajectories and prompt items of a round folder, ours or the official D3PO layout.

    Official ``sample.pkl``: rows are flattened prompt-major (row = k * prompt + image, as the image numbers);
    latents [B, T+1] = the T recorded inputs followed by the last ``next_latents``, after checking that every
    ``next_latents[t]`` equals ``latents[t + 1]``. The file holds no log-probs (D3PO recomputes both policy and
    reference densities at training time), so ``log_probs`` is NaN unless a ``log_probs`` key is present, and no
    seeds (rows get ``UNKNOWN_SEED``). ``sample.pkl`` is a Python pickle: load only rounds you produced or trust.
    """
    index = read_round_index(folder)
    images = torch.stack([torch.from_numpy(_rgb(p)) for p in index.images])
    if index.layout == "harness":
        meta = json.loads((index.folder / ROUND_FILE).read_text())
        tensors = _load_tensors(index.folder / TRAJECTORIES_FILE)
        latents, timesteps, log_probs = tensors["latents"], tensors["timesteps"], tensors["log_probs"]
        config = SamplerConfig(**meta["sampler"])
    else:
        latents, timesteps, log_probs = _official_tensors(index.folder, len(index.items))
        config = SamplerConfig(num_inference_steps=int(timesteps.shape[0]), height=images.shape[1],
                               width=images.shape[2], **OFFICIAL_SAMPLER)
    if latents.shape[0] != len(index.items) or log_probs.shape != (len(index.items), timesteps.shape[0]):
        raise DataError(f"{index.folder}: trajectories hold {latents.shape[0]} rows x {log_probs.shape[-1]} steps "
                        f"but the round lists {len(index.items)} images x {timesteps.shape[0]} steps")
    trajectories = Trajectories(prompts=index.prompts, groups=index.groups, seeds=index.seeds, latents=latents,
                                timesteps=timesteps, log_probs=log_probs, images=images, config=config)
    return trajectories, index.items


def _rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB")).copy()
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable image ({err}); re-export the round") from None


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path.parent} has no {path.name}: only rounds saved with their trajectories can be trained "
                        "on (save_round writes them)")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError for truncated or foreign files
        raise DataError(f"{path}: unreadable trajectories file ({err}); re-save the round") from None
    missing = {"latents", "timesteps", "log_probs"} - set(tensors)
    if missing:
        raise DataError(f"{path}: missing tensor(s) {', '.join(sorted(missing))}")
    return tensors


def _official_tensors(folder: Path, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    path = folder / OFFICIAL_PICKLE
    if not path.is_file():
        raise DataError(f"{folder} has no {OFFICIAL_PICKLE}: the official layout needs the sampled latents to train "
                        "on (images alone can only be scored)")
    try:
        with path.open("rb") as handle:
            data = pickle.load(handle)  # the official format is a pickle; see load_round
    except Exception as err:  # unpickling raises anything from EOFError to ModuleNotFoundError
        raise DataError(f"{path}: unreadable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or not {"latents", "next_latents", "timesteps"} <= set(data):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: expected a dict with latents, next_latents, timesteps (official sample.py); "
                        f"found {keys}")
    latents, nxt = torch.as_tensor(data["latents"]), torch.as_tensor(data["next_latents"])
    timesteps = torch.as_tensor(data["timesteps"])
    if latents.ndim < 4 or latents.shape != nxt.shape or latents.shape[0] * latents.shape[1] != rows:
        raise DataError(f"{path}: latents {tuple(latents.shape)} / next_latents {tuple(nxt.shape)} do not match "
                        f"[prompts, k, T, ...] for the {rows} images in images/")
    if not torch.equal(latents[:, :, 1:], nxt[:, :, :-1]):
        raise DataError(f"{path}: next_latents[t] differs from latents[t + 1]; not one trajectory per image")
    steps = latents.shape[2]
    timesteps = timesteps[0] if timesteps.ndim == 2 else timesteps
    if timesteps.shape != (steps,):
        raise DataError(f"{path}: timesteps {tuple(timesteps.shape)} do not match {steps} steps")
    flat = torch.cat([latents, nxt[:, :, -1:]], dim=2).flatten(0, 1)
    if "log_probs" in data:
        log_probs = torch.as_tensor(data["log_probs"]).reshape(rows, steps).float()
    else:
        log_probs = torch.full((rows, steps), float("nan"))
    return flat, timesteps, log_probs
