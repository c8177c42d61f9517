"""Issue 13's table: D3PO against reward-model RL on ``builtin:shapes``, 3 training seeds, one budget of images.

Methods (``--methods``; every run samples the same ``--budget`` of training images from ``builtin:geneval-train``):

* ``d3po``: D3PO with GenEval correctness on the training prompts as the preference proxy, no reward model;
* ``ddpo-true``: DDPO with the true reward (the same GenEval correctness, as a scalar);
* ``ddpo-learned``: DDPO with a Bradley-Terry reward model trained on exactly the preferences the ``d3po`` run of
  the same seed used (its ``preferences.jsonl``): the D3PO paper's "RL with a reward model learned from the same
  labels";
* ``grpo-true``: GRPO with the true reward;
* ``dpok``: DPOK with the true reward.

Each run calls :func:`harness.api.train_and_eval` (base and trained checkpoint evaluated with the same seeds on
``--benchmarks``, full official protocol) and the reward model is :func:`harness.api.train_reward`; this module
imports nothing from ``trainers`` (``harness.api`` imports it lazily). Each finished run leaves
``<out>/<method>-seed<k>/table-record.json`` (written last, atomically) plus its result records under ``records/``;
a run with that file is skipped, a run with a partial training folder resumes from its last save, so the script
can be killed and restarted at any point. The table (``<out>/table.md``) is rebuilt from whatever records exist.

Statistics, per method over the seeds it has finished: the mean score; per seed, the paired difference
d_k = trained_k - base (the base is evaluated on the same prompts and image seeds, so it is the same for every
seed); a 95 % t-interval of the mean difference, mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n) (sample sd, n - 1
degrees of freedom; undefined for n < 2); D3PO's share of the true-reward RL gain, mean(d_D3PO) / mean(d_RL); and
D3PO minus the learned-reward baseline, paired by seed (seed k's reward model learned from seed k's D3PO labels).
GenEval is *in-reward* for every ``objective:geneval`` run (the feedback uses GenEval's oracle and rule, on other
prompts), so its gain is not held-out evidence; T2I-CompBench is held out.

Budget: 2048 images (128 rounds of 4 prompts x 4 images) is the estimate for about 15 minutes of training per run
on 2 CPU cores (sampling at ~12 images/s, and a training step costing about four sampling passes); calibrate with
``--budget`` and record the value used, since every run of one table must share it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.tables.common import (
    BENCHMARKS,
    CKPT,
    DEFAULT_SEEDS,
    PROMPTS,
    RECORD,
    mean_finite,
    parse_seeds,
    points,
    read_json,
    save_records,
    split_list,
    t_interval,
    table_parser,
)
from harness.errors import HarnessError
from harness.store import atomic_write_json, atomic_write_text

DEFAULT_BUDGET = 2048
MONITOR_EVERY = 32  # rounds between held-out measurements: 4 points over the default budget, ~1 min each
TRUE_REWARD = "objective:geneval"


@dataclass(frozen=True)
class MethodSpec:
    """One row of the table: which trainer, on which feedback (``{reward_model}`` is seed k's learned model)."""

    name: str
    method: str
    feedback: str
    label: str


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("d3po", "d3po", TRUE_REWARD, "D3PO (preferences from GenEval correctness, no reward model)"),
    MethodSpec("ddpo-true", "ddpo", TRUE_REWARD, "DDPO, true reward"),
    MethodSpec("ddpo-learned", "ddpo", "reward:{reward_model}", "DDPO, reward model learned from D3PO's labels"),
    MethodSpec("grpo-true", "grpo", TRUE_REWARD, "GRPO, true reward"),
    MethodSpec("dpok", "dpok", TRUE_REWARD, "DPOK, true reward"),
)}
RL_TRUE = ("ddpo-true", "grpo-true")  # the true-reward RL runs D3PO's gain is compared with


@dataclass(frozen=True)
class Step:
    """One unit of work: a training run (``kind`` "train") or a reward model (``kind`` "reward-model")."""

    kind: str
    name: str
    seed: int

    @property
    def folder(self) -> str:
        return f"{self.name}-seed{self.seed}"


