"""The human-feedback table script (issue 15, item 5) against a fake ``harness.api`` that writes real records and
samples: plan, resume/skip, paired bootstrap against the base, t-interval over seeds, publishable records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.registry import PromptItem, SampleResult, get_benchmark
from benchmarks.tables import human_feedback as table
from harness.api import EvalSettings, write_samples
from harness.compare import compare
from harness.records import ResultRecord, attach_statistics

N_PROMPTS, N_IMAGES = 8, 4
TAGS = {"distortion": ("single", "color"), "safety": ("cross_first", "red_first"),
        "geneval": ("single_object", "counting")}
# Images the trained model of seed k still flags, out of the base's flagged ones (experiment benchmark only).
KEPT_FLAGS = {0: 2, 1: 3, 2: 1}


def base_flags(bench: str) -> list[float]:
    """Per image (prompt-major): flag rate 12/32 on the experiment's benchmark; GenEval: 16/32 correct."""
    if bench == "geneval":
        return [float((p + k) % 2 == 0) for p in range(N_PROMPTS) for k in range(N_IMAGES)]
    return [float(k < 3 and p % 2 == 0) for p in range(N_PROMPTS) for k in range(N_IMAGES)]


def trained_flags(bench: str, seed: int) -> list[float]:
    flags = base_flags(bench)
    if bench == "geneval":  # one more correct image on prompt 1 (counting): 9/16, overall +1/32
        flags[N_IMAGES] = 1.0
        return flags
    flagged = [i for i, f in enumerate(flags) if f == 1.0]
    for i in flagged[KEPT_FLAGS[seed] * 4:]:  # fewer flags: 4 * kept of the 12 remain
        flags[i] = 0.0
    return flags


class FakeApi:
    """Stands in for harness.api: writes records and samples files into the store as the real evaluation does."""

    EvalSettings = EvalSettings

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def _record(self, bench: str, model: str, flags: list[float], store: Path, training: dict | None) -> ResultRecord:
        benchmark = get_benchmark(bench)
        tags = TAGS[bench]
        items = [PromptItem(p, f"prompt {p}", tags[p % 2], {}) for p in range(N_PROMPTS)]
        results = [SampleResult(p, k, items[p].tag, flags[p * N_IMAGES + k], {})
                   for p in range(N_PROMPTS) for k in range(N_IMAGES)]
        seeds = [[p * N_IMAGES + k for k in range(N_IMAGES)] for p in range(N_PROMPTS)]
        run_dir = store / "runs" / f"{bench}-{model}"
        run_dir.mkdir(parents=True, exist_ok=True)
        write_samples(run_dir / "samples.jsonl", items, seeds, results,
                      [[run_dir / f"{p}-{k}.png" for k in range(N_IMAGES)] for p in range(N_PROMPTS)])
        record = ResultRecord(benchmark=bench, benchmark_version=benchmark.version, world="builtin", model=model,
                              checkpoint_fingerprint=model, scores=benchmark.aggregate(results),
                              n_prompts=N_PROMPTS, n_images=len(results), seeds={}, sampler={},
                              perception={"judge": "fake@1"}, method="d3po" if training else "pretrained",
                              training=training or {})
        attach_statistics(record, run_dir / "samples.jsonl", benchmark.aggregate, replicates=50)
        record.save(run_dir / "result.json")
        return record

    def evaluate(self, ckpt, benchmarks, out, settings=None, progress=True):
        self.calls.append(("evaluate", tuple(benchmarks), settings.limit))
        return [self._record(b, "base", base_flags(b), Path(out), None) for b in benchmarks]

    def train_and_eval(self, method, ckpt, feedback, prompts, budget, out, benchmarks, eval_settings=None, seed=0,
                       resume=False, eval_out=None, progress=True):
        self.calls.append(("train", method, feedback, prompts, budget, seed, resume))
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("{}\n")
        experiment = benchmarks[0]
        if self.fail_on == f"{experiment}-seed{seed}":
            raise RuntimeError("killed mid-run")
        records = []
        for bench in benchmarks:
            training = {"method": method, "in_reward": bench == experiment, "rounds": budget // 16,
                        "cost": {"wall_s": 600.0}, "overlap": {"exact_total": 0}}
            records.append(self._record(bench, "base", base_flags(bench), Path(eval_out), None))
            records.append(self._record(bench, f"seed{seed}", trained_flags(bench, seed), Path(eval_out), training))
        return records


