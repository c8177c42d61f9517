"""Issue 13's table: D3PO against reward-model RL on ``builtin:shapes``, 3 training seeds, one budget of images.

Methods (``--methods``; every run samples the same ``--budget`` of training images from ``builtin:geneval-train``):

* ``d3po``: D3PO with GenEval correctness on the training prompts as the preference proxy, no reward model;
* ``ddpo-true``: DDPO with the true reward (the same GenEval correctness, as a scalar);
* ``ddpo-learned``: DDPO with a Bradley-Terry reward model trained on exactly the preferences the ``d3po`` run of
  the same seed used (its ``preferences.jsonl``): the D3PO paper's "RL with a reward model learned from the same
  labels";
* ``grpo-true``: GRPO with the true reward;
* ``dpok``: DPOK with the true reward.

Settings: every method trains with its builtin defaults plus the recipe of :data:`METHODS` (``--set`` overrides of
``harness train``), which is the recipe of the published runs: D3PO's (learning rate 3e-5, the first 60 % of the
10 sampling steps trained, all of a round's pairs in one optimiser step: ``/work/exp/d3po-s4-lr3e-5-tb4*``), and
the same learning rate and trained steps for the RL methods (``/work/exp/{grpo,ddpo,dpok}-rec-seed0``), whose
builtin defaults are lr 1e-4 on all steps. ``--set NAME:KEY=VALUE`` changes one method's setting (e.g.
``--set d3po:learning_rate=1e-5``); a finished run made with other settings is refused, not mixed.

Each fresh run calls :func:`harness.api.train_and_eval` on the first benchmark (with the reward-hacking monitor) and
:func:`harness.api.evaluate` on the others (base and trained checkpoint, same seeds); the reward model is
:func:`harness.api.train_reward`; this module imports nothing from ``trainers`` (``harness.api`` imports it
lazily). ``--adopt NAME-seedK=RUN_DIR`` takes a finished ``harness train`` folder instead of training: its
``summary.json`` must match the method, feedback, checkpoint, training prompts, seed, budget and the full config
(:func:`harness.api.method_config` of the method's settings; the older ``skip_final_steps`` field is read as the
``early_steps_fraction`` that trains the same steps), else it is refused with the first mismatch; the adopted
checkpoint is evaluated like a fresh one. Each finished step leaves ``<out>/<method>-seed<k>/table-record.json``
(written last, atomically) plus its result records under ``records/``; a step with that file is skipped, a
partial training folder resumes from its last save, so the script can be killed and restarted at any point. The
table (``<out>/table.md``) is rebuilt from whatever records exist.

Evaluation: GenEval is the full protocol (553 prompts x 4 images). T2I-CompBench's builtin protocol is 1800 prompts
x 10 images, about 25 minutes per model on 2 free cores and more than an hour on 2 busy ones, so by default
(``--subsample t2i-compbench=300``) it scores a subsample of 300 prompts spread evenly over its 6 categories, drawn
with ``--subsample-seed`` (0): the same prompts and image seeds for every model, so paired differences stay exact.
The records carry ``options.sample`` and a comparability reason; the table names the subsample in its columns.
``--subsample t2i-compbench=all`` runs the full protocol; ``--limit N`` (first N prompts of every benchmark) is for
smoke tests only.

Statistics, per method over the seeds it has finished: the mean score; per seed, the paired difference
d_k = trained_k - base (the base is evaluated on the same prompts and image seeds, so it is the same for every
seed); a 95 % t-interval of the mean difference, mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n) (sample sd, n - 1
degrees of freedom; undefined for n < 2); D3PO's share of the true-reward RL gain, mean(d_D3PO) / mean(d_RL); and
D3PO minus the learned-reward baseline, paired by seed (seed k's reward model learned from seed k's D3PO labels).
GenEval is *in-reward* for every ``objective:geneval`` run (the feedback uses GenEval's oracle and rule, on other
prompts), so its gain is not held-out evidence; T2I-CompBench is held out.

Budget: 640 images (40 rounds of 4 prompts x 4 images), the budget of every published builtin run. Measured
training wall time at 640 images on 2 cores shared with other experiments: D3PO 441 / 841 / 830 s (seeds 0-2),
GRPO 483 s, DDPO 596 s, DPOK 671 s (``summary.json`` ``cost.wall_s``); each evaluation of a trained model adds
about 13-17 min for GenEval (2212 images) on those busy cores, and the subsampled T2I-CompBench (3000 images) about
as much again.

The full table: all methods, seeds 0-2, 640 images, the seed-0 RL runs adopted rather than retrained (each passes
the adoption checks and was trained on oracle v3 feedback), and the image store those runs were evaluated in, so
their GenEval images and verdicts are reused::

    python -m benchmarks.tables.online_methods --out results/online-methods --store /work/exp/store \\
        --runs /work/exp/online-runs \\
        --adopt grpo-true-seed0=/work/exp/grpo-rec-seed0 \\
        --adopt ddpo-true-seed0=/work/exp/ddpo-rec-seed0 \\
        --adopt dpok-seed0=/work/exp/dpok-rec-seed0

The published D3PO runs (``/work/exp/d3po-s4-lr3e-5-tb4*``) pass the adoption checks too, but they were trained on
oracle v2 feedback (their feedback scorer says ``oracle@2``) and the RL runs on v3, so the table retrains D3PO: every
method then learns from the same judge. Adopting runs trained on different judges is allowed (``--adopt``), and the
table then names each row's training scorer; every evaluation uses one scorer for every model.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.tables import common
from benchmarks.tables.common import BENCHMARKS, CKPT, PROMPTS, RECORD
from harness.errors import HarnessError
from harness.store import atomic_write_json

DEFAULT_BUDGET = 640
MONITOR_EVERY = 32  # rounds between held-out measurements: round 0, 32 and the last (40) at the default budget
TRUE_REWARD = "objective:geneval"
DEFAULT_SUBSAMPLE = {"t2i-compbench": 300}  # prompts; 50 per category of 1800
SUMMARY = "summary.json"  # what `harness train` writes last in a run folder

# The published recipe (module docstring): D3PO's builtin defaults spelled out, so a later change of a default cannot
# silently change a row, and the same learning rate and trained steps for the RL methods.
RECIPE = (("learning_rate", "3e-5"), ("early_steps_fraction", "0.6"))
# train_batch_size 4: D3PO's recipe (a round's 4 prompt groups in one step), DDPO's and GRPO's builtin default too
BATCHED = (*RECIPE, ("train_batch_size", "4"))


@dataclass(frozen=True)
class MethodSpec:
    """One row of the table: which trainer, on which feedback (``{reward_model}`` is seed k's learned model), with
    which ``--set`` settings."""

    name: str
    method: str
    feedback: str
    label: str
    settings: tuple[tuple[str, str], ...] = field(default=())


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("d3po", "d3po", TRUE_REWARD, "D3PO (preferences from GenEval correctness, no reward model)", BATCHED),
    MethodSpec("ddpo-true", "ddpo", TRUE_REWARD, "DDPO, true reward", BATCHED),
    MethodSpec("ddpo-learned", "ddpo", "reward:{reward_model}", "DDPO, reward model learned from D3PO's labels",
               BATCHED),
    MethodSpec("grpo-true", "grpo", TRUE_REWARD, "GRPO, true reward", BATCHED),
    MethodSpec("dpok", "dpok", TRUE_REWARD, "DPOK, true reward", RECIPE),
    # D3PO with 8 images per prompt (28 pairs each) and 2 prompts per round: the same 640 images and 40 optimiser
    # steps, twice the strict pairs of the recipe's 4 x 6 (docs/training-results.md, "What moves D3PO"); not a
    # baseline's recipe, so the learned-reward comparison (trained on the "d3po" row's labels) stays with that row.
    MethodSpec("d3po-k8", "d3po", TRUE_REWARD, "D3PO, 8 images per prompt (2 per round)",
               (*RECIPE, ("images_per_prompt", "8"), ("prompts_per_round", "2"), ("train_batch_size", "2"))),
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


@dataclass
class Protocol:
    """What every run of one table shares: the budget, each method's settings and each benchmark's evaluation
    (``limit``: first N prompts; ``sample``: a seeded subsample of N prompts spread over the tags)."""

    budget: int
    settings: dict[str, dict[str, str]]
    evaluation: dict[str, dict]

    def method_settings(self, name: str) -> dict[str, str]:
        return self.settings.get(name, dict(METHODS[name].settings))


def make_protocol(budget: int, benchmarks: Sequence[str], overrides: dict[str, dict[str, str]] | None = None,
                  subsample: dict[str, int | None] | None = None, limit: int | None = None,
                  subsample_seed: int = 0) -> Protocol:
    """Each method's recipe with ``overrides`` applied; each benchmark's limit and subsample (``subsample`` None:
    :data:`DEFAULT_SUBSAMPLE`; a benchmark mapped to None is evaluated in full)."""
    overrides = overrides or {}
    settings = {name: {**dict(spec.settings), **overrides.get(name, {})} for name, spec in METHODS.items()}
    evaluation = common.evaluation_plan(benchmarks, limit, {**DEFAULT_SUBSAMPLE, **(subsample or {})}, subsample_seed)
    return Protocol(budget, settings, evaluation)


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


def finished(out: Path, step: Step, protocol: Protocol) -> dict | None:
    """The step's record if it finished under this protocol; None if it has not finished. A record made with
    another budget, other settings or another evaluation is an error: one table compares runs of one protocol."""
    path = out / step.folder / RECORD
    record = common.read_json(path)
    if record is None:
        return None
    if record.get("budget") != protocol.budget:
        raise HarnessError(f"{path} was made with --budget {record.get('budget')}, not {protocol.budget}; use that "
                           "budget or another --out")
    if step.kind != "train":
        return record
    wanted = protocol.method_settings(step.name)
    if record.get("settings") != wanted:
        raise HarnessError(f"{path} was trained with settings {_settings_text(record.get('settings'))}, not "
                           f"{_settings_text(wanted)}; use the same --set or another --out")
    common.check_evaluation(path, record.get("evaluation", {}), protocol.evaluation)
    return record


def _settings_text(settings: dict | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((settings or {}).items())) or "(defaults)"


def reward_model_dir(out: Path, seed: int) -> Path:
    return out / Step("reward-model", "reward-model", seed).folder / "model"


def _feedback(out: Path, step: Step) -> str:
    return METHODS[step.name].feedback.format(reward_model=reward_model_dir(out, step.seed))


# --- adopting a finished training folder ---------------------------------------------------------------------------


def parse_adopt(texts: Sequence[str]) -> dict[str, Path]:
    """``NAME-seedK=RUN_DIR`` flags as {step folder: run folder}; a malformed one is a one-line error."""
    adopted: dict[str, Path] = {}
    for text in texts:
        key, sep, folder = text.partition("=")
        name, _, seed = key.strip().rpartition("-seed")
        if not sep or not folder.strip() or name not in METHODS or not seed.isdigit():
            raise HarnessError(f"--adopt {text!r}: expected NAME-seedK=RUN_DIR with NAME one of {', '.join(METHODS)}, "
                               "e.g. d3po-seed0=/work/exp/d3po-s4-lr3e-5-tb4")
        if key.strip() in adopted:
            raise HarnessError(f"--adopt {key.strip()} given twice")
        adopted[key.strip()] = Path(folder.strip()).expanduser()
    return adopted


def _same(a: object, b: object) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool | str):
        return a == b or math.isclose(a, b, rel_tol=1e-9)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def config_mismatch(run: dict, expected: dict) -> tuple[str | None, list[str]]:
    """The first difference between a run's recorded config and the expected one (None: none), and notes on
    legacy fields read. ``skip_final_steps`` = s (the field before ``early_steps_fraction``; trains the first T - s
    of T steps) matches an ``early_steps_fraction`` f that trains the same ceil(T * f) steps."""
    run, notes = dict(run), []
    if "skip_final_steps" in run and "early_steps_fraction" not in run and "early_steps_fraction" in expected:
        skip, total = run.pop("skip_final_steps"), run.get("num_inference_steps")
        fraction = expected["early_steps_fraction"]
        if not isinstance(skip, int) or not isinstance(total, int):
            return f"unreadable skip_final_steps={skip!r} or num_inference_steps={total!r}", notes
        trained = max(1, math.ceil(total * fraction - 1e-9))
        if total - skip != trained:
            return (f"skip_final_steps={skip} trains {total - skip} of {total} steps, the table's "
                    f"early_steps_fraction={fraction} trains {trained}"), notes
        run["early_steps_fraction"] = fraction
        notes.append(f"legacy skip_final_steps={skip} read as early_steps_fraction={fraction} (the first {trained} "
                     f"of {total} steps)")
    for key in sorted(set(run) | set(expected)):
        if key not in expected:
            return f"config has {key}={run[key]!r}, which today's method does not know", notes
        if key not in run:
            return f"config lacks {key} (the table's is {expected[key]!r})", notes
        if not _same(run[key], expected[key]):
            return f"config {key}={run[key]!r}, the table's is {expected[key]!r}", notes
    return None, notes


def check_adoption(run_dir: Path, step: Step, protocol: Protocol, feedback: str, expected_config: dict
                   ) -> tuple[dict, list[str]]:
    """The run's summary and notes when ``run_dir`` is a finished run of exactly this step; else a one-line
    HarnessError naming the first mismatch."""
    where = f"--adopt {step.folder}={run_dir}"
    summary_path = run_dir / SUMMARY
    if not summary_path.is_file():
        raise HarnessError(f"{where}: no {SUMMARY} (not a finished `harness train` folder)")
    summary = common.read_json(summary_path)
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise HarnessError(f"{where}: {SUMMARY} is not a training summary (no config)")
    spec = METHODS[step.name]
    per_round = summary["config"].get("images_per_prompt", 0) * summary["config"].get("prompts_per_round", 0)
    for what, have, want in (("method", summary.get("method"), spec.method), ("feedback", summary.get("feedback"),
                             feedback), ("ckpt", summary.get("ckpt"), CKPT), ("prompts", summary.get("prompts"),
                             PROMPTS), ("seed", summary.get("seed"), step.seed),
                             ("budget", summary.get("budget"), protocol.budget),
                             ("rounds", summary.get("rounds"), protocol.budget // per_round if per_round else None)):
        if have != want:
            raise HarnessError(f"{where}: {what} is {have!r}, the table's is {want!r}")
    problem, notes = config_mismatch(summary["config"], expected_config)
    if problem:
        raise HarnessError(f"{where}: {problem}; adopt a run of the table's recipe or change it with "
                           f"--set {step.name}:KEY=VALUE")
    if not (run_dir / "checkpoint").is_dir():
        raise HarnessError(f"{where}: no checkpoint/ folder")
    return summary, notes


# --- running the steps ---------------------------------------------------------------------------------------------


def run_reward_model(out: Path, step: Step, protocol: Protocol, api: object) -> dict:
    """Train seed k's reward model on the preferences of the finished ``d3po`` run of seed k (adopted or not)."""
    source = Step("train", "d3po", step.seed)
    record = finished(out, source, protocol)
    if record is None:
        raise HarnessError(f"the reward model of seed {step.seed} learns from {source.folder}, which has not finished; "
                           "include d3po in --methods")
    pairs = Path(record["run_dir"]) / "preferences.jsonl"
    if not pairs.is_file():
        raise HarnessError(f"{pairs} is missing: the d3po run of seed {step.seed} wrote no preferences")
    metrics = api.train_reward(pairs, reward_model_dir(out, step.seed), world="builtin", seed=step.seed,
                               overwrite=True)
    n_pairs = sum(1 for line in pairs.read_text().splitlines() if line.strip())
    result = {"step": step.folder, "budget": protocol.budget, "pairs": str(pairs), "n_pairs": n_pairs,
              "metrics": metrics}
    atomic_write_json(out / step.folder / RECORD, result)
    return result


def _evaluate_pair(api: object, checkpoint: Path, bench: str, protocol: Protocol, store: Path,
                   progress: bool) -> list:
    """Base and trained checkpoint on one benchmark, same prompts and seeds; the trained record takes its method
    and training block from the run's summary beside the checkpoint."""
    settings = common.eval_settings(api, protocol.evaluation[bench])
    return [*api.evaluate(CKPT, [bench], out=store, settings=settings, progress=progress),
            *api.evaluate(str(checkpoint), [bench], out=store, settings=settings, progress=progress)]


def run_training(out: Path, step: Step, protocol: Protocol, benchmarks: Sequence[str], api: object,
                 progress: bool = True, store: Path | None = None, adopt: Path | None = None,
                 runs: Path | None = None) -> dict:
    """Train (or adopt) and evaluate one (method, seed); writes its result records and, last, its table record.
    The training folder is ``<runs>/<method>-seed<k>`` (default ``<out>/<method>-seed<k>/run``)."""
    spec = METHODS[step.name]
    feedback = _feedback(out, step)
    settings = protocol.method_settings(step.name)
    folder = out / step.folder
    store = store or out / "store"
    started = time.monotonic()
    notes: list[str] = []
    if adopt is not None:
        run_dir = adopt
        _, notes = check_adoption(run_dir, step, protocol, feedback, api.method_config(spec.method, CKPT, settings))
        records = []
        for bench in benchmarks:
            records += _evaluate_pair(api, run_dir / "checkpoint", bench, protocol, store, progress)
    else:
        run_dir = runs / step.folder if runs is not None else folder / "run"
        resume = run_dir.is_dir() and any(run_dir.iterdir())
        first, *others = benchmarks
        records = list(api.train_and_eval(spec.method, CKPT, feedback, PROMPTS, protocol.budget, run_dir, [first],
                                          eval_settings=common.eval_settings(api, protocol.evaluation[first]),
                                          monitor_every=MONITOR_EVERY, seed=step.seed, settings=settings,
                                          resume=resume, eval_out=store, progress=progress))
        for bench in others:
            records += _evaluate_pair(api, run_dir / "checkpoint", bench, protocol, store, progress)
    scores, saved, training = common.save_records(records, folder, out)
    summary = common.read_json(run_dir / SUMMARY) or {}
    evaluation = {b: {**protocol.evaluation[b]} for b in benchmarks}
    n_prompts = {r.benchmark: r.n_prompts for r in records if r.training}
    result = {"step": step.folder, "method": spec.method, "name": spec.name, "feedback": feedback,
              "seed": step.seed, "budget": protocol.budget, "settings": settings, "config": summary.get("config"),
              "evaluation": evaluation, "n_prompts": n_prompts, "ckpt": CKPT, "prompts": PROMPTS,
              "run_dir": str(run_dir), "adopted_from": str(adopt) if adopt is not None else None,
              "feedback_scorer": summary.get("feedback_scorer"), "notes": notes, "scores": scores,
              "cost": training.get("cost", {}), "rounds": training.get("rounds"),
              "monitor_warnings": (training.get("monitor") or {}).get("warnings", []),
              "wall_s_with_eval": round(time.monotonic() - started, 1), "records": saved}
    atomic_write_json(folder / RECORD, result)
    return result


# --- the table -----------------------------------------------------------------------------------------------------


def load_records(out: Path, methods: Sequence[str], seeds: Sequence[int], protocol: Protocol
                 ) -> dict[str, list[dict]]:
    """Finished training records by method, in seed order (unfinished seeds are left out)."""
    runs: dict[str, list[dict]] = {}
    for name in methods:
        if name not in METHODS:
            continue
        runs[name] = [r for seed in seeds if (r := finished(out, Step("train", name, seed), protocol)) is not None]
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
    labels = {b: common.bench_label(b, all_runs) for b in benchmarks}
    lines = [f"# Online methods on {CKPT}: {', '.join(benchmarks)}", "",
             f"Budget: {budget if budget is not None else all_runs[0]['budget']} sampled training images per run; "
             f"training prompts {PROMPTS}; scores in points (0-100). Delta = trained - base, mean over seeds with a "
             "95 % t-interval of the paired difference in brackets.", ""]
    entries = {b: next((r["evaluation"][b] for r in all_runs if b in r.get("evaluation", {})), {}) for b in benchmarks}
    lines += ["Evaluation:", *(common.evaluation_line(b, entry) for b, entry in entries.items()), ""]
    for b, values in bases.items():
        if any(v != values[0] for v in values):
            lines += [f"**Warning**: the base {b} scores differ between runs (evaluation not deterministic?); "
                      "the first run's base is shown.", ""]
    header = ["method", "seeds", f"{labels[primary]} overall", f"{primary} delta", f"{primary} per seed"]
    header += [f"{primary} {t}" for t in tags]
    for b in benchmarks[1:]:
        header += [f"{labels[b]} overall", f"{b} delta"]
    header += ["train wall (min)", "peak memory (MB)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base_row = ["base", "-", common.points(base.get(primary, {}).get("overall")), "", ""]
    base_row += [common.points(base.get(primary, {}).get(t)) for t in tags]
    for b in benchmarks[1:]:
        base_row += [common.points(base.get(b, {}).get("overall")), ""]
    lines.append("| " + " | ".join([*base_row, "", ""]) + " |")
    for name, rs in runs.items():
        if not rs:
            continue
        spec = METHODS[name]
        in_reward = any(r["scores"].get(primary, {}).get("in_reward") for r in rs)
        diffs = _diffs(rs, primary)
        row = [spec.label + (" *(GenEval in-reward)*" if in_reward else ""), ",".join(str(r["seed"]) for r in rs),
               common.points(common.mean_finite([r["scores"][primary]["trained"]["overall"] for r in rs
                                                 if primary in r["scores"]])),
               common.t_interval(list(diffs.values())).text() if diffs else "",
               " / ".join(common.points(r["scores"][primary]["trained"]["overall"]) for r in rs
                          if primary in r["scores"])]
        row += [common.points(common.mean_finite([r["scores"][primary]["trained"].get(t, math.nan) for r in rs
                                                  if primary in r["scores"]])) for t in tags]
        for b in benchmarks[1:]:
            d = _diffs(rs, b)
            row += [common.points(common.mean_finite([r["scores"][b]["trained"]["overall"] for r in rs
                                                      if b in r["scores"]])),
                    common.t_interval(list(d.values())).text() if d else ""]
        row += [f"{common.mean_finite([r['cost'].get('wall_s', math.nan) for r in rs]) / 60:.1f}",
                f"{common.mean_finite([r['cost'].get('peak_memory_mb', math.nan) for r in rs]):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *settings_notes(runs), *comparisons(runs, benchmarks)]
    return "\n".join(lines) + "\n"


def _scorer(record: dict) -> str:
    perception = (record.get("feedback_scorer") or {}).get("perception") or {}
    return ", ".join(sorted(set(map(str, perception.values())))) or "unknown"


def settings_notes(runs: dict[str, list[dict]]) -> list[str]:
    """Each row's settings, the runs adopted rather than trained here, and the training scorer when rows differ."""
    out = ["## Settings and provenance", ""]
    for name, rs in runs.items():
        if rs:
            out.append(f"- {METHODS[name].label}: `--set {_settings_text(rs[0].get('settings'))}`")
    for rs in runs.values():
        for r in rs:
            if r.get("adopted_from"):
                extra = "; ".join(r.get("notes") or [])
                out.append(f"- {r['step']}: adopted from `{r['adopted_from']}` (training feedback scored with "
                           f"{_scorer(r)}{'; ' + extra if extra else ''})")
    scorers: dict[str, list[str]] = {}
    for rs in runs.values():
        for r in rs:
            if r.get("feedback", "").startswith("objective:"):
                scorers.setdefault(_scorer(r), []).append(r["step"])
    if len(scorers) > 1:
        out.append("- **Note**: the objective feedback of these runs was scored by different oracle versions: "
                   + "; ".join(f"{s}: {', '.join(steps)}" for s, steps in sorted(scorers.items()))
                   + ". The evaluation uses one scorer for every model.")
    return [*out, ""]


def comparisons(runs: dict[str, list[dict]], benchmarks: Sequence[str]) -> list[str]:
    """The paper's claims, per benchmark: D3PO's share of the true-reward RL gain, and D3PO vs the learned-reward
    baseline paired by seed."""
    out = ["## D3PO against RL", ""]
    rows = [name for name, rs in runs.items() if rs and METHODS[name].method == "d3po"]
    if not rows:
        return [*out, "No finished D3PO runs yet.", ""]
    for b in benchmarks:
        for row in rows:
            mine = _diffs(runs[row], b)
            if not mine:
                continue
            gain = common.t_interval(list(mine.values()))
            verdict = "excludes 0" if gain.excludes_zero else "includes 0" if gain.n >= 2 else "needs 2+ seeds"
            out.append(f"- {b}: {METHODS[row].label.split(' (')[0] if row == 'd3po' else METHODS[row].label} gain "
                       f"{gain.text()} points (95 % interval {verdict}).")
            for name in RL_TRUE:
                theirs = _diffs(runs.get(name, []), b)
                if theirs:
                    rl = statistics.fmean(theirs.values())
                    share = f"{gain.mean / rl:.0%}" if rl > 0 else "undefined (no RL gain)"
                    out.append(f"  - share of the {METHODS[name].label} gain ({rl * 100:+.1f}): {share}")
            learned = _diffs(runs.get("ddpo-learned", []), b) if row == "d3po" else {}
            paired = [mine[s] - learned[s] for s in sorted(mine.keys() & learned.keys())]
            if paired:
                out.append(f"  - D3PO - {METHODS['ddpo-learned'].label}, paired by seed: "
                           f"{common.t_interval(paired).text()} points")
    return [*out, ""]


# --- command line --------------------------------------------------------------------------------------------------


def parse_sets(texts: Sequence[str]) -> dict[str, dict[str, str]]:
    """``--set NAME:KEY=VALUE`` flags as {method name: {key: value}}; a malformed one is a one-line error."""
    result: dict[str, dict[str, str]] = {}
    for text in texts:
        name, colon, assignment = text.partition(":")
        key, equals, value = assignment.partition("=")
        if not colon or not equals or not key.strip() or name.strip() not in METHODS:
            raise HarnessError(f"--set {text!r}: expected NAME:KEY=VALUE with NAME one of {', '.join(METHODS)}, "
                               "e.g. d3po:learning_rate=1e-5")
        result.setdefault(name.strip(), {})[key.strip()] = value.strip()
    return result


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common.table_parser("online_methods", __doc__, "results/online-methods", DEFAULT_BUDGET,
                                 "sampled training images per run (default 640)", subsample=DEFAULT_SUBSAMPLE)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="first one is the table's primary")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME:KEY=VALUE",
                        help="one method's training setting (harness train --set), e.g. d3po:learning_rate=1e-5")
    parser.add_argument("--runs", type=Path, default=None,
                        help="folder of the training runs (checkpoints, sampled images: ~60 MB each; default "
                             "<out>/<method>-seed<k>/run); keep it out of git")
    parser.add_argument("--adopt", action="append", default=[], metavar="NAME-seedK=RUN_DIR",
                        help="use this finished `harness train` folder for that run instead of training it")
    return common.parse_table_args(parser, argv, lists=("methods", "benchmarks"))


def _protocol(args: argparse.Namespace) -> Protocol:
    return make_protocol(args.budget, args.benchmarks, parse_sets(args.sets),
                         common.parse_subsample(args.subsample, args.benchmarks), args.limit, args.subsample_seed)


def _what(out: Path, step: Step, protocol: Protocol, adopted: dict[str, Path]) -> str:
    """The step's plan line."""
    if step.kind == "train":
        what = (f"{METHODS[step.name].method} on {_feedback(out, step)} "
                f"--set {_settings_text(protocol.method_settings(step.name))}")
        if step.folder in adopted:
            what += f", from {adopted[step.folder]}"
    else:
        what = f"Bradley-Terry reward model on the preferences of d3po-seed{step.seed}"
    return f"{what}, seed {step.seed}, budget {protocol.budget}"


def _run_step(args: argparse.Namespace, step: Step, protocol: Protocol, adopt: Path | None, api: object) -> dict:
    if step.kind == "reward-model":
        return run_reward_model(args.out, step, protocol, api)
    return run_training(args.out, step, protocol, args.benchmarks, api, store=args.store, adopt=adopt, runs=args.runs)


def _plan(args: argparse.Namespace, api: object) -> common.Plan:
    """The steps, after every check that needs no training: the protocol and --set values (a bad --set fails in
    :func:`harness.api.method_config`), and each --adopt folder against its step."""
    out: Path = args.out
    protocol = _protocol(args)
    steps = plan(args.methods, args.seeds)
    adopted = parse_adopt(args.adopt)
    stray = sorted(set(adopted) - {s.folder for s in steps if s.kind == "train"})
    if stray:
        raise HarnessError(f"--adopt {stray[0]}: not a run of this table (check --methods and --seeds)")
    configs = {name: api.method_config(METHODS[name].method, CKPT, protocol.method_settings(name))
               for name in args.methods}
    for step in steps:
        if step.folder in adopted and finished(out, step, protocol) is None:
            check_adoption(adopted[step.folder], step, protocol, _feedback(out, step), configs[step.name])
    planned = [common.PlannedStep(out / step.folder, _what(out, step, protocol, adopted),
                                  partial(finished, out, step, protocol),
                                  partial(_run_step, args, step, protocol, adopted.get(step.folder)),
                                  adopt=step.folder in adopted) for step in steps]
    notes = ["evaluation: " + "; ".join(f"{b} {common.eval_text(e)}" for b, e in protocol.evaluation.items())]
    return common.Plan(planned, partial(_table, args, protocol), notes)


def _table(args: argparse.Namespace, protocol: Protocol) -> str:
    return make_table(load_records(args.out, args.methods, args.seeds, protocol), args.benchmarks, protocol.budget)


def main(argv: Sequence[str] | None = None, api: object | None = None, echo: Callable[[str], None] = print) -> int:
    args = _parse_args(argv)
    if api is None:
        import harness.api as api
    return common.run_steps(args.out, partial(_plan, args, api), args.dry_run, args.table_only, api, echo)


if __name__ == "__main__":
    raise SystemExit(main())