def plan(methods: Sequence[str], seeds: Sequence[int]) -> list[Step]:
    """Seed by seed (so a partial table has whole seeds), D3PO before the reward model learned from its labels and
    before the run that uses that model."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise HarnessError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    steps = []
    for seed in seeds:
        for name in METHODS:
            if name not in methods:
                continue
            if name == "ddpo-learned":
                steps.append(Step("reward-model", "reward-model", seed))
            steps.append(Step("train", name, seed))
    return steps


def finished(out: Path, step: Step, budget: int, limit: int | None = None) -> dict | None:
    """The step's record if it finished with this budget and evaluation limit; None if it has not finished. A
    record made with other ones is an error: one table compares runs at one budget and one protocol."""
    path = out / step.folder / RECORD
    record = read_json(path)
    if record is None:
        return None
    if record.get("budget") != budget:
        raise HarnessError(f"{path} was made with --budget {record.get('budget')}, not {budget}; use that budget "
                           "or another --out")
    if step.kind == "train" and record.get("limit") != limit:
        raise HarnessError(f"{path} was evaluated with --limit {record.get('limit')}, not {limit}; use the same "
                           "--limit or another --out")
    return record


def reward_model_dir(out: Path, seed: int) -> Path:
    return out / Step("reward-model", "reward-model", seed).folder / "model"


def _feedback(out: Path, step: Step) -> str:
    return METHODS[step.name].feedback.format(reward_model=reward_model_dir(out, step.seed))


def run_reward_model(out: Path, step: Step, budget: int, api: object, limit: int | None = None) -> dict:
    """Train seed k's reward model on the preferences of the finished ``d3po`` run of seed k."""
    source = Step("train", "d3po", step.seed)
    if finished(out, source, budget, limit) is None:
        raise HarnessError(f"the reward model of seed {step.seed} learns from {source.folder}, which has not finished; "
                           "include d3po in --methods")
    pairs = out / source.folder / "run" / "preferences.jsonl"
    if not pairs.is_file():
        raise HarnessError(f"{pairs} is missing: the d3po run of seed {step.seed} wrote no preferences")
    metrics = api.train_reward(pairs, reward_model_dir(out, step.seed), world="builtin", seed=step.seed,
                               overwrite=True)
    n_pairs = sum(1 for line in pairs.read_text().splitlines() if line.strip())
    record = {"step": step.folder, "budget": budget, "pairs": str(pairs.relative_to(out)), "n_pairs": n_pairs,
              "metrics": metrics}
    atomic_write_json(out / step.folder / RECORD, record)
    return record


def run_training(out: Path, step: Step, budget: int, benchmarks: Sequence[str], api: object,
                 progress: bool = True, store: Path | None = None, limit: int | None = None) -> dict:
    """Train and evaluate one (method, seed); writes its result records and, last, its table record."""
    spec = METHODS[step.name]
    feedback = _feedback(out, step)
    folder = out / step.folder
    run_dir = folder / "run"
    resume = run_dir.is_dir() and any(run_dir.iterdir())
    started = time.monotonic()
    records = api.train_and_eval(spec.method, CKPT, feedback, PROMPTS, budget, run_dir, list(benchmarks),
                                 eval_settings=api.EvalSettings(limit=limit), monitor_every=MONITOR_EVERY,
                                 seed=step.seed, resume=resume, eval_out=store or out / "store", progress=progress)
    scores, saved, training = save_records(records, folder, out)
    result = {"step": step.folder, "method": spec.method, "name": spec.name, "feedback": feedback,
              "seed": step.seed, "budget": budget, "limit": limit, "ckpt": CKPT, "prompts": PROMPTS, "scores": scores,
              "cost": training.get("cost", {}), "rounds": training.get("rounds"),
              "monitor_warnings": (training.get("monitor") or {}).get("warnings", []),
              "wall_s_with_eval": round(time.monotonic() - started, 1), "records": saved}
    atomic_write_json(folder / RECORD, result)
    return result


