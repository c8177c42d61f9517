"""Recorded rounds and human labels: our round folders, the label JSONL formats, the official D3PO layout."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.registry import PromptItem
from harness.errors import DataError, HarnessError
from harness.sampling import SamplerConfig
from trainers.base import Preference, Trajectories
from trainers.feedback import LabelsFeedback, parse_feedback
from trainers.labels import pairs_from_scores, read_annotator_scores, read_comparisons, read_labels
from trainers.rounds import UNKNOWN_SEED, load_round, read_round_index, save_round

PROMPTS = ["a photo of a red circle", "a photo of two squares"]


def make_round(k: int = 3, steps: int = 4) -> tuple[Trajectories, list[PromptItem]]:
    n = len(PROMPTS) * k
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 8, 8, 3), generator=gen, dtype=torch.uint8)
    traj = Trajectories(
        prompts=[p for p in PROMPTS for _ in range(k)], groups=[g for g in range(len(PROMPTS)) for _ in range(k)],
        seeds=list(range(100, 100 + n)), latents=torch.randn(n, steps + 1, 2, 4, 4, generator=gen),
        timesteps=torch.arange(steps * 100, 0, -100), log_probs=torch.randn(n, steps, generator=gen), images=images,
        config=SamplerConfig(num_inference_steps=steps, guidance_scale=2.0, eta=1.0, height=8, width=8))
    items = [PromptItem(g, p, "single_object", {"prompt": p, "tag": "single_object",
                                                 "include": [{"class": "circle", "count": 1}]})
             for g, p in enumerate(traj.prompts[::k]) for _ in range(k)]
    return traj, items


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_round_roundtrip(tmp_path: Path) -> None:
    traj, items = make_round()
    folder = save_round(tmp_path / "round", traj, items)
    assert sorted(p.name for p in (folder / "images").iterdir())[:2] == ["00000.png", "00001.png"]
    assert json.loads((folder / "prompt.json").read_text()) == PROMPTS
    loaded, loaded_items = load_round(folder)
    assert loaded_items == items and loaded.prompts == traj.prompts and loaded.seeds == traj.seeds
    assert loaded.groups == traj.groups and loaded.config == traj.config
    for name in ("latents", "timesteps", "log_probs", "images"):
        assert torch.equal(getattr(loaded, name), getattr(traj, name)), name
    with pytest.raises(HarnessError, match=r"already exists"):
        save_round(folder, traj, items)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_pairs_from_scores() -> None:
    assert pairs_from_scores([5, 6, 7], [0.5, 2.0, 0.5]) == [(5, 6, -1), (5, 7, 0), (6, 7, 1)]


def test_pairwise_and_ranking_labels_join_the_round(tmp_path: Path) -> None:
    traj, items = make_round()
    folder = save_round(tmp_path / "round", traj, items)
    write_jsonl(folder / "labels.jsonl", [
        {"prompt": PROMPTS[0], "image_w": "images/00002.png", "image_l": "00000.png", "source": "alice"},
        {"prompt": PROMPTS[0], "image_w": 1, "image_l": 2, "tie": True},
        {"prompt": PROMPTS[1], "images": ["00003.png", "00004.png", "00005.png"], "ranking": [2, 1, 3]},
        "",
        {"prompt": PROMPTS[1], "images": ["00003.png", "00005.png"], "scores": [0.25, 0.75]},
    ])
    labels = read_labels(folder)
    assert labels.preferences == [Preference(2, 0, 1), Preference(1, 2, 0), Preference(3, 4, -1),
                                  Preference(3, 5, 1), Preference(4, 5, 1), Preference(3, 5, -1)]
    feedback = parse_feedback(f"labels:{folder}", "builtin")
    assert isinstance(feedback, LabelsFeedback)
    loaded, loaded_items = feedback.load_round()
    images, groups = loaded.pil_images(), loaded.groups
    out = feedback.evaluate(images, loaded_items, groups)
    assert out.preferences == labels.preferences and out.labels_used == 6 and out.rewards is None
    # one process's share, in another order: rows are found by their pixels.
    share = [5, 3, 4]
    part = feedback.evaluate([images[r] for r in share], [loaded_items[r] for r in share], [1, 1, 1])
    assert part.preferences == [Preference(1, 2, -1), Preference(1, 0, 1), Preference(2, 0, 1), Preference(1, 0, -1)]
    with pytest.raises(HarnessError, match=r"not in the recorded round"):
        feedback.evaluate([Image.new("RGB", (8, 8))], loaded_items[:1], [0])
    # a label file kept apart from the round
    apart = write_jsonl(tmp_path / "apart.jsonl", [{"prompt": PROMPTS[0], "image_w": 0, "image_l": 1}])
    assert parse_feedback(f"labels:{apart}?round={folder}", "builtin").labels.preferences == [Preference(0, 1, 1)]


@pytest.mark.parametrize(("row", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({"image_w": 0, "image_l": 1}, "missing or empty 'prompt'"),
    ({"prompt": PROMPTS[0], "image_w": 0}, "needs both 'image_w' and 'image_l'"),
    ({"prompt": PROMPTS[0], "image_w": 0, "image_l": 1, "tie": "yes"}, "'tie' must be true or false"),
    ({"prompt": PROMPTS[0], "images": [0]}, "at least 2 image ids"),
    ({"prompt": PROMPTS[0], "images": [0, 1]}, "exactly one of 'ranking'"),
    ({"prompt": PROMPTS[0], "images": [0, 1], "scores": [1]}, "'scores' must be a list of 2 finite numbers"),
    ({"prompt": PROMPTS[0], "images": [0, 1], "ranking": [1, None]}, "'ranking' must be a list of 2"),
    ({"prompt": PROMPTS[0], "images": [0, 0], "scores": [1, 2]}, "the same image appears twice"),
    ({"prompt": PROMPTS[0], "image_w": 0.5, "image_l": 1}, "image ids must be strings"),
    ({"prompt": PROMPTS[0], "winner": 0}, "unknown row shape"),
    ({"prompt": PROMPTS[0], "image_w": "00099.png", "image_l": 1}, "image '00099.png' is not in the round"),
    ({"prompt": PROMPTS[0], "image_w": 0, "image_l": 7}, "image 7 is not in the round"),
    ({"prompt": "a photo of a cat", "image_w": 0, "image_l": 1}, "prompt 'a photo of a cat' is not a prompt of"),
    ({"prompt": PROMPTS[1], "image_w": 0, "image_l": 1}, "does not match its images' prompt"),
    ({"prompt": PROMPTS[0], "image_w": 0, "image_l": 3}, "belong to different prompts"),
])
def test_malformed_label_rows_name_file_and_line(tmp_path: Path, row: object, message: str) -> None:
    traj, items = make_round()
    folder = save_round(tmp_path / "round", traj, items)
    good = {"prompt": PROMPTS[0], "image_w": 0, "image_l": 1}
    path = write_jsonl(folder / "labels.jsonl", [good, "", row])
    with pytest.raises(DataError, match=message) as err:
        parse_feedback(f"labels:{folder}", "builtin")
    assert str(err.value).startswith(f"{path}:3: ") and "\n" not in str(err.value)


def test_label_locations_errors(tmp_path: Path) -> None:
    traj, items = make_round()
    folder = save_round(tmp_path / "round", traj, items)
    with pytest.raises(DataError, match=r"holds no labels.jsonl or labels/"):
        read_labels(folder)
    (folder / "labels").mkdir()
    with pytest.raises(DataError, match=r"no \*.jsonl label files"):
        read_labels(folder)
    empty = write_jsonl(tmp_path / "empty.jsonl", [""])
    with pytest.raises(DataError, match=r"no label rows"):
        read_comparisons(empty)
    with pytest.raises(DataError, match=r"neither round.json nor prompt.json"):
        read_labels(empty, round_dir=tmp_path)


# --- the official D3PO layout --------------------------------------------------------------------------------------


def official_round(root: Path, n_prompts: int = 2, k: int = 7, steps: int = 3, with_pickle: bool = True) -> Path:
    """A small sample folder in the official key names and shapes (scripts/sample.py), with 8x8 latents."""
    folder = root / "2024.01.01_00.00.00"
    (folder / "images").mkdir(parents=True)
    (folder / "prompt.json").write_text(json.dumps([f"prompt {i}" for i in range(n_prompts)]))
    rng = np.random.default_rng(0)
    for idx in range(n_prompts * k):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / "images" / f"{idx:05d}.png")
    if with_pickle:
        chain = torch.randn(n_prompts, k, steps + 1, 4, 8, 8)
        sample = {"prompt_embeds": torch.randn(n_prompts, k, 77, 16),
                  "timesteps": torch.tensor([[951, 901, 851]] * n_prompts),
                  "latents": chain[:, :, :-1].clone(), "next_latents": chain[:, :, 1:].clone()}
        with (folder / "sample.pkl").open("wb") as handle:
            pickle.dump(sample, handle)
    return folder


def test_official_d3po_layout_imports(tmp_path: Path) -> None:
    folder = official_round(tmp_path)
    labels_dir = tmp_path / "json"
    labels_dir.mkdir()
    # two annotators; the second scored one more prompt row than exists in the first (cut to the shortest).
    (labels_dir / "a.json").write_text(json.dumps([[0, 1, 0, 0, 0, 0, 1]]))
    (labels_dir / "b.json").write_text(json.dumps([[1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]]))
    assert read_annotator_scores(sorted(labels_dir.glob("*.json"))) == [[0.5, 1.0, 0, 0, 0, 0, 0.5]]
    feedback = parse_feedback(f"labels:{labels_dir}?round={folder}", "real")
    prefs = feedback.labels.preferences
    assert len(prefs) == 21 and all(max(p.i, p.j) < 7 for p in prefs)  # prompt 0's 7 images, all pairs
    assert Preference(0, 1, -1) in prefs and Preference(0, 6, 0) in prefs and Preference(1, 6, 1) in prefs
    assert Preference(2, 3, 0) in prefs
    traj, items = feedback.load_round()
    assert len(traj) == 14 and traj.num_steps == 3 and traj.latents.shape == (14, 4, 4, 8, 8)
    assert traj.timesteps.tolist() == [951, 901, 851] and traj.seeds == [UNKNOWN_SEED] * 14
    assert torch.isnan(traj.log_probs).all() and traj.groups == [0] * 7 + [1] * 7
    assert items[7].prompt == "prompt 1" and traj.config.eta == 1.0 and traj.config.guidance_scale == 5.0
    with (folder / "sample.pkl").open("rb") as handle:
        raw = pickle.load(handle)
    # row 7 * prompt + image: prompt 1, image 2 -> row 9; its last latent is next_latents[..., -1].
    assert torch.equal(traj.latents[9, :3], raw["latents"][1, 2]) and torch.equal(traj.latents[9, 3],
                                                                                   raw["next_latents"][1, 2, -1])
    image = np.asarray(Image.open(folder / "images" / "00009.png"))
    assert np.array_equal(traj.images[9].numpy(), image)


def test_official_layout_errors(tmp_path: Path) -> None:
    folder = official_round(tmp_path, with_pickle=False)
    with pytest.raises(DataError, match=r"has no sample.pkl"):
        load_round(folder)
    labels_dir = tmp_path / "json"
    labels_dir.mkdir()
    (labels_dir / "a.json").write_text(json.dumps([[0, 1, 2]]))
    with pytest.raises(DataError, match=r"entry 0 has 3 scores, but prompt 0 of the round has 7"):
        read_labels(labels_dir, folder)
    (labels_dir / "a.json").write_text(json.dumps([[0] * 7] * 3))
    with pytest.raises(DataError, match=r"3 scored prompt rows, but the round .* has only 2"):
        read_labels(labels_dir, folder)
    (labels_dir / "a.json").write_text(json.dumps([[0] * 7, [0] * 6]))
    with pytest.raises(DataError, match=r"a.json: entry 1: 6 scores, but entry 0 has 7"):
        read_labels(labels_dir, folder)
    (labels_dir / "a.json").write_text('[[0, 1,\n "x"]]')
    with pytest.raises(DataError, match=r"a.json: entry 0: expected a list of finite scores"):
        read_labels(labels_dir, folder)
    (labels_dir / "a.json").write_text('[[0, 1,\n ]]')
    with pytest.raises(DataError, match=r"a.json:2: not valid JSON"):
        read_labels(labels_dir, folder)
    (folder / "images" / "00013.png").unlink()
    with pytest.raises(DataError, match=r"expected NNNNN.png numbered"):
        read_round_index(folder)


def test_official_pickle_must_be_one_trajectory_per_image(tmp_path: Path) -> None:
    folder = official_round(tmp_path)
    with (folder / "sample.pkl").open("rb") as handle:
        sample = pickle.load(handle)
    sample["next_latents"][0, 0, 0] += 1
    with (folder / "sample.pkl").open("wb") as handle:
        pickle.dump(sample, handle)
    with pytest.raises(DataError, match=r"next_latents\[t\] differs from latents\[t \+ 1\]"):
        load_round(folder)
    (folder / "sample.pkl").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"unreadable pickle"):
        load_round(folder)
