"""Issue 15's experiments: D3PO from (simulated) human flags lowers the distortion rate and the unsafe rate.

D3PO's two human-feedback experiments (arXiv 2311.13231, Fig. 4 and 5) fine-tune on people's judgments of sampled
images, deformed or not, unsafe or not, and then count the deformed / unsafe images; the paper gives only curves.
Here both run in the builtin world (``builtin:shapes``) with a simulated person, 3 training seeds each:

* ``distortion``: feedback ``simulated:distortion?noise=0.1&seed=K`` (the ``distortion`` benchmark's oracle judge:
  noise, no object, a malformed or merged blob), training prompts ``builtin:distortion-train`` (the benchmark's
  four kinds of request for the same shapes, each with a size or texture word, so none is a benchmark prompt);
  measured by the ``distortion`` benchmark (32 prompts x 8 images);
* ``safety``: feedback ``simulated:unsafe?noise=0.1&seed=K`` (the ``safety`` benchmark's red-cross rule), training
  prompts ``builtin:safety-train`` (a cross beside a red object in a spatial relation: the benchmark's ambiguity in
  other words and other combinations); measured by the ``safety`` benchmark (14 ambiguous prompts x 16 images).

The simulated person compares the 4 images of a prompt pair by pair with the benchmark's own judge (a flagged image
loses to a clean one; two flagged or two clean ones tie and are not trained on) and gives the wrong answer with
probability 0.1 (``noise``): D3PO's annotators were people, and people err; 0.1 is a plausible disagreement rate
for a yes/no flag, and the annotator's noise is drawn per training seed (``seed=K``). Because the person and the
benchmark use one judge, the experiment's rate is *in-reward* by design, as in the paper (the same people labelled
and were counted); GenEval is held out and reported beside, to show what the gain costs.

Steps (each writes its table record last and atomically; a finished step is skipped, a partial training run
resumes from its last save; ``<out>/table.md`` is rebuilt from whatever records exist)::

    <out>/<experiment>/base/table-record.json           the base model on the experiment's benchmark and GenEval
    <out>/<experiment>/d3po-seed<k>/run/                the training run (checkpoint, metrics, preferences)
    <out>/<experiment>/d3po-seed<k>/table-record.json   rates, paired differences with their intervals, cost
    <out>/records/<experiment>-<step>-<benchmark>.json  result records with their samples beside them, for
                                                        ``harness leaderboard publish``

Statistics (:mod:`benchmarks.tables.common`): per seed, the trained rate and d_k = trained_k - base with the 95 %
paired bootstrap interval over prompts (same prompts and image seeds for both, prompts resampled within tags); over
the seeds, the mean of d_k with a 95 % t-interval (n - 1 degrees of freedom). "Lowers the rate" means the
t-interval lies below 0. The base is evaluated once (it is the same for every seed).

Budget: ``DEFAULT_BUDGETS`` sampled training images per run (rounds of 4 prompts x 4 images, D3PO's builtin
defaults), chosen for about 10 minutes of training on 2 idle CPU cores (640 images took about 7 minutes);
calibrate with ``--budget`` and keep one value per table.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from benchmarks.tables import common
from benchmarks.tables.common import CKPT, RECORD
from harness.errors import HarnessError
from harness.store import atomic_write_json

METHOD = "d3po"
HELD_OUT = "geneval"
NOISE = 0.1  # the simulated person's error rate (module docstring)


@dataclass(frozen=True)
class Experiment:
    """One of D3PO's human-feedback experiments: the flag, its benchmark, the training prompts and the budget."""

    name: str
    benchmark: str
    objective: str
    prompts: str
    budget: int
    label: str

    def feedback(self, seed: int) -> str:
        return f"simulated:{self.objective}?noise={NOISE:g}&seed={seed}"

    @property
    def benchmarks(self) -> list[str]:
        return [self.benchmark, HELD_OUT]


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("distortion", "distortion", "distortion", "builtin:distortion-train", 960,
               "distortion rate (oracle judge)"),
    Experiment("safety", "safety", "unsafe", "builtin:safety-train", 960, "unsafe rate (red cross)"),
)}


@dataclass(frozen=True)
class Step:
    """The base evaluation (``seed`` None) or one training seed of an experiment."""

    experiment: str
    seed: int | None

    @property
    def name(self) -> str:
        return "base" if self.seed is None else f"{METHOD}-seed{self.seed}"

    def folder(self, out: Path) -> Path:
        return out / self.experiment / self.name

    def record_name(self) -> str:
        return f"{self.experiment}-{self.name}-{{benchmark}}"

    def record_path(self, out: Path, benchmark: str) -> Path:
        return out / "records" / f"{self.record_name().format(benchmark=benchmark)}.json"


def plan(experiments: Sequence[str], seeds: Sequence[int]) -> list[Step]:
    """Per experiment, the base first (every seed is compared with it), then the seeds in order."""
    unknown = sorted(set(experiments) - set(EXPERIMENTS))
    if unknown:
        raise HarnessError(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(EXPERIMENTS)}")
    return [step for name in EXPERIMENTS if name in experiments
            for step in (Step(name, None), *(Step(name, seed) for seed in seeds))]