# --- the table ---------------------------------------------------------------------------------------------------


def load_records(out: Path, methods: Sequence[str], seeds: Sequence[int], budget: int, limit: int | None = None
                 ) -> dict[str, list[dict]]:
    """Finished training records by method, in seed order (unfinished seeds are left out)."""
    runs: dict[str, list[dict]] = {}
    for name in methods:
        if name not in METHODS:
            continue
        runs[name] = [r for seed in seeds
                      if (r := finished(out, Step("train", name, seed), budget, limit)) is not None]
    return runs


def _diffs(runs: list[dict], benchmark: str, key: str = "overall") -> dict[int, float]:
    return {r["seed"]: r["scores"][benchmark]["trained"][key] - r["scores"][benchmark]["base"][key]
            for r in runs if benchmark in r["scores"] and key in r["scores"][benchmark].get("trained", {})}


def make_table(runs: dict[str, list[dict]], benchmarks: Sequence[str] = BENCHMARKS, budget: int | None = None) -> str:
    """The Markdown table (scores in points, 0-100) and the comparisons the issue asks for."""
    all_runs = [r for rs in runs.values() for r in rs]
    if not all_runs:
        return "# Online methods on builtin:shapes\n\nNo finished runs yet.\n"
    primary = benchmarks[0]
    bases = {b: [r["scores"][b]["base"] for r in all_runs if b in r["scores"]] for b in benchmarks}
    base = {b: v[0] for b, v in bases.items() if v}
    tags = [k for k in base.get(primary, {}) if k != "overall"]
    lines = [f"# Online methods on {CKPT}: {', '.join(benchmarks)}", "",
             f"Budget: {budget if budget is not None else all_runs[0]['budget']} sampled training images per run; "
             f"training prompts {PROMPTS}; scores in points (0-100). Delta = trained - base, mean over seeds with a "
             "95 % t-interval of the paired difference in brackets.", ""]
    if all_runs[0].get("limit") is not None:
        lines += [f"**Smoke test**: evaluated on the first {all_runs[0]['limit']} prompts of each benchmark only, "
                  "not the official protocol.", ""]
    for b, values in bases.items():
        if any(v != values[0] for v in values):
            lines += [f"**Warning**: the base {b} scores differ between runs (evaluation not deterministic?); "
                      "the first run's base is shown.", ""]
    header = ["method", "seeds", f"{primary} overall", f"{primary} delta", f"{primary} per seed"]
    header += [f"{primary} {t}" for t in tags]
    for b in benchmarks[1:]:
        header += [f"{b} overall", f"{b} delta"]
    header += ["train wall (min)", "peak memory (MB)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base_row = ["base", "-", points(base.get(primary, {}).get("overall")), "", ""]
    base_row += [points(base.get(primary, {}).get(t)) for t in tags]
    for b in benchmarks[1:]:
        base_row += [points(base.get(b, {}).get("overall")), ""]
    lines.append("| " + " | ".join([*base_row, "", ""]) + " |")
    for name, rs in runs.items():
        if not rs:
            continue
        spec = METHODS[name]
        in_reward = any(r["scores"].get(primary, {}).get("in_reward") for r in rs)
        diffs = _diffs(rs, primary)
        row = [spec.label + (" *(GenEval in-reward)*" if in_reward else ""), ",".join(str(r["seed"]) for r in rs),
               points(mean_finite([r["scores"][primary]["trained"]["overall"] for r in rs if primary in r["scores"]])),
               t_interval(list(diffs.values())).text() if diffs else "",
               " / ".join(points(r["scores"][primary]["trained"]["overall"]) for r in rs if primary in r["scores"])]
        row += [points(mean_finite([r["scores"][primary]["trained"].get(t, math.nan) for r in rs
                                    if primary in r["scores"]])) for t in tags]
        for b in benchmarks[1:]:
            d = _diffs(rs, b)
            row += [points(mean_finite([r["scores"][b]["trained"]["overall"] for r in rs if b in r["scores"]])),
                    t_interval(list(d.values())).text() if d else ""]
        row += [f"{mean_finite([r['cost'].get('wall_s', math.nan) for r in rs]) / 60:.1f}",
                f"{mean_finite([r['cost'].get('peak_memory_mb', math.nan) for r in rs]):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *comparisons(runs, benchmarks)]
    return "\n".join(lines) + "\n"


def comparisons(runs: dict[str, list[dict]], benchmarks: Sequence[str]) -> list[str]:
    """The paper's claims, per benchmark: D3PO's share of the true-reward RL gain, and D3PO vs the learned-reward
    baseline paired by seed."""
    out = ["## D3PO against RL", ""]
    d3po = runs.get("d3po", [])
    if not d3po:
        return [*out, "No finished D3PO runs yet.", ""]
    for b in benchmarks:
        mine = _diffs(d3po, b)
        if not mine:
            continue
        gain = t_interval(list(mine.values()))
        verdict = "excludes 0" if gain.excludes_zero else "includes 0" if gain.n >= 2 else "needs 2+ seeds"
        out.append(f"- {b}: D3PO gain {gain.text()} points (95 % interval {verdict}).")
        for name in RL_TRUE:
            theirs = _diffs(runs.get(name, []), b)
            if theirs:
                rl = statistics.fmean(theirs.values())
                share = f"{gain.mean / rl:.0%}" if rl > 0 else "undefined (no RL gain)"
                out.append(f"  - share of the {METHODS[name].label} gain ({rl * 100:+.1f}): {share}")
        learned = _diffs(runs.get("ddpo-learned", []), b)
        paired = [mine[s] - learned[s] for s in sorted(mine.keys() & learned.keys())]
        if paired:
            out.append(f"  - D3PO - {METHODS['ddpo-learned'].label}, paired by seed: "
                       f"{t_interval(paired).text()} points")
    return [*out, ""]


# --- command line ----------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = table_parser("online_methods", __doc__, "results/online-methods", DEFAULT_BUDGET,
                          "sampled training images per run", DEFAULT_SEEDS)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="first one is the table's primary")
    args = parser.parse_args(argv)
    args.seeds = parse_seeds(parser, args.seeds)
    args.methods = split_list(args.methods)
    args.benchmarks = split_list(args.benchmarks)
    bad_limit = args.limit is not None and args.limit < 1
    if args.budget < 1 or bad_limit or not (args.seeds and args.methods and args.benchmarks):
        parser.error("--budget and --limit must be >= 1 and --seeds, --methods, --benchmarks non-empty")
    return args


