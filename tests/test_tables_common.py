"""What the experiment-table scripts share (``benchmarks.tables.common``): the run loop behind --dry-run and
--table-only, the shared flags (--subsample among them), the evaluation protocol a record keeps, and that folders
the table scripts wrote before the run loop was shared (commit 14b457c; the human-feedback experiments running now
use that code) still count as finished, so those runs resume under this code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.tables import common, human_feedback, offline_methods, online_methods
from harness.errors import HarnessError

# --- statistics --------------------------------------------------------------------------------------------------


def test_t_interval_by_hand():
    interval = common.t_interval([0.06, 0.08, 0.07])
    # mean 0.07, sd 0.01, t_{0.975,2} = 4.302653
    assert interval.mean == pytest.approx(0.07)
    assert interval.high - interval.mean == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-5)
    assert interval.excludes_zero
    single = common.t_interval([0.05])
    assert single.n == 1 and not single.excludes_zero and "n=1" in single.text()


# --- run_steps ---------------------------------------------------------------------------------------------------


def toy_plan(out: Path, ran: list[str], fail: str | None = None, adopt: str | None = None) -> common.Plan:
    """Three steps whose record is ``<out>/<name>/table-record.json``; running one appends its name to ``ran``
    and writes the record, unless it is ``fail`` (a HarnessError, as a refused input would be)."""

    def finished(name: str) -> dict | None:
        return common.read_json(out / name / common.RECORD)

    def run(name: str, api: object) -> None:
        assert api == "api"
        ran.append(name)
        if name == fail:
            raise HarnessError(f"{name} refused")
        (out / name).mkdir(parents=True)
        (out / name / common.RECORD).write_text(json.dumps({"step": name}))

    steps = [common.PlannedStep(out / name, f"work {name}", lambda n=name: finished(n),
                                lambda api, n=name: run(n, api), adopt=name == adopt) for name in ("a", "b/c", "d")]
    done = ("a", "b/c", "d")
    return common.Plan(steps, lambda: "finished: " + ",".join(n for n in done if finished(n) is not None) + "\n",
                       notes=["evaluation: all"])


def test_dry_run_prints_each_step_state_and_writes_nothing(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / common.RECORD).write_text("{}")
    lines: list[str] = []
    ran: list[str] = []
    code = common.run_steps(tmp_path, lambda: toy_plan(tmp_path, ran, adopt="d"), dry_run=True, api="api",
                            echo=lines.append)
    assert code == 0 and ran == []
    assert lines == [f"done   {tmp_path / 'a'}: work a", f"to do  {tmp_path / 'b/c'}: work b/c",
                     f"adopt  {tmp_path / 'd'}: work d", "evaluation: all"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_steps_run_in_order_skip_finished_and_rebuild_the_table(tmp_path: Path):
    ran: list[str] = []
    lines: list[str] = []
    assert common.run_steps(tmp_path, lambda: toy_plan(tmp_path, ran, adopt="d"), api="api", echo=lines.append) == 0
    assert ran == ["a", "b/c", "d"]
    assert lines == ["run    a", "run    b/c", "adopt  d", f"table: {tmp_path / 'table.md'}"]
    assert (tmp_path / "table.md").read_text() == "finished: a,b/c,d\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]  # no temp file left
    again: list[str] = []
    lines.clear()
    assert common.run_steps(tmp_path, lambda: toy_plan(tmp_path, again), api="api", echo=lines.append) == 0
    assert again == [] and lines[:3] == ["skip   a (finished)", "skip   b/c (finished)", "skip   d (finished)"]


def test_table_only_rebuilds_without_running(tmp_path: Path):
    ran: list[str] = []
    lines: list[str] = []
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / common.RECORD).write_text("{}")
    assert common.run_steps(tmp_path, lambda: toy_plan(tmp_path, ran), table_only=True, echo=lines.append) == 0
    assert ran == [] and lines == [f"table: {tmp_path / 'table.md'}"]
    assert (tmp_path / "table.md").read_text() == "finished: d\n"


def test_a_harness_error_is_one_line_and_exit_2_and_the_table_keeps_what_finished(tmp_path: Path, capsys):
    ran: list[str] = []
    assert common.run_steps(tmp_path, lambda: toy_plan(tmp_path, ran, fail="b/c"), api="api", echo=print) == 2
    assert ran == ["a", "b/c"] and capsys.readouterr().err == "error: b/c refused\n"
    assert (tmp_path / "table.md").read_text() == "finished: a\n"  # written after step a, before the failure

    def bad_plan() -> common.Plan:
        raise HarnessError("--set nonsense")

    assert common.run_steps(tmp_path / "other", bad_plan) == 2
    assert capsys.readouterr().err == "error: --set nonsense\n" and not (tmp_path / "other").exists()


def test_a_killed_step_is_not_caught(tmp_path: Path):
    def killed(api: object) -> None:
        raise KeyboardInterrupt

    def plan() -> common.Plan:
        return common.Plan([common.PlannedStep(tmp_path / "x", "x", lambda: None, killed)], lambda: "")

    with pytest.raises(KeyboardInterrupt):
        common.run_steps(tmp_path, plan, api="api")


# --- flags and the evaluation protocol ---------------------------------------------------------------------------


def test_subsample_flags_only_where_a_table_takes_them():
    with_flags = common.table_parser("t", None, "results/t", 5, "budget", subsample={"t2i-compbench": 300})
    args = common.parse_table_args(with_flags, ["--out", "o", "--subsample", "geneval=10", "--subsample-seed", "3"])
    assert args.subsample == ["geneval=10"] and args.subsample_seed == 3 and args.seeds == [0, 1, 2]
    assert "default t2i-compbench=300" in " ".join(with_flags.format_help().split())
    full = common.table_parser("t", None, "o", 5, "b", subsample={}).format_help()
    assert "default none: every benchmark in full" in " ".join(full.split())
    without = common.table_parser("t", None, "results/t", 5, "budget")
    with pytest.raises(SystemExit):
        without.parse_args(["--out", "o", "--subsample", "geneval=10"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--budget", "0"], "--budget must be >= 1 (got 0)"),
    (["--limit", "0", "--n-prompts", "-1"], "--n-prompts must be >= 1 (got -1); --limit must be >= 1 (got 0)"),
    (["--seeds", " , "], "--seeds must not be empty"),
    (["--methods", ","], "--methods must not be empty"),
    (["--seeds", "0,x"], "--seeds '0,x': expected comma-separated integers"),
])
def test_bad_shared_flags_are_one_usage_error(argv: list[str], message: str, capsys):
    parser = common.table_parser("t", None, "results/t", 5, "budget")
    parser.add_argument("--methods", default="a,b")
    parser.add_argument("--n-prompts", type=int, default=3)
    with pytest.raises(SystemExit) as exit_info:
        common.parse_table_args(parser, ["--out", "o", *argv], lists=("methods",),
                                positive=("budget", "n_prompts", "limit"))
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    args = common.parse_table_args(parser, ["--out", "o", "--methods", " a, ,b "], lists=("methods",))
    assert args.methods == ["a", "b"]


def test_evaluation_plan_and_how_records_are_compared(tmp_path: Path):
    plan = common.evaluation_plan(["geneval", "t2i-compbench"], None, common.parse_subsample(
        ["t2i-compbench=300"], ["geneval", "t2i-compbench"]), 7)
    assert plan == {"geneval": {"limit": None, "sample": None, "sample_seed": None},
                    "t2i-compbench": {"limit": None, "sample": 300, "sample_seed": 7}}
    assert common.eval_text(plan["t2i-compbench"]) == "a subsample of 300 (seed 7)"
    assert common.eval_text({"limit": 5, "sample": None}) == "limit 5"
    assert common.eval_text(plan["geneval"]) == "the full protocol"

    class Api:
        @staticmethod
        def EvalSettings(**kwargs):  # stands in for the class
            return kwargs

    assert common.eval_settings(Api, plan["geneval"]) == {"limit": None, "sample": None, "sample_seed": 0}
    assert common.eval_settings(Api, plan["t2i-compbench"]) == {"limit": None, "sample": 300, "sample_seed": 7}
    common.check_evaluation(tmp_path, {"geneval": plan["geneval"]}, plan)  # a benchmark not in the record: fine
    with pytest.raises(HarnessError, match="evaluated t2i-compbench with the full protocol, not a subsample of 300"):
        common.check_evaluation(tmp_path, {"t2i-compbench": plan["geneval"]}, plan)
    runs = [{"evaluation": plan, "n_prompts": {"t2i-compbench": 298}}]
    assert common.bench_label("t2i-compbench", runs) == "t2i-compbench (298-prompt subsample)"
    assert common.bench_label("geneval", runs) == "geneval"
    assert common.bench_label("geneval", [{}]) == "geneval"  # a record from before the field existed
    assert common.evaluation_line("geneval", {"limit": 4, "sample": None}).startswith("- geneval: **smoke test**")
    for bad in ("geneval", "dpg-bench=10", "geneval=0", "geneval=x"):
        with pytest.raises(HarnessError, match="BENCH=N"):
            common.parse_subsample([bad], ["geneval", "t2i-compbench"])


# --- folders written before the run loop was shared --------------------------------------------------------------
# Each table record below is what that script wrote at commit 14b457c (every key, in its order; scores cut to two
# tags), made by running that code against the fake harness.api of its test module.

SCORES = {"geneval": {"base": {"overall": 0.4}, "trained": {"overall": 0.46}, "in_reward": True},
          "t2i-compbench": {"base": {"overall": 0.5}, "trained": {"overall": 0.51}, "in_reward": False}}
ONLINE_D3PO_SEED0 = {
    "step": "d3po-seed0", "method": "d3po", "name": "d3po", "feedback": "objective:geneval", "seed": 0, "budget": 64,
    "settings": {"learning_rate": "3e-5", "early_steps_fraction": "0.6", "train_batch_size": "4"},
    "config": {"num_inference_steps": 10, "learning_rate": 3e-05, "early_steps_fraction": 0.6, "train_batch_size": 4},
    "evaluation": {"geneval": {"limit": None, "sample": None, "sample_seed": None},
                   "t2i-compbench": {"limit": None, "sample": 300, "sample_seed": 0}},
    "n_prompts": {"geneval": 553, "t2i-compbench": 300}, "ckpt": "builtin:shapes", "prompts": "builtin:geneval-train",
    "run_dir": "RUN", "adopted_from": None, "feedback_scorer": {"perception": {"detector": "oracle@3"}}, "notes": [],
    "scores": SCORES, "cost": {"wall_s": 600.0, "peak_memory_mb": 900.0}, "rounds": 4, "monitor_warnings": [],
    "wall_s_with_eval": 0.0, "records": ["d3po-seed0/records/geneval-base.json"]}
OFFLINE_DATA_ID = "k4-r3-n3-6abe9c"
OFFLINE_DATASET = {
    "k": 4, "rewards": ["objective:geneval-partial", "objective:counting-error", "objective:distorted"], "n_prompts": 3,
    "samplers": ["steps=10,guidance=2.0", "steps=10,guidance=4.0", "steps=20,guidance=3.0",
                 "steps=10,guidance=2.0,eta=1.0"],
    "ckpt": "builtin:shapes", "prompts": "builtin:geneval-train", "seed": 0, "id": OFFLINE_DATA_ID, "rows": 3,
    "skipped": {}, "build_cost": {"images_generated": 12, "scores_computed": 36, "wall_s": 60.0}}
OFFLINE_RANKDPO_SEED0 = {
    "step": "rankdpo-seed0", "name": "rankdpo", "method": "rankdpo", "settings": {}, "seed": 0, "budget": 5,
    "limit": None, "data": OFFLINE_DATA_ID, "scores": SCORES, "cost": {"wall_s": 120.0, "images_seen": 160},
    "steps": 5, "wall_s_with_eval": 0.0, "records": [f"{OFFLINE_DATA_ID}/rankdpo-seed0/records/geneval-base.json"]}
HF_SCORES = {"distortion": {"overall": 0.375, "n_judged": 32.0, "n_flagged": 12.0}, "geneval": {"overall": 0.5}}
HF_BASE = {"step": "distortion/base", "experiment": "distortion", "ckpt": "builtin:shapes", "limit": None,
           "scores": HF_SCORES, "records": ["records/distortion-base-distortion.json"], "wall_s": 0.3}
PAIRED = {"delta": -0.125, "low95": -0.28125, "high95": 0.0, "p": 0.125, "test": "McNemar"}
HF_SEED0 = {
    "step": "distortion/d3po-seed0", "experiment": "distortion", "method": "d3po",
    "feedback": "simulated:distortion?noise=0.1&seed=0", "prompts": "builtin:distortion-train", "seed": 0,
    "budget": 960, "limit": None, "ckpt": "builtin:shapes", "scores": HF_SCORES,
    "paired": {"distortion": {**PAIRED, "in_reward": True}, "geneval": {**PAIRED, "in_reward": False}},
    "overlap": {"exact_total": 0}, "cost": {"wall_s": 600.0}, "rounds": 60, "wall_s_with_eval": 1.3,
    "records": ["records/distortion-d3po-seed0-distortion.json"]}


class NoRuns:
    """A harness.api that must not be asked to run anything (the online script checks --set values with it)."""

    @staticmethod
    def method_config(method: str, ckpt: str, settings: dict) -> dict:
        return {}

    def __getattr__(self, name: str):
        raise AssertionError(f"a finished folder ran harness.api.{name}")


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))


@pytest.mark.parametrize(("script", "folders", "argv", "row"), [
    (online_methods, {"d3po-seed0/table-record.json": ONLINE_D3PO_SEED0},
     ["--methods", "d3po", "--seeds", "0", "--budget", "64"], "| D3PO (preferences from GenEval"),
    (offline_methods, {f"datasets/{OFFLINE_DATA_ID}/dataset-record.json": OFFLINE_DATASET,
                       f"{OFFLINE_DATA_ID}/rankdpo-seed0/table-record.json": OFFLINE_RANKDPO_SEED0},
     ["--methods", "rankdpo", "--seeds", "0", "--budget", "5", "--n-prompts", "3"], "| RankDPO (DCG weights"),
    (human_feedback, {"distortion/base/table-record.json": HF_BASE,
                      "distortion/d3po-seed0/table-record.json": HF_SEED0},
     ["--experiments", "distortion", "--seeds", "0"], "| D3PO seed 0 | 37.5 | -12.5 [-28.1, +0.0] |"),
], ids=["online", "offline", "human-feedback"])
def test_folders_written_by_the_earlier_code_are_finished(tmp_path: Path, script, folders: dict, argv: list[str],
                                                          row: str):
    for name, record in folders.items():
        write(tmp_path / name, record)
    lines: list[str] = []
    assert script.main(["--out", str(tmp_path), *argv, "--dry-run"], api=NoRuns(), echo=lines.append) == 0
    states = [line for line in lines if not line.startswith("evaluation:")]
    assert len(states) == len(folders) and all(line.startswith("done ") for line in states), lines
    lines.clear()
    assert script.main(["--out", str(tmp_path), *argv], api=NoRuns(), echo=lines.append) == 0
    assert lines[:-1] == [f"skip   {Path(name).parent} (finished)" for name in folders]
    assert row in (tmp_path / "table.md").read_text()