def finished(out: Path, step: Step, budget: int, limit: int | None) -> dict | None:
    """The step's record if it finished with this budget (training steps) and evaluation limit; another one is an
    error: one table compares runs at one budget and one protocol."""
    path = step.folder(out) / RECORD
    record = common.read_json(path)
    if record is None:
        return None
    if record.get("limit") != limit or (step.seed is not None and record.get("budget") != budget):
        raise HarnessError(f"{path} was made with --budget {record.get('budget')} --limit {record.get('limit')}, "
                           f"not {budget} / {limit}; use those or another --out")
    return record


def run_base(out: Path, step: Step, api: object, store: Path, limit: int | None, progress: bool = True) -> dict:
    """Evaluate the base model on the experiment's benchmark and GenEval, once."""
    experiment = EXPERIMENTS[step.experiment]
    started = time.monotonic()
    records = api.evaluate(CKPT, experiment.benchmarks, out=store, settings=api.EvalSettings(limit=limit),
                           progress=progress)
    scores, saved, _ = common.save_records(records, out, out, store, name=step.record_name())
    result = {"step": f"{step.experiment}/{step.name}", "experiment": step.experiment, "ckpt": CKPT, "limit": limit,
              "scores": {b: s["base"] for b, s in scores.items()}, "records": saved,
              "wall_s": round(time.monotonic() - started, 1)}
    atomic_write_json(step.folder(out) / RECORD, result)
    return result


def run_seed(out: Path, step: Step, budget: int, api: object, store: Path, limit: int | None,
             progress: bool = True) -> dict:
    """Train D3PO on the experiment's feedback with one seed, evaluate it, and compare it with the base."""
    experiment = EXPERIMENTS[step.experiment]
    base_step = Step(step.experiment, None)
    if finished(out, base_step, budget, limit) is None:
        raise HarnessError(f"{step.experiment}/{step.name} is compared with {step.experiment}/base, which has not "
                           "finished; run the plan in order")
    assert step.seed is not None
    run_dir = step.folder(out) / "run"
    resume = run_dir.is_dir() and any(run_dir.iterdir())
    started = time.monotonic()
    records = api.train_and_eval(METHOD, CKPT, experiment.feedback(step.seed), experiment.prompts, budget, run_dir,
                                 experiment.benchmarks, eval_settings=api.EvalSettings(limit=limit), seed=step.seed,
                                 resume=resume, eval_out=store, progress=progress)
    trained = [r for r in records if r.training]  # the base records repeat the base step's (same images, cached)
    scores, saved, training = common.save_records(trained, out, out, store, name=step.record_name())
    comparison = {}
    for bench in experiment.benchmarks:
        comparison[bench] = {**common.paired_bootstrap(base_step.record_path(out, bench), step.record_path(out, bench)),
                             "in_reward": scores[bench].get("in_reward", False)}
    result = {"step": f"{step.experiment}/{step.name}", "experiment": step.experiment, "method": METHOD,
              "feedback": experiment.feedback(step.seed), "prompts": experiment.prompts, "seed": step.seed,
              "budget": budget, "limit": limit, "ckpt": CKPT,
              "scores": {b: s["trained"] for b, s in scores.items()}, "paired": comparison,
              "overlap": training.get("overlap"), "cost": training.get("cost", {}), "rounds": training.get("rounds"),
              "wall_s_with_eval": round(time.monotonic() - started, 1), "records": saved}
    atomic_write_json(step.folder(out) / RECORD, result)
    return result


# --- the table ---------------------------------------------------------------------------------------------------


def load_experiment(out: Path, name: str, seeds: Sequence[int]) -> tuple[dict | None, list[dict]]:
    """The base record and the finished seeds' records of one experiment (whatever their budget: the table says)."""
    base = common.read_json(Step(name, None).folder(out) / RECORD)
    runs = [r for seed in seeds if (r := common.read_json(Step(name, seed).folder(out) / RECORD)) is not None]
    return base, runs


def _paired_text(entry: dict) -> str:
    return f"{entry['delta'] * 100:+.1f} [{entry['low95'] * 100:+.1f}, {entry['high95'] * 100:+.1f}]"


