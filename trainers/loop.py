"""``harness train`` / ``train-and-eval``: online alignment rounds for any method and feedback, resumable, and
the same on one process or many (issue 13, items 4-7; ``specs/trainers.md``).

One round r:

1. draw ``prompts_per_round`` training prompts with ``random.Random(f"{seed}:{r}")`` (without replacement when the
   set is large enough);
2. sample ``images_per_prompt`` DDIM trajectories (eta > 0) per prompt; image row k of the round gets the seed
   :func:`image_seed` (seed, r, k), so the round's images do not depend on how many processes share it;
3. the feedback scores or compares the images within each prompt's group;
4. ``method.update`` takes its optimiser steps;
5. metrics go to ``metrics.jsonl`` (and TensorBoard through accelerate when it is installed), every strict
   preference to ``preferences.jsonl`` with its images, and every ``save_every`` rounds the state and the
   checkpoint are saved (see :mod:`trainers.checkpointing`).

Resume: the state holds the trainable weights, the method's state (optimiser, per-prompt statistics, value net),
the rounds done, the metrics, the cost and the monitor curves. Every random draw of a round is a function of
(seed, r): prompts and image seeds as above, and the global torch / numpy / random generators are re-seeded from
(seed, r) before the round (for whatever the method or the feedback draws from them), so no generator state needs
saving and a run resumed at round k ends with the same weights as an uninterrupted one.

Scale-out (``accelerate launch`` / ``torchrun``, DDP; gloo on CPU): the round's P prompt groups are cut into W equal
contiguous slices, one per process, so every process holds P/W whole groups (P must be a multiple of W). A method's
loss is a mean over its process's rows (or over all pairs of its groups, ties included), all processes hold the
same number of them, and DDP averages the gradients over processes, so each optimiser step follows the gradient of
the mean over the global batch, as on one process. Methods that need batch-wide statistics (DDPO/GRPO advantages)
gather them through the accelerator themselves. The main process writes every file; all processes load the state.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import time
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from PIL import Image
from tqdm.auto import tqdm

from benchmarks.registry import PromptItem, available
from harness.builtin.model import PIPELINE_CLASS
from harness.checkpoints import ADAPTER_SEP, BUILTIN_PREFIX, resolve_checkpoint
from harness.errors import HarnessError
from harness.hashing import stable_hash
from harness.policy import Policy
from harness.sampling import SamplerConfig
from harness.sd_policy import ADAPTER_INFO
from harness.store import atomic_write_bytes, atomic_write_json, atomic_write_text
from trainers import checkpointing
from trainers.base import Feedback, FeedbackBatch, MethodConfig, OnlineMethod, Trajectories

if typing.TYPE_CHECKING:
    from harness.api import EvalSettings
    from trainers.monitor import Monitor

# Settings of the loop itself, accepted by --set beside the method's config fields.
LOOP_DEFAULTS = {"save_every": 1}
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # the UNet attention projections (DDPO / D3PO's LoRA)
MONITOR_PROMPTS = 48  # held-out benchmark prompts the monitor scores at each measurement


@dataclass
class TrainResult:
    """Where the trained checkpoint is, and the run's settings and cost (also in ``<out>/summary.json``)."""

    checkpoint: Path
    summary: dict


@dataclass
class _Run:
    """Everything one training run holds between rounds."""

    out: Path
    accelerator: Accelerator
    policy: Policy
    method: OnlineMethod
    feedback: Feedback
    items: list[PromptItem]
    config: MethodConfig
    sampler: SamplerConfig
    seed: int
    rounds: int
    save_every: int
    monitor: Monitor | None
    identity: dict
    overlap: dict
    metrics: list[dict]
    cost: dict
    round: int = 0


def image_seed(seed: int, round_index: int, row: int) -> int:
    """The seed of image ``row`` of round ``round_index``: a hash, so runs with nearby seeds share no images."""
    return int(stable_hash(["train-image", seed, round_index, row])[:8], 16)


