"""Offline preference training (Diffusion-DPO, RankDPO) over a ranked dataset or a pair file, resumable, in the same
run-folder layout as the online loop (:mod:`trainers.checkpointing`): ``run.json``, ``state.pt``, ``checkpoint/``
(loadable with ``--ckpt``), ``metrics.jsonl`` (one line per optimiser step), ``overlap.txt`` (the dataset's prompts
against every benchmark's) and ``summary.json``. ``harness train`` / ``train-and-eval --method diffusion-dpo|rankdpo
--data DATASET`` reach it through :func:`harness.api.train`, which routes with :func:`check_sources`.

One optimiser step takes ``grad_accumulation`` micro-batches of ``batch_size`` prompts. Each prompt's list of images
(two for a pair) is encoded to latents, noised with one ε and one t shared by the whole list (``share_noise``), and
denoised by the policy (with grad) and the frozen reference (:class:`trainers.reference.Reference`: the base model,
i.e. the LoRA adapter disabled, or a frozen copy of the denoiser taken before any resumed weights are loaded).
The method turns the per-image errors into its loss.

``budget`` counts optimiser steps, not images: an offline step's cost is fixed by the config (batch_size ×
grad_accumulation lists of k images), and steps are the unit the Diffusion-DPO launchers and the RankDPO paper
state. Both methods see the same lists per step, so equal step budgets are equal image budgets between them; the
images seen are in the summary's ``cost`` (``images_seen``).

Every random draw is a function of (seed, step, micro-batch): the prompt order is a per-epoch permutation seeded by
(seed, epoch), and noise, timesteps and the empty-prompt dropout come from a generator seeded by (seed, step, micro),
so a run resumed from ``state.pt`` ends with the same weights as an uninterrupted one. Runs on one process.
"""

from __future__ import annotations

import contextlib
import json
import resource
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from accelerate import Accelerator
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image
from tqdm.auto import tqdm

from benchmarks.registry import PromptItem
from harness.builtin.model import BuiltinPolicy, pixels_to_latents
from harness.errors import DataError, HarnessError
from harness.hashing import stable_hash
from harness.policy import Policy
from harness.store import atomic_write_json, atomic_write_text
from trainers import checkpointing
from trainers.ranked_data import BUILD_FILE, DATASET_FILE, RankedDataset, RankedRow, load_dataset

if TYPE_CHECKING:
    from trainers.loop import TrainResult

LATENT_CACHE_LIMIT = 20_000  # images; larger datasets are re-encoded every step instead of held in memory


@dataclass
class OfflineConfig:
    """Settings both offline methods share. ``defaults("real")`` are Diffusion-DPO's official SD1.5 launcher values
    (``specs/trainers.md``): lr 1e-8 scaled by the effective batch (--scale_lr), AdamW wd 1e-2, clip 1.0, warmup
    500, 20 % empty prompts, full denoiser; per-process batch 1 × accumulation 128 (the official 2048 pairs came
    from 16 GPUs). ``defaults("builtin")`` are small-scale values for the builtin model on a CPU, not from any paper:
    the full UNet (the builtin world's convention), 8 prompts per step, constant lr 1e-5 unscaled with no warmup or
    weight decay, and 10 % empty prompts so the unconditional branch that CFG sampling uses keeps training."""

    beta: float = 5000.0
    learning_rate: float = 1e-8
    scale_lr: bool = True  # multiply learning_rate by batch_size × grad_accumulation, as the official --scale_lr
    weight_decay: float = 1e-2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    batch_size: int = 1  # prompts (lists) per micro-batch
    grad_accumulation: int = 128
    warmup_steps: int = 500  # linear from 0 (diffusers' constant_with_warmup)
    lora_rank: int | None = None  # None: train the full denoiser
    proportion_empty_prompts: float = 0.2
    share_noise: bool = True  # one ε and t per list (Diffusion-DPO); False: per image

    @classmethod
    def defaults(cls, world: str) -> OfflineConfig:
        if world == "builtin":
            return cls(learning_rate=1e-5, scale_lr=False, weight_decay=0.0, batch_size=8, grad_accumulation=1,
                       warmup_steps=0, proportion_empty_prompts=0.1)
        return cls()

    def override(self, values: dict[str, Any]) -> OfflineConfig:
        return replace(self, **values)

    @property
    def effective_learning_rate(self) -> float:
        scale = self.batch_size * self.grad_accumulation if self.scale_lr else 1
        return self.learning_rate * scale

    def problems(self) -> list[str]:
        out = [f"{name} must be > 0 (got {getattr(self, name)})" for name in
               ("beta", "learning_rate", "adam_eps", "max_grad_norm", "batch_size", "grad_accumulation")
               if not getattr(self, name) > 0]
        if self.weight_decay < 0 or self.warmup_steps < 0:
            out.append("weight_decay and warmup_steps must be >= 0")
        if not 0 <= self.proportion_empty_prompts < 1:
            out.append(f"proportion_empty_prompts must be in [0, 1) (got {self.proportion_empty_prompts})")
        if self.lora_rank is not None and self.lora_rank < 1:
            out.append(f"lora_rank must be >= 1 or none (got {self.lora_rank})")
        return out