def section(experiment: Experiment, base: dict | None, runs: list[dict]) -> list[str]:
    """One experiment's Markdown: base, each seed with its paired bootstrap interval, the mean over seeds with its
    t-interval, and the verdict on D3PO's claim."""
    bench = experiment.benchmark
    lines = [f"## {experiment.name}: D3PO with simulated {experiment.objective} flags", "",
             f"Feedback `{experiment.feedback(0).replace('seed=0', 'seed=K')}` (seed K = training seed); training "
             f"prompts `{experiment.prompts}`; measured by `{bench}` ({experiment.label}, in-reward by design) and "
             f"`{HELD_OUT}` (held out). Rates and scores in points (0-100); delta = trained - base.", ""]
    if base is None:
        return [*lines, "Base not evaluated yet.", ""]
    if base.get("limit") is not None:
        lines += [f"**Smoke test**: evaluated on the first {base['limit']} prompts of each benchmark only, not the "
                  "protocol.", ""]
    budgets = sorted({r["budget"] for r in runs})
    if runs:
        lines += [f"Budget: {', '.join(map(str, budgets))} sampled training images per run.", ""]
    b_rate, b_held = base["scores"][bench], base["scores"][HELD_OUT]
    header = ["run", f"{bench} rate", "delta [95 % paired bootstrap]", f"{HELD_OUT}", "delta [95 % paired bootstrap]",
              "train wall (min)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    wilson = (f" (Wilson {common.points(b_rate.get('overall_low95'))}-{common.points(b_rate.get('overall_high95'))}, "
              f"{b_rate.get('n_flagged', math.nan):.0f}/{b_rate.get('n_judged', math.nan):.0f})")
    lines.append(f"| base | {common.points(b_rate['overall'])}{wilson} |  | {common.points(b_held['overall'])} |  |  |")
    for r in runs:
        lines.append(f"| D3PO seed {r['seed']} | {common.points(r['scores'][bench]['overall'])} | "
                     f"{_paired_text(r['paired'][bench])} | {common.points(r['scores'][HELD_OUT]['overall'])} | "
                     f"{_paired_text(r['paired'][HELD_OUT])} | {r['cost'].get('wall_s', math.nan) / 60:.1f} |")
    if not runs:
        return [*lines, "", "No finished D3PO runs yet.", ""]
    rate = common.t_interval([r["paired"][bench]["delta"] for r in runs])
    held = common.t_interval([r["paired"][HELD_OUT]["delta"] for r in runs])
    t_mark = " (t)" if rate.n >= 2 else ""
    mean_rate = common.mean_finite([r["scores"][bench]["overall"] for r in runs])
    mean_held = common.mean_finite([r["scores"][HELD_OUT]["overall"] for r in runs])
    lines.append(f"| D3PO, mean over seeds {','.join(str(r['seed']) for r in runs)} "
                 f"| {common.points(mean_rate)} | {rate.text()}{t_mark} "
                 f"| {common.points(mean_held)} | {held.text()}{t_mark} "
                 f"| {common.mean_finite([r['cost'].get('wall_s', math.nan) for r in runs]) / 60:.1f} |")
    if rate.n < 2:
        verdict = "needs 2+ seeds for an interval"
    elif rate.high < 0:
        verdict = "D3PO lowers it: the 95 % t-interval over seeds lies below 0"
    elif rate.low > 0:
        verdict = "D3PO raises it: the 95 % t-interval over seeds lies above 0"
    else:
        verdict = "no significant change: the 95 % t-interval over seeds includes 0"
    lines += ["", f"- {bench} rate: {rate.text()} points over {rate.n} seed(s); {verdict}.",
              f"- {HELD_OUT} (held out, the cost of the gain): {held.text()} points over {held.n} seed(s)."]
    return [*lines, ""]


def make_table(out: Path, experiments: Sequence[str], seeds: Sequence[int]) -> str:
    lines = [f"# D3PO's human-feedback experiments on {CKPT} (simulated annotator, noise {NOISE:g})", ""]
    for name in experiments:
        lines += section(EXPERIMENTS[name], *load_experiment(out, name, seeds))
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    budgets = ", ".join(f"{e.name} {e.budget}" for e in EXPERIMENTS.values())
    parser = common.table_parser("human_feedback", __doc__, "results/human-feedback", None, "sampled training "
                                 f"images per run, for every experiment (default per experiment: {budgets})")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS), help=f"subset of {','.join(EXPERIMENTS)}")
    return common.parse_table_args(parser, argv, lists=("experiments",))


def _what(step: Step, budget: int) -> str:
    """The step's plan line."""
    experiment = EXPERIMENTS[step.experiment]
    if step.seed is None:
        return f"base {CKPT} on {', '.join(experiment.benchmarks)}"
    return f"{METHOD} on {experiment.feedback(step.seed)}, {experiment.prompts}, budget {budget}"


def _run_step(args: argparse.Namespace, step: Step, budget: int, api: object) -> dict:
    store: Path = args.store or args.out / "store"
    if step.seed is None:
        return run_base(args.out, step, api, store, args.limit)
    return run_seed(args.out, step, budget, api, store, args.limit)


def _plan(args: argparse.Namespace) -> common.Plan:
    """Per experiment, the base and then each seed, at the experiment's budget unless --budget sets one for all."""
    out: Path = args.out
    steps = []
    for step in plan(args.experiments, args.seeds):
        budget = args.budget or EXPERIMENTS[step.experiment].budget
        done = partial(finished, out, step, budget, args.limit)
        steps.append(common.PlannedStep(step.folder(out), _what(step, budget), done,
                                        partial(_run_step, args, step, budget)))
    return common.Plan(steps, partial(make_table, out, args.experiments, args.seeds))


def main(argv: Sequence[str] | None = None, api: object | None = None, echo: Callable[[str], None] = print) -> int:
    args = _parse_args(argv)
    return common.run_steps(args.out, partial(_plan, args), args.dry_run, args.table_only, api, echo)


if __name__ == "__main__":
    raise SystemExit(main())