def round_prompts(n_items: int, prompts_per_round: int, seed: int, round_index: int) -> list[int]:
    """Indices of the training prompts of a round (without replacement when there are enough)."""
    rng = random.Random(f"{seed}:{round_index}")
    if prompts_per_round <= n_items:
        return rng.sample(range(n_items), prompts_per_round)
    return [rng.randrange(n_items) for _ in range(prompts_per_round)]


def checkpoint_world(spec: str) -> str:
    """The world ("builtin" or "real") of a ``--ckpt`` spec, read from its configs without loading weights."""
    base = spec.split(ADAPTER_SEP)[0] if ADAPTER_SEP in spec and not Path(spec).exists() else spec
    if base.startswith(BUILTIN_PREFIX):
        return "builtin"
    folder = Path(base).expanduser()
    with contextlib.suppress(OSError, ValueError):
        if (folder / "model_index.json").is_file():
            index = json.loads((folder / "model_index.json").read_text())
            return "builtin" if index.get("_class_name") == PIPELINE_CLASS else "real"
        if (folder / ADAPTER_INFO).is_file():
            adapter_base = json.loads((folder / ADAPTER_INFO).read_text()).get("base")
            if adapter_base:
                return checkpoint_world(adapter_base)
    return "real"


def parse_settings(config: MethodConfig, settings: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``--set KEY=VALUE`` into method-config overrides and loop settings, each value typed like its field.

    Booleans read true/false, tuples comma-separated values, optional fields accept "none".
    """
    hints = typing.get_type_hints(type(config))
    known = {f.name for f in fields(config)}
    overrides: dict[str, Any] = {}
    loop = dict(LOOP_DEFAULTS)
    for key, text in settings.items():
        if key in LOOP_DEFAULTS:
            loop[key] = _typed(key, text, int)
        elif key in known:
            overrides[key] = _typed(key, text, hints[key])
        else:
            names = ", ".join(sorted(known | set(LOOP_DEFAULTS)))
            raise HarnessError(f"--set {key}: unknown setting for {type(config).__name__}; known: {names}")
    return overrides, loop


def _typed(key: str, text: str, hint: Any) -> Any:
    value = text.strip()
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if args and type(None) in args and origin is not tuple:
            if value.lower() in ("none", "null", ""):
                return None
            return _typed(key, value, next(a for a in args if a is not type(None)))
        if origin is typing.Literal:
            if value not in [str(a) for a in args]:
                raise ValueError(f"expected one of {', '.join(map(str, args))}")
            return next(a for a in args if str(a) == value)
        if origin is tuple:
            parts = [p for p in value.split(",") if p.strip()]
            if len(parts) != len(args):
                raise ValueError(f"expected {len(args)} comma-separated values")
            return tuple(_typed(key, p, a) for p, a in zip(parts, args))
        if hint is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true or false")
            return value.lower() in ("true", "1", "yes")
        if hint in (int, float, str):
            return hint(value)
    except ValueError as err:
        raise HarnessError(f"--set {key}={text}: {err}") from None
    raise HarnessError(f"--set {key}: this setting cannot be set from the command line")


def check_config(method_class: type[OnlineMethod], config: MethodConfig) -> None:
    """Refuse out-of-range hyperparameters before any work, one line naming the setting and the range."""
    problems = []
    positive = ("learning_rate", "num_inference_steps", "prompts_per_round", "images_per_prompt", "adam_eps",
                "max_grad_norm")
    problems += [f"{name} must be > 0 (got {getattr(config, name)})" for name in positive
                 if not getattr(config, name) > 0]
    if not config.weight_decay >= 0:
        problems.append(f"weight_decay must be >= 0 (got {config.weight_decay})")
    if not all(0 <= b < 1 for b in config.adam_betas):
        problems.append(f"adam_betas must be in [0, 1) (got {config.adam_betas})")
    if not config.guidance_scale >= 1:
        problems.append(f"guidance_scale must be >= 1 (got {config.guidance_scale})")
    if config.lora_rank is not None and config.lora_rank < 1:
        problems.append(f"lora_rank must be >= 1 or none for full training (got {config.lora_rank})")
    if not config.eta > 0:
        problems.append(f"eta must be > 0: {method_class.name} trains on the log-probability of stochastic DDIM "
                        f"steps, which only exist with eta > 0 (got {config.eta})")
    group = method_class.signal == "preferences" or method_class.name == "grpo"
    if group and config.images_per_prompt < 2:
        problems.append(f"images_per_prompt must be >= 2: {method_class.name} compares images of the same prompt "
                        f"(got {config.images_per_prompt})")
    validate = getattr(config, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise HarnessError(f"{method_class.name}: {'; '.join(problems)} (change it with --set KEY=VALUE)")


def resolve_config(method: str, world: str, settings: dict[str, str] | None = None
                   ) -> tuple[type[OnlineMethod], MethodConfig, dict[str, Any]]:
    """The method's class, its config (the ``world``'s defaults with ``--set`` ``settings`` applied, checked) and the
    loop settings: what :func:`train` runs with, and what ``harness.api.method_config`` reports without training."""
    from trainers.methods import get_method

    method_class = get_method(method)
    config = method_class.config_class.defaults(world)
    overrides, loop = parse_settings(config, settings or {})
    config = config.override(overrides)
    check_config(method_class, config)
    return method_class, config, loop


def train(
    method: str,
    ckpt: str,
    feedback: str,
    prompts: str,
    budget: int,
    out: Path,
    seed: int = 0,
    settings: dict[str, str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    monitor: Monitor | None = None,
    allow_overlap: bool = False,
    data_dir: Path | None = None,
) -> TrainResult:
    """Train ``ckpt`` with ``method`` on ``feedback`` for ``budget`` sampled images; returns the checkpoint folder.

    Every user error (unknown method, bad setting, budget below one round, an output folder holding another run,
    training prompts that are benchmark prompts) is raised before anything is loaded or written.
    """
    from trainers.methods import NonFiniteLoss

    out = Path(out)
    world = checkpoint_world(ckpt)
    method_class, config, loop = resolve_config(method, world, settings)
    if loop["save_every"] < 1:
        raise HarnessError(f"save_every must be >= 1 (got {loop['save_every']})")
    rounds = budget // config.images_per_round
    if rounds < 1:
        raise HarnessError(f"--budget {budget} is smaller than one round ({config.prompts_per_round} prompts x "
                           f"{config.images_per_prompt} images = {config.images_per_round} images); raise --budget")
    accelerator = _accelerator(out)
    if config.prompts_per_round % accelerator.num_processes:
        raise HarnessError(f"prompts_per_round={config.prompts_per_round} does not split over "
                           f"{accelerator.num_processes} processes; use a multiple of {accelerator.num_processes}")
    identity = {"method": method_class.name, "ckpt": ckpt, "feedback": feedback, "prompts": prompts, "seed": seed,
                "config": asdict(config), "world": world}
    state = checkpointing.claim_folder(out, identity, resume, overwrite)
    accelerator.wait_for_everyone()  # nobody writes into the folder before every process has checked it

    from trainers.feedback import parse_feedback
    from trainers.prompts import check_overlap, overlap_report, resolve_training_prompts

    signal = parse_feedback(feedback, world, data_dir)
    items = resolve_training_prompts(prompts, world)
    report = overlap_report(items, world, data_dir)
    check_overlap(report, allow_overlap)

    policy = load_policy(ckpt, config.lora_rank, accelerator)
    policy.unet = accelerator.prepare(policy.unet)
    # The method is built on the weights the run started from: its frozen reference is the start, not the resumed
    # weights, as in an uninterrupted run.
    trainer = method_class(policy, config, accelerator, seed)
    sampler = SamplerConfig(num_inference_steps=config.num_inference_steps, guidance_scale=config.guidance_scale,
                            eta=config.eta).resolved(policy)
    run = _Run(out, accelerator, policy, trainer, signal, items, config, sampler, seed, rounds, loop["save_every"],
               monitor, identity, report.to_dict(), [], {"wall_s": 0.0, "images_sampled": 0, "labels_used": 0})
    attach = getattr(signal, "attach", None)  # --feedback human keeps its rounds in the run folder (trainers/human.py)
    if callable(attach):
        attach(out, accelerator.num_processes)
    if state is not None:
        _restore(run, state)
    elif accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        checkpointing.write_identity(out, identity)
        for name in ("metrics.jsonl", "preferences.jsonl"):
            atomic_write_text(out / name, "")
        log_overlap = report.summary()
        atomic_write_text(out / "overlap.txt", log_overlap + "\n")
    accelerator.wait_for_everyone()
    accelerator.init_trackers("train", config=_flat_scalars({**identity, "budget": budget}))

    started = time.monotonic()
    bar = tqdm(total=rounds, initial=run.round, disable=not progress or not accelerator.is_local_main_process,
               desc=f"train {method_class.name}", unit="round")
    try:
        if monitor is not None and run.round == 0:
            _measure(run, proxy_reward=None)
        while run.round < rounds:
            try:
                row = _one_round(run)
            except NonFiniteLoss as err:
                raise HarnessError(f"round {run.round + 1}: {err}; stopped, {_nan_advice(run)}") from None
            run.round += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k in ("loss", "reward")})
            if monitor is not None and (run.round % monitor.every_rounds == 0 or run.round == rounds):
                # Held-out scoring is the harness's cost, not the method's: kept out of wall_s, reported beside it.
                measured = time.monotonic()
                _measure(run, proxy_reward=row.get("reward"))
                spent = time.monotonic() - measured
                run.cost["monitor_s"] = run.cost.get("monitor_s", 0.0) + spent
                started += spent
            run.cost["wall_s"] += time.monotonic() - started
            started = time.monotonic()
            if run.round % run.save_every == 0 or run.round == rounds:
                _save(run)
    finally:
        bar.close()
        close = getattr(signal, "close", None)  # --feedback human: stop the labeling page
        if callable(close):
            close()
        # Not accelerator.end_training(): it also destroys the process group, which evaluation still needs.
        for tracker in accelerator.trackers:
            tracker.finish()
    summary = _summary(run, budget)
    if accelerator.is_main_process:
        atomic_write_json(out / "summary.json", summary)
    accelerator.wait_for_everyone()
    return TrainResult(out / checkpointing.CHECKPOINT, summary)


def monitor_for(ckpt: str, benchmarks: list[str], every_rounds: int, out: Path, seed: int,
                eval_settings: EvalSettings) -> Monitor:
    """The held-out monitor of a train-and-eval run: ``MONITOR_PROMPTS`` prompts of ``benchmarks`` (fewer under
    ``--limit``) scored every ``every_rounds`` rounds into ``OUT/monitor``."""
    from trainers.monitor import Monitor

    if every_rounds < 1:
        raise HarnessError(f"--monitor-every must be >= 1 (got {every_rounds})")
    held_out = min(MONITOR_PROMPTS, eval_settings.limit or MONITOR_PROMPTS)  # --limit bounds it too
    return Monitor(checkpoint_world(ckpt), benchmarks=tuple(benchmarks), n_prompts=held_out, seed=seed,
                   every_rounds=every_rounds, out_dir=Path(out) / "monitor", data_dir=eval_settings.data_dir)


def training_record(result: TrainResult, benchmark: str) -> dict:
    """The ``training`` field of an online-trained model's result record on ``benchmark``: method, the checkpoint
    trained from (``ckpt``), feedback, config, seed, training prompts and their overlap with the benchmarks, budget,
    cost, rounds, monitor curves, the checkpoint and ``in_reward`` (the feedback scores with that benchmark's own
    scorer, so the gain is not held-out evidence): the keys a record made by ``harness eval --ckpt RUN/checkpoint``
    takes from the run's summary as well."""
    from trainers.monitor import in_reward

    summary = result.summary
    training = {key: summary[key] for key in ("method", "ckpt", "feedback", "config", "seed", "prompts", "overlap",
                                              "budget", "cost", "rounds", "monitor")}
    training["in_reward"] = in_reward(summary["feedback_scorer"], benchmark)
    training["checkpoint"] = str(result.checkpoint)
    return training


