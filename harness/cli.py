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
    batch_size: Annotated[int, typer.Option(help="Images per sampling batch.")] = 32,
    steps: Annotated[int | None, typer.Option(help="DDIM steps (default: the model's).")] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale (default: the model's).")]
    = None,
    eta: Annotated[float | None, typer.Option(help="DDIM eta (default: the model's, usually 0).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of official benchmark data files "
                                                       "(<dir>/geneval/evaluation_metadata.jsonl, ...).")] = None,
    option: Annotated[list[str] | None, typer.Option(help="Benchmark option KEY=VALUE (repeatable), e.g. "
                                                     "official_quirks=false or detector_model=/path.")] = None,
) -> None:
    """Generate a benchmark's images with a checkpoint, score them and write result records."""
    from harness.api import EvalSettings, evaluate

    started = time.monotonic()
    settings = EvalSettings(limit=limit, tags=_split(tags), batch_size=batch_size, num_inference_steps=steps,
                            guidance_scale=guidance, eta=eta, data_dir=data_dir, options=_options(option))
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


def _options(pairs: list[str] | None) -> dict[str, str]:
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"--option {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def _print_record(record: ResultRecord) -> None:
    table = Table(title=f"{record.benchmark} v{record.benchmark_version} - {record.model} "
                        f"({record.n_prompts} prompts, {record.n_images} images)")
    table.add_column("tag")
    table.add_column("score", justify="right")
    for key, value in record.scores.items():
        table.add_row(key, f"{value:.3f}")
    console.print(table)
    times = record.wall_time_s
    console.print(f"generation {times['generation']:.1f}s, scoring {times['scoring']:.1f}s")


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
) -> None:
    """Accuracy of the oracle perception on held-out rendered scenes (per class, colour, count, position)."""
    from harness.builtin.perception_report import perception_report

    console.print(perception_report(n=n, seed=seed).format_table())


def run() -> None:
    """Entry point that turns user errors into one line on stderr and exit code 2."""
    try:
        app()
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
