"""Offline methods behind ``harness train`` / ``train-and-eval`` (``--method diffusion-dpo|rankdpo --data``):
routing and one-line errors, result records, and an end-to-end run of each method on ``builtin:shapes`` whose
dataset reward moves the way the dataset's rankings point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from harness import api
from harness.checkpoints import resolve_checkpoint
from harness.cli import app
from harness.errors import HarnessError
from harness.sampling import SamplerConfig, sample
from trainers.loop import TrainResult
from trainers.offline import training_record
from trainers.prompts import resolve_training_prompts
from trainers.ranked_data import Generator, RewardSource, build_ranked

SAMPLER_STEPS = 4  # the dataset's and the measurement's DDIM steps: a quarter of the model's 10, for speed
K = 4
TINY = {"batch_size": "2", "save_every": "1"}


def brightness(images, items) -> np.ndarray:
    return np.array([np.asarray(image, dtype=float).mean() for image in images])


def darkness(images, items) -> np.ndarray:
    return -brightness(images, items)


@pytest.fixture(scope="module")
def tiny_data(builtin_random_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two prompts x two images from the random-init model, ranked by brightness: a dataset for plumbing tests."""
    out = tmp_path_factory.mktemp("tiny-data")
    items = resolve_training_prompts("builtin:geneval-train", "builtin", n=2, seed=5)
    build_ranked([Generator(str(builtin_random_ckpt))], items, 2, [RewardSource("test:brightness", {}, brightness)],
                 out, progress=False, load_policy=resolve_checkpoint)
    return out


def test_routing_errors_are_one_line_and_write_nothing(builtin_random_ckpt: Path, tiny_data: Path,
                                                       tmp_path: Path) -> None:
    ckpt, out = str(builtin_random_ckpt), tmp_path / "run"
    with pytest.raises(HarnessError, match="pass --data"):
        api.train("rankdpo", ckpt, None, None, 1, out)
    with pytest.raises(HarnessError, match="drop --feedback"):
        api.train("diffusion-dpo", ckpt, "objective:brightness", None, 1, out, data=tiny_data)
    with pytest.raises(HarnessError, match="drop --prompts"):
        api.train("rankdpo", ckpt, None, "builtin:geneval-train", 1, out, data=tiny_data)
    with pytest.raises(HarnessError, match="--data is for the offline methods"):
        api.train("d3po", ckpt, "objective:brightness", None, 8, out, data=tiny_data)
    with pytest.raises(HarnessError, match="pass --feedback"):
        api.train("d3po", ckpt, None, None, 8, out)
    with pytest.raises(HarnessError, match="--monitor-every"):
        api.train_and_eval("rankdpo", ckpt, None, None, 1, out, ["geneval"], monitor_every=1, data=tiny_data)
    with pytest.raises(HarnessError, match=r"no ranked\.parquet"):
        api.train("rankdpo", ckpt, None, None, 1, out, data=tmp_path / "no-such-dataset")
    assert not out.exists()


def test_cli_train_writes_the_run_folder_and_refuses_it_twice(builtin_random_ckpt: Path, tiny_data: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--method", "rankdpo", "--data", str(tiny_data), "--ckpt", str(builtin_random_ckpt),
            "--budget", "2", "--out", str(out), *[part for k, v in TINY.items() for part in ("--set", f"{k}={v}")]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained checkpoint" in result.output
    for name in ("run.json", "state.pt", "checkpoint", "metrics.jsonl", "summary.json", "overlap.txt"):
        assert (out / name).exists(), name
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((out / "run.json").read_text())["data_hash"]
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, HarnessError) and "holds another training run" in str(again.exception)
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output  # already at its budget: nothing to do, same checkpoint


def test_train_and_eval_records_carry_the_dataset_and_its_cost(builtin_random_ckpt: Path, tiny_data: Path,
                                                               tmp_path: Path) -> None:
    records = api.train_and_eval("diffusion-dpo", str(builtin_random_ckpt), None, None, 1, tmp_path / "run",
                                 ["geneval"], eval_settings=api.EvalSettings(limit=1), settings=TINY,
                                 data=tiny_data, progress=False)
    base, trained = records
    for record in records:  # run_name gives the folder each record was written to
        saved = json.loads((tmp_path / "run" / "eval" / "runs" / api.run_name(record) / "result.json").read_text())
        assert saved["checkpoint_fingerprint"] == record.checkpoint_fingerprint
    assert base.method == "pretrained" and base.training == {}
    assert trained.method == "diffusion-dpo"
    training = trained.training
    assert training["method"] == "diffusion-dpo" and training["seed"] == 0 and training["steps"] == 1
    assert training["ckpt"] == str(builtin_random_ckpt) and training["budget"] == 1
    assert training["budget_unit"] == "optimiser steps" and training["config"]["beta"] == 5000.0
    dataset = training["dataset"]
    assert dataset["path"] == str(tiny_data.resolve()) and dataset["rows"] == 2
    assert dataset["build_cost"]["images_generated"] == 4 and dataset["build_cost"]["scores_computed"] == 4
    assert [r["spec"] for r in dataset["provenance"]["rewards"]] == ["test:brightness"]
    assert training["cost"]["images_seen"] == 4 and training["cost"]["wall_s"] >= 0
    assert training["in_reward"] is False
    assert Path(training["checkpoint"]).is_dir()
    assert base.checkpoint_fingerprint != trained.checkpoint_fingerprint