def main(argv: Sequence[str] | None = None, api: object | None = None, echo: Callable[[str], None] = print) -> int:
    args = _parse_args(argv)
    out: Path = args.out
    try:
        steps = plan(args.methods, args.seeds)
        if args.dry_run or args.table_only:
            for step in steps:
                state = "done" if finished(out, step, args.budget, args.limit) is not None else "to do"
                what = (f"{METHODS[step.name].method} on {_feedback(out, step)}" if step.kind == "train"
                        else f"Bradley-Terry reward model on d3po-seed{step.seed}/run/preferences.jsonl")
                echo(f"{state:6} {out / step.folder}: {what}, seed {step.seed}, budget {args.budget}")
            if args.dry_run:
                return 0
        else:
            if api is None:
                import harness.api as api
            for step in steps:
                if finished(out, step, args.budget, args.limit) is not None:
                    echo(f"skip   {step.folder} (finished)")
                    continue
                echo(f"run    {step.folder}")
                if step.kind == "reward-model":
                    run_reward_model(out, step, args.budget, api, limit=args.limit)
                else:
                    run_training(out, step, args.budget, args.benchmarks, api, store=args.store, limit=args.limit)
                _write_table(out, args)
        _write_table(out, args)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    echo(f"table: {out / 'table.md'}")
    return 0


def _write_table(out: Path, args: argparse.Namespace) -> None:
    runs = load_records(out, args.methods, args.seeds, args.budget, args.limit)
    atomic_write_text(out / "table.md", make_table(runs, args.benchmarks, args.budget))


if __name__ == "__main__":
    raise SystemExit(main())