class OfflineMethod(ABC):
    """A loss over per-image denoising errors of whole lists; the training function does everything else."""

    name: ClassVar[str]
    config_class: ClassVar[type[OfflineConfig]] = OfflineConfig

    def __init__(self, config: OfflineConfig) -> None:
        self.config = config

    @abstractmethod
    def loss(self, errors: list[torch.Tensor], ref_errors: list[torch.Tensor], rows: list[RankedRow]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """The mean loss over the lists of a micro-batch (``errors[b]`` [k_b], with grad) and scalar metrics."""


def get_offline_method(name: str) -> type[OfflineMethod]:
    from trainers.diffusion_dpo import DiffusionDPO
    from trainers.rankdpo import RankDPO

    methods = {cls.name: cls for cls in (DiffusionDPO, RankDPO)}
    if name not in methods:
        raise HarnessError(f"unknown offline method {name!r}; known: {', '.join(sorted(methods))}")
    return methods[name]


# --- noising ------------------------------------------------------------------------------------------------


def denoising_errors(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖target − prediction‖² as the mean over every non-batch dimension (the official per-sample reduction)."""
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(1)


def is_flow_matching(scheduler: object) -> bool:
    return isinstance(scheduler, FlowMatchEulerDiscreteScheduler)


class Noiser:
    """Draws training timesteps and builds noised inputs and targets for a policy's noise schedule.

    DDPM-family schedules (DDIM, PNDM, ...): t ~ U{0, …, T−1} as the official Diffusion-DPO train.py draws it,
    x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε. Flow matching: a uniform index into the scheduler's training sigmas
    (which carry the model's shift, e.g. 3.0 for SD3), x_t = (1 − σ) x_0 + σ ε, model timestep σ·T. A private
    copy of the scheduler is used, so sampling state on the policy's own scheduler is never touched.
    """

    def __init__(self, scheduler: object) -> None:
        self.scheduler = type(scheduler).from_config(scheduler.config)  # type: ignore[attr-defined]
        self.flow = is_flow_matching(self.scheduler)
        self.num_train_timesteps = int(self.scheduler.config.num_train_timesteps)
        self.prediction_type = getattr(self.scheduler.config, "prediction_type", None) or "epsilon"

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` timestep indices in [0, T)."""
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator)

    def noised(self, x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, the timestep to give the model, the training target) for indices ``index`` [B]."""
        if self.flow:
            sigmas = self.scheduler.sigmas[index].to(x0.device, torch.float32)
            timesteps = self.scheduler.timesteps[index].to(x0.device)
            sigma = sigmas.view(-1, *[1] * (x0.ndim - 1))
            x_t = (1 - sigma) * x0.float() + sigma * noise.float()
            return x_t.to(x0.dtype), timesteps, noise - x0
        timesteps = index.to(x0.device)
        x_t = self.scheduler.add_noise(x0, noise, timesteps)
        if self.prediction_type == "epsilon":
            target = noise
        elif self.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(x0, noise, timesteps)
        elif self.prediction_type == "sample":
            target = x0
        else:
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        return x_t, timesteps, target


# --- images to latents ----------------------------------------------------------------------------------------


def encode_images(policy: Policy, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels [B, 3, H, W] in [-1, 1] -> the policy's latents, the inverse of its ``decode``: the builtin model's
    space-to-depth, or the VAE's posterior mean, normalised as the policy's ``decode`` un-normalises."""
    if isinstance(policy, BuiltinPolicy):
        return pixels_to_latents(pixels.to(policy.device, policy.dtype))
    vae = getattr(policy, "vae", None)
    if vae is None:
        raise HarnessError(f"{policy.name}: this policy has no VAE to encode training images with")
    config = vae.config
    latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
    if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents)
        latents = (latents - mean) * config.scaling_factor / std
    else:
        latents = (latents - (getattr(config, "shift_factor", None) or 0.0)) * config.scaling_factor
    return latents.to(policy.dtype)


def read_pixels(paths: list[Path], size: tuple[int, int]) -> torch.Tensor:
    """RGB files -> [B, 3, H, W] in [-1, 1]; every image must be ``size`` (height, width)."""
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.float32)
        except (OSError, SyntaxError, ValueError) as error:
            raise DataError(f"{path}: unreadable image ({error}); rebuild the dataset") from None
        if array.shape[:2] != size:
            raise DataError(f"{path}: {array.shape[1]}x{array.shape[0]} pixels, but the model trains at "
                            f"{size[1]}x{size[0]}; build the dataset at the model's resolution")
        arrays.append(array)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1