def test_cli_train_and_eval_prints_the_paired_comparison(builtin_random_ckpt: Path, tiny_data: Path,
                                                        tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train-and-eval", "--method", "diffusion-dpo", "--data", str(tiny_data), "--ckpt",
                                      str(builtin_random_ckpt), "--budget", "1", "--out", str(tmp_path / "run"),
                                      "--limit", "1", *[p for k, v in TINY.items() for p in ("--set", f"{k}={v}")]])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("geneval, trained against base")]
    assert "overall" in line and ("better" in line or "worse" in line or "no significant difference" in line)


def test_in_reward_follows_the_dataset_reward_models() -> None:
    def result(specs: list[tuple[str, dict]]) -> TrainResult:
        summary = {key: None for key in ("method", "ckpt", "config", "seed", "budget", "budget_unit", "steps", "cost",
                                         "overlap")}
        summary["dataset"] = {"provenance": {"rewards": [{"spec": s, "scorer_id": i} for s, i in specs]}}
        return TrainResult(Path("ckpt"), summary)

    geneval = ("objective:geneval-partial", {"objective": "geneval-partial", "benchmark": "geneval"})
    bright = ("objective:brightness", {"objective": "brightness"})
    assert training_record(result([bright, geneval]), "geneval")["in_reward"] is True
    assert training_record(result([bright, geneval]), "t2i-compbench")["in_reward"] is False
    assert training_record(result([bright]), "geneval")["in_reward"] is False


# --- end to end on builtin:shapes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 4 prompts x 4 builtin:shapes images ranked two opposite ways: by brightness and by darkness."""
    root = tmp_path_factory.mktemp("shapes-data")
    items = resolve_training_prompts("builtin:geneval-train", "builtin", n=4, seed=0)
    generator = Generator("builtin:shapes", {"num_inference_steps": SAMPLER_STEPS})
    folders = {}
    for name, reward in (("bright", brightness), ("dark", darkness)):
        folders[name] = root / name
        build_ranked([generator], items, K, [RewardSource(f"test:{name}", {}, reward)], folders[name],
                     progress=False, load_policy=resolve_checkpoint)
    return folders


def mean_brightness(ckpt: str) -> float:
    """Mean pixel value (0-255) of 16 images of the datasets' prompts at seeds the datasets do not hold."""
    policy = resolve_checkpoint(ckpt)
    prompts = [item.prompt for item in resolve_training_prompts("builtin:geneval-train", "builtin", n=4, seed=0)]
    prompts = [p for p in prompts for _ in range(K)]
    images = sample(policy, prompts, [90_000 + i for i in range(len(prompts))],
                    SamplerConfig.for_policy(policy, num_inference_steps=SAMPLER_STEPS))
    return float(images.float().mean())


