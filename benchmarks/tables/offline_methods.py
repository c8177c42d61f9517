"""Issue 14's table: RankDPO against Diffusion-DPO on one synthetic ranked dataset, ``builtin:shapes``, 3 seeds.

One dataset (``harness data build-ranked``): ``--n-prompts`` prompts of ``builtin:geneval-train``, k images per
prompt from ``builtin:shapes`` under k sampler settings (Syn-Pic's "one image per generator"; with k below the
number of settings the first k are used), every image scored by the ``--rewards`` oracle objectives and ranked by
ψ. Every method trains on that dataset for the same ``--budget`` of optimiser steps; both see the same lists per
step, so the image budgets are equal too. Methods (``--methods``):

* ``diffusion-dpo``: Diffusion-DPO on every strictly ordered pair of each list;
* ``rankdpo``: RankDPO, DCG weights, the predicted ranking (the spec's defaults);
* ablations: ``rankdpo-nodcg`` (every Δ_ij = 1), ``rankdpo-psi`` (τ from the dataset's ψ ranking, Algorithm 2's
  reading), ``diffusion-dpo-bestworst`` (one pair per prompt, as a Pick-a-Pic pair file). The dataset ablations
  are options: ``--k`` (images per prompt) and ``--rewards`` (how many and which reward models). Each dataset gets
  its own folder, named by its settings, so ablation runs never mix with the main table's.

Each run calls :func:`harness.api.train_and_eval` (base and trained checkpoint evaluated with the same seeds on
``--benchmarks``); the dataset is :func:`harness.api.build_ranked`. This module imports nothing from ``trainers``.

Evaluation: the full official protocol of every benchmark by default. ``--subsample BENCH=N`` (with
``--subsample-seed``, default 0) evaluates a seeded subsample of N prompts of BENCH spread evenly over its tags,
the same prompts and image seeds for the base and every trained model, so paired differences stay exact; e.g.
``--subsample t2i-compbench=300`` scores 300 of the builtin T2I-CompBench's 1800 prompts (3,000 images instead of
18,000 per model). The choice is kept in each table record (``evaluation``) and in the result records' ``options``
with a comparability reason, and the table names the subsample in its columns: such numbers are not comparable
with full-benchmark ones. Benchmarks evaluated alike go through one ``train_and_eval`` call; each other group
gets its own call, which resumes the finished run (nothing is trained again) and evaluates with its settings.
``--limit N`` (first N prompts of every benchmark) is for smoke tests only. Layout of ``--out``::

    datasets/<data-id>/            the ranked dataset (resumable build) and dataset-record.json, written last
    <data-id>/<method>-seed<k>/    run/ (the training folder), records/ (result records), table-record.json (last)
    table.md                       one section per dataset, rebuilt from whatever records exist

A step whose record exists is skipped, a partial training folder resumes from its last save and a partial build
finishes without regenerating or rescoring, so the script can be killed and restarted at any point. The base row is
the untrained model evaluated with the same prompts and seeds (it is the same for every run).

Statistics (as :mod:`benchmarks.tables.online_methods`): per method, the mean score and per-seed paired differences
d_k = trained_k − base with a 95 % t-interval; RankDPO − Diffusion-DPO paired by seed (the paper's claim is ≥ 0).
GenEval is *in-reward* when a reward model of the dataset is GenEval's own scorer (``objective:geneval-partial``,
``objective:counting-error``); T2I-CompBench is held out.

Budget: the default 200 steps of 8 lists of 4 images (6,400 image-passes) is an estimate for about 15 minutes of
training per run on 2 CPU cores (about 4 s per step); calibrate with ``--budget`` and record the value used.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from benchmarks.tables import common
from benchmarks.tables.common import BENCHMARKS, CKPT, PROMPTS, RECORD
from harness.errors import HarnessError
from harness.hashing import stable_hash
from harness.store import atomic_write_json

DEFAULT_BUDGET = 200  # optimiser steps
DEFAULT_K = 4
DEFAULT_PROMPTS = 600
DATA_SEED = 0  # one dataset for every training seed: the table compares methods on the same data
# The oracle rewards of the builtin world: GenEval partial credit, the counting error and the distortion detector.
DEFAULT_REWARDS = ("objective:geneval-partial", "objective:counting-error", "objective:distorted")
# k generators: builtin:shapes under different sampler settings (its default is 10 DDIM steps, guidance 2).
GENERATOR_SAMPLERS = ("steps=10,guidance=2.0", "steps=10,guidance=4.0", "steps=20,guidance=3.0",
                      "steps=10,guidance=2.0,eta=1.0")
DATASET_RECORD = "dataset-record.json"


@dataclass(frozen=True)
class MethodSpec:
    """One row of the table: an offline method and its ``--set`` settings."""

    name: str
    method: str
    settings: tuple[tuple[str, str], ...]
    label: str


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("diffusion-dpo", "diffusion-dpo", (), "Diffusion-DPO (all ordered pairs)"),
    MethodSpec("rankdpo", "rankdpo", (), "RankDPO (DCG weights, predicted ranking)"),
    MethodSpec("rankdpo-nodcg", "rankdpo", (("dcg_weights", "false"),), "RankDPO without DCG weights"),
    MethodSpec("rankdpo-psi", "rankdpo", (("ranking", "psi"),), "RankDPO, ranking from the dataset's psi"),
    MethodSpec("diffusion-dpo-bestworst", "diffusion-dpo", (("pairs", "best-worst"),),
               "Diffusion-DPO, best-vs-worst pair only"),
)}
MAIN_METHODS = ("diffusion-dpo", "rankdpo")


@dataclass(frozen=True)
class DataSpec:
    """The ranked dataset every run of one table trains on."""

    k: int
    rewards: tuple[str, ...]
    n_prompts: int

    @property
    def samplers(self) -> list[str]:
        return list(GENERATOR_SAMPLERS[: self.k])

    @property
    def id(self) -> str:
        return f"k{self.k}-r{len(self.rewards)}-n{self.n_prompts}-{stable_hash([self.rewards, self.samplers])[:6]}"

    def describe(self) -> dict:
        return {"k": self.k, "rewards": list(self.rewards), "n_prompts": self.n_prompts, "samplers": self.samplers,
                "ckpt": CKPT, "prompts": PROMPTS, "seed": DATA_SEED}


@dataclass(frozen=True)
class Step:
    name: str
    seed: int

    @property
    def folder(self) -> str:
        return f"{self.name}-seed{self.seed}"


def plan(methods: Sequence[str], seeds: Sequence[int]) -> list[Step]:
    """Seed by seed, so a partial table has whole seeds."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise HarnessError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    return [Step(name, seed) for seed in seeds for name in METHODS if name in methods]