# --- the training function ----------------------------------------------------------------------------------------


@dataclass
class _Offline:
    """One run's moving parts."""

    out: Path
    policy: Policy
    method: OfflineMethod
    reference: Any
    noiser: Noiser
    optimizer: torch.optim.Optimizer
    dataset: RankedDataset
    config: OfflineConfig
    seed: int
    identity: dict
    size: tuple[int, int]
    step: int = 0
    metrics: list[dict] = field(default_factory=list)
    cost: dict = field(default_factory=lambda: {"wall_s": 0.0, "images_seen": 0})
    overlap: dict = field(default_factory=dict)
    cache: dict[tuple[str, ...], torch.Tensor] = field(default_factory=dict)  # encoded latents of small datasets


OFFLINE_METHODS = ("diffusion-dpo", "rankdpo")
DEFAULT_SAVE_EVERY = 50  # optimiser steps between saves of state.pt and checkpoint/


def is_offline(method: str) -> bool:
    """True for the methods that train on a dataset (``--data``) rather than on images they sample (``--feedback``)."""
    return method in OFFLINE_METHODS


def check_sources(method: str, feedback: str | None, prompts: str | None, data: str | Path | None) -> bool:
    """Whether ``method`` is offline, after checking that it was given the inputs its kind reads: ``--data`` for an
    offline method (its prompts are the dataset's; there is no feedback), ``--feedback`` for an online one. A
    mismatch is a one-line error naming the flag to pass."""
    if is_offline(method):
        given = [flag for flag, value in (("--feedback", feedback), ("--prompts", prompts)) if value is not None]
        if given:
            raise HarnessError(f"{method} trains offline on --data (its prompts and rankings come from the dataset); "
                               f"drop {' and '.join(given)}")
        if data is None:
            raise HarnessError(f"{method} trains on a ranked dataset: pass --data DIR (made by `harness data "
                               "build-ranked`) or a pairs .jsonl")
        return True
    if data is not None:
        raise HarnessError(f"--data is for the offline methods ({', '.join(OFFLINE_METHODS)}); {method} samples its "
                           "own images: pass --feedback instead")
    if feedback is None:
        raise HarnessError(f"{method} learns from feedback on the images it samples: pass --feedback (e.g. "
                           "objective:geneval)")
    return False