@pytest.mark.parametrize("method", ["diffusion-dpo", "rankdpo"])
def test_training_moves_the_dataset_reward_the_way_the_rankings_point(method: str, shapes_data: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """Three steps at lr 1e-4 on the brightness-ranked data make builtin:shapes brighter on held-out seeds, and on
    the same images ranked by darkness make it darker (seed 0: about +8 and -8 of 255 when written; a loss with
    the wrong sign, or one that ignores the rankings, fails one of the two)."""
    settings = {"learning_rate": "1e-4", "batch_size": "4", "save_every": "3"}
    base = mean_brightness("builtin:shapes")
    moved = {}
    for name, data in shapes_data.items():
        checkpoint = api.train(method, "builtin:shapes", None, None, 3, tmp_path / name, settings=settings,
                               data=data, progress=False)
        moved[name] = mean_brightness(str(checkpoint)) - base
    assert moved["bright"] > 2.0 and moved["dark"] < -2.0, moved


# --- the 3-seed table script, against a fake harness.api ----------------------------------------------------------


GAINS = {("diffusion-dpo", 0): 0.02, ("diffusion-dpo", 1): 0.03, ("diffusion-dpo", 2): 0.01,
         ("rankdpo", 0): 0.04, ("rankdpo", 1): 0.05, ("rankdpo", 2): 0.04}


class FakeApi:
    """Stands in for harness.api: records calls and writes what the real functions write that the script reads.
    Trained GenEval overall is base + GAINS[(method name, seed)]; T2I-CompBench moves by a fixed 0.01."""

    EvalSettings = api.EvalSettings

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def build_ranked(self, ckpts, prompts, k, rewards, out, samplers=None, n_prompts=None, seed=0, progress=True):
        from types import SimpleNamespace

        self.calls.append(("build", k, tuple(rewards), tuple(samplers)))
        out.mkdir(parents=True, exist_ok=True)
        (out / "build.json").write_text(json.dumps({"total_cost": {"images_generated": n_prompts * k,
                                                                   "scores_computed": n_prompts * k * len(rewards),
                                                                   "wall_s": 60.0}}))
        return SimpleNamespace(rows=n_prompts, skipped={})

    def train_and_eval(self, method, ckpt, feedback, prompts, budget, out, benchmarks, eval_settings=None, seed=0,
                       settings=None, resume=False, eval_out=None, progress=True, data=None):
        from harness.records import ResultRecord

        name = out.parent.name.rsplit("-seed", 1)[0]
        self.calls.append(("train", name, seed, method, tuple(sorted(settings.items())), resume, data.name,
                           tuple(benchmarks), eval_settings.limit, eval_settings.sample, eval_settings.sample_seed))
        assert feedback is None and prompts is None
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text("{}")
        if self.fail_on == f"{name}-seed{seed}":
            raise RuntimeError("killed mid-run")
        records = []
        for bench in benchmarks:
            gain = GAINS.get((name, seed), 0.0) if bench == "geneval" else 0.01
            training = {"method": method, "in_reward": bench == "geneval", "steps": budget,
                        "cost": {"wall_s": 120.0, "images_seen": budget * 32}}
            for overall, extra in ((0.40, {}), (0.40 + gain, {"method": method, "training": training})):
                records.append(ResultRecord(benchmark=bench, benchmark_version="1", world="builtin", model=ckpt,
                                            checkpoint_fingerprint="f", scores={"overall": overall},
                                            n_prompts=eval_settings.sample or 1, n_images=1, seeds={}, sampler={},
                                            perception={}, **extra))
        return records


def run_table(out: Path, fake: FakeApi, *extra: str) -> tuple[int, list[str]]:
    from benchmarks.tables import offline_methods

    lines: list[str] = []
    code = offline_methods.main(["--out", str(out), "--budget", "5", "--n-prompts", "3", *extra], api=fake,
                                echo=lines.append)
    return code, lines


def test_table_builds_once_trains_each_seed_and_resumes_after_a_kill(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="killed"):
        run_table(tmp_path, FakeApi(fail_on="rankdpo-seed1"))
    fake = FakeApi()
    code, lines = run_table(tmp_path, fake)
    assert code == 0
    # the dataset is not rebuilt, the killed run resumes its folder, the finished ones are skipped
    assert [(c[0], c[1], c[2], c[5]) for c in fake.calls] == [("train", "rankdpo", 1, True),
                                                              ("train", "diffusion-dpo", 2, False),
                                                              ("train", "rankdpo", 2, False)]
    # the dataset and the three finished runs
    assert next(line for line in lines if line.startswith("skip")) == "skip   datasets/k4-r3-n3-6abe9c (finished)"
    assert sum(line.startswith("skip") for line in lines) == 4
    table = (tmp_path / "table.md").read_text()
    assert "k = 4 images" in table and "12 images generated, 36 scores computed" in table
    rank_row = next(line for line in table.splitlines() if line.startswith("| RankDPO"))
    assert "44.3 *(in-reward)*" in rank_row and "44.0 / 45.0 / 44.0" in rank_row
    # RankDPO - Diffusion-DPO paired by seed: 0.02, 0.02, 0.03 -> mean +2.3 points
    assert "RankDPO (DCG weights, predicted ranking) - Diffusion-DPO: +2.3 [" in table
    assert "mean >= 0, 95 % interval excludes 0" in table


def test_table_ablations_get_their_own_dataset_and_settings(tmp_path: Path) -> None:
    fake = FakeApi()
    code, _ = run_table(tmp_path, fake, "--k", "2", "--rewards", "objective:geneval-partial", "--seeds", "0",
                        "--methods", "rankdpo-nodcg,rankdpo-psi")
    assert code == 0
    build = fake.calls[0]
    assert build[1:] == (2, ("objective:geneval-partial",), ("steps=10,guidance=2.0", "steps=10,guidance=4.0"))
    trains = fake.calls[1:]
    assert [(c[1], c[4]) for c in trains] == [("rankdpo-nodcg", (("dcg_weights", "false"),)),
                                              ("rankdpo-psi", (("ranking", "psi"),))]
    assert trains[0][6].startswith("k2-r1-n3-")
    code, lines = run_table(tmp_path, FakeApi(), "--dry-run")
    assert code == 0 and lines[0].startswith("to do") and "k4-r3-n3" in lines[0]
    code, _ = run_table(tmp_path, FakeApi(), "--k", "2", "--rewards", "objective:geneval-partial", "--seeds", "0",
                        "--methods", "rankdpo-nodcg", "--budget", "6")
    assert code == 2  # a finished record with another budget: one table, one budget


def test_table_subsample_is_seeded_recorded_and_labelled(tmp_path: Path) -> None:
    """--subsample BENCH=N evaluates that benchmark on a seeded subsample (a train_and_eval call of its own, which
    resumes the finished run), keeps it in the table record and names it in the table; other --subsample values are
    refused, not mixed."""
    code, lines = run_table(tmp_path, FakeApi(), "--dry-run", "--subsample", "t2i-compbench=300")
    assert code == 0 and lines[-1] == "evaluation: geneval the full protocol; t2i-compbench a subsample of 300 (seed 0)"
    one = ["--seeds", "0", "--methods", "rankdpo"]
    fake = FakeApi()
    assert run_table(tmp_path, fake, *one, "--subsample", "t2i-compbench=300", "--subsample-seed", "7")[0] == 0
    trains = [c for c in fake.calls if c[0] == "train"]
    # (benchmarks, limit, sample, sample_seed) of each call; the second resumes the run the first finished
    assert [c[7:] for c in trains] == [(("geneval",), None, None, 0), (("t2i-compbench",), None, 300, 7)]
    assert [c[5] for c in trains] == [False, True]
    record = json.loads((tmp_path / "k4-r3-n3-6abe9c" / "rankdpo-seed0" / "table-record.json").read_text())
    assert record["evaluation"] == {"geneval": {"limit": None, "sample": None, "sample_seed": None},
                                    "t2i-compbench": {"limit": None, "sample": 300, "sample_seed": 7}}
    assert record["n_prompts"] == {"geneval": 1, "t2i-compbench": 300} and record["limit"] is None
    assert set(record["scores"]) == {"geneval", "t2i-compbench"}
    table = (tmp_path / "table.md").read_text()
    assert "| t2i-compbench (300-prompt subsample) overall |" in table and "| geneval overall |" in table
    assert "- t2i-compbench: a subsample of 300 prompts spread evenly over its tags, drawn with seed 7" in table
    again = FakeApi()
    assert run_table(tmp_path, again, *one, "--subsample", "t2i-compbench=300", "--subsample-seed", "7")[0] == 0
    assert again.calls == []
    for other in (["--subsample", "t2i-compbench=300", "--subsample-seed", "8"],
                  ["--subsample", "t2i-compbench=200", "--subsample-seed", "7"], ["--subsample", "t2i-compbench=all"],
                  []):
        assert run_table(tmp_path, FakeApi(), *one, *other)[0] == 2
    assert run_table(tmp_path, FakeApi(), "--subsample", "dpg-bench=10")[0] == 2  # not a benchmark of this table


def test_table_without_subsample_keeps_one_call_and_reads_records_made_before_it(tmp_path: Path) -> None:
    """The full protocol trains and evaluates in one call as before --subsample existed, and a table record
    written then (no ``evaluation`` field) counts as finished."""
    fake = FakeApi()
    assert run_table(tmp_path, fake, "--seeds", "0", "--methods", "rankdpo")[0] == 0
    assert [c[7:] for c in fake.calls if c[0] == "train"] == [(("geneval", "t2i-compbench"), None, None, 0)]
    path = tmp_path / "k4-r3-n3-6abe9c" / "rankdpo-seed0" / "table-record.json"
    legacy = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("evaluation", "n_prompts")}
    path.write_text(json.dumps(legacy))
    code, lines = run_table(tmp_path, FakeApi(), "--seeds", "0", "--methods", "rankdpo", "--dry-run")
    assert code == 0 and all(line.startswith("done") for line in lines)
    assert run_table(tmp_path, FakeApi(), "--seeds", "0", "--methods", "rankdpo", "--subsample",
                     "t2i-compbench=300")[0] == 2
