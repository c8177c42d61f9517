"""The online-methods table script, run against a fake ``harness.api``: plan, per-method settings, evaluation
subsamples, adoption of finished runs, resume/skip, aggregation, intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.tables import common
from benchmarks.tables import online_methods as table
from harness.api import EvalSettings
from harness.records import ResultRecord

BASE = {"geneval": {"overall": 0.40, "counting": 0.20}, "t2i-compbench": {"overall": 0.50}}
# trained GenEval overall by (method, seed); everything else is base + a fixed 0.01
TRAINED = {("d3po", 0): 0.46, ("d3po", 1): 0.48, ("d3po", 2): 0.47,
           ("ddpo-true", 0): 0.50, ("ddpo-true", 1): 0.52, ("ddpo-true", 2): 0.48,
           ("ddpo-learned", 0): 0.42, ("ddpo-learned", 1): 0.45, ("ddpo-learned", 2): 0.41}
# What harness.api.method_config returns in this fake: the defaults every method shares, then the --set values.
DEFAULTS = {"num_inference_steps": 10, "images_per_prompt": 4, "prompts_per_round": 4, "learning_rate": 1e-4,
            "early_steps_fraction": 1.0, "train_batch_size": 1, "adam_betas": [0.9, 0.999]}


def fake_config(method: str, settings: dict[str, str]) -> dict:
    config = dict(DEFAULTS)
    for key, value in settings.items():
        if key not in config:
            raise table.HarnessError(f"--set {key}: unknown setting for {method}")
        config[key] = type(config[key])(value)
    return config


class FakeApi:
    """Stands in for harness.api: records every call, writes what the real functions write that the script reads."""

    EvalSettings = EvalSettings

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    @staticmethod
    def method_config(method, ckpt, settings):
        return fake_config(method, settings)

    def _name(self, out: Path) -> str:  # <out>/<name>-seed<k>/run, or <runs>/<name>-seed<k>
        return (out.parent.name if out.name == "run" else out.name).rsplit("-seed", 1)[0]

    def _records(self, name, method, seed, bench, feedback, budget, settings, base=True, trained=True):
        trained_scores = {k: v + 0.01 for k, v in BASE[bench].items()}
        if bench == "geneval":
            trained_scores["overall"] = TRAINED.get((name, seed), 0.45)
        training = {"method": method, "in_reward": bench == "geneval" and feedback == "objective:geneval",
                    "cost": {"wall_s": 600.0 + seed, "peak_memory_mb": 900.0}, "rounds": budget // 16,
                    "monitor": {"warnings": []}}
        n = settings.sample or settings.limit or 7
        records = []
        for scores, extra, wanted in ((BASE[bench], {}, base),
                                      (trained_scores, {"method": method, "training": training}, trained)):
            if wanted:
                records.append(ResultRecord(benchmark=bench, benchmark_version="1", world="builtin", model="m",
                                            checkpoint_fingerprint="f", scores=dict(scores), n_prompts=n, n_images=1,
                                            seeds={}, sampler={}, perception={}, **extra))
        return records

    def train_and_eval(self, method, ckpt, feedback, prompts, budget, out, benchmarks, eval_settings=None,
                       monitor_every=None, seed=0, settings=None, resume=False, eval_out=None, progress=True):
        name = self._name(Path(out))
        self.calls.append(("train", name, seed, feedback, resume, dict(settings or {}), tuple(benchmarks),
                           eval_settings.sample))
        out.mkdir(parents=True, exist_ok=True)
        (out / "preferences.jsonl").write_text('{"prompt": "p"}\n{"prompt": "q"}\n')
        if self.fail_on == f"{name}-seed{seed}":
            raise RuntimeError("killed mid-run")
        (out / "checkpoint").mkdir(exist_ok=True)
        summary = {"method": method, "feedback": feedback, "config": fake_config(method, settings or {}),
                   "feedback_scorer": {"perception": {"detector": "oracle@3"}}}
        (out / "summary.json").write_text(json.dumps(summary))
        records = []
        for bench in benchmarks:
            records += self._records(name, method, seed, bench, feedback, budget, eval_settings)
        return records

    def evaluate(self, ckpt, benchmarks, out=None, settings=None, progress=True):
        self.calls.append(("evaluate", str(ckpt), tuple(benchmarks), settings.sample, settings.limit))
        if ckpt == table.CKPT:
            return [r for b in benchmarks for r in self._records("base", "base", 0, b, "", 640, settings,
                                                                 trained=False)]
        run = Path(ckpt).parent
        summary = json.loads((run / "summary.json").read_text())
        if run.name == "run" or "-seed" in run.name:  # a run of the table: <name>-seed<k>/run or <runs>/...
            name, _, seed = (run.parent.name if run.name == "run" else run.name).rpartition("-seed")
        else:  # an adopted folder
            name, seed = summary["method"], summary["seed"]
        return [r for b in benchmarks for r in self._records(name, summary["method"], int(seed), b,
                                                             summary["feedback"], 640, settings, base=False)]

    def train_reward(self, pairs, out, world="builtin", seed=0, overwrite=False):
        self.calls.append(("reward", seed, Path(pairs).parent.name))
        Path(out).mkdir(parents=True, exist_ok=True)
        return {"heldout_pair_loss": 0.6}


def run(tmp_path: Path, api: FakeApi, *extra: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = table.main(["--out", str(tmp_path), "--methods", "d3po,ddpo-true,ddpo-learned", "--budget", "64",
                       "--benchmarks", "geneval,t2i-compbench", *extra], api=api, echo=lines.append)
    return code, lines


def finished_run(folder: Path, method: str = "d3po", seed: int = 0, budget: int = 640, **changes) -> Path:
    """A `harness train` folder as the published runs left it (summary last)."""
    settings = dict(table.METHODS["d3po"].settings)
    config = fake_config(method, settings)
    config.update(changes.pop("config", {}))
    summary = {"method": method, "ckpt": table.CKPT, "feedback": "objective:geneval", "prompts": table.PROMPTS,
               "seed": seed, "budget": budget, "rounds": budget // 16, "config": config,
               "feedback_scorer": {"perception": {"detector": "oracle@2"}}, **changes}
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "preferences.jsonl").write_text('{"prompt": "p"}\n')
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_plan_orders_dependencies():
    steps = [s.folder for s in table.plan(["ddpo-learned", "d3po"], [0, 1])]
    assert steps == ["d3po-seed0", "reward-model-seed0", "ddpo-learned-seed0",
                     "d3po-seed1", "reward-model-seed1", "ddpo-learned-seed1"]
    with pytest.raises(table.HarnessError, match="unknown method"):
        table.plan(["sft"], [0])


def test_recipe_is_the_published_runs_and_set_overrides_one_method():
    assert table.DEFAULT_BUDGET == 640
    protocol = table.make_protocol(640, ["geneval", "t2i-compbench"], table.parse_sets(
        ["d3po:learning_rate=1e-5", "dpok:kl_weight=0.1"]))
    assert protocol.method_settings("d3po") == {"learning_rate": "1e-5", "early_steps_fraction": "0.6",
                                                "train_batch_size": "4"}
    assert protocol.method_settings("grpo-true") == {"learning_rate": "3e-5", "early_steps_fraction": "0.6",
                                                     "train_batch_size": "4"}
    assert protocol.method_settings("dpok") == {"learning_rate": "3e-5", "early_steps_fraction": "0.6",
                                                "kl_weight": "0.1"}
    # GenEval stays the full protocol; T2I-CompBench is subsampled with a fixed seed unless told otherwise
    assert protocol.evaluation == {"geneval": {"limit": None, "sample": None, "sample_seed": None},
                                   "t2i-compbench": {"limit": None, "sample": 300, "sample_seed": 0}}
    full = table.make_protocol(640, ["geneval", "t2i-compbench"],
                               subsample=common.parse_subsample(["t2i-compbench=all"], ["geneval", "t2i-compbench"]))
    assert full.evaluation["t2i-compbench"]["sample"] is None
    for bad in ("d3po=1", "sft:lr=1", "d3po:learning_rate", "d3po:=1"):
        with pytest.raises(table.HarnessError, match="NAME:KEY=VALUE"):
            table.parse_sets([bad])


def test_dry_run_writes_nothing(tmp_path: Path):
    code, lines = run(tmp_path, FakeApi(), "--dry-run", "--set", "d3po:learning_rate=1e-5")
    assert code == 0 and len(lines) == 13 and lines[0].startswith("to do")
    assert "learning_rate=1e-5" in lines[0] and "learning_rate=3e-5" in lines[1]
    assert "reward model on the preferences of d3po-seed0" in lines[2]
    assert lines[-1] == "evaluation: geneval the full protocol; t2i-compbench a subsample of 300 (seed 0)"
    assert not any(tmp_path.iterdir())
    # an unknown setting fails before anything runs (harness.api.method_config checks it)
    assert run(tmp_path, FakeApi(), "--dry-run", "--set", "d3po:no_such=1")[0] == 2


def test_runs_resume_and_skip(tmp_path: Path):
    crashing = FakeApi(fail_on="ddpo-true-seed1")
    with pytest.raises(RuntimeError):
        run(tmp_path, crashing)
    done = [c for c in crashing.calls if c[0] == "train"]
    assert [c[1:3] for c in done] == [("d3po", 0), ("ddpo-true", 0), ("ddpo-learned", 0), ("d3po", 1),
                                      ("ddpo-true", 1)]
    # every run got its method's settings; the first benchmark trains-and-evaluates, the others are evaluated
    assert all(c[5] == dict(table.BATCHED) and c[6] == ("geneval",) and c[7] is None for c in done)
    subsampled = [c for c in crashing.calls if c[0] == "evaluate" and c[2] == ("t2i-compbench",)]
    assert subsampled and all(c[3] == 300 for c in subsampled)
    assert {c[1] for c in subsampled} == {table.CKPT, str(tmp_path / "d3po-seed0" / "run" / "checkpoint"),
                                          str(tmp_path / "ddpo-true-seed0" / "run" / "checkpoint"),
                                          str(tmp_path / "ddpo-learned-seed0" / "run" / "checkpoint"),
                                          str(tmp_path / "d3po-seed1" / "run" / "checkpoint")}
    # seed k's reward model learned from seed k's D3PO run, and the learned-reward run used it
    assert ("reward", 0, "run") in crashing.calls
    learned = next(c for c in done if c[1] == "ddpo-learned")
    assert learned[3] == f"reward:{tmp_path / 'reward-model-seed0' / 'model'}"
    assert not (tmp_path / "ddpo-true-seed1" / table.RECORD).exists()
    assert (tmp_path / "table.md").is_file()  # rebuilt after every finished step

    api = FakeApi()
    code, lines = run(tmp_path, api)
    assert code == 0
    assert sum(line.startswith("skip") for line in lines) == 5
    trains = [c for c in api.calls if c[0] == "train"]
    # the killed run resumes from its training folder; the others start fresh
    assert trains[0][1:3] == ("ddpo-true", 1) and trains[0][4] is True
    assert all(c[4] is False for c in trains[1:])
    record = json.loads((tmp_path / "d3po-seed2" / table.RECORD).read_text())
    assert record["scores"]["geneval"]["in_reward"] is True and record["cost"]["peak_memory_mb"] == 900.0
    assert record["n_prompts"] == {"geneval": 7, "t2i-compbench": 300} and record["adopted_from"] is None
    assert (tmp_path / "d3po-seed2" / "records" / "t2i-compbench-trained.json").is_file()

    again = FakeApi()
    assert run(tmp_path, again)[0] == 0 and [c for c in again.calls if c[0] != "method_config"] == []
    # records made with another budget, other settings or another evaluation are refused, not mixed
    assert run(tmp_path, FakeApi(), "--budget", "128")[0] == 2
    assert run(tmp_path, FakeApi(), "--limit", "5")[0] == 2
    assert run(tmp_path, FakeApi(), "--subsample", "t2i-compbench=all")[0] == 2
    assert run(tmp_path, FakeApi(), "--set", "ddpo-true:learning_rate=1e-5")[0] == 2


def test_training_folders_can_live_outside_the_records(tmp_path: Path):
    api = FakeApi()
    runs = tmp_path / "runs"
    assert run(tmp_path / "table", api, "--seeds", "0", "--runs", str(runs))[0] == 0
    assert [Path(c[1]).parent for c in api.calls if c[0] == "evaluate" and c[1] != table.CKPT] == \
        [runs / "d3po-seed0", runs / "ddpo-true-seed0", runs / "ddpo-learned-seed0"]
    assert ("reward", 0, "d3po-seed0") in api.calls  # the reward model found the preferences there
    assert not (tmp_path / "table" / "d3po-seed0" / "run").exists()
    record = json.loads((tmp_path / "table" / "d3po-seed0" / table.RECORD).read_text())
    assert record["run_dir"] == str(runs / "d3po-seed0") and record["scores"]["geneval"]["trained"]["overall"] == 0.46


def test_adopt_a_finished_run(tmp_path: Path):
    out = tmp_path / "table"
    source = finished_run(tmp_path / "published-d3po", budget=64, config={"early_steps_fraction": 0.6,
                                                                          "learning_rate": 3e-5,
                                                                          "train_batch_size": 4})
    api = FakeApi()
    code, lines = run(out, api, "--seeds", "0", "--adopt", f"d3po-seed0={source}")
    assert code == 0 and lines[0] == "adopt  d3po-seed0"
    assert not any(c[0] == "train" and c[1] == "d3po" for c in api.calls)  # not retrained
    evaluated = {c[1] for c in api.calls if c[0] == "evaluate"}
    assert str(source / "checkpoint") in evaluated
    # the reward model learns from the adopted run's preferences
    assert ("reward", 0, "published-d3po") in api.calls
    record = json.loads((out / "d3po-seed0" / table.RECORD).read_text())
    assert record["adopted_from"] == str(source) and record["run_dir"] == str(source)
    text = (out / "table.md").read_text()
    assert f"d3po-seed0: adopted from `{source}` (training feedback scored with oracle@2)" in text
    assert "different oracle versions: oracle@2: d3po-seed0; oracle@3: ddpo-true-seed0" in text
    assert "t2i-compbench (300-prompt subsample) overall" in text and "- geneval: the full protocol." in text


def test_legacy_skip_final_steps_is_read_as_the_same_trained_steps(tmp_path: Path):
    expected = fake_config("d3po", dict(table.BATCHED))
    legacy = {k: v for k, v in expected.items() if k != "early_steps_fraction"} | {"skip_final_steps": 4}
    problem, notes = table.config_mismatch(legacy, expected)
    assert problem is None and "legacy skip_final_steps=4 read as early_steps_fraction=0.6" in notes[0]
    problem, _ = table.config_mismatch({**legacy, "skip_final_steps": 1}, expected)
    assert problem == "skip_final_steps=1 trains 9 of 10 steps, the table's early_steps_fraction=0.6 trains 6"


@pytest.mark.parametrize(("changes", "message"), [
    ({"budget": 960}, "budget is 960, the table's is 64"),
    ({"feedback": "objective:geneval-exact"}, "feedback is 'objective:geneval-exact', the table's is"),
    ({"seed": 1}, "seed is 1, the table's is 0"),
    ({"method": "grpo"}, "method is 'grpo', the table's is 'd3po'"),
    ({"config": {"learning_rate": 1e-5}}, "config learning_rate=1e-05, the table's is 3e-05"),
    ({"config": {"beta": 0.2}}, "config has beta=0.2, which today's method does not know"),
])
def test_adoption_refuses_a_mismatch(tmp_path: Path, changes: dict, message: str, capsys):
    config = {"early_steps_fraction": 0.6, "learning_rate": 3e-5, "train_batch_size": 4, **changes.pop("config", {})}
    source = finished_run(tmp_path / "run", **{"budget": 64, **changes}, config=config)
    api = FakeApi()
    code, _ = run(tmp_path / "table", api, "--seeds", "0", "--adopt", f"d3po-seed0={source}")
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not [c for c in api.calls if c[0] != "method_config"]  # refused before anything ran
    for bad in (f"d3po-seed7={source}", "d3po-seed0", f"sft-seed0={source}"):
        assert run(tmp_path / "table", FakeApi(), "--seeds", "0", "--adopt", bad)[0] == 2


def test_smoke_limit_is_kept_through_the_reward_model(tmp_path: Path):
    api = FakeApi()
    assert run(tmp_path, api, "--limit", "6", "--seeds", "0")[0] == 0
    assert [c[1] for c in api.calls if c[0] == "train"] == ["d3po", "ddpo-true", "ddpo-learned"]
    record = json.loads((tmp_path / "ddpo-learned-seed0" / table.RECORD).read_text())
    assert record["evaluation"]["geneval"]["limit"] == 6
    assert "**smoke test**, the first 6 prompts only" in (tmp_path / "table.md").read_text()


def test_table_numbers(tmp_path: Path):
    run(tmp_path, FakeApi())
    text = (tmp_path / "table.md").read_text()
    protocol = table.make_protocol(64, ["geneval", "t2i-compbench"])
    runs = table.load_records(tmp_path, ["d3po", "ddpo-true", "ddpo-learned"], [0, 1, 2], protocol)
    assert [r["seed"] for r in runs["d3po"]] == [0, 1, 2]
    # D3PO: deltas 0.06, 0.08, 0.07 -> +7.0 [+4.5, +9.5]
    d3po_row = next(line for line in text.splitlines() if line.startswith("| D3PO"))
    assert "47.0" in d3po_row and "+7.0 [+4.5, +9.5]" in d3po_row and "46.0 / 48.0 / 47.0" in d3po_row
    assert "(GenEval in-reward)" in d3po_row and "| 10.0 | 900 |" in d3po_row
    assert "| base | - | 40.0 |" in text
    # share of the DDPO true-reward gain: 0.07 / 0.10; D3PO - learned paired: (0.04, 0.03, 0.06)
    assert "share of the DDPO, true reward gain (+10.0): 70%" in text
    assert "D3PO - DDPO, reward model learned from D3PO's labels, paired by seed: +4.3" in text
    assert "t2i-compbench: D3PO gain +1.0" in text
    assert "(GenEval in-reward)" not in next(line for line in text.splitlines() if "learned" in line
                                             and line.startswith("|"))
    assert "- D3PO (preferences from GenEval correctness, no reward model): `--set early_steps_fraction=0.6," \
           "learning_rate=3e-5,train_batch_size=4`" in text


def test_d3po_k8_row_has_its_gain_and_rl_share_but_no_learned_reward_pairing(tmp_path: Path):
    """The k = 8 variant (every seed at the fake's 0.45, +5.0) is compared with true-reward RL; the learned reward
    model was trained on the "d3po" row's labels, so only that row is paired with it."""
    table.main(["--out", str(tmp_path), "--methods", "d3po,d3po-k8,ddpo-true,ddpo-learned", "--budget", "64",
                "--seeds", "0,1"], api=FakeApi())
    text = (tmp_path / "table.md").read_text()
    assert "- geneval: D3PO, 8 images per prompt (2 per round) gain +5.0 [+5.0, +5.0]" in text
    assert "share of the DDPO, true reward gain (+11.0): 45%" in text and text.count("paired by seed") == 2
    assert "`--set early_steps_fraction=0.6,images_per_prompt=8,learning_rate=3e-5,prompts_per_round=2," \
           "train_batch_size=2`" in text


def test_empty_table():
    assert "No finished runs yet" in table.make_table({})