# --- one round --------------------------------------------------------------------------------------------------


def _one_round(run: _Run) -> dict:
    """Sample this process's groups, get feedback, update; returns the round's metrics (all processes)."""
    from trainers.sampling import sample_trajectories

    acc, config, r = run.accelerator, run.config, run.round
    _seed_everything(run.seed, r)
    offline = callable(getattr(run.feedback, "load_round", None))
    if offline:
        # Recorded rounds (labels:FILE): every process trains on the whole recorded round, so the gradients that
        # DDP averages are identical and the step equals a single process's.
        trajectories, items = run.feedback.load_round()
        rows = list(range(len(trajectories)))
    else:
        picks = round_prompts(len(run.items), config.prompts_per_round, run.seed, r)
        per_process = config.prompts_per_round // acc.num_processes
        mine = range(acc.process_index * per_process, (acc.process_index + 1) * per_process)
        k = config.images_per_prompt
        rows = [g * k + j for g in mine for j in range(k)]
        groups = [row // k for row in rows]
        items = [run.items[picks[g]] for g in groups]
        seeds = [image_seed(run.seed, r, row) for row in rows]
        # --feedback human saves each sampled round for the labeling page; a round sampled before a stop is trained
        # from its saved folder on --resume rather than sampled again (trainers/human.py).
        recorded = getattr(run.feedback, "recorded_round", None)
        saved = recorded(r) if callable(recorded) else None
        if saved is not None:
            trajectories, items = saved
        else:
            with _unwrapped(run):
                trajectories = sample_trajectories(run.policy, [item.prompt for item in items], seeds, run.sampler,
                                                   groups, shared_noise=config.shared_noise)
            if callable(recorded):
                run.feedback.record_round(r, trajectories, items)
    # The rows' seeds let a simulated annotator key its label noise on the image, not on the batch it came in.
    batch = run.feedback.evaluate(trajectories.pil_images(), items, trajectories.groups, seeds=trajectories.seeds)
    metrics = run.method.update(trajectories, batch, items)
    pairs = _preference_rows(run, trajectories, batch, rows)
    local = {"metrics": {k: float(v) for k, v in metrics.items()}, "labels": batch.labels_used,
             "images": len(trajectories), "strict_pairs": len(pairs),
             "rewards": [] if batch.rewards is None else [float(x) for x in batch.rewards]}
    gathered = _gather(acc, [local])
    all_pairs = _gather(acc, pairs)
    if offline:
        gathered, all_pairs = gathered[:1], all_pairs[: len(pairs)]  # each process saw the same recorded round
    row = {"round": r + 1}
    for key in sorted({k for g in gathered for k in g["metrics"]}):
        values = [g["metrics"][key] for g in gathered if key in g["metrics"]]
        row[key] = sum(values) / len(values)
    rewards = [x for g in gathered for x in g["rewards"]]
    if rewards:
        row["reward"] = float(np.mean(rewards))
    row["labels_used"] = sum(g["labels"] for g in gathered)
    row["strict_pairs"] = sum(g["strict_pairs"] for g in gathered)
    run.cost["images_sampled"] += sum(g["images"] for g in gathered)
    run.cost["labels_used"] += row["labels_used"]
    row["images_sampled"] = run.cost["images_sampled"]
    run.metrics.append(row)
    if acc.is_main_process:
        _append_lines(run.out / "metrics.jsonl", [row])
        _append_lines(run.out / "preferences.jsonl", all_pairs)
        acc.log({k: v for k, v in row.items() if k != "round"}, step=r + 1)
    return row


def _preference_rows(run: _Run, trajectories: Trajectories, batch: FeedbackBatch, rows: list[int]) -> list[dict]:
    """Every strict preference of this process's batch in the pairwise format, its images saved as PNG files.

    Paths are relative to the run folder (where preferences.jsonl lives)."""
    saved: dict[int, str] = {}

    def image(local: int) -> str:
        if local not in saved:
            name = f"images/r{run.round + 1:05d}-{rows[local]:05d}.png"
            buffer = _png(trajectories.images[local])
            atomic_write_bytes(run.out / name, buffer)
            saved[local] = name
        return saved[local]

    lines = []
    for pref in batch.preferences:
        if pref.winner == 0:
            continue
        w, lo = (pref.i, pref.j) if pref.winner == 1 else (pref.j, pref.i)
        lines.append({"prompt": trajectories.prompts[w], "image_w": image(w), "image_l": image(lo),
                      "seed_w": trajectories.seeds[w], "seed_l": trajectories.seeds[lo],
                      "source": run.feedback.spec, "round": run.round + 1})
    return lines


def _png(pixels: torch.Tensor) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(pixels.cpu().numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


# --- state ------------------------------------------------------------------------------------------------------


def _save(run: _Run) -> None:
    """State and checkpoint after the same round (main process), then every process continues."""
    acc = run.accelerator
    if acc.is_main_process:
        with _unwrapped(run):
            unet = run.policy.unet
            checkpointing.export_checkpoint(run.policy, run.out / checkpointing.CHECKPOINT)
            checkpointing.save_state(run.out, {
                "round": run.round,
                "weights": checkpointing.trainable_state(unet),
                "method": run.method.state_dict(),
                "metrics": run.metrics,
                "cost": run.cost,
                "monitor_history": None if run.monitor is None else run.monitor.history,
            })
    acc.wait_for_everyone()


def _restore(run: _Run, state: dict) -> None:
    """Continue from a saved state; files written after it (a killed run's last rounds) are cut back to it."""
    with _unwrapped(run):
        checkpointing.load_trainable_state(run.policy.unet, state["weights"])
    run.method.load_state_dict(state["method"])
    run.round, run.metrics, run.cost = state["round"], state["metrics"], state["cost"]
    if run.monitor is not None and state.get("monitor_history") is not None:
        run.monitor.history = state["monitor_history"]
    if run.accelerator.is_main_process:
        atomic_write_text(run.out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in run.metrics))
        path = run.out / "preferences.jsonl"
        kept = [line for line in _read_lines(path) if json.loads(line)["round"] <= run.round]
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _nan_advice(run: _Run) -> str:
    """What is kept after a non-finite loss, and the command that goes on from there.

    Not ``--resume``: the config is part of the run's identity (``checkpointing.claim_folder`` refuses a resume with
    another learning rate), and an unchanged resume replays the same round (every draw is a function of (seed, r)),
    so it meets the same NaN. A lower learning rate is a new run."""
    saved = run.round - run.round % run.save_every
    kept = (f"the last good checkpoint (after round {saved}) is in {run.out / checkpointing.CHECKPOINT}" if saved
            else f"no checkpoint was saved yet (save_every={run.save_every})")
    return (f"{kept}; --resume continues only the same settings, so start again with a lower learning rate: the same "
            f"command with --set learning_rate=<below {run.config.learning_rate:g}> and a new --out (or --overwrite, "
            "which deletes this run)")


def _measure(run: _Run, proxy_reward: float | None) -> None:
    """The monitor's held-out measurement (main process; the others wait)."""
    if run.accelerator.is_main_process:
        with _unwrapped(run):
            run.monitor.measure(run.policy, run.round, proxy_reward)
    run.accelerator.wait_for_everyone()


def _summary(run: _Run, budget: int) -> dict:
    from trainers.monitor import in_reward

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    cost = {**run.cost, "wall_s": round(run.cost["wall_s"], 1), "peak_memory_mb": round(peak_mb, 1),
            "processes": run.accelerator.num_processes}
    if torch.cuda.is_available():
        cost["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return {
        "method": run.identity["method"], "ckpt": run.identity["ckpt"], "feedback": run.feedback.spec,
        "feedback_scorer": run.feedback.scorer_id(), "prompts": run.identity["prompts"], "seed": run.seed,
        "config": asdict(run.config), "save_every": run.save_every, "sampler": run.sampler.to_dict(),
        "budget": budget, "rounds": run.round, "overlap": run.overlap, "cost": cost,
        # per registered benchmark, so that `harness eval --ckpt RUN/checkpoint` can label its records without
        # importing trainers (harness.api.training_provenance)
        "in_reward": {name: in_reward(run.feedback.scorer_id(), name) for name in sorted(available())},
        "final_metrics": run.metrics[-1] if run.metrics else {},
        "monitor": None if run.monitor is None else {"curves": run.monitor.curves, "warnings": run.monitor.warnings},
    }


# --- helpers ----------------------------------------------------------------------------------------------------


def _accelerator(out: Path) -> Accelerator:
    """One accelerator per run: DDP under a distributed launcher (gloo on CPU), TensorBoard when installed."""
    from accelerate.utils import is_tensorboard_available

    tracker = "tensorboard" if is_tensorboard_available() else None
    return Accelerator(cpu=not torch.cuda.is_available(), log_with=tracker, project_dir=str(out / "logs"))


def load_policy(ckpt: str, lora_rank: int | None, accelerator: Accelerator) -> Policy:
    """The policy with only the trained parameters requiring grad: a LoRA adapter of ``lora_rank`` on the UNet
    attention projections, or (rank None) the whole UNet. A LoRA base on a GPU stays in float16 while the adapter
    trains in float32 (peft casts between them). Shared by the online loop and :mod:`trainers.offline`."""
    from peft import LoraConfig

    device = accelerator.device
    dtype = torch.float16 if device.type == "cuda" and lora_rank is not None else torch.float32
    policy = resolve_checkpoint(ckpt, device=str(device), dtype=dtype)
    for module in policy.modules().values():
        module.requires_grad_(False)
    if lora_rank is None:
        policy.unet.requires_grad_(True)
    else:
        policy.unet.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights="gaussian",
                                           target_modules=LORA_TARGETS))
        for param in policy.unet.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    return policy


@contextlib.contextmanager
def _unwrapped(run: _Run) -> Iterator[None]:
    """The policy with its bare UNet (not the DDP wrapper), for sampling without grad, saving and monitoring."""
    wrapped = run.policy.unet
    run.policy.unet = run.accelerator.unwrap_model(wrapped)
    try:
        yield
    finally:
        run.policy.unet = wrapped


def _seed_everything(seed: int, round_index: int) -> None:
    value = int(stable_hash(["train-round", seed, round_index])[:8], 16)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _gather(acc: Accelerator, objects: list) -> list:
    if acc.num_processes == 1:
        return list(objects)
    from accelerate.utils import gather_object

    return gather_object(objects)


def _append_lines(path: Path, rows: list[dict]) -> None:
    if rows:
        with open(path, "a") as handle:
            handle.write("".join(json.dumps(row) + "\n" for row in rows))


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


def _flat_scalars(values: dict, prefix: str = "") -> dict:
    """TensorBoard's hparams take scalars and strings only."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat_scalars(value, f"{prefix}{key}."))
        elif isinstance(value, int | float | str | bool):
            flat[f"{prefix}{key}"] = value
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat
