"""The ``harness`` command line: a thin typer layer over :mod:`harness.api` and friends."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness import __version__
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.records import ResultRecord

app = typer.Typer(help="Evaluate and align text-to-image models.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False)
bench_app = typer.Typer(help="The benchmark registry.", no_args_is_help=True)
builtin_app = typer.Typer(help="The builtin shapes world and its tiny model.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(builtin_app, name="builtin")
data_app = typer.Typer(help="Training datasets (synthetic ranked preferences).", no_args_is_help=True)
app.add_typer(data_app, name="data")
label_app = typer.Typer(help="Human labels: the labeling page, its export and agreement.", no_args_is_help=True)
app.add_typer(label_app, name="label")
console = Console()


def _version(value: bool) -> None:
    if value:
        console.print(f"harness {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")]
    = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@app.command("eval")
def eval_command(
    ckpt: Annotated[str, typer.Option(help="builtin:NAME, a diffusers folder, a .safetensors file, a cached hub id, "
                                           "or BASE+ADAPTER.")] = "builtin:shapes",
    bench: Annotated[list[str], typer.Option(help="Benchmark name(s), comma-separated or repeated.")] = ["geneval"],  # noqa: B006
    out: Annotated[Path, typer.Option(help="Store root: images, score cache and run folders.")] = Path("harness-runs"),
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts of each benchmark.")] = None,
    tags: Annotated[list[str] | None, typer.Option(help="Only these tags/categories, comma-separated.")] = None,
    batch_size: Annotated[str, typer.Option(help="Images per sampling batch: auto (set by the model's latent size: "
                                                 "64 for builtin, 32 for SD 1.5, 8 for SDXL) or a number.")] = "auto",
    steps: Annotated[int | None, typer.Option(help="Sampler steps (default: the benchmark's official default, "
                                                   "else the model's).")] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale (default: the benchmark's "
                                                        "official default, else the model's).")]
    = None,
    eta: Annotated[float | None, typer.Option(help="DDIM eta, DDIM-like schedulers only (default: the benchmark's "
                                                   "official default, else the model's, usually 0).")] = None,
    scheduler: Annotated[str | None, typer.Option(help="ddim, pipeline (the checkpoint's own scheduler), euler, "
                                                       "pndm, dpm++, ... or a diffusers scheduler class name "
                                                       "(default: the benchmark's official choice, else ddim).")]
    = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of official benchmark data files "
                                                       "(<dir>/geneval/evaluation_metadata.jsonl, ...).")] = None,
    option: Annotated[list[str] | None, typer.Option(help="Benchmark option KEY=VALUE (repeatable), e.g. "
                                                     "official_quirks=false or detector_model=/path.")] = None,
    device: Annotated[str, typer.Option(help="auto (this process's GPU under accelerate/torchrun, else the CPU), "
                                             "cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (fp16 on a GPU, fp32 on the CPU), fp32, fp16 or bf16. Anything "
                                            "but fp32 on the CPU gets its own image keys.")] = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the denoiser (slow first batch).")]
    = False,
    attention_slicing: Annotated[bool, typer.Option("--attention-slicing", help="Compute attention in slices "
                                                    "(less memory).")] = False,
    vae_slicing: Annotated[bool, typer.Option("--vae-slicing", help="Decode one image at a time (less memory).")]
    = False,
    score_while_generating: Annotated[bool | None, typer.Option(
        "--score-while-generating/--score-after-generating",
        help="Score each sampled batch while the next one is sampled, or all after generation (same verdicts; "
             "default: while generating on a GPU, after on the CPU, where it gains nothing).")] = None,
    scoring_processes: Annotated[int | None, typer.Option(
        help="Processes that score after generation (same verdicts; default: one per core for the builtin world's "
             "pixel oracles, 1 for model-backed scorers).")] = None,
    generation_processes: Annotated[int | None, typer.Option(
        help="Processes that sample on the CPU, one thread each (same images; default: one per core, at most 8, "
             "for a small model on the CPU, else 1).")] = None,
) -> None:
    """Generate a benchmark's images with a checkpoint, score them and write result records."""
    from harness.api import EvalSettings, evaluate
    from harness.numerics import Numerics

    started = time.monotonic()
    numerics = Numerics(device=device, dtype=dtype, compile=compile, attention_slicing=attention_slicing,
                        vae_slicing=vae_slicing)
    settings = EvalSettings(limit=limit, tags=_split(tags), batch_size=_batch_size(batch_size),
                            num_inference_steps=steps, guidance_scale=guidance, eta=eta, scheduler=scheduler,
                            data_dir=data_dir, options=_options(option), numerics=numerics,
                            score_while_generating=score_while_generating, scoring_processes=scoring_processes,
                            generation_processes=generation_processes)
    records = evaluate(ckpt, list(_split(bench) or ()), out=out, settings=settings)
    for record in records:
        _print_record(record)
    if records:
        console.print(f"results in {out / 'runs'}; wall time {time.monotonic() - started:.1f}s")


@app.command("score")
def score_command(
    bench: Annotated[str, typer.Option(help="Benchmark name.")],
    images: Annotated[Path, typer.Option(help="Image folder in the benchmark's official layout.")],
    out: Annotated[Path, typer.Option(help="Store root for the score cache and the run folder.")]
    = Path("harness-runs"),
    world: Annotated[str | None, typer.Option(help="builtin or real (default: inferred from the prompts).")] = None,
    tags: Annotated[list[str] | None, typer.Option(help="Only these tags/categories, comma-separated.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of official benchmark data files.")] = None,
    option: Annotated[list[str] | None, typer.Option(help="Benchmark option KEY=VALUE (repeatable), e.g. "
                                                     "official_quirks=false or detector_model=/path.")] = None,
) -> None:
    """Score images made elsewhere (e.g. GenEval's <i>/metadata.jsonl + <i>/samples/NNNN.png)."""
    from harness.api import EvalSettings, score

    record = score(bench, images, out=out, world=world, settings=EvalSettings(tags=_split(tags), data_dir=data_dir,
                                                                            options=_options(option)))
    _print_record(record)
    skipped = record.options.get("skipped", [])
    if skipped:
        console.print(f"[yellow]{len(skipped)} skipped (not scored): " + "; ".join(skipped[:5])
                      + (" ..." if len(skipped) > 5 else ""))


def _batch_size(raw: str) -> int | None:
    """``--batch-size``: "auto" is None (:func:`harness.generation.auto_batch_size`); a number is checked, as every
    other value, by :class:`harness.api.EvalSettings`."""
    if raw.strip().lower() == "auto":
        return None
    try:
        return int(raw)
    except ValueError:
        raise HarnessError(f"--batch-size {raw!r}: expected auto or a whole number >= 1") from None


def _options(pairs: list[str] | None, flag: str = "--option") -> dict[str, str]:
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"{flag} {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def _print_record(record: ResultRecord) -> None:
    # The heading is a line of its own: as a table title rich would wrap it to the two narrow columns' width.
    console.print(f"{record.benchmark} v{record.benchmark_version} - {record.model} ({record.n_prompts} prompts, "
                  f"{record.n_images} images)", style="bold", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("tag")
    table.add_column("score", justify="right")
    for key, value in record.scores.items():
        table.add_row(key, f"{value:.3f}")
    console.print(table)
    label = {True: "yes", False: "NO", None: "unknown"}[record.comparable_to_published]
    console.print(f"comparable to published tables: {label}", highlight=False, soft_wrap=True)
    for reason in record.comparability_reasons:
        console.print(f"  not comparable: {reason}", highlight=False, soft_wrap=True)
    times = record.wall_time_s
    console.print(f"generation {times['generation']:.1f}s, scoring {times['scoring']:.1f}s")


TrainMethod = Annotated[str, typer.Option(help="Online: d3po, ddpo, grpo or dpok (need --feedback). Offline: "
                                               "diffusion-dpo or rankdpo (need --data).")]
TrainCkpt = Annotated[str, typer.Option(help="The checkpoint to align (any --ckpt form of `harness eval`).")]
TrainFeedback = Annotated[str | None, typer.Option(help="Online methods: objective:NAME, simulated:NAME?noise=P, "
                                                        "labels:FILE, reward:NAME|PATH or human[?timeout=S&port=N] "
                                                        "(the labeling page).")]
TrainPrompts = Annotated[str | None, typer.Option(help="Online methods' training prompts: builtin:geneval-train "
                                                       "(default), builtin:distortion-train, builtin:safety-train "
                                                       "(D3PO's distortion / safety experiments) or a .txt/.jsonl "
                                                       "file.")]
TrainData = Annotated[Path | None, typer.Option(help="Offline methods: a ranked dataset folder (`harness data "
                                                     "build-ranked`) or a pairs/lists .jsonl.")]
TrainBudget = Annotated[int, typer.Option(help="Online: sampled images to train on (whole rounds). Offline: "
                                               "optimiser steps (each batch_size x grad_accumulation lists).")]
TrainOut = Annotated[Path, typer.Option(help="Run folder: checkpoint/, state, metrics.jsonl, preferences.jsonl.")]
TrainSeed = Annotated[int, typer.Option(help="Seed of the prompts, images and weights updates.")]
TrainResume = Annotated[bool, typer.Option(help="Continue the run in --out from its last save.")]
TrainOverwrite = Annotated[bool, typer.Option(help="Delete the run in --out and start again.")]
TrainSet = Annotated[list[str] | None, typer.Option("--set", help="Method setting KEY=VALUE (repeatable), e.g. "
                                                              "learning_rate=1e-5 or save_every=5.")]
TrainOverlap = Annotated[bool, typer.Option(help="Train even on prompts that are benchmark prompts verbatim.")]


@app.command("train")
def train_command(method: TrainMethod, budget: TrainBudget, out: TrainOut, feedback: TrainFeedback = None,
                  data: TrainData = None, ckpt: TrainCkpt = "builtin:shapes", prompts: TrainPrompts = None,
                  seed: TrainSeed = 0, resume: TrainResume = False, overwrite: TrainOverwrite = False,
                  set_: TrainSet = None, allow_overlap: TrainOverlap = False) -> None:
    """Align a checkpoint online (D3PO, DDPO, GRPO, DPOK on --feedback) or offline (Diffusion-DPO, RankDPO on
    --data); the result loads with --ckpt."""
    from harness.api import train

    started = time.monotonic()
    checkpoint = train(method, ckpt, feedback, prompts, budget, out, seed=seed, settings=_options(set_, "--set"),
                       resume=resume, overwrite=overwrite, allow_overlap=allow_overlap, data=data)
    console.print(f"trained checkpoint: {checkpoint}  (evaluate with `harness eval --ckpt {checkpoint}`); "
                  f"wall time {time.monotonic() - started:.1f}s")


@app.command("train-and-eval")
def train_and_eval_command(
    method: TrainMethod, budget: TrainBudget, out: TrainOut, feedback: TrainFeedback = None, data: TrainData = None,
    ckpt: TrainCkpt = "builtin:shapes", prompts: TrainPrompts = None, seed: TrainSeed = 0,
    resume: TrainResume = False, overwrite: TrainOverwrite = False, set_: TrainSet = None,
    allow_overlap: TrainOverlap = False,
    bench: Annotated[list[str], typer.Option(help="Benchmark name(s), comma-separated or repeated.")] = ["geneval"],  # noqa: B006
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts of each benchmark.")] = None,
    eval_out: Annotated[Path | None, typer.Option(help="Store root of the evaluations (default: OUT/eval).")]
    = None,
    monitor_every: Annotated[int | None, typer.Option(help="Score a held-out benchmark subset every R rounds.")]
    = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of official benchmark data files.")] = None,
) -> None:
    """Train, then evaluate base and trained with the same seeds; records carry the method, feedback or dataset,
    config, seed and cost."""
    from harness.api import EvalSettings, compare, run_name, train_and_eval

    started = time.monotonic()
    records = train_and_eval(method, ckpt, feedback, prompts, budget, out, list(_split(bench) or ()),
                             eval_settings=EvalSettings(limit=limit, data_dir=data_dir), monitor_every=monitor_every,
                             seed=seed, settings=_options(set_, "--set"), resume=resume, overwrite=overwrite,
                             allow_overlap=allow_overlap, eval_out=eval_out, data=data)
    for record in records:
        _print_record(record)
    runs = (eval_out or out / "eval") / "runs"
    for base, trained in zip(records[::2], records[1::2], strict=True):  # base, trained for each benchmark
        comparison = compare(runs / run_name(base), runs / run_name(trained))
        console.print(f"{base.benchmark}, trained against base on the same prompts and seeds: {comparison.verdict}",
                      highlight=False, soft_wrap=True)
    if records:
        console.print(f"results in {runs}; wall time {time.monotonic() - started:.1f}s")


@app.command("train-reward")
def train_reward_command(
    pairs: Annotated[Path, typer.Option(help="Pairwise JSONL {prompt, image_w, image_l}, e.g. RUN/preferences.jsonl"
                                             " (image paths relative to the file).")],
    out: Annotated[Path, typer.Option(help="Folder for the reward model (loads with --feedback reward:OUT).")],
    world: Annotated[str, typer.Option(help="builtin (CNN + prompt words) or real (MLP on open_clip features).")]
    = "builtin",
    seed: Annotated[int, typer.Option(help="Seed of the weights, the held-out split and the batches.")] = 0,
    epochs: Annotated[int, typer.Option(help="Most epochs (stops early on the held-out pair loss).")] = 30,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Learn a reward model from preference pairs with the Bradley-Terry loss (D3PO's reward-model baseline)."""
    from harness.api import train_reward

    metrics = train_reward(pairs, out, world=world, seed=seed, epochs=epochs, overwrite=overwrite)
    console.print(f"reward model: {out}  ({metrics['pairs']} pairs; held-out pair loss "
                  f"{metrics['initial_heldout_loss']:.4f} -> {metrics['best_heldout_loss']:.4f}, accuracy "
                  f"{metrics['best_heldout_accuracy']:.3f}, best epoch {metrics['best_epoch']}); "
                  f"use --feedback reward:{out}")


@bench_app.command("list")
def bench_list() -> None:
    """List the registered benchmarks."""
    from benchmarks.registry import available

    table = Table("name", "version", "images/prompt", "worlds", "description")
    for name, bench in available().items():
        table.add_row(name, bench.version, str(bench.images_per_prompt), ", ".join(bench.worlds), bench.description)
    console.print(table)


@builtin_app.command("pretrain")
def builtin_pretrain(
    out: Annotated[Path, typer.Option(help="Training folder (state, log, snapshots, exported model).")]
    = Path(".pretrain/shapes"),
    steps: Annotated[int, typer.Option(help="Total optimiser steps (sets the learning-rate schedule).")] = 6000,
    batch_size: Annotated[int, typer.Option(help="Rendered images per step.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the weights and of every batch.")] = 0,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after this long (resume later).")] = None,
    export_weights: Annotated[str, typer.Option(help="Export the 'ema' or the final 'raw' weights.")] = "ema",
    sampler_steps: Annotated[int | None, typer.Option(help="Default DDIM steps written with the model.")] = None,
    sampler_guidance: Annotated[float | None, typer.Option(help="Default guidance written with the model.")]
    = None,
) -> None:
    """Pretrain the builtin tiny model on rendered scenes; re-running resumes from the last checkpoint.

    The committed builtin:shapes was made with: --steps 6000 --export-weights raw --sampler-steps 10
    --sampler-guidance 2.0 (see harness/builtin/checkpoints/shapes/training.json).
    """
    from harness.builtin.pretrain import PretrainConfig, pretrain

    sampler = {k: v for k, v in (("num_inference_steps", sampler_steps), ("guidance_scale", sampler_guidance))
               if v is not None}
    model = pretrain(out, PretrainConfig(steps=steps, batch_size=batch_size, seed=seed), max_minutes=max_minutes,
                     export_weights=export_weights, sampler_defaults=sampler)
    console.print(f"exported model: {model}  (evaluate with `harness eval --ckpt {model}`)")


@builtin_app.command("perception-report")
def perception_report_command(
    n: Annotated[int, typer.Option(help="Held-out scenes to render and read back.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the held-out scenes.")] = 12345,
    eye: Annotated[bool, typer.Option("--eye", help="Also compare the oracle with eye labels of generated images "
                                      "(regenerates them from builtin:shapes; a few minutes on CPU), and where a "
                                      "batch was labelled twice, the two labellers' agreement.")] = False,
) -> None:
    """Accuracy of the oracle perception on held-out rendered scenes (per class, colour, count, position), and with
    --eye its agreement with a person on generated images (per tag: Wilson interval, kappa, misses, false positives)
    and, for a batch labelled by two people, how far they agree with each other (a judge's ceiling)."""
    from benchmarks.geneval.oracle_report import perception_report

    console.print(perception_report(n=n, seed=seed).format_table(), markup=False)
    if eye:
        from benchmarks.geneval.eye_labels import eye_report, second_labelling_reports

        console.print(eye_report().format_table(), markup=False)
        for report in second_labelling_reports():
            console.print(report.format_table(), markup=False)


@data_app.command("build-ranked")
def data_build_ranked(
    ckpt: Annotated[list[str], typer.Option(help="Generator checkpoint(s), repeatable; image j of a prompt comes "
                                                 "from generator j mod G.")],
    prompts: Annotated[str, typer.Option(help="builtin:geneval-train, builtin:distortion-train, "
                                              "builtin:safety-train or a .txt/.jsonl prompt file.")],
    rewards: Annotated[list[str], typer.Option(help="Reward sources, comma-separated or repeated, e.g. "
                                                    "objective:geneval-partial,objective:distorted.")],
    out: Annotated[Path, typer.Option(help="Dataset folder: ranked.parquet, build.json, store/.")],
    k: Annotated[int, typer.Option(help="Images per prompt.")] = 4,
    sampler: Annotated[list[str] | None, typer.Option(help="Sampler setting(s) KEY=VALUE,... (steps, guidance, "
                                                           "eta, scheduler), repeatable: each --ckpt under each.")]
    = None,
    n: Annotated[int | None, typer.Option(help="Number of prompts (builtin sets) or the first N of a file.")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the prompt set and the images.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per sampling batch.")] = 32,
) -> None:
    """Build (or finish: re-running never regenerates or rescores) a ranked preference dataset for RankDPO."""
    from harness.api import build_ranked

    summary = build_ranked(ckpt, prompts, k, list(_split(rewards) or ()), out, samplers=sampler, n_prompts=n,
                           seed=seed, batch_size=batch_size)
    console.print(summary.line())


LabelTarget = Annotated[Path, typer.Argument(help="A sampled round folder, or a training run folder (its newest "
                                                  "round).")]
LabelAnnotators = Annotated[int, typer.Option(help="Annotators needed per prompt for a round to count as labelled.")]


@label_app.command("serve")
def label_serve_command(
    target: LabelTarget,
    host: Annotated[str, typer.Option(help="Address to listen on; other than loopback, the page is reachable from "
                                           "other machines.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    token: Annotated[bool, typer.Option(help="Require the random access token printed in the URL.")] = True,
    mode: Annotated[str, typer.Option(help="best, best-worst, ranking or flags.")] = "best",
    repeat: Annotated[float, typer.Option(help="Share of prompts shown twice (self-agreement).")] = 0.1,
    annotators: LabelAnnotators = 1,
) -> None:
    """Serve the labeling page for a round (Ctrl-C stops; every label is saved when clicked)."""
    from harness.labeling.app import serve_forever

    serve_forever(target, host=host, port=port, token=token, mode=mode, repeat=repeat, annotators=annotators,
                  announce=lambda text: console.print(text, highlight=False, soft_wrap=True))


@label_app.command("export")
def label_export_command(
    target: LabelTarget,
    out: Annotated[Path | None, typer.Option(help="Export folder (default: ROUND/export).")] = None,
    annotators: LabelAnnotators = 1,
) -> None:
    """Export a round's labels: pairs, best-of-k, rankings, flags JSONL, the official D3PO layout, agreement."""
    from harness.labeling.commands import export_command

    console.print(export_command(target, out, annotators), highlight=False, soft_wrap=True)


@label_app.command("close")
def label_close_command(target: LabelTarget,
                        by: Annotated[str, typer.Option(help="Who closes it (recorded).")] = "cli") -> None:
    """Mark a round done: a training run waiting for it trains on the labels saved so far."""
    from harness.labeling.commands import close_command

    console.print(close_command(target, by), highlight=False, soft_wrap=True)


@label_app.command("status")
def label_status_command(target: LabelTarget, annotators: LabelAnnotators = 1) -> None:
    """How far a round's labelling is."""
    from harness.labeling.commands import status_command

    console.print(status_command(target, annotators), highlight=False, soft_wrap=True)


leaderboard_app = typer.Typer(help="Leaderboards from validated records in results/.", no_args_is_help=True)
app.add_typer(leaderboard_app, name="leaderboard")
ResultsDir = Annotated[Path, typer.Option(help="Results folder: records/, LEADERBOARD.md, leaderboard.html, plots/.")]


@app.command("compare")
def compare_command(
    a: Annotated[Path, typer.Argument(help="Reference: a run folder (result.json + samples.jsonl) or a record.")],
    b: Annotated[Path, typer.Argument(help="Compared: a run folder or a record on the same prompts and seeds.")],
    replicates: Annotated[int, typer.Option(help="Paired bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap draws.")] = 0,
) -> None:
    """Paired comparison of B against A: per-tag deltas with paired bootstrap intervals, McNemar or Wilcoxon test."""
    from harness.api import compare

    result = compare(a, b, replicates=replicates, seed=seed)
    table = Table(title=f"{result.benchmark}: B = {result.b} against A = {result.a} "
                        f"({result.n_prompts} prompts, {result.n_images} image pairs)")
    for column in ("score", "A", "B", "B - A", "95% paired interval", "test p"):
        table.add_column(column, justify="left" if column == "score" else "right")
    for k in result.keys:
        table.add_row(k.key, f"{k.a:.4g}", f"{k.b:.4g}", f"{k.delta:+.4g}",
                      f"[{k.interval[0]:+.4g}, {k.interval[1]:+.4g}]",
                      "" if k.p is None else f"{k.p:.3g} ({k.test})")
    console.print(table)
    console.print(result.verdict, highlight=False, soft_wrap=True)


@leaderboard_app.command("publish")
def leaderboard_publish_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders (harness-runs/runs/<name>) to publish.")],
    results: ResultsDir = Path("results"),
    training_summary: Annotated[Path | None, typer.Option(help="summary.json of the training run, for a trained "
                                                          "checkpoint evaluated with plain `harness eval` (default: "
                                                          "the one beside the checkpoint folder, if any).")] = None,
) -> None:
    """Copy run folders' records and per-image results into RESULTS/records as validated schema-3 records."""
    from harness.api import leaderboard_publish

    for path in leaderboard_publish(list(run_dirs), results, training_summary=training_summary):
        console.print(f"published {path}", highlight=False, soft_wrap=True)
    console.print("now run `harness leaderboard build`")


@leaderboard_app.command("build")
def leaderboard_build_command(results: ResultsDir = Path("results")) -> None:
    """Render LEADERBOARD.md, leaderboard.html and plots/ from RESULTS/records (deterministic)."""
    from harness.api import leaderboard_build

    for path in leaderboard_build(results):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)


@leaderboard_app.command("rescore")
def leaderboard_rescore_command(
    store: Annotated[list[Path], typer.Option(help="Image store (the --out of `harness eval`) holding the records' "
                                                   "images; repeatable: each record uses the one with most of them.")],
    results: ResultsDir = Path("results"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List stale records, whether each checkpoint is on this "
                                                            "machine and how many images the store has; "
                                                            "write nothing.")] = False,
    only: Annotated[str | None, typer.Option(help="Only records whose name matches this glob.")] = None,
) -> None:
    """Re-score records judged by an older judge (perception, scorer or benchmark version) from the stored images."""
    from harness.leaderboard.rescore import rescore

    outcomes = rescore(results, store, dry_run=dry_run, only=only,
                       report=lambda outcome: console.print(outcome.line(), highlight=False, soft_wrap=True))
    refused = [o for o in outcomes if o.status == "refused"]
    done = sum(o.status == "rescored" for o in outcomes)
    if dry_run:
        stale = sum(o.status == "stale" for o in outcomes)
        console.print(f"{stale} of {len(outcomes)} records stale; nothing written (dry run)", highlight=False,
                      soft_wrap=True)
    elif done:
        console.print(f"{done} of {len(outcomes)} records rescored: now run `harness leaderboard build`",
                      highlight=False, soft_wrap=True)
    if refused:
        print(f"error: {len(refused)} of {len(outcomes)} records refused (lines above); they were left as they were",
              file=sys.stderr)
        raise typer.Exit(2)


@leaderboard_app.command("check")
def leaderboard_check_command(results: ResultsDir = Path("results")) -> None:
    """Fail (exit 1, one line) when a record is invalid or the committed leaderboard is not what the records give."""
    from harness.api import leaderboard_check

    problems = leaderboard_check(results)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        print(f"leaderboard check failed: {problems[0]}{more}", file=sys.stderr)
        raise typer.Exit(1)
    console.print(f"leaderboard check passed: {results} is what its records produce", highlight=False)


@app.command("export")
def export_command(
    records: Annotated[list[Path], typer.Argument(help="Run folders or published records (results/records/*.json).")],
    out: Annotated[Path, typer.Option(help="Output folder (EEE layout: data/<benchmark>/<developer>/<model>/).")],
    format_: Annotated[str, typer.Option("--format", help="eee: Every Eval Ever v0.3.0.")] = "eee",
) -> None:
    """Export result records to another schema, validated before writing."""
    from harness.api import export

    for path in export(list(records), out, format=format_):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)


@app.command("view")
def view_command(
    paths: Annotated[list[Path] | None, typer.Argument(help="Run folders (STORE/runs/<name>), record files "
                                                            "(results/records/<id>.json) or image stores.")] = None,
    results: Annotated[Path | None, typer.Option(help="Results folder: show all its records and serve its "
                                                      "leaderboard.html, whose score cells link to their images.")]
    = None,
    store: Annotated[list[Path] | None, typer.Option(help="Image store(s) (the --out of `harness eval`) to find "
                                                          "records' images in; repeatable.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; other than loopback, the page is reachable from "
                                           "other machines.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8766,
    token: Annotated[bool, typer.Option(help="Require the random access token printed in the URL.")] = True,
) -> None:
    """Browse evaluations' images: per-prompt galleries side by side, verdicts and reasons, filters (Ctrl-C stops)."""
    from harness.view import serve  # = harness.api.view; imported alone, the viewer starts without loading torch

    server = serve(list(paths or []), results=results, stores=list(store or []), host=host, port=port, token=token,
                   announce=lambda text: console.print(text, highlight=False, soft_wrap=True))
    console.print(f"viewing {len(server.gallery.sources)} evaluation(s): open {server.url}  (Ctrl-C stops)",
                  highlight=False, soft_wrap=True)
    server.wait()


INTERRUPTED = ("interrupted: what was finished is kept (whole images, scores and saved training state); run the same "
               "command again to go on from there (`harness train`: add --resume)")


def run() -> None:
    """Entry point that turns user errors into one line on stderr and exit code 2, and Ctrl-C into one line and 130.

    typer turns a KeyboardInterrupt into exit code 130 silently; the line says that nothing is lost and how to go on.
    """
    try:
        app()
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except SystemExit as done:
        if done.code == 130:
            print(INTERRUPTED, file=sys.stderr)
        raise