def dataset_dir(out: Path, data: DataSpec) -> Path:
    return out / "datasets" / data.id


def build_dataset(out: Path, data: DataSpec, api: object, progress: bool = True) -> dict:
    """Build (or finish) the dataset; its record (settings and the build's cost) is written last."""
    folder = dataset_dir(out, data)
    record = common.read_json(folder / DATASET_RECORD)
    if record is not None:
        return record
    summary = api.build_ranked([CKPT], PROMPTS, data.k, list(data.rewards), folder, samplers=data.samplers,
                               n_prompts=data.n_prompts, seed=DATA_SEED, progress=progress)
    build = common.read_json(folder / "build.json") or {}
    record = {**data.describe(), "id": data.id, "rows": summary.rows, "skipped": summary.skipped,
              "build_cost": build.get("total_cost")}
    atomic_write_json(folder / DATASET_RECORD, record)
    return record


def full_evaluation(benchmarks: Sequence[str], limit: int | None) -> dict[str, dict]:
    """The evaluation of a record made before ``--subsample`` existed: every benchmark with its limit, none
    subsampled (such records carry only the top-level ``limit``)."""
    return common.evaluation_plan(benchmarks, limit, {}, 0)


def finished(out: Path, data: DataSpec, step: Step, budget: int, evaluation: dict[str, dict]) -> dict | None:
    """The step's record if it finished with this budget and evaluation (each benchmark's limit and subsample);
    another one is an error (one table compares runs at one budget and one protocol)."""
    path = out / data.id / step.folder / RECORD
    record = common.read_json(path)
    if record is None:
        return None
    limit = next(iter(evaluation.values()))["limit"]  # --limit is one value for every benchmark
    if record.get("budget") != budget or record.get("limit") != limit:
        raise HarnessError(f"{path} was made with --budget {record.get('budget')} --limit {record.get('limit')}, "
                           f"not {budget} / {limit}; use those or another --out")
    common.check_evaluation(path, record.get("evaluation") or full_evaluation(list(evaluation), limit), evaluation)
    return record


