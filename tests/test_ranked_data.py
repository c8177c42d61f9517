"""The ranked preference dataset: build, provenance, resume after a kill, and bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import harness.generation
from benchmarks.registry import PromptItem
from harness.checkpoints import resolve_checkpoint
from harness.cli import app
from harness.errors import DataError, HarnessError
from trainers.ranked_data import (
    BUILD_FILE,
    DATASET_FILE,
    Generator,
    RewardSource,
    build_ranked,
    feedback_reward,
    load_dataset,
    parse_sampler,
    psi_from_scores,
    ranking_from_psi,
)

ITEMS = [PromptItem(0, "a red circle", "single_object", {}), PromptItem(1, "two blue squares", "counting", {})]


class Counting:
    """A reward that counts the images it scores and can fail after a given number of calls (a simulated kill)."""

    def __init__(self, fn, fail_after: int | None = None) -> None:
        self.fn, self.fail_after, self.images, self.calls = fn, fail_after, 0, 0

    def __call__(self, images, items) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.images += len(images)
        return np.array([self.fn(np.asarray(image, dtype=float)) for image in images])


def brightness(pixels: np.ndarray) -> float:
    return pixels.mean()


def redness(pixels: np.ndarray) -> float:
    return (pixels[..., 0] - pixels[..., 1:].mean(-1)).mean()


def sources(fail_after: int | None = None) -> tuple[list[RewardSource], list[Counting]]:
    counters = [Counting(brightness, fail_after), Counting(redness)]
    return [RewardSource("test:brightness", {"fn": "mean"}, counters[0]),
            RewardSource("test:redness", {"fn": "red"}, counters[1])], counters


def build(ckpt: Path, out: Path, rewards: list[RewardSource], **kwargs) -> object:
    generators = [Generator(str(ckpt)), Generator(str(ckpt), {"guidance_scale": 4.0})]
    return build_ranked(generators, ITEMS, 3, rewards, out, seed=1, batch_size=2, score_chunk=2, progress=False,
                        load_policy=resolve_checkpoint, **kwargs)


def test_build_writes_rows_with_psi_ranking_and_provenance(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    rewards, _ = sources()
    summary = build(builtin_random_ckpt, tmp_path, rewards)
    assert (summary.rows, summary.images_generated, summary.scores_computed) == (2, 6, 12)
    table = pq.read_table(tmp_path / DATASET_FILE)
    rows = table.to_pylist()
    assert [r["prompt"] for r in rows] == [item.prompt for item in ITEMS]
    for row in rows:
        assert row["generators"] == [0, 1, 0]  # slot j from generator j mod 2
        assert all((tmp_path / image).is_file() for image in row["images"])
        scores = np.array(row["scores"])
        assert scores.shape == (2, 3)
        np.testing.assert_allclose(row["psi"], psi_from_scores(scores))
        assert row["ranking"] == ranking_from_psi(row["psi"])
    provenance = json.loads(table.schema.metadata[b"harness"])
    assert [g["sampler"]["guidance_scale"] for g in provenance["generators"]] == [2.0, 4.0]
    assert [r["spec"] for r in provenance["rewards"]] == ["test:brightness", "test:redness"]
    assert all(len(r["version"]) == 16 for r in provenance["rewards"])
    build_info = json.loads((tmp_path / BUILD_FILE).read_text())
    assert build_info["total_cost"]["images_generated"] == 6
    assert build_info["total_cost"]["scores_computed"] == 12
    dataset = load_dataset(tmp_path)
    assert len(dataset.rows) == 2 and not dataset.skipped
    assert dataset.rows[0].psi.tolist() == rows[0]["psi"]


def test_kill_during_scoring_then_rerun_does_no_repeated_work(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    rewards, _ = sources(fail_after=1)  # the first reward dies after scoring one chunk of 2 images
    with pytest.raises(KeyboardInterrupt):
        build(builtin_random_ckpt, tmp_path / "run", rewards)
    assert not (tmp_path / "run" / DATASET_FILE).exists()
    rewards, counters = sources()
    summary = build(builtin_random_ckpt, tmp_path / "run", rewards)
    assert summary.images_generated == 0 and summary.images_cached == 6
    assert counters[0].images == 4 and counters[1].images == 6  # 2 of the first reward's scores survived the kill
    assert (summary.scores_computed, summary.scores_cached) == (10, 2)
    again, counters = sources()
    summary = build(builtin_random_ckpt, tmp_path / "run", again)
    assert (summary.images_generated, summary.scores_computed) == (0, 0)
    assert counters[0].images == counters[1].images == 0
    # the interrupted-and-resumed dataset equals one built in a single go
    clean, _ = sources()
    build(builtin_random_ckpt, tmp_path / "clean", clean)
    resumed = pq.read_table(tmp_path / "run" / DATASET_FILE).to_pylist()
    whole = pq.read_table(tmp_path / "clean" / DATASET_FILE).to_pylist()
    for a, b in zip(resumed, whole):
        assert (a["image_keys"], a["scores"], a["psi"], a["ranking"]) == (
            b["image_keys"], b["scores"], b["psi"], b["ranking"])
    assert json.loads((tmp_path / "run" / BUILD_FILE).read_text())["total_cost"]["images_generated"] == 6


def test_kill_during_generation_then_rerun_generates_only_the_rest(builtin_random_ckpt: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real_sample, calls = harness.generation.sample, []

    def dying_sample(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("simulated kill")
        calls.append(1)
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(harness.generation, "sample", dying_sample)
    with pytest.raises(KeyboardInterrupt):
        build(builtin_random_ckpt, tmp_path, sources()[0])
    monkeypatch.setattr(harness.generation, "sample", real_sample)
    summary = build(builtin_random_ckpt, tmp_path, sources()[0])
    assert (summary.images_cached, summary.images_generated) == (2, 4)  # one batch of 2 survived


def test_nan_reward_rows_are_skipped_and_counted(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    def nan_for_circles(images, items):
        return np.array([np.nan if "circle" in item.prompt else 1.0 for item in items])

    rewards = [*sources()[0], RewardSource("test:nan", {}, nan_for_circles)]
    summary = build(builtin_random_ckpt, tmp_path, rewards)
    assert summary.rows == 1 and summary.skipped == {"nan_score": 1}
    assert json.loads((tmp_path / BUILD_FILE).read_text())["skipped"] == {"nan_score": 1}


def test_build_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="at least 2 images"):
        build_ranked([Generator("x")], ITEMS, 1, sources()[0], tmp_path)
    with pytest.raises(HarnessError, match="smaller than the 3 generators"):
        build_ranked([Generator("x")] * 3, ITEMS, 2, sources()[0], tmp_path)
    with pytest.raises(HarnessError, match="KEY=VALUE"):
        parse_sampler("steps")
    with pytest.raises(HarnessError, match="guidance must be float"):
        parse_sampler("guidance=high")
    assert parse_sampler("steps=10, guidance=2.5") == {"num_inference_steps": 10, "guidance_scale": 2.5}


def write_rows(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.png").write_bytes(b"png")
    (folder / "b.png").write_bytes(b"png")
    pq.write_table(pa.Table.from_pylist(rows), folder / DATASET_FILE)


def row(**changes) -> dict:
    base = {"prompt": "p", "images": ["a.png", "b.png"], "psi": [1.0, 0.0], "ranking": [0, 1],
            "scores": [[0.9, 0.1]]}
    return {**base, **changes}


def test_bad_rows_are_counted_skips(tmp_path: Path) -> None:
    write_rows(tmp_path, [
        row(),
        row(images=["a.png", "gone.png"]),
        row(ranking=[0, 1, 2]),
        row(ranking=[0, 0]),
        row(scores=[[0.9, float("nan")]]),
        row(psi=[float("nan"), 0.0]),
        row(images=["a.png"], psi=[1.0], ranking=[0], scores=[[1.0]]),
        row(psi=[1.0]),
        row(ranking=[1, 0]),  # ranks the ψ = 0 image first
        row(scores=[[0.9]]),  # one score for two images
        row(scores=[[0.9, 0.1], [0.5]]),  # ragged: the second reward model scored one image
    ])
    dataset = load_dataset(tmp_path)
    assert len(dataset.rows) == 1
    assert dict(dataset.skipped) == {"missing_image": 1, "bad_ranking": 2, "nan_score": 2, "one_image": 1,
                                     "bad_psi": 1, "ranking_contradicts_psi": 1, "bad_scores": 2}


def test_unusable_datasets_are_one_line_errors(tmp_path: Path) -> None:
    write_rows(tmp_path / "bad", [row(images=["a.png"], psi=[1.0], ranking=[0])])
    with pytest.raises(DataError, match=r"no usable rows.*1 one_image"):
        load_dataset(tmp_path / "bad")
    with pytest.raises(DataError, match=r"no ranked\.parquet"):
        load_dataset(tmp_path / "nothing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / DATASET_FILE).write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet"):
        load_dataset(tmp_path / "junk")
    pq.write_table(pa.table({"prompt": ["p"]}), tmp_path / "junk" / DATASET_FILE)
    with pytest.raises(DataError, match="missing column"):
        load_dataset(tmp_path / "junk")


def test_pairs_file(tmp_path: Path) -> None:
    (tmp_path / "w.png").write_bytes(b"png")
    (tmp_path / "l.png").write_bytes(b"png")
    lines = [{"prompt": "p", "image_w": "w.png", "image_l": "l.png"},
             {"prompt": "q", "image_w": "w.png", "image_l": "missing.png"}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    dataset = load_dataset(tmp_path / "pairs.jsonl")
    assert len(dataset.rows) == 1 and dataset.skipped == {"missing_image": 1}
    assert dataset.rows[0].psi.tolist() == [1.0, 0.0]
    lists = [{"prompt": "p", "images": ["w.png", "l.png", "w.png"], "scores": [0.1, 0.9, 0.5]},
             {"prompt": "p", "images": ["w.png", "l.png", "w.png"], "ranking": [2, 0, 1]},
             {"prompt": "p", "images": ["w.png", "l.png"], "ranking": [0, 2]},
             {"prompt": "p", "images": ["w.png", "l.png"], "scores": [0.1, None]},
             {"prompt": "p", "images": ["w.png"], "scores": [0.1]}]
    (tmp_path / "lists.jsonl").write_text("\n".join(json.dumps(x) for x in lists) + "\n")
    dataset = load_dataset(tmp_path / "lists.jsonl")
    assert [r.psi.tolist() for r in dataset.rows] == [[0.0, 1.0, 0.5], [0.5, 0.0, 1.0]]
    assert [r.ranking for r in dataset.rows] == [[1, 2, 0], [2, 0, 1]]
    assert dataset.skipped == {"bad_ranking": 1, "nan_score": 1, "one_image": 1}
    (tmp_path / "broken.jsonl").write_text('{"prompt": "p"}\n')
    with pytest.raises(DataError, match=r"broken\.jsonl:1"):
        load_dataset(tmp_path / "broken.jsonl")


def test_feedback_objective_as_reward() -> None:
    source = feedback_reward("objective:brightness", "builtin")
    from PIL import Image

    values = source.score([Image.new("RGB", (4, 4), (10, 10, 10)), Image.new("RGB", (4, 4), (200, 200, 200))],
                          ITEMS)
    assert values[1] > values[0]
    assert source.version == feedback_reward("objective:brightness", "builtin").version


def test_cli_build_ranked(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "data", "build-ranked", "--ckpt", str(builtin_random_ckpt), "--prompts", "builtin:geneval-train",
        "--n", "2", "--k", "2", "--rewards", "objective:brightness,objective:jpeg-compressibility",
        "--sampler", "steps=2,guidance=2.0", "--out", str(tmp_path / "data"), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "2 prompts" in result.output
    dataset = load_dataset(tmp_path / "data")
    assert len(dataset.rows) == 2
    assert [r["spec"] for r in dataset.provenance["rewards"]] == ["objective:brightness",
                                                                  "objective:jpeg-compressibility"]


def test_generators_from_different_worlds_are_refused(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    from types import SimpleNamespace

    def load(ckpt: str) -> object:
        return resolve_checkpoint(ckpt) if ckpt == str(builtin_random_ckpt) else SimpleNamespace(world="real")

    generators = [Generator(str(builtin_random_ckpt)), Generator("sd-folder")]
    with pytest.raises(HarnessError, match="one dataset holds one world"):
        build_ranked(generators, ITEMS, 2, sources()[0], tmp_path, progress=False, load_policy=load)
