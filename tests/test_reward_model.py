"""The learned reward model (Bradley-Terry on pairs), its folder, ``reward:PATH``, ``harness train-reward``, and the
pre-trained scorers on tiny random-init CLIP models."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.geneval.prompts import builtin_metadata
from benchmarks.registry import PromptItem
from harness.builtin.render import render
from harness.builtin.world import COLORS, ObjectRequest, SceneRequest, sample_scene
from harness.errors import DataError, HarnessError
from trainers.feedback import RewardFeedback, get_objective, parse_feedback
from trainers.reward_model import (
    AestheticMLP,
    AestheticScorer,
    ClipEncoder,
    ClipPreferenceScorer,
    HFClip,
    RewardModel,
    bt_loss,
    tokenize,
    train_reward_model,
)


def colour_pairs(root: Path, n: int, seed: int = 0, checked: int = 24) -> Path:
    """Pairs for GenEval "colors" prompts: the requested colour (winner) vs another colour, same shape. Learning
    them needs the prompt: which colour is right depends on its words. The labels are GenEval's verdicts: the
    geneval objective is checked to call the first ``checked`` winners correct and their losers wrong (reading every
    image with the oracle would dominate the test's time)."""
    metadata = [m for m in builtin_metadata() if m["tag"] == "colors"]
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    rows, images, items = [], [], []
    for k in range(n):
        m = rng.choice(metadata)
        clause = m["include"][0]
        other = rng.choice([c for c in COLORS if c != clause["color"]])
        w, lo = (render(sample_scene(SceneRequest(groups=(ObjectRequest(clause["class"], color=c),)), rng))
                 for c in (clause["color"], other))
        w.save(root / "images" / f"{k}w.png")
        lo.save(root / "images" / f"{k}l.png")
        rows.append({"prompt": m["prompt"], "image_w": f"images/{k}w.png", "image_l": f"images/{k}l.png"})
        if k < checked:
            images += [w, lo]
            items += [PromptItem(k, m["prompt"], m["tag"], m)] * 2
    assert get_objective("geneval", "builtin").values(images, items).tolist() == [1.0, 0.0] * min(n, checked)
    path = root / "preferences.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bt_loss_formula() -> None:
    r_w, r_l = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    expected = (-np.log(1 / (1 + np.exp(-1.0))) + np.log(2)) / 2
    assert float(bt_loss(r_w, r_l)) == pytest.approx(expected, rel=1e-6)


def test_tokenize_keeps_word_order() -> None:
    words = ["a", "blue", "circle", "red", "square"]
    ids = tokenize(["a red circle, a blue square", "a zebra"], words, 8)
    assert ids[0].tolist() == [2, 5, 4, 1, 2, 3, 6, 0]  # "," is not in words: UNK (1); PAD (0) after the prompt
    assert ids[1].tolist() == [2, 1, 0, 0, 0, 0, 0, 0]


def test_learned_reward_model_lowers_heldout_pair_loss(tmp_path: Path) -> None:
    pairs = colour_pairs(tmp_path / "run", 400)
    # 24 px keeps the test quick; colours survive the resize and the network pools, so any size works.
    model = train_reward_model(pairs, tmp_path / "rm", seed=0, epochs=6, image_size=24)
    metrics = model.metrics
    assert (metrics["pairs"], metrics["heldout_pairs"]) == (400, 80)
    # Random init scores every image about the same (loss ~ log 2); the trained model ranks held-out pairs, which
    # only the prompt's colour word can decide. (Seeds 0-2 reach 0.09-0.29 within 10 epochs on 400 pairs.)
    assert metrics["initial_heldout_loss"] == pytest.approx(np.log(2), abs=0.05)
    assert metrics["best_heldout_loss"] < 0.45 and metrics["best_heldout_accuracy"] >= 0.8
    # the saved folder reloads to the same scores, and serves as reward:PATH feedback
    loaded = RewardModel.load(tmp_path / "rm")
    images = [Image.open(tmp_path / "run" / "images" / name) for name in ("0w.png", "0l.png")]
    prompts = ["a photo of a red circle"] * 2
    assert np.allclose(loaded.score(images, prompts), model.score(images, prompts))
    feedback = parse_feedback(f"reward:{tmp_path / 'rm'}", "builtin")
    assert isinstance(feedback, RewardFeedback)
    items = [PromptItem(0, p, "colors", {}) for p in prompts]
    batch = feedback.evaluate(images, items, [0, 0])
    assert np.allclose(batch.rewards, model.score(images, prompts)) and batch.labels_used == 1
    assert feedback.scorer_id()["weights_sha256"]
    with pytest.raises(HarnessError, match=r"trained for the builtin world, not real"):
        parse_feedback(f"reward:{tmp_path / 'rm'}", "real")


def test_training_is_seeded(tmp_path: Path) -> None:
    pairs = colour_pairs(tmp_path / "run", 24)
    a = train_reward_model(pairs, tmp_path / "a", seed=3, epochs=2)
    b = train_reward_model(pairs, tmp_path / "b", seed=3, epochs=2)
    assert a.metrics["history"] == b.metrics["history"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_train_reward_bad_input(tmp_path: Path) -> None:
    pairs = colour_pairs(tmp_path / "run", 8)
    out = tmp_path / "rm"
    out.mkdir()
    with pytest.raises(HarnessError, match=r"already exists"):
        train_reward_model(pairs, out)
    with pytest.raises(HarnessError, match=r"unknown reward-model setting.*bogus"):
        train_reward_model(pairs, tmp_path / "x", bogus=1)
    bad = tmp_path / "run" / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "image_w": "images/none.png", "image_l": "images/0w.png"}) + "\n")
    with pytest.raises(DataError, match=rf"{bad}:1: image 'images/none.png' not found"):
        train_reward_model(bad, tmp_path / "x")
    bad.write_text(json.dumps({"prompt": "p", "image_w": 0, "image_l": 1}) + "\n")
    with pytest.raises(DataError, match=rf"{bad}:1: image 0 must be an image path"):
        train_reward_model(bad, tmp_path / "x")
    bad.write_text(json.dumps({"prompt": "p", "image_w": "images/0w.png", "image_l": "images/0l.png", "tie": True}))
    with pytest.raises(HarnessError, match=r"0 strict pair"):
        train_reward_model(bad, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(HarnessError, match=r"folder without reward_model.json"):
        parse_feedback(f"reward:{not_a_model}", "builtin")


def test_cli_train_reward(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    pairs = colour_pairs(tmp_path / "run", 16)
    result = CliRunner().invoke(app, ["train-reward", "--pairs", str(pairs), "--out", str(tmp_path / "rm"),
                                      "--epochs", "1", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "held-out pair loss" in result.output and (tmp_path / "rm" / "reward_model.json").is_file()
    meta = json.loads((tmp_path / "rm" / "reward_model.json").read_text())
    assert meta["config"]["seed"] == 1 and meta["metrics"]["epochs_run"] == 1


# --- real-world heads and scorers on tiny random-init open_clip models ----------------------------------------------


def tiny_encoder() -> ClipEncoder:
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    vision = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}
    model = open_clip.CLIP(embed_dim=16, vision_cfg=vision,
                           text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1})
    return ClipEncoder(model, open_clip.image_transform(32, is_train=False),
                       open_clip.get_tokenizer("ViT-B-32", context_length=16), "tiny")


def test_real_world_reward_head_trains_on_frozen_clip_features(tmp_path: Path) -> None:
    encoder = tiny_encoder()
    root = tmp_path / "run"
    (root / "images").mkdir(parents=True)
    rows = []
    for k in range(12):  # brighter image preferred
        Image.new("RGB", (40, 40), (200 + k, 200, 200)).save(root / "images" / f"{k}w.png")
        Image.new("RGB", (40, 40), (20 + k, 20, 20)).save(root / "images" / f"{k}l.png")
        rows.append({"prompt": "a bright photo", "image_w": f"images/{k}w.png", "image_l": f"images/{k}l.png"})
    (root / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = train_reward_model(root / "p.jsonl", tmp_path / "rm", world="real", epochs=20, encoder=encoder,
                               learning_rate=1e-2, clip_model="tiny", clip_pretrained="none")
    assert model.config.feature_dim == 16
    assert model.metrics["best_heldout_loss"] < model.metrics["initial_heldout_loss"]
    loaded = RewardModel.load(tmp_path / "rm", encoder=encoder)
    images = [Image.open(root / "images" / "0w.png"), Image.open(root / "images" / "0l.png")]
    assert np.allclose(loaded.score(images, ["x", "x"]), model.score(images, ["x", "x"]))
    with pytest.raises(HarnessError, match=r"open_clip weights tiny/none are not available locally"):
        RewardModel.load(tmp_path / "rm")


def test_aesthetic_and_clip_preference_scorers(tmp_path: Path) -> None:
    encoder = tiny_encoder()
    torch.manual_seed(0)
    mlp = AestheticMLP(16)
    torch.save(mlp.state_dict(), tmp_path / "mlp.pth")
    images = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")]
    scorer = AestheticScorer(encoder, AestheticMLP(16), "mlp.pth")
    scorer.mlp.load_state_dict(torch.load(tmp_path / "mlp.pth", weights_only=True))
    assert sorted(scorer.mlp.state_dict())[:2] == ["layers.0.bias", "layers.0.weight"]  # LAION's key layout
    with torch.no_grad():
        expected = mlp.eval()(encoder.images(images)).numpy()
    assert np.allclose(scorer.score(images, ["", ""]), expected, atol=1e-6)
    pick = ClipPreferenceScorer("pickscore", encoder, 100.0, "tiny")
    cos = (encoder.images(images) * encoder.texts(["a red square"] * 2)).sum(-1).numpy()
    assert np.allclose(pick.score(images, ["a red square"] * 2), 100 * cos, atol=1e-4)
    assert RewardFeedback("reward:pickscore", pick).evaluate(images, [PromptItem(0, "a red square", "", {})] * 2,
                                                             [0, 0]).labels_used == 1


def test_pickscore_adapter_on_a_tiny_transformers_clip() -> None:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    text = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 2, "num_hidden_layers": 1,
            "vocab_size": 100, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1}
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 2, "num_hidden_layers": 1,
              "image_size": 32, "patch_size": 16}
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()

    def preprocess(img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(img.resize((32, 32)), dtype=np.float32) / 255).permute(2, 0, 1)

    def tokenizer(texts: list[str]) -> dict:
        ids = torch.tensor([[len(t) % 100, 1, 1, 1] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    encoder = ClipEncoder(HFClip(model), preprocess, tokenizer, "tiny-hf")
    scale = float(model.logit_scale.detach().exp())
    images = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")]
    scores = ClipPreferenceScorer("pickscore", encoder, scale, "tiny").score(images, ["a", "bb"])
    with torch.no_grad():
        img = model.get_image_features(pixel_values=torch.stack([preprocess(i) for i in images])).pooler_output
        txt = model.get_text_features(**tokenizer(["a", "bb"])).pooler_output
    expected = scale * torch.nn.functional.cosine_similarity(img, txt).numpy()
    assert scores.shape == (2,) and np.allclose(scores, expected, atol=1e-4)