def train_offline(method: str, ckpt: str, data: str | Path, budget: int, out: Path, seed: int = 0,
                  settings: dict[str, str] | None = None, resume: bool = False, overwrite: bool = False,
                  progress: bool = True, allow_overlap: bool = False, data_dir: Path | None = None) -> TrainResult:
    """Train ``ckpt`` with ``method`` ("diffusion-dpo" or "rankdpo") on ``data`` for ``budget`` optimiser steps.

    ``data``: a dataset folder from ``harness data build-ranked`` or a pairs/lists ``.jsonl``. ``settings``:
    ``--set`` overrides of the method's config plus ``save_every`` (steps, default 50). The dataset's prompts are
    checked against every benchmark's as the online loop checks its training prompts (verbatim benchmark prompts
    are refused unless ``allow_overlap``). Every user error is raised before anything is loaded or written. A NaN
    or infinite loss or gradient stops the run before the optimiser step, keeping the last saved checkpoint.
    Returns :class:`trainers.loop.TrainResult` (checkpoint folder; summary with the dataset's provenance and build
    cost and the run's cost).
    """
    from trainers.loop import TrainResult, checkpoint_world, load_policy, parse_settings
    from trainers.methods import NonFiniteLoss
    from trainers.prompts import check_overlap, overlap_report
    from trainers.reference import Reference

    out = Path(out)
    method_class = get_offline_method(method)
    world = checkpoint_world(ckpt)
    config = method_class.config_class.defaults(world)
    overrides, loop = parse_settings(config, {"save_every": str(DEFAULT_SAVE_EVERY), **(settings or {})})
    config = config.override(overrides)
    problems = config.problems() + ([f"save_every must be >= 1 (got {loop['save_every']})"]
                                    if loop["save_every"] < 1 else [])
    if problems:
        raise HarnessError(f"{method}: {'; '.join(problems)} (change it with --set KEY=VALUE)")
    if budget < 1:
        raise HarnessError(f"--budget {budget}: offline training counts optimiser steps; pass at least 1")
    dataset = load_dataset(data)
    prompts = sorted({row.prompt for row in dataset.rows})
    report = overlap_report([PromptItem(i, prompt, "", {}) for i, prompt in enumerate(prompts)], world, data_dir)
    check_overlap(report, allow_overlap)
    identity = {"method": method, "ckpt": ckpt, "data": str(Path(data).resolve()), "data_hash": _data_hash(dataset),
                "seed": seed, "config": asdict(config), "world": world}
    state = checkpointing.claim_folder(out, identity, resume, overwrite, relocatable={"data": "data_hash"})

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    policy = load_policy(ckpt, config.lora_rank, accelerator)
    reference = Reference(policy)  # before any resumed weights: the reference is the run's start
    params = [p for p in policy.unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.effective_learning_rate, betas=config.adam_betas,
                                  eps=config.adam_eps, weight_decay=config.weight_decay)
    size = (policy.default_height, policy.default_width)
    run = _Offline(out, policy, method_class(config), reference, Noiser(policy.scheduler), optimizer, dataset, config,
                   seed, identity, size, overlap=report.to_dict())
    if state is not None:
        checkpointing.load_trainable_state(policy.unet, state["weights"])
        optimizer.load_state_dict(state["optimizer"])
        run.step, run.metrics, run.cost = state["step"], state["metrics"], state["cost"]
        atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in run.metrics))
    else:
        out.mkdir(parents=True, exist_ok=True)
        checkpointing.write_identity(out, identity)
        atomic_write_text(out / "metrics.jsonl", "")
        atomic_write_text(out / "overlap.txt", report.summary() + "\n")
    saved = run.step
    started = time.monotonic()
    with tqdm(total=budget, initial=min(run.step, budget), disable=not progress, desc=f"train {method}",
              unit="step") as bar:
        while run.step < budget:
            try:
                row = _one_step(run)
            except NonFiniteLoss as err:
                kept = (f"the last good checkpoint (after step {saved}) is in {out / checkpointing.CHECKPOINT}"
                        if saved else f"no checkpoint was saved yet (save_every={loop['save_every']})")
                raise HarnessError(f"{err}; stopped, {kept}; start again in a new --out with a lower learning_rate "
                                   "or beta (--set)") from None
            run.step += 1
            run.metrics.append(row)
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4g}")
            run.cost["wall_s"] += time.monotonic() - started
            started = time.monotonic()
            if run.step % loop["save_every"] == 0 or run.step == budget:
                _save(run)
                saved = run.step
    summary = _summary(run, budget, loop["save_every"])
    atomic_write_json(out / "summary.json", summary)
    return TrainResult(out / checkpointing.CHECKPOINT, summary)


