"""The online-methods table script, run against a fake ``harness.api``: plan, resume/skip, aggregation, intervals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.tables import online_methods as table
from harness.api import EvalSettings
from harness.records import ResultRecord

BASE = {"geneval": {"overall": 0.40, "counting": 0.20}, "t2i-compbench": {"overall": 0.50}}
# trained GenEval overall by (method, seed); everything else is base + a fixed 0.01
TRAINED = {("d3po", 0): 0.46, ("d3po", 1): 0.48, ("d3po", 2): 0.47,
           ("ddpo-true", 0): 0.50, ("ddpo-true", 1): 0.52, ("ddpo-true", 2): 0.48,
           ("ddpo-learned", 0): 0.42, ("ddpo-learned", 1): 0.45, ("ddpo-learned", 2): 0.41}


class FakeApi:
    """Stands in for harness.api: records every call, writes what the real functions write that the script reads."""

    EvalSettings = EvalSettings

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def train_and_eval(self, method, ckpt, feedback, prompts, budget, out, benchmarks, eval_settings=None,
                       monitor_every=None, seed=0, resume=False, eval_out=None, progress=True):
        name = next(n for n, s in table.METHODS.items() if s.method == method
                    and (s.feedback == feedback or s.feedback.startswith("reward:") == feedback.startswith("reward:")))
        self.calls.append(("train", name, seed, feedback, resume))
        out.mkdir(parents=True, exist_ok=True)
        (out / "preferences.jsonl").write_text('{"prompt": "p"}\n{"prompt": "q"}\n')
        if self.fail_on == f"{name}-seed{seed}":
            raise RuntimeError("killed mid-run")
        records = []
        for bench in benchmarks:
            trained = {k: v + 0.01 for k, v in BASE[bench].items()}
            if bench == "geneval":
                trained["overall"] = TRAINED.get((name, seed), 0.45)
            training = {"method": method, "in_reward": bench == "geneval" and feedback == "objective:geneval",
                        "cost": {"wall_s": 600.0 + seed, "peak_memory_mb": 900.0}, "rounds": budget // 16,
                        "monitor": {"warnings": []}}
            for scores, extra in ((BASE[bench], {}), (trained, {"method": method, "training": training})):
                records.append(ResultRecord(benchmark=bench, benchmark_version="1", world="builtin", model=ckpt,
                                            checkpoint_fingerprint="f", scores=dict(scores), n_prompts=1, n_images=1,
                                            seeds={}, sampler={}, perception={}, **extra))
        return records

    def train_reward(self, pairs, out, world="builtin", seed=0, overwrite=False):
        self.calls.append(("reward", seed, Path(pairs).parent.parent.name))
        Path(out).mkdir(parents=True, exist_ok=True)
        return {"heldout_pair_loss": 0.6}


def run(tmp_path: Path, api: FakeApi, *extra: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = table.main(["--out", str(tmp_path), "--methods", "d3po,ddpo-true,ddpo-learned", "--budget", "64",
                       "--benchmarks", "geneval,t2i-compbench", *extra], api=api, echo=lines.append)
    return code, lines


def test_plan_orders_dependencies():
    steps = [s.folder for s in table.plan(["ddpo-learned", "d3po"], [0, 1])]
    assert steps == ["d3po-seed0", "reward-model-seed0", "ddpo-learned-seed0",
                     "d3po-seed1", "reward-model-seed1", "ddpo-learned-seed1"]
    with pytest.raises(table.HarnessError, match="unknown method"):
        table.plan(["sft"], [0])


def test_dry_run_writes_nothing(tmp_path: Path):
    code, lines = run(tmp_path, FakeApi(), "--dry-run")
    assert code == 0 and len(lines) == 12 and lines[0].startswith("to do")
    assert "reward model on d3po-seed0/run/preferences.jsonl" in lines[2]
    assert not any(tmp_path.iterdir())


def test_runs_resume_and_skip(tmp_path: Path):
    crashing = FakeApi(fail_on="ddpo-true-seed1")
    with pytest.raises(RuntimeError):
        run(tmp_path, crashing)
    done = [c for c in crashing.calls if c[0] == "train"]
    assert [c[1:3] for c in done] == [("d3po", 0), ("ddpo-true", 0), ("ddpo-learned", 0), ("d3po", 1),
                                      ("ddpo-true", 1)]
    # seed k's reward model learned from seed k's D3PO run, and the learned-reward run used it
    assert ("reward", 0, "d3po-seed0") in crashing.calls
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
    assert (tmp_path / "d3po-seed2" / "records" / "geneval-trained.json").is_file()

    again = FakeApi()
    assert run(tmp_path, again)[0] == 0 and again.calls == []
    code, _ = run(tmp_path, FakeApi(), "--budget", "128")
    assert code == 2  # records made with another budget are refused, not mixed
    assert run(tmp_path, FakeApi(), "--limit", "5")[0] == 2  # nor with another evaluation protocol


def test_smoke_limit_is_kept_through_the_reward_model(tmp_path: Path):
    api = FakeApi()
    assert run(tmp_path, api, "--limit", "6", "--seeds", "0")[0] == 0
    assert [c[1] for c in api.calls if c[0] == "train"] == ["d3po", "ddpo-true", "ddpo-learned"]
    assert json.loads((tmp_path / "ddpo-learned-seed0" / table.RECORD).read_text())["limit"] == 6
    assert "**Smoke test**: evaluated on the first 6 prompts" in (tmp_path / "table.md").read_text()


def test_t_interval_by_hand():
    interval = table.t_interval([0.06, 0.08, 0.07])
    # mean 0.07, sd 0.01, t_{0.975,2} = 4.302653
    assert interval.mean == pytest.approx(0.07)
    assert interval.high - interval.mean == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-5)
    assert interval.excludes_zero
    single = table.t_interval([0.05])
    assert single.n == 1 and not single.excludes_zero and "n=1" in single.text()


def test_table_numbers(tmp_path: Path):
    run(tmp_path, FakeApi())
    text = (tmp_path / "table.md").read_text()
    runs = table.load_records(tmp_path, ["d3po", "ddpo-true", "ddpo-learned"], [0, 1, 2], 64)
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


def test_empty_table():
    assert "No finished runs yet" in table.make_table({})
