"""The share of an evaluation run spent outside the model's forward passes: the harness's own overhead.

    python -m benchmarks.perf.eval_overhead [--ckpt builtin:shapes] [--bench geneval] [--limit 64]
        [--scoring auto|while|after] [--scoring-processes N] [--out results/perf]

Runs :func:`harness.api.evaluate` (what ``harness eval`` calls) into a fresh store, with every network of the
policy (``Policy.modules()``: the denoiser, the text encoder(s), a VAE) wrapped to time its ``forward``, then
``eval_overhead_share = 1 - forward seconds / wall seconds``. The wall time runs from resolving the checkpoint to the
written record (model load, sampling loop, PNG and SQLite writes, decoding, scoring, statistics); it leaves out the
interpreter's start and imports, which a long run amortises. ``--limit`` takes the first N prompts (the fixed costs
weigh more in a short run, so the share is an upper bound for the full run). A second, all-cached run is timed too:
it does no forward pass, so it is the cost of a repeated ``harness eval``.

``--scoring`` chooses when the images are scored: ``auto`` as ``harness eval`` does (while generating on an
accelerator, after generation on the CPU: :func:`harness.api.scores_while_generating`), ``while`` (on the writer
thread as each batch is written) or ``after``. Scored while generating, the scoring seconds
(``scoring_while_generating_s``) overlap the forwards: on a CPU whose cores the denoiser already fills they slow the
forwards down instead, so the share falls while the wall time does not; compare ``wall_s`` too.

``--scoring-processes`` sets how many processes score after generation (``EvalSettings.scoring_processes``; default
as ``harness eval``: one per usable core for the builtin world's pixel oracles, :mod:`harness.scoring_pool`); each
line records the number used (``scoring_processes``), so 1 against the default measures what the pool saves.

Generation runs in this process (``--generation-processes 1``, the default here), where the forwards can be timed:
``harness eval`` forks 1-thread generation workers for a small model on the CPU
(:func:`harness.generation.generation_processes`), whose forwards this process cannot see, and which change how fast
the forwards run, not the work around them. The whole command's wall time with the workers is timed end to end.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.perf.common import RESULTS, ResultsFile, forward_timer, table
from benchmarks.registry import get_benchmark
from harness.api import EvalSettings, evaluate
from harness.checkpoints import resolve_checkpoint
from harness.scoring_pool import auto_processes


def run_once(ckpt: str, bench: str, limit: int | None, out: Path, overlap: bool | None = None,
             processes: int | None = None, generation_processes: int = 1) -> dict:
    """One evaluation with the policy's forwards timed; returns wall, forward seconds and the record's split."""
    started = time.perf_counter()
    policy = resolve_checkpoint(ckpt)
    settings = EvalSettings(limit=limit, score_while_generating=overlap, scoring_processes=processes,
                            generation_processes=generation_processes)
    with forward_timer(policy.modules()) as spent:
        record = evaluate(policy, [bench], out=out, settings=settings, progress=False)[0]
    wall = time.perf_counter() - started
    forward = sum(spent.values())
    return {"ckpt": ckpt, "bench": bench, "limit": limit, "images": record.n_images, "wall_s": wall,
            "forward_s": forward, **{f"forward_{k}_s": v for k, v in spent.items()},
            "generation_s": record.wall_time_s["generation"], "scoring_s": record.wall_time_s["scoring"],
            "score_while_generating": "scored_while_generating" in record.environment["generation"],
            "scoring_while_generating_s": record.environment["generation"].get("scoring_while_generating_s", 0.0),
            "scoring_processes": processes or scoring_processes(bench, policy.world),
            "generation_processes": generation_processes,
            "eval_overhead_share": max(0.0, 1 - forward / wall)}


def scoring_processes(bench: str, world: str) -> int:
    """The processes ``harness eval`` scores with by default; only the builtin world's perception is built to ask
    (a real world's would load its detector and VQA models again just to answer 1)."""
    return auto_processes(get_benchmark(bench).perception(world)) if world == "builtin" else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="builtin:shapes")
    parser.add_argument("--bench", default="geneval")
    parser.add_argument("--limit", type=int, default=64, help="first N prompts (0: all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--scoring", choices=("auto", "while", "after"), default="auto",
                        help="when to score: as harness eval does (auto), while generating, or after it")
    parser.add_argument("--scoring-processes", type=int, default=None,
                        help="processes scoring after generation (default: as harness eval, one per core for the "
                             "builtin oracles)")
    args = parser.parse_args()
    results = ResultsFile("eval_overhead", args.out)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [results.add(run=run, **run_once(args.ckpt, args.bench, args.limit or None, Path(tmp),
                                                overlap={"while": True, "after": False}.get(args.scoring),
                                                processes=args.scoring_processes))
                for run in ("first", "cached")]
    first = runs[0]
    print(table(runs, ["run", "images", "wall_s", "forward_s", "generation_s", "scoring_while_generating_s",
                       "scoring_processes", "scoring_s", "eval_overhead_share"]))
    print(f"eval_overhead_share {first['eval_overhead_share']:.3f} (first run, {first['images']} images); "
          f"wrote {results.write()}")


if __name__ == "__main__":
    main()
