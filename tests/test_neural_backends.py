"""Real-world GenEval backends on tiny random-init architectures: shapes, preprocessing, post-processing rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from harness.errors import HarnessError
from harness.perception.clip_color import TEMPLATES, ClipColorClassifier
from harness.perception.mask2former import Mask2FormerDetector, instance_postprocess, masks_to_boxes


def test_masks_to_boxes_is_exclusive_at_the_far_edge() -> None:
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True  # rows 1-2, cols 2-4
    assert masks_to_boxes(masks).tolist() == [[2, 1, 5, 3], [0, 0, 0, 0]]


def test_instance_postprocess_scores_class_times_mask_quality() -> None:
    # 2 queries, 2 classes (+ no-object). Query 0 is class 1 with probability e^2 / (e^2 + 1 + 1) = 0.787.
    class_logits = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 5.0]])
    mask_logits = torch.full((2, 4, 4), -10.0)
    mask_logits[0, :2, :2] = 2.0  # 4 pixels, sigmoid(2) = 0.881 each
    labels, scores, masks, boxes = instance_postprocess(class_logits, mask_logits, max_per_image=1)
    p = np.exp(2) / (np.exp(2) + 2)
    assert labels.tolist() == [1] and masks[0].sum() == 4 and boxes[0].tolist() == [0, 0, 2, 2]
    assert scores[0].item() == pytest.approx(p * torch.sigmoid(torch.tensor(2.0)).item(), rel=1e-4)
    labels, scores, _, _ = instance_postprocess(class_logits, mask_logits, max_per_image=4)
    assert len(labels) == 4  # top-k runs over every (query, class) pair


def tiny_mask2former() -> tuple[object, object]:
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(image_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, num_labels=3, num_queries=5, hidden_dim=32,
                               mask_feature_size=32, feature_size=32, encoder_layers=1, decoder_layers=2,
                               encoder_feedforward_dim=32, dim_feedforward=32, num_attention_heads=2,
                               id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    torch.manual_seed(0)
    return Mask2FormerForUniversalSegmentation(config), Mask2FormerImageProcessor()


def test_mask2former_detector_on_a_tiny_network() -> None:
    network, processor = tiny_mask2former()
    detector = Mask2FormerDetector(classes=["cat", "dog", "cow"], network=network, processor=processor,
                                   max_per_image=6, batch_size=2)
    assert processor.size == {"shortest_edge": 800, "longest_edge": 1333}
    images = [Image.new("RGB", (40, 30), "red"), Image.new("RGB", (40, 30), "blue"), Image.new("RGB", (24, 24))]
    results = detector.detect(images)
    assert len(results) == 3
    for image, dets in zip(images, results):
        assert len(dets) == 6 and dets.masks.shape == (6, image.height, image.width)
        assert set(dets.labels) <= {"cat", "dog", "cow"}
        assert np.all(np.diff(dets.scores) <= 0) and np.all((dets.scores >= 0) & (dets.scores <= 1))


def test_missing_detector_weights_is_a_clear_error() -> None:
    with pytest.raises(HarnessError, match="not available locally"):
        Mask2FormerDetector("no-such-org/no-such-detector")


class ColourNet(torch.nn.Module):
    """A stand-in CLIP whose embeddings are one-hot colours, so the zero-shot arithmetic can be checked exactly."""

    names = ("red", "green", "blue")

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.float()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.mean(dim=(2, 3))  # [B, 3]: the mean RGB, largest channel = colour


def test_clip_color_zero_shot_arithmetic() -> None:
    net = ColourNet()
    seen: list[str] = []

    def tokenizer(texts: list[str]) -> torch.Tensor:
        seen.extend(texts)
        return torch.tensor([[float(name in t) for name in ColourNet.names] for t in texts])

    def preprocess(img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)

    clf = ClipColorClassifier(network=net, preprocess=preprocess, tokenizer=tokenizer, batch_size=2)
    crops = [Image.new("RGB", (4, 4), c) for c in ("red", "blue", "green")]
    assert clf.classify(crops, ["apple"] * 3, list(ColourNet.names)) == ["red", "blue", "green"]
    assert seen[:3] == [t.format(c="red", cls="apple") for t in TEMPLATES]
    clf.classify(crops, ["apple"] * 3, list(ColourNet.names))
    assert len(seen) == 9  # text weights are cached per class


def test_clip_color_on_a_tiny_open_clip_model() -> None:
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    vision = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}
    model = open_clip.CLIP(embed_dim=16, vision_cfg=vision,
                           text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1})
    preprocess = open_clip.image_transform(32, is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=16)
    clf = ClipColorClassifier(network=model, preprocess=preprocess, tokenizer=tokenizer)
    colors = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
    out = clf.classify([Image.new("RGB", (20, 10), "red")] * 3, ["bench"] * 3, colors)
    assert len(out) == 3 and set(out) <= set(colors) and len(set(out)) == 1
    assert clf.class_weights("bench", tuple(colors)).shape == (16, 10)
