"""``harness leaderboard rescore``: a record judged by an older judge is brought to the current one from the image
store, with no image sampled again, the run's description kept, and nothing written for a record it refuses.

Each test builds a tiny world: a trained-looking run folder (a copy of the random builtin checkpoint, its
``summary.json`` and ``metrics.jsonl``), a 2-prompt GenEval evaluation of it in a store, published, then aged: its
perception renamed to oracle v3 and two verdicts flipped, as an older oracle would have read them.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import checkpoints, leaderboard
from harness.api import EvalSettings, evaluate
from harness.builtin.oracle import VERSION
from harness.compare import load_evaluated, record_bench
from harness.errors import HarnessError
from harness.leaderboard.rescore import rescore
from harness.records import ResultRecord, rows_to_results
from harness.store import ImageStore
from tests.test_bad_input import cli

OLD_JUDGE = {"detector": "oracle@3", "color": "oracle@3"}
SUMMARY = {"method": "d3po", "ckpt": "builtin:shapes", "feedback": "objective:geneval", "seed": 3,
           "feedback_scorer": {"benchmark": "geneval"}, "cost": {"wall_s": 12.5, "images_sampled": 16}}


@dataclass
class World:
    checkpoint: Path
    store: Path
    results: Path
    fresh: ResultRecord  # the evaluation as the current judge makes it
    fresh_rows: list[dict]

    @property
    def records(self) -> list[Path]:
        return sorted((self.results / "records").glob("*.json"))


def make_world(tmp_path: Path, ckpt: Path, age: bool = True) -> World:
    run = tmp_path / "train-run"
    shutil.copytree(ckpt, run / "checkpoint")
    (run / "summary.json").write_text(json.dumps(SUMMARY))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"round": r, "images_sampled": 8 * r, "reward": 0.1 * r,
                                                           "loss": 1.0 / r}) + "\n" for r in (1, 2)))
    store = tmp_path / "store"
    (fresh,) = evaluate(str(run / "checkpoint"), ["geneval"], out=store, settings=EvalSettings(limit=2),
                        progress=False)
    (run_dir,) = (store / "runs").iterdir()
    results = tmp_path / "results"
    published = leaderboard.publish(run_dir, results, replicates=20)
    fresh_rows = load_evaluated(published).rows
    assert fresh_rows is not None
    if age:
        _age(published, results)
        with sqlite3.connect(store / "index.sqlite") as db:  # the rescore must judge the images itself
            db.execute("DELETE FROM scores")
    return World(run / "checkpoint", store, results, fresh, fresh_rows)


def _age(path: Path, results: Path) -> None:
    """Turn a published record into one an older oracle wrote: its perception says v3 and two verdicts differ."""
    evaluated = load_evaluated(path)
    record, rows = evaluated.record, [dict(row) for row in evaluated.rows or []]
    for row in rows[:2]:
        row["score"] = 1.0 - row["score"]
    record.perception = dict(OLD_JUDGE)
    bench = record_bench(record)
    record.scores = bench.aggregate(rows_to_results(rows))
    leaderboard.write_record(record, rows, results, bench.aggregate, replicates=20, replaces=path)


def snapshot(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("rescoring from a full store must not load the model")

    monkeypatch.setattr(checkpoints, "resolve_checkpoint", refused)


def test_a_stale_record_is_rescored_from_the_store(builtin_random_ckpt: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(tmp_path, builtin_random_ckpt)
    (stale_path,) = world.records
    stale = load_evaluated(stale_path).record
    assert stale.scores != world.fresh.scores and stale.training["curve"]["round"] == [1, 2]
    no_model_load(monkeypatch)

    (outcome,) = rescore(world.results, [world.store], replicates=20)
    assert outcome.status == "rescored" and (outcome.generated, outcome.images) == (0, 8)
    assert outcome.changes == [f"color oracle@3 -> oracle@{VERSION}", f"detector oracle@3 -> oracle@{VERSION}"]
    assert outcome.line().startswith(f"{stale_path.stem}: overall {stale.scores['overall']:.4f} -> "
                                     f"{world.fresh.scores['overall']:.4f} (")
    assert "0 images regenerated, 8 from" in outcome.line()
    (path,) = world.records
    assert path == outcome.path != stale_path and not stale_path.with_suffix(".samples.jsonl").exists()
    new = load_evaluated(path)
    assert new.record.scores == world.fresh.scores and new.rows == world.fresh_rows
    assert new.record.perception == world.fresh.perception and new.record.scorer_hash == world.fresh.scorer_hash
    for kept in ("model", "checkpoint_fingerprint", "method", "training", "sampler", "created"):
        assert getattr(new.record, kept) == getattr(stale, kept), kept
    assert new.record.method == "d3po" and new.record.training["seed"] == 3
    assert new.record.wall_time_s["generation"] == stale.wall_time_s["generation"]
    assert new.record.environment["generation"] == stale.environment["generation"]
    assert new.record.environment["rescored"]["perception"] == OLD_JUDGE
    assert new.record.environment["rescored"]["generation"]["generated"] == 0
    assert leaderboard.check(world.results) != []  # the tables still show the old scores
    leaderboard.build(world.results)
    assert leaderboard.check(world.results) == []

    before = snapshot(world.results)
    (again,) = rescore(world.results, [world.store])
    assert again.status == "up to date" and again.line() == f"{path.stem}: up to date"
    assert snapshot(world.results) == before


def test_a_current_record_is_skipped(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    world = make_world(tmp_path, builtin_random_ckpt, age=False)
    before = snapshot(world.results, world.store)
    (outcome,) = rescore(world.results, [world.store])
    assert outcome.status == "up to date"
    assert snapshot(world.results, world.store) == before


def test_missing_images_are_generated_when_the_checkpoint_is_here(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    world = make_world(tmp_path, builtin_random_ckpt)
    (run_dir,) = (world.store / "runs").iterdir()
    image = Path(json.loads((run_dir / "samples.jsonl").read_text().splitlines()[5])["image"])
    original = image.read_bytes()
    image.unlink()
    (outcome,) = rescore(world.results, [world.store], replicates=20)
    assert outcome.status == "rescored" and outcome.generated == 1
    assert "1 images regenerated, 7 from" in outcome.line()
    assert image.read_bytes() == original  # sampled again in its original batch: the same bits
    assert load_evaluated(outcome.path).record.scores == world.fresh.scores


def test_a_changed_checkpoint_is_refused(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    world = make_world(tmp_path, builtin_random_ckpt)
    (world.checkpoint / "unet" / "extra.txt").write_text("another model now lives at this path")
    before = snapshot(world.results)
    (outcome,) = rescore(world.results, [world.store])
    assert outcome.status == "refused" and "now has fingerprint" in outcome.message
    assert "it is another model" in outcome.line()
    assert snapshot(world.results) == before
    (dry,) = rescore(world.results, [world.store], dry_run=True)
    assert "CHANGED" in dry.message and "it would be refused" in dry.message


def test_a_missing_checkpoint_needs_every_image_in_a_store(builtin_random_ckpt: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world(tmp_path, builtin_random_ckpt)
    shutil.rmtree(world.checkpoint)
    empty = tmp_path / "empty-store"
    ImageStore(empty)
    before = snapshot(world.results)
    capsys.readouterr()  # what building the world printed
    code, out, err = cli(capsys, monkeypatch, "leaderboard", "rescore", "--results", str(world.results), "--store",
                         str(empty))
    assert code == 2, out + err
    (line,) = out.splitlines()
    assert line.endswith(f"checkpoint {world.checkpoint} not found and the stores hold 0 of its 8 images: rescore "
                         "on the machine that has the run, or pass --store with its images")
    assert err.strip() == "error: 1 of 1 records refused (lines above); they were left as they were"
    assert snapshot(world.results) == before

    no_model_load(monkeypatch)  # with the full store beside it, the images are all there: no model is needed
    (outcome,) = rescore(world.results, [empty, world.store], replicates=20)
    assert outcome.status == "rescored" and outcome.generated == 0 and outcome.store == world.store
    assert load_evaluated(outcome.path).record.scores == world.fresh.scores


def test_dry_run_lists_and_writes_nothing(builtin_random_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world(tmp_path, builtin_random_ckpt)
    before = snapshot(world.results, world.store)
    capsys.readouterr()  # what building the world printed
    code, out, err = cli(capsys, monkeypatch, "leaderboard", "rescore", "--dry-run", "--results", str(world.results),
                         "--store", str(world.store))
    assert code == 0, out + err
    (record,) = world.records
    assert out.splitlines() == [
        f"{record.stem}: stale (color oracle@3 -> oracle@{VERSION}, detector oracle@3 -> oracle@{VERSION}); checkpoint "
        f"{world.checkpoint} on this machine (fingerprint matches); 8/8 images in {world.store}",
        "1 of 1 records stale; nothing written (dry run)"]
    assert snapshot(world.results, world.store) == before
    assert [o.status for o in rescore(world.results, [world.store], dry_run=True, only="*-d3po-*")] == ["stale"]


def test_bad_input_is_one_line_before_anything_is_written(builtin_random_ckpt: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world(tmp_path, builtin_random_ckpt)
    with pytest.raises(HarnessError, match=r"image store .*nowhere not found"):
        rescore(world.results, [tmp_path / "nowhere"])
    with pytest.raises(HarnessError, match=r"no record .* matches --only"):
        rescore(world.results, [world.store], only="nothing-*")
    bad = world.results / "records" / "broken.json"
    bad.write_text(json.dumps({"schema_version": 3, "benchmark": "geneval"}))
    before = snapshot(world.results)
    capsys.readouterr()  # what building the world printed
    code, out, err = cli(capsys, monkeypatch, "leaderboard", "rescore", "--results", str(world.results), "--store",
                         str(world.store))
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {bad} is not a valid result record") and "nothing was rescored" in line
    assert snapshot(world.results) == before


def test_a_record_whose_draws_changed_is_refused(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    """Same benchmark version, other seeds than the benchmark draws now: not the same evaluation, so not rescored."""
    world = make_world(tmp_path, builtin_random_ckpt)
    (path,) = world.records
    evaluated = load_evaluated(path)
    rows = [dict(row) for row in evaluated.rows or []]
    rows[0]["seed"] += 1000
    leaderboard.write_record(evaluated.record, rows, world.results, record_bench(evaluated.record).aggregate,
                             replicates=20, replaces=path)
    before = snapshot(world.results, world.store)
    (outcome,) = rescore(world.results, [world.store])
    assert outcome.status == "refused" and "prompts or seeds the benchmark now draws differ" in outcome.message
    assert snapshot(world.results, world.store) == before