def run_training(out: Path, data: DataSpec, step: Step, budget: int, evaluation: dict[str, dict], api: object,
                 progress: bool = True, store: Path | None = None) -> dict:
    """Train and evaluate one (method, seed) on the dataset on the benchmarks of ``evaluation``; writes its result
    records and, last, its record."""
    spec = METHODS[step.name]
    folder = out / data.id / step.folder
    run_dir = folder / "run"
    resume = run_dir.is_dir() and any(run_dir.iterdir())
    started = time.monotonic()
    groups: dict[str, list[str]] = {}  # benchmarks evaluated alike, in --benchmarks order
    for bench, entry in evaluation.items():
        groups.setdefault(json.dumps(entry, sort_keys=True), []).append(bench)
    records = []
    for group in groups.values():
        # after the first group the run is finished: train_and_eval resumes it at its budget, trains nothing more
        records += api.train_and_eval(spec.method, CKPT, None, None, budget, run_dir, group,
                                      eval_settings=common.eval_settings(api, evaluation[group[0]]), seed=step.seed,
                                      settings=dict(spec.settings), resume=resume or bool(records),
                                      eval_out=store or out / "store", progress=progress, data=dataset_dir(out, data))
    scores, saved, training = common.save_records(records, folder, out)
    limit = next(iter(evaluation.values()))["limit"]
    result = {"step": step.folder, "name": spec.name, "method": spec.method, "settings": dict(spec.settings),
              "seed": step.seed, "budget": budget, "limit": limit, "evaluation": evaluation,
              "n_prompts": {r.benchmark: r.n_prompts for r in records if r.training}, "data": data.id,
              "scores": scores, "cost": training.get("cost", {}), "steps": training.get("steps"),
              "wall_s_with_eval": round(time.monotonic() - started, 1), "records": saved}
    atomic_write_json(folder / RECORD, result)
    return result


# --- the table ---------------------------------------------------------------------------------------------------


def _diffs(runs: list[dict], benchmark: str) -> dict[int, float]:
    return {r["seed"]: r["scores"][benchmark]["trained"]["overall"] - r["scores"][benchmark]["base"]["overall"]
            for r in runs if "overall" in r["scores"].get(benchmark, {}).get("trained", {})}


def load_records(out: Path, data_id: str, methods: Sequence[str], seeds: Sequence[int]) -> dict[str, list[dict]]:
    """Finished records of one dataset by method, in seed order (whatever their budget; the table states it)."""
    runs: dict[str, list[dict]] = {}
    for name in methods:
        found = [common.read_json(out / data_id / Step(name, seed).folder / RECORD) for seed in seeds]
        runs[name] = [r for r in found if r is not None]
    return runs


