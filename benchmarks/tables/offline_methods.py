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
``--benchmarks``, full official protocol unless ``--limit``); the dataset is :func:`harness.api.build_ranked`. This
module imports nothing from ``trainers``. Layout of ``--out``::

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
import math
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
from harness.hashing import stable_hash
from harness.store import atomic_write_json, atomic_write_text

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
    record = read_json(folder / DATASET_RECORD)
    if record is not None:
        return record
    summary = api.build_ranked([CKPT], PROMPTS, data.k, list(data.rewards), folder, samplers=data.samplers,
                               n_prompts=data.n_prompts, seed=DATA_SEED, progress=progress)
    build = read_json(folder / "build.json") or {}
    record = {**data.describe(), "id": data.id, "rows": summary.rows, "skipped": summary.skipped,
              "build_cost": build.get("total_cost")}
    atomic_write_json(folder / DATASET_RECORD, record)
    return record


def finished(out: Path, data: DataSpec, step: Step, budget: int, limit: int | None) -> dict | None:
    """The step's record if it finished with this budget and evaluation limit; another one is an error (one table
    compares runs at one budget and one protocol)."""
    path = out / data.id / step.folder / RECORD
    record = read_json(path)
    if record is None:
        return None
    if record.get("budget") != budget or record.get("limit") != limit:
        raise HarnessError(f"{path} was made with --budget {record.get('budget')} --limit {record.get('limit')}, "
                           f"not {budget} / {limit}; use those or another --out")
    return record


def run_training(out: Path, data: DataSpec, step: Step, budget: int, benchmarks: Sequence[str], api: object,
                 progress: bool = True, store: Path | None = None, limit: int | None = None) -> dict:
    """Train and evaluate one (method, seed) on the dataset; writes its result records and, last, its record."""
    spec = METHODS[step.name]
    folder = out / data.id / step.folder
    run_dir = folder / "run"
    resume = run_dir.is_dir() and any(run_dir.iterdir())
    started = time.monotonic()
    records = api.train_and_eval(spec.method, CKPT, None, None, budget, run_dir, list(benchmarks),
                                 eval_settings=api.EvalSettings(limit=limit), seed=step.seed,
                                 settings=dict(spec.settings), resume=resume, eval_out=store or out / "store",
                                 progress=progress, data=dataset_dir(out, data))
    scores, saved, training = save_records(records, folder, out)
    result = {"step": step.folder, "name": spec.name, "method": spec.method, "settings": dict(spec.settings),
              "seed": step.seed, "budget": budget, "limit": limit, "data": data.id, "scores": scores,
              "cost": training.get("cost", {}), "steps": training.get("steps"),
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
        found = [read_json(out / data_id / Step(name, seed).folder / RECORD) for seed in seeds]
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
    header = ["method", "seeds"]
    for b in benchmarks:
        header += [f"{b} overall", f"{b} delta", f"{b} per seed"]
    header += ["train wall (min)", "images seen"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = ["base", "-"]
    for b in benchmarks:
        first = next((r["scores"][b]["base"] for r in all_runs if b in r["scores"]), {})
        base += [points(first.get("overall")), "", ""]
    lines.append("| " + " | ".join([*base, "", ""]) + " |")
    for name, rs in runs.items():
        if not rs:
            continue
        row = [METHODS[name].label, ",".join(str(r["seed"]) for r in rs)]
        for b in benchmarks:
            mine = [r for r in rs if b in r["scores"]]
            diffs = _diffs(mine, b)
            in_reward = " *(in-reward)*" if any(r["scores"][b].get("in_reward") for r in mine) else ""
            row += [points(mean_finite([r["scores"][b]["trained"]["overall"] for r in mine])) + in_reward,
                    t_interval(list(diffs.values())).text() if diffs else "",
                    " / ".join(points(r["scores"][b]["trained"]["overall"]) for r in mine)]
        row += [f"{mean_finite([r['cost'].get('wall_s', math.nan) for r in rs]) / 60:.1f}",
                f"{mean_finite([r['cost'].get('images_seen', math.nan) for r in rs]):.0f}"]
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
            interval = t_interval(paired)
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
        dataset = read_json(path)
        if dataset is not None:
            lines += section(dataset, load_records(out, dataset["id"], methods, seeds), benchmarks)
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = table_parser("offline_methods", __doc__, "results/offline-methods", DEFAULT_BUDGET,
                          "optimiser steps per run", DEFAULT_SEEDS)
    parser.add_argument("--methods", default=",".join(MAIN_METHODS), help=f"subset of {','.join(METHODS)}")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="benchmarks to evaluate on")
    parser.add_argument("--k", type=int, default=DEFAULT_K,
                        help=f"images per prompt in the dataset (at most {len(GENERATOR_SAMPLERS)}: one per sampler)")
    parser.add_argument("--rewards", default=",".join(DEFAULT_REWARDS),
                        help="the dataset's reward models, comma-separated (their number is an ablation)")
    parser.add_argument("--n-prompts", type=int, default=DEFAULT_PROMPTS, help="prompts in the dataset")
    args = parser.parse_args(argv)
    args.seeds = parse_seeds(parser, args.seeds)
    args.methods = split_list(args.methods)
    args.benchmarks = split_list(args.benchmarks)
    args.rewards = tuple(split_list(args.rewards))
    if not 2 <= args.k <= len(GENERATOR_SAMPLERS):
        parser.error(f"--k must be between 2 and {len(GENERATOR_SAMPLERS)} (got {args.k})")
    small = [args.budget, args.n_prompts, *([args.limit] if args.limit is not None else [])]
    if min(small) < 1 or not (args.seeds and args.methods and args.benchmarks and args.rewards):
        parser.error("--budget, --n-prompts and --limit must be >= 1; --seeds, --methods, --benchmarks and "
                     "--rewards non-empty")
    return args


def main(argv: Sequence[str] | None = None, api: object | None = None, echo: Callable[[str], None] = print) -> int:
    args = _parse_args(argv)
    out: Path = args.out
    data = DataSpec(args.k, args.rewards, args.n_prompts)
    try:
        steps = plan(args.methods, args.seeds)
        if args.dry_run:
            built = (dataset_dir(out, data) / DATASET_RECORD).is_file()
            echo(f"{'done' if built else 'to do':6} {dataset_dir(out, data)}: dataset {data.describe()}")
            for step in steps:
                state = "done" if finished(out, data, step, args.budget, args.limit) is not None else "to do"
                echo(f"{state:6} {out / data.id / step.folder}: {METHODS[step.name].label}, seed {step.seed}, "
                     f"budget {args.budget} steps")
            return 0
        if not args.table_only:
            if api is None:
                import harness.api as api
            echo(f"data   {dataset_dir(out, data)}")
            build_dataset(out, data, api)
            for step in steps:
                if finished(out, data, step, args.budget, args.limit) is not None:
                    echo(f"skip   {data.id}/{step.folder} (finished)")
                    continue
                echo(f"run    {data.id}/{step.folder}")
                run_training(out, data, step, args.budget, args.benchmarks, api, store=args.store, limit=args.limit)
                _write_table(out, args)
        _write_table(out, args)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    echo(f"table: {out / 'table.md'}")
    return 0


def _write_table(out: Path, args: argparse.Namespace) -> None:
    atomic_write_text(out / "table.md", make_table(out, list(METHODS), args.seeds, args.benchmarks))


if __name__ == "__main__":
    raise SystemExit(main())
