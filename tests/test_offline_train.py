"""Offline training end to end on a random-init builtin model: weights move, loss is finite, resume is exact, and the
run folder is what ``--ckpt`` and the online loop's conventions expect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.registry import PromptItem
from harness.checkpoints import resolve_checkpoint
from harness.errors import DataError, HarnessError
from trainers.offline import encode_images, train_offline
from trainers.ranked_data import Generator, RewardSource, build_ranked


def brightness(images, items) -> np.ndarray:
    return np.array([np.asarray(image, dtype=float).mean() for image in images])


def redness(images, items) -> np.ndarray:
    return np.array([np.asarray(image, dtype=float)[..., 0].mean() for image in images])


@pytest.fixture(scope="module")
def ranked(builtin_random_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ranked")
    items = [PromptItem(i, prompt, "t", {}) for i, prompt in
             enumerate(["a red circle", "a blue square", "two green triangles", "a yellow star"])]
    rewards = [RewardSource("test:brightness", {}, brightness), RewardSource("test:redness", {}, redness)]
    build_ranked([Generator(str(builtin_random_ckpt))], items, 3, rewards, out, progress=False,
                 load_policy=resolve_checkpoint)
    return out


def unet_weights(ckpt: Path | str) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in resolve_checkpoint(str(ckpt)).unet.state_dict().items()}


SMALL = {"batch_size": "2", "save_every": "1"}


@pytest.mark.parametrize("method", ["rankdpo", "diffusion-dpo"])
def test_one_step_changes_the_weights_and_the_loss_is_finite(method: str, builtin_random_ckpt: Path, ranked: Path,
                                                             tmp_path: Path) -> None:
    result = train_offline(method, str(builtin_random_ckpt), ranked, 1, tmp_path, settings=SMALL, progress=False)
    assert result.checkpoint == tmp_path / "checkpoint"
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and np.isfinite(metrics[0]["loss"]) and metrics[0]["loss"] > 0
    base, trained = unet_weights(builtin_random_ckpt), unet_weights(result.checkpoint)
    changed = sum(not torch.equal(base[k], trained[k]) for k in base)
    assert changed > len(base) // 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"] == method and summary["steps"] == 1
    assert (summary["budget"], summary["budget_unit"]) == (1, "optimiser steps")
    assert summary["cost"]["images_seen"] == 2 * 3
    dataset = summary["dataset"]
    assert dataset["rows"] == 4 and dataset["skipped"] == {} and dataset["build_status"] == "complete"
    assert dataset["build_cost"]["images_generated"] == 12 and dataset["build_cost"]["scores_computed"] == 24
    assert dataset["build_cost"]["wall_s"] > 0
    assert [r["spec"] for r in dataset["provenance"]["rewards"]] == ["test:brightness", "test:redness"]
    assert dataset["provenance"]["generators"][0]["ckpt"] == str(builtin_random_ckpt)
    assert summary["overlap"]["benchmarks"] and (tmp_path / "overlap.txt").is_file()


def test_resume_is_exact(builtin_random_ckpt: Path, ranked: Path, tmp_path: Path) -> None:
    settings = {**SMALL, "batch_size": "1", "grad_accumulation": "2", "proportion_empty_prompts": "0.5"}
    straight = train_offline("rankdpo", str(builtin_random_ckpt), ranked, 2, tmp_path / "a", settings=settings,
                             progress=False)
    train_offline("rankdpo", str(builtin_random_ckpt), ranked, 1, tmp_path / "b", settings=settings, progress=False)
    with pytest.raises(HarnessError, match="--resume"):
        train_offline("rankdpo", str(builtin_random_ckpt), ranked, 2, tmp_path / "b", settings=settings,
                      progress=False)
    moved = tmp_path / "moved-dataset"  # the same data elsewhere: resumed on its content hash, run.json follows it
    shutil.copytree(ranked, moved)
    resumed = train_offline("rankdpo", str(builtin_random_ckpt), moved, 2, tmp_path / "b", settings=settings,
                            resume=True, progress=False)
    assert json.loads((tmp_path / "b" / "run.json").read_text())["data"] == str(moved.resolve())
    a, b = unet_weights(straight.checkpoint), unet_weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    assert straight.summary["final_metrics"]["loss"] == resumed.summary["final_metrics"]["loss"]
    with pytest.raises(HarnessError, match="different config"):
        train_offline("rankdpo", str(builtin_random_ckpt), ranked, 4, tmp_path / "b", settings={"beta": "7"},
                      resume=True, progress=False)


def test_lora_run_exports_an_adapter_that_loads(builtin_random_ckpt: Path, ranked: Path, tmp_path: Path) -> None:
    result = train_offline("diffusion-dpo", str(builtin_random_ckpt), ranked, 1, tmp_path,
                           settings={**SMALL, "lora_rank": "2", "pairs": "best-worst"}, progress=False)
    assert (result.checkpoint / "pytorch_lora_weights.safetensors").is_file()
    policy = resolve_checkpoint(str(result.checkpoint))
    assert any("lora_" in name for name, _ in policy.unet.named_parameters())


def test_pairs_file_trains(builtin_random_ckpt: Path, ranked: Path, tmp_path: Path) -> None:
    images = sorted((ranked / "store" / "images").rglob("*.png"))
    lines = [{"prompt": "a red circle", "image_w": str(images[0]), "image_l": str(images[1])},
             {"prompt": "a blue square", "image_w": str(images[2]), "image_l": str(images[3])}]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = train_offline("diffusion-dpo", str(builtin_random_ckpt), pairs, 1, tmp_path / "run", settings=SMALL,
                           progress=False)
    assert result.summary["final_metrics"]["pairs"] == 2.0


def test_bad_settings_are_one_line_errors(builtin_random_ckpt: Path, ranked: Path, tmp_path: Path) -> None:
    ckpt = str(builtin_random_ckpt)
    with pytest.raises(HarnessError, match="unknown offline method 'dpo'"):
        train_offline("dpo", ckpt, ranked, 1, tmp_path)
    with pytest.raises(HarnessError, match="optimiser steps"):
        train_offline("rankdpo", ckpt, ranked, 0, tmp_path)
    with pytest.raises(HarnessError, match="ranking"):
        train_offline("rankdpo", ckpt, ranked, 1, tmp_path, settings={"ranking": "random"})
    with pytest.raises(HarnessError, match="batch_size must be > 0"):
        train_offline("rankdpo", ckpt, ranked, 1, tmp_path, settings={"batch_size": "0"})
    with pytest.raises(HarnessError, match="unknown setting"):
        train_offline("rankdpo", ckpt, ranked, 1, tmp_path, settings={"pairs": "all"})
    assert not any(tmp_path.iterdir())


def test_encode_inverts_decode_for_the_builtin_model(builtin_random_ckpt: Path) -> None:
    policy = resolve_checkpoint(str(builtin_random_ckpt))
    latents = torch.rand(2, *policy.latent_shape(48, 48)) * 2 - 1
    pixels = policy.decode(latents).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.allclose(encode_images(policy, pixels), latents, atol=1 / 127.5)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(builtin_random_ckpt: Path, ranked: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from trainers.rankdpo import RankDPO

    real_loss, calls = RankDPO.loss, []

    def nan_on_third_call(self, errors, ref_errors, rows):
        calls.append(1)
        loss, metrics = real_loss(self, errors, ref_errors, rows)
        return (loss * float("nan"), metrics) if len(calls) == 3 else (loss, metrics)

    monkeypatch.setattr(RankDPO, "loss", nan_on_third_call)
    out = tmp_path / "run"
    with pytest.raises(HarnessError, match=r"step 3: the rankdpo loss is nan; stopped, the last good checkpoint "
                                           r"\(after step 2\)"):
        train_offline("rankdpo", str(builtin_random_ckpt), ranked, 4, out, settings=SMALL, progress=False)
    state = torch.load(out / "state.pt", weights_only=False)
    assert state["step"] == 2 and all(torch.isfinite(w).all() for w in state["weights"].values())
    saved = unet_weights(out / "checkpoint")
    assert all(torch.equal(saved[k], state["weights"][k].float()) for k in state["weights"])
    with pytest.raises(HarnessError, match=r"no checkpoint was saved yet \(save_every=50\)"):
        calls.clear()
        train_offline("rankdpo", str(builtin_random_ckpt), ranked, 4, tmp_path / "b", settings={"batch_size": "2"},
                      progress=False)


def test_bad_rows_are_skipped_counted_and_reported(builtin_random_ckpt: Path, ranked: Path, tmp_path: Path) -> None:
    """A missing image, a ranking of the wrong length, NaN scores and a one-image list: each a counted skip in the
    run's summary; the remaining rows train with a finite loss."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(ranked / "ranked.parquet").to_pylist()
    for row in rows:
        row["images"] = [str(ranked / image) for image in row["images"]]
    good, missing, short, nan, single = (dict(row) for row in rows[:4] + rows[:1])
    missing["images"] = [*missing["images"][:-1], str(tmp_path / "gone.png")]
    short["ranking"] = short["ranking"][:-1]
    nan["scores"] = [[float("nan")] * 3, nan["scores"][1]]
    single.update(images=single["images"][:1], psi=[1.0], ranking=[0], scores=[[1.0], [1.0]])
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist([good, missing, short, nan, single]), folder / "ranked.parquet")
    result = train_offline("diffusion-dpo", str(builtin_random_ckpt), folder, 1, tmp_path / "run",
                           settings={**SMALL, "batch_size": "1"}, progress=False)
    assert result.summary["dataset"]["rows"] == 1
    assert result.summary["dataset"]["skipped"] == {"missing_image": 1, "bad_ranking": 1, "nan_score": 1,
                                                    "one_image": 1}
    assert np.isfinite(result.summary["final_metrics"]["loss"])


def test_an_image_that_vanishes_after_loading_is_a_one_line_error(builtin_random_ckpt: Path, ranked: Path,
                                                                  tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(ranked, data)
    dataset_images = sorted((data / "store" / "images").rglob("*.png"))
    from trainers import offline

    real_load = offline.load_dataset

    def load_then_delete(path):
        loaded = real_load(path)
        for image in dataset_images:
            image.unlink()
        return loaded

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(offline, "load_dataset", load_then_delete)
        with pytest.raises(DataError, match=r"unreadable image .*rebuild the dataset"):
            train_offline("rankdpo", str(builtin_random_ckpt), data, 1, tmp_path / "run", settings=SMALL,
                          progress=False)