def section(dataset: dict, runs: dict[str, list[dict]], benchmarks: Sequence[str]) -> list[str]:
    """One dataset's Markdown: its provenance and cost, the per-method rows and the RankDPO comparison."""
    cost = dataset.get("build_cost") or {}
    lines = [f"## Dataset {dataset['id']}", "",
             f"k = {dataset['k']} images per prompt from {CKPT} under {', '.join(dataset['samplers'])}; "
             f"{dataset['rows']} prompts of {PROMPTS} (skipped: {dataset.get('skipped') or 'none'}); rewards "
             f"{', '.join(dataset['rewards'])}. Build cost: {cost.get('images_generated')} images generated, "
             f"{cost.get('scores_computed')} scores computed, {cost.get('wall_s', math.nan) / 60:.1f} min wall.", ""]
    all_runs = [r for rs in runs.values() for r in rs]
    if not all_runs:
        return [*lines, "No finished runs yet.", ""]
    budgets = sorted({r["budget"] for r in all_runs})
    lines += [f"Budget: {', '.join(map(str, budgets))} optimiser steps per run; scores in points (0-100); delta = "
              "trained - base, mean over seeds with a 95 % t-interval of the paired difference.", ""]
    if all_runs[0].get("limit") is not None:
        lines += [f"**Smoke test**: evaluated on the first {all_runs[0]['limit']} prompts of each benchmark only.", ""]
    evaluation = all_runs[0].get("evaluation") or {}  # records made before --subsample have none: full protocol
    subsampled = [b for b in benchmarks if evaluation.get(b, {}).get("sample") is not None]
    if subsampled:
        lines += ["Evaluation:", *(common.evaluation_line(b, evaluation[b]) for b in subsampled), ""]
    header = ["method", "seeds"]
    for b in benchmarks:
        header += [f"{common.bench_label(b, all_runs)} overall", f"{b} delta", f"{b} per seed"]
    header += ["train wall (min)", "images seen"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = ["base", "-"]
    for b in benchmarks:
        first = next((r["scores"][b]["base"] for r in all_runs if b in r["scores"]), {})
        base += [common.points(first.get("overall")), "", ""]
    lines.append("| " + " | ".join([*base, "", ""]) + " |")
    for name, rs in runs.items():
        if not rs:
            continue
        row = [METHODS[name].label, ",".join(str(r["seed"]) for r in rs)]
        for b in benchmarks:
            mine = [r for r in rs if b in r["scores"]]
            diffs = _diffs(mine, b)
            in_reward = " *(in-reward)*" if any(r["scores"][b].get("in_reward") for r in mine) else ""
            row += [common.points(common.mean_finite([r["scores"][b]["trained"]["overall"] for r in mine])) + in_reward,
                    common.t_interval(list(diffs.values())).text() if diffs else "",
                    " / ".join(common.points(r["scores"][b]["trained"]["overall"]) for r in mine)]
        row += [f"{common.mean_finite([r['cost'].get('wall_s', math.nan) for r in rs]) / 60:.1f}",
                f"{common.mean_finite([r['cost'].get('images_seen', math.nan) for r in rs]):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *comparisons(runs, benchmarks)]
    return lines


def comparisons(runs: dict[str, list[dict]], benchmarks: Sequence[str]) -> list[str]:
    """RankDPO (and each ablation) minus Diffusion-DPO, paired by seed: the paper's claim is RankDPO >= DPO."""
    reference = runs.get("diffusion-dpo", [])
    out = ["Paired by seed, against Diffusion-DPO (points):", ""]
    if not reference:
        return [*out, "No finished Diffusion-DPO runs yet.", ""]
    for b in benchmarks:
        theirs = _diffs(reference, b)
        for name, rs in runs.items():
            if name == "diffusion-dpo":
                continue
            mine = _diffs(rs, b)
            paired = [mine[s] - theirs[s] for s in sorted(mine.keys() & theirs.keys())]
            if not paired:
                continue
            interval = common.t_interval(paired)
            verdict = "mean >= 0" if interval.mean >= 0 else "mean < 0"
            if interval.n < 2:
                verdict += ", needs 2+ seeds for an interval"
            else:
                verdict += f", 95 % interval {'excludes' if interval.excludes_zero else 'includes'} 0"
            out.append(f"- {b}: {METHODS[name].label} - Diffusion-DPO: {interval.text()}; {verdict}")
    return [*out, ""]


def make_table(out: Path, methods: Sequence[str], seeds: Sequence[int], benchmarks: Sequence[str]) -> str:
    """Every dataset under ``<out>/datasets`` with a record, one section each (the main dataset and ablations)."""
    lines = [f"# Offline methods on {CKPT}: {', '.join(benchmarks)}", ""]
    datasets = sorted((out / "datasets").glob(f"*/{DATASET_RECORD}")) if (out / "datasets").is_dir() else []
    if not datasets:
        return "\n".join([*lines, "No dataset built yet."]) + "\n"
    for path in datasets:
        dataset = common.read_json(path)
        if dataset is not None:
            lines += section(dataset, load_records(out, dataset["id"], methods, seeds), benchmarks)
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common.table_parser("offline_methods", __doc__, "results/offline-methods", DEFAULT_BUDGET,
                                 "optimiser steps per run", subsample={})
    parser.add_argument("--methods", default=",".join(MAIN_METHODS), help=f"subset of {','.join(METHODS)}")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="benchmarks to evaluate on")
    parser.add_argument("--k", type=int, default=DEFAULT_K,
                        help=f"images per prompt in the dataset (at most {len(GENERATOR_SAMPLERS)}: one per sampler)")
    parser.add_argument("--rewards", default=",".join(DEFAULT_REWARDS),
                        help="the dataset's reward models, comma-separated (their number is an ablation)")
    parser.add_argument("--n-prompts", type=int, default=DEFAULT_PROMPTS, help="prompts in the dataset")
    args = common.parse_table_args(parser, argv, lists=("methods", "benchmarks", "rewards"),
                                   positive=("budget", "n_prompts", "limit"))
    args.rewards = tuple(args.rewards)
    if not 2 <= args.k <= len(GENERATOR_SAMPLERS):
        parser.error(f"--k must be between 2 and {len(GENERATOR_SAMPLERS)} (got {args.k})")
    return args


def _plan(args: argparse.Namespace) -> common.Plan:
    """The dataset first (every run trains on it), then each (method, seed)."""
    out: Path = args.out
    data = DataSpec(args.k, args.rewards, args.n_prompts)
    subsample = common.parse_subsample(args.subsample, args.benchmarks)
    evaluation = common.evaluation_plan(args.benchmarks, args.limit, subsample, args.subsample_seed)
    dataset = common.PlannedStep(dataset_dir(out, data), f"dataset {data.describe()}",
                                 partial(common.read_json, dataset_dir(out, data) / DATASET_RECORD),
                                 partial(build_dataset, out, data))
    steps = [common.PlannedStep(out / data.id / step.folder,
                                f"{METHODS[step.name].label}, seed {step.seed}, budget {args.budget} steps",
                                partial(finished, out, data, step, args.budget, evaluation),
                                partial(_run_training, args, data, step, evaluation))
             for step in plan(args.methods, args.seeds)]
    notes = []
    if any(e["sample"] is not None for e in evaluation.values()):  # a full evaluation's plan prints as it always did
        notes.append("evaluation: " + "; ".join(f"{b} {common.eval_text(e)}" for b, e in evaluation.items()))
    return common.Plan([dataset, *steps], partial(make_table, out, list(METHODS), args.seeds, args.benchmarks), notes)


def _run_training(args: argparse.Namespace, data: DataSpec, step: Step, evaluation: dict[str, dict],
                  api: object) -> dict:
    return run_training(args.out, data, step, args.budget, evaluation, api, store=args.store)


def main(argv: Sequence[str] | None = None, api: object | None = None, echo: Callable[[str], None] = print) -> int:
    args = _parse_args(argv)
    return common.run_steps(args.out, partial(_plan, args), args.dry_run, args.table_only, api, echo)


if __name__ == "__main__":
    raise SystemExit(main())