def training_record(result: TrainResult, benchmark: str) -> dict:
    """The ``training`` field of a trained model's result record: method, the checkpoint trained from (``ckpt``),
    dataset (path, content hash, rows and skips, provenance: generators and reward models with their versions, and
    the build's cost: images generated, scores computed, wall time), config, seed, budget, cost, overlap, and
    ``in_reward`` (a reward model of the dataset is ``benchmark``'s own scorer, so the gain is not held-out
    evidence)."""
    from trainers.monitor import in_reward

    summary = result.summary
    training = {key: summary[key] for key in ("method", "ckpt", "dataset", "config", "seed", "budget", "budget_unit",
                                              "steps", "cost", "overlap")}
    rewards = summary["dataset"]["provenance"].get("rewards") or []
    training["in_reward"] = any(in_reward({**(r.get("scorer_id") or {}), "feedback": r.get("spec", "")}, benchmark)
                                for r in rewards)
    training["checkpoint"] = str(result.checkpoint)
    return training


def _one_step(run: _Offline) -> dict:
    from trainers.methods import NonFiniteLoss, seeded_generator

    config = run.config
    scale = 1.0
    if config.warmup_steps:
        scale = min(1.0, run.step / config.warmup_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = config.effective_learning_rate * scale
    totals: dict[str, float] = {}
    for micro in range(config.grad_accumulation):
        rows = [run.dataset.rows[i] for i in _batch_indices(run, micro)]
        generator = seeded_generator(run.seed, run.step, micro)
        errors, ref_errors = list_errors(run, rows, generator)
        loss, metrics = run.method.loss(errors, ref_errors, rows)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"step {run.step + 1}: the {run.method.name} loss is {loss.item()}")
        (loss / config.grad_accumulation).backward()
        run.cost["images_seen"] += sum(len(r.images) for r in rows)
        for key, value in {"loss": loss.item(), **metrics}.items():
            totals[key] = totals.get(key, 0.0) + value / config.grad_accumulation
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    if not torch.isfinite(grad_norm):  # clipping an infinite norm would write NaN into every weight
        raise NonFiniteLoss(f"step {run.step + 1}: the {run.method.name} gradient norm is {grad_norm.item()}")
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return {"step": run.step + 1, **totals, "grad_norm": float(grad_norm), "lr": run.optimizer.param_groups[0]["lr"]}


def _batch_indices(run: _Offline, micro: int) -> list[int]:
    """The rows of a micro-batch: consecutive slots of per-epoch permutations seeded by (seed, epoch)."""
    n, size = len(run.dataset.rows), run.config.batch_size
    first = (run.step * run.config.grad_accumulation + micro) * size
    indices = []
    for slot in range(first, first + size):
        epoch, position = divmod(slot, n)
        order = np.random.default_rng([run.seed, epoch]).permutation(n)
        indices.append(int(order[position]))
    return indices


