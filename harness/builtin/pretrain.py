"""Pretraining of the builtin tiny model on freshly rendered scenes (no dataset on disk).

Every batch is a pure function of (seed, step), so a resumed run sees exactly the batches an uninterrupted one
would; the full training state is checkpointed atomically every ``checkpoint_every`` steps, and EMA snapshots are
exported every ``snapshot_every`` steps so the quality curve can be measured afterwards.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.builtin.model import BuiltinPolicy, pixels_to_latents
from harness.builtin.prompts import sample_training_request
from harness.builtin.render import render
from harness.builtin.world import sample_scene
from harness.errors import HarnessError


@dataclass
class PretrainConfig:
    steps: int = 8000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    uncond_fraction: float = 0.1  # caption dropped to "" this often, for classifier-free guidance
    min_snr_gamma: float = 5.0
    seed: int = 0
    checkpoint_every: int = 100
    snapshot_every: int = 1000


DEFAULT_SAMPLER = {"num_inference_steps": 20, "guidance_scale": 3.0, "eta": 0.0}


def make_batch(seed: int, step: int, batch_size: int, uncond_fraction: float) -> tuple[torch.Tensor, list[str]]:
    """Rendered images in [-1, 1] and their captions; a pure function of (seed, step)."""
    rng = random.Random(f"{seed}:{step}")
    images, captions = [], []
    for _ in range(batch_size):
        request, caption = sample_training_request(rng)
        images.append(np.asarray(render(sample_scene(request, rng))))
        captions.append("" if rng.random() < uncond_fraction else caption)
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return pixels, captions


def lr_factor(step: int, config: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.final_lr_fraction + (1 - config.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def training_loss(policy: BuiltinPolicy, pixels: torch.Tensor, captions: list[str], generator: torch.Generator,
                  min_snr_gamma: float) -> torch.Tensor:
    """v-prediction MSE with min-SNR-gamma weighting (Hang et al. 2023): w = min(SNR, gamma) / (SNR + 1)."""
    latents = pixels_to_latents(pixels)
    scheduler = policy.scheduler
    noise = torch.randn(latents.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    noisy = scheduler.add_noise(latents, noise, t)
    target = scheduler.get_velocity(latents, noise, t)
    pred = policy.denoise(noisy, t, policy.encode_prompts(captions))
    alphas = scheduler.alphas_cumprod[t]
    snr = alphas / (1 - alphas)
    weight = torch.clamp(snr, max=min_snr_gamma) / (snr + 1)
    per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
    return (weight * per_sample).mean()


def training_summary(out_dir: Path, config: PretrainConfig) -> dict:
    """How long training took and on what, from ``log.jsonl`` (pauses between resumed runs are not counted)."""
    from harness.records import environment_info

    entries = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    times = [e["time"] for e in entries]
    busy = sum(min(b - a, 60.0) for a, b in itertools.pairwise(times))
    last = entries[-100:]
    env = environment_info()
    return {
        "config": asdict(config),
        "steps_done": entries[-1]["step"] if entries else 0,
        "train_minutes": round(busy / 60, 1),
        "final_loss_mean_last_100": sum(e["loss"] for e in last) / max(1, len(last)),
        "hardware": {"device": env.get("device"), "platform": env["platform"], "cpu_count": os.cpu_count(),
                     "torch_threads": env.get("torch_threads")},
        "packages": env["packages"],
        "git_commit": env["git_commit"],
    }


def _save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def pretrain(out_dir: Path, config: PretrainConfig, max_minutes: float | None = None, progress: bool = True,
             export_weights: str = "ema", sampler_defaults: dict | None = None) -> Path:
    """Train (or resume) into ``out_dir``; returns the folder of the exported model (``out_dir/model``).

    ``max_minutes`` stops early (after a checkpoint) so a long run can be split over several invocations; the
    result does not depend on where it was split. ``export_weights`` picks the EMA ("ema") or the final ("raw")
    weights for ``out_dir/model``; snapshots are always EMA. ``sampler_defaults`` are written beside the weights.
    """
    if export_weights not in ("ema", "raw"):
        raise HarnessError(f"export_weights must be 'ema' or 'raw', got {export_weights!r}")
    for name, value in (("steps", config.steps), ("batch_size", config.batch_size)):
        if value < 1:
            raise HarnessError(f"--{name.replace('_', '-')} {value}: must be at least 1")
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes >= 0):  # 0: one step, then stop
        raise HarnessError(f"--max-minutes {max_minutes}: must be a finite number of minutes >= 0")
    sampler_defaults = {**DEFAULT_SAMPLER, **(sampler_defaults or {})}
    if sampler_defaults["num_inference_steps"] < 1 or not math.isfinite(sampler_defaults["guidance_scale"]):
        raise HarnessError(f"sampler defaults {sampler_defaults}: --sampler-steps must be at least 1 and "
                           "--sampler-guidance a finite number")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    policy = BuiltinPolicy.new()
    params = [*policy.unet.parameters(), *policy.text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.99), weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    ema = {k: copy.deepcopy(m) for k, m in policy.modules().items()}
    state_path = out_dir / "train_state.pt"
    start = 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if state["config"] != asdict(config):
            raise HarnessError(f"{state_path} was trained with a different config; use a new --out folder")
        for k, m in policy.modules().items():
            m.load_state_dict(state["model"][k])
            ema[k].load_state_dict(state["ema"][k])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["lr_scheduler"])
        start = state["step"]
    else:
        (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")

    def checkpoint(step: int) -> None:
        _save_atomic(
            {
                "config": asdict(config),
                "step": step,
                "model": {k: m.state_dict() for k, m in policy.modules().items()},
                "ema": {k: m.state_dict() for k, m in ema.items()},
                "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(),
            },
            state_path,
        )

    def export(folder: Path, weights: str = "ema") -> None:
        modules = ema if weights == "ema" else policy.modules()
        exported = BuiltinPolicy(modules["unet"], modules["text_encoder"], policy.tokenizer, policy.scheduler,
                                 sampler_defaults=sampler_defaults)
        tmp = folder.with_name(folder.name + ".tmp")
        exported.save(tmp)
        log.flush()
        summary = {**training_summary(out_dir, config), "exported_weights": weights,
                   "sampler_defaults": sampler_defaults}
        (tmp / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)

    began = time.monotonic()
    log = open(out_dir / "log.jsonl", "a")  # noqa: SIM115 - kept open across the loop, closed below
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress, desc="pretrain")
    policy.unet.train()
    policy.text_encoder.train()
    for step in bar:
        pixels, captions = make_batch(config.seed, step, config.batch_size, config.uncond_fraction)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        loss = training_loss(policy, pixels, captions, generator, config.min_snr_gamma)
        if not torch.isfinite(loss):
            raise HarnessError(
                f"loss became {loss.item()} at step {step}; lower --lr or resume from the last checkpoint")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            for k, m in policy.modules().items():
                for pe, p in zip(ema[k].parameters(), m.parameters()):
                    pe.lerp_(p, 1 - config.ema_decay)
        done = step + 1
        bar.set_postfix(loss=f"{loss.item():.4f}")
        log.write(json.dumps({"step": done, "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                              "time": time.time()}) + "\n")
        if done % config.checkpoint_every == 0 or done == config.steps:
            log.flush()
            checkpoint(done)
        if done % config.snapshot_every == 0:
            export(out_dir / "snapshots" / f"step_{done:06d}")
        if max_minutes is not None and time.monotonic() - began > max_minutes * 60:
            checkpoint(done)
            break
    export(out_dir / "model", export_weights)
    log.close()
    return out_dir / "model"