def run(tmp_path: Path, api: FakeApi, *extra: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = table.main(["--out", str(tmp_path), "--budget", "32", *extra], api=api, echo=lines.append)
    return code, lines


def test_plan_puts_the_base_first():
    steps = [f"{s.experiment}/{s.name}" for s in table.plan(["safety", "distortion"], [0, 1])]
    assert steps == ["distortion/base", "distortion/d3po-seed0", "distortion/d3po-seed1",
                     "safety/base", "safety/d3po-seed0", "safety/d3po-seed1"]
    with pytest.raises(table.HarnessError, match="unknown experiment"):
        table.plan(["aesthetic"], [0])


def test_experiments_use_the_benchmarks_own_judges_and_disjoint_prompts():
    assert table.EXPERIMENTS["distortion"].feedback(2) == "simulated:distortion?noise=0.1&seed=2"
    assert table.EXPERIMENTS["safety"].feedback(0) == "simulated:unsafe?noise=0.1&seed=0"
    assert table.EXPERIMENTS["safety"].benchmarks == ["safety", "geneval"]
    assert table.EXPERIMENTS["distortion"].prompts == "builtin:distortion-train"


def test_dry_run_writes_nothing(tmp_path: Path):
    code, lines = run(tmp_path, FakeApi(), "--dry-run")
    assert code == 0 and len(lines) == 8 and all(line.startswith("to do") for line in lines)
    assert "simulated:unsafe?noise=0.1&seed=1, builtin:safety-train, budget 32" in lines[6]
    assert not any(tmp_path.iterdir())


def test_runs_resume_skip_and_compare_with_the_base(tmp_path: Path):
    crashing = FakeApi(fail_on="distortion-seed1")
    with pytest.raises(RuntimeError):
        run(tmp_path, crashing, "--experiments", "distortion")
    assert [c[0] for c in crashing.calls] == ["evaluate", "train", "train"]
    assert crashing.calls[0] == ("evaluate", ("distortion", "geneval"), None)  # the base once, both benchmarks
    assert not (tmp_path / "distortion" / "d3po-seed1" / table.RECORD).exists()
    assert "D3PO seed 0" in (tmp_path / "table.md").read_text()

    api = FakeApi()
    code, lines = run(tmp_path, api, "--experiments", "distortion")
    assert code == 0 and sum(line.startswith("skip") for line in lines) == 2
    trains = [c for c in api.calls if c[0] == "train"]
    assert [(c[5], c[6]) for c in trains] == [(1, True), (2, False)]  # the killed seed resumes, the next is fresh
    assert trains[0][2:5] == ("simulated:distortion?noise=0.1&seed=1", "builtin:distortion-train", 32)

    record = json.loads((tmp_path / "distortion" / "d3po-seed0" / table.RECORD).read_text())
    # base 12/32 flagged, seed 0 keeps 8: delta -4/32, the paired bootstrap's interval around it
    paired = record["paired"]["distortion"]
    assert paired["delta"] == pytest.approx(-4 / 32) and paired["low95"] <= -4 / 32 <= paired["high95"]
    assert paired["high95"] <= 0 and paired["in_reward"] is True  # prompts resampled: flags removed on 2 of 4
    assert record["paired"]["geneval"]["in_reward"] is False
    assert record["scores"]["distortion"]["overall"] == pytest.approx(8 / 32)
    # the saved records carry their samples: what `harness leaderboard publish` and `harness compare` read
    base_path = tmp_path / "records" / "distortion-base-distortion.json"
    trained_path = tmp_path / "records" / "distortion-d3po-seed0-distortion.json"
    assert trained_path.with_name("distortion-d3po-seed0-distortion.samples.jsonl").is_file()
    assert compare(base_path, trained_path).overall.delta == pytest.approx(-4 / 32)

    again = FakeApi()
    assert run(tmp_path, again, "--experiments", "distortion")[0] == 0 and again.calls == []
    assert run(tmp_path, FakeApi(), "--experiments", "distortion", "--budget", "64")[0] == 2  # other budget refused
    assert run(tmp_path, FakeApi(), "--experiments", "distortion", "--limit", "3")[0] == 2  # other protocol too


def test_table_numbers(tmp_path: Path):
    assert run(tmp_path, FakeApi(), "--experiments", "distortion,safety")[0] == 0
    text = (tmp_path / "table.md").read_text()
    # per-seed deltas -4/32, 0, -8/32 = -12.5, 0, -25 points: mean -12.5, sd 12.5, t_{0.975,2} = 4.302653
    half = 4.302653 * 12.5 / math.sqrt(3)
    mean_row = next(line for line in text.split("## safety")[0].splitlines() if "mean over seeds" in line)
    assert f"-12.5 [{-12.5 - half:+.1f}, {-12.5 + half:+.1f}] (t)" in mean_row
    assert "| base | 37.5 (Wilson" in text and "12/32)" in text
    assert "| D3PO seed 2 | 12.5 | -25.0 [" in text
    assert "no significant change: the 95 % t-interval over seeds includes 0" in text  # wide with these deltas
    assert "geneval (held out, the cost of the gain): +3.1" in text
    assert "## safety" in text and "Budget: 32 sampled training images per run." in text


def test_verdict_says_lowered_when_the_interval_is_below_zero():
    experiment = table.EXPERIMENTS["distortion"]
    base = {"limit": None, "scores": {"distortion": {"overall": 0.3}, "geneval": {"overall": 0.5}}}
    runs = [{"seed": s, "budget": 8, "cost": {}, "scores": {"distortion": {"overall": 0.3 + d}, "geneval":
             {"overall": 0.5}}, "paired": {"distortion": {"delta": d, "low95": d - 0.01, "high95": d + 0.01},
                                           "geneval": {"delta": 0.0, "low95": 0.0, "high95": 0.0}}}
            for s, d in enumerate((-0.10, -0.11, -0.09))]
    text = "\n".join(table.section(experiment, base, runs))
    assert "D3PO lowers it: the 95 % t-interval over seeds lies below 0" in text
    assert "Base not evaluated yet" in "\n".join(table.section(experiment, None, []))


def test_bad_flags_exit_with_a_message(tmp_path: Path):
    with pytest.raises(SystemExit):
        table.main(["--out", str(tmp_path), "--budget", "0"], api=FakeApi())
    assert run(tmp_path, FakeApi(), "--experiments", "aesthetic")[0] == 2


@pytest.mark.slow
def test_real_tiny_run_end_to_end_and_publishable(tmp_path: Path):
    """The real harness.api: one round of D3PO on simulated unsafe flags, one prompt per benchmark; the records
    it leaves publish as they stand."""
    from harness.leaderboard import publish

    lines: list[str] = []
    args = ["--out", str(tmp_path), "--budget", "16", "--limit", "1", "--seeds", "0", "--experiments", "safety"]
    assert table.main(args, echo=lines.append) == 0
    record = json.loads((tmp_path / "safety" / "d3po-seed0" / table.RECORD).read_text())
    assert set(record["paired"]) == {"safety", "geneval"} and record["rounds"] == 1
    assert record["paired"]["safety"]["in_reward"] and not record["paired"]["geneval"]["in_reward"]
    assert record["overlap"]["exact_total"] == 0
    for name in ("safety-base-safety", "safety-d3po-seed0-safety", "safety-d3po-seed0-geneval"):
        assert publish(tmp_path / "records" / f"{name}.json", tmp_path / "results").is_file()
    assert table.main(args, echo=lines.append) == 0 and lines[-2].startswith("skip")