def list_errors(run: _Offline, rows: list[RankedRow], generator: torch.Generator
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-image denoising errors of policy (with grad) and reference for each row's list (see the module
    docstring for the shared noise and timestep)."""
    policy, config = run.policy, run.config
    counts = [len(row.images) for row in rows]
    owner = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor(counts))
    with torch.no_grad():
        x0 = torch.cat([_latents(run, row) for row in rows])
        shape = x0.shape[1:]
        if config.share_noise:
            noise = torch.randn((len(rows), *shape), generator=generator)[owner]
            index = run.noiser.draw(len(rows), generator)[owner]
        else:
            noise = torch.randn((len(x0), *shape), generator=generator)
            index = run.noiser.draw(len(x0), generator)
        drop = torch.rand(len(rows), generator=generator) < config.proportion_empty_prompts
        prompts = ["" if dropped else row.prompt for row, dropped in zip(rows, drop.tolist())]
        x_t, timesteps, target = run.noiser.noised(x0, noise.to(x0.device, x0.dtype), index)
        cond = policy.encode_prompts(prompts).select(owner.to(policy.device))
    prediction = policy.denoise(x_t, timesteps, cond)
    with run.reference.active():
        ref_prediction = policy.denoise(x_t, timesteps, cond)
    errors = denoising_errors(prediction, target).split(counts)
    ref_errors = denoising_errors(ref_prediction, target).split(counts)
    return list(errors), list(ref_errors)


def _latents(run: _Offline, row: RankedRow) -> torch.Tensor:
    key = tuple(str(p) for p in row.images)
    cached = run.cache.get(key)
    if cached is not None:
        return cached.to(run.policy.device)
    latents = encode_images(run.policy, read_pixels(row.images, run.size))
    if sum(len(r.images) for r in run.dataset.rows) <= LATENT_CACHE_LIMIT:
        run.cache[key] = latents.cpu()
    return latents


def _save(run: _Offline) -> None:
    checkpointing.export_checkpoint(run.policy, run.out / checkpointing.CHECKPOINT)
    checkpointing.save_state(run.out, {"step": run.step, "weights": checkpointing.trainable_state(run.policy.unet),
                                       "optimizer": run.optimizer.state_dict(), "metrics": run.metrics,
                                       "cost": run.cost})


def _data_hash(dataset: RankedDataset) -> str:
    return stable_hash([[r.prompt, [p.name for p in r.images], r.psi.tolist(), r.ranking] for r in dataset.rows])


def _summary(run: _Offline, budget: int, save_every: int) -> dict:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cost = {**run.cost, "wall_s": round(run.cost["wall_s"], 1), "peak_memory_mb": round(peak_mb, 1), "processes": 1}
    if torch.cuda.is_available():
        cost["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    losses = [m["loss"] for m in run.metrics]
    tenth = max(1, len(losses) // 10)
    return {
        "method": run.method.name, "ckpt": run.identity["ckpt"], "seed": run.seed, "config": asdict(run.config),
        "effective_learning_rate": run.config.effective_learning_rate, "save_every": save_every,
        "budget": budget, "budget_unit": "optimiser steps", "steps": run.step,
        "dataset": dataset_info(run.dataset, run.identity["data"], run.identity["data_hash"]),
        "overlap": run.overlap, "cost": cost,
        "loss_first_tenth": float(np.mean(losses[:tenth])) if losses else None,
        "loss_last_tenth": float(np.mean(losses[-tenth:])) if losses else None,
        "final_metrics": run.metrics[-1] if run.metrics else {},
    }


def dataset_info(dataset: RankedDataset, path: str, content_hash: str) -> dict:
    """What a run trained on, for its summary and result records: the dataset's path and content hash, rows used and
    rows skipped (by reason), its provenance (generators with their samplers, reward models with their versions, k)
    and, for a built dataset, the build's total cost over all its (resumed) runs: images generated, scores computed,
    wall seconds (``build.json``; a pairs file has none)."""
    build_file = dataset.source.parent / BUILD_FILE
    build = {}
    if dataset.source.name == DATASET_FILE and build_file.is_file():
        with contextlib.suppress(OSError, ValueError):
            build = json.loads(build_file.read_text())
    return {"path": path, "hash": content_hash, "rows": len(dataset.rows), "skipped": dict(dataset.skipped),
            "provenance": dataset.provenance, "build_cost": build.get("total_cost"),
            "build_status": build.get("status")}
