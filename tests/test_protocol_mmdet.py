"""The mmdet -> transformers Mask2Former converter, on a synthetic checkpoint with mmdet 2.x's names and shapes.

The official names below are written from mmdet 2.x's module structure (``SwinTransformer``,
``MSDeformAttnPixelDecoder``, ``Mask2FormerHead`` with mmcv's ``BaseTransformerLayer``/``FFN``/``MultiheadAttention``/
``ConvModule``), independently of the converter's rename table, with a tiny Swin and head so the test is quick.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.errors import HarnessError
from harness.perception import mmdet_convert
from harness.perception.mmdet_convert import convert_state_dict, load_into, load_mmdet_mask2former, mask2former_config

SWIN = {"embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8), "window_size": 7}
HEAD = {"num_labels": 80, "num_queries": 6, "hidden_dim": 64, "encoder_layers": 1, "decoder_layers": 2,
        "encoder_feedforward_dim": 96, "dim_feedforward": 128, "num_attention_heads": 4}
LEVELS, POINTS = 3, 4


def official_state_dict(swin: dict = SWIN, head: dict = HEAD, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor of an mmdet 2.x Mask2Former (Swin backbone, COCO instance head) under its mmdet name."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def p(name: str, *shape: int) -> None:
        sd[name] = torch.randn(*shape, generator=g)

    def linear(name: str, out: int, inp: int) -> None:
        p(f"{name}.weight", out, inp)
        p(f"{name}.bias", out)

    def norm(name: str, n: int) -> None:
        p(f"{name}.weight", n)
        p(f"{name}.bias", n)

    c0, w = swin["embed_dim"], swin["window_size"]
    p("backbone.patch_embed.projection.weight", c0, 3, 4, 4)
    p("backbone.patch_embed.projection.bias", c0)
    norm("backbone.patch_embed.norm", c0)
    widths = [c0 * 2**i for i in range(4)]
    for i, (depth, heads) in enumerate(zip(swin["depths"], swin["num_heads"])):
        c = widths[i]
        for j in range(depth):
            b = f"backbone.stages.{i}.blocks.{j}"
            norm(f"{b}.norm1", c)
            p(f"{b}.attn.w_msa.relative_position_bias_table", (2 * w - 1) ** 2, heads)
            sd[f"{b}.attn.w_msa.relative_position_index"] = torch.randint(0, (2 * w - 1) ** 2, (w * w, w * w))
            linear(f"{b}.attn.w_msa.qkv", 3 * c, c)
            linear(f"{b}.attn.w_msa.proj", c, c)
            norm(f"{b}.norm2", c)
            linear(f"{b}.ffn.layers.0.0", 4 * c, c)
            linear(f"{b}.ffn.layers.1", c, 4 * c)
        if i < 3:
            norm(f"backbone.stages.{i}.downsample.norm", 4 * c)
            p(f"backbone.stages.{i}.downsample.reduction.weight", 2 * c, 4 * c)
        norm(f"backbone.norm{i}", c)
    h, heads = head["hidden_dim"], head["num_attention_heads"]
    pd = "panoptic_head.pixel_decoder"
    for i, level in enumerate((3, 2, 1)):  # top (lowest resolution) first
        p(f"{pd}.input_convs.{i}.conv.weight", h, widths[level], 1, 1)
        p(f"{pd}.input_convs.{i}.conv.bias", h)
        norm(f"{pd}.input_convs.{i}.gn", h)
    for k in range(head["encoder_layers"]):
        e = f"{pd}.encoder.layers.{k}"
        linear(f"{e}.attentions.0.sampling_offsets", heads * LEVELS * POINTS * 2, h)
        linear(f"{e}.attentions.0.attention_weights", heads * LEVELS * POINTS, h)
        linear(f"{e}.attentions.0.value_proj", h, h)
        linear(f"{e}.attentions.0.output_proj", h, h)
        linear(f"{e}.ffns.0.layers.0.0", head["encoder_feedforward_dim"], h)
        linear(f"{e}.ffns.0.layers.1", h, head["encoder_feedforward_dim"])
        norm(f"{e}.norms.0", h)
        norm(f"{e}.norms.1", h)
    p(f"{pd}.level_encoding.weight", LEVELS, h)
    p(f"{pd}.lateral_convs.0.conv.weight", h, widths[0], 1, 1)
    norm(f"{pd}.lateral_convs.0.gn", h)
    p(f"{pd}.output_convs.0.conv.weight", h, h, 3, 3)
    norm(f"{pd}.output_convs.0.gn", h)
    p(f"{pd}.mask_feature.weight", h, h, 1, 1)
    p(f"{pd}.mask_feature.bias", h)
    for layer in range(head["decoder_layers"]):
        d = f"panoptic_head.transformer_decoder.layers.{layer}"
        for a in (0, 1):  # 0: cross-attention, 1: self-attention
            p(f"{d}.attentions.{a}.attn.in_proj_weight", 3 * h, h)
            p(f"{d}.attentions.{a}.attn.in_proj_bias", 3 * h)
            linear(f"{d}.attentions.{a}.attn.out_proj", h, h)
        linear(f"{d}.ffns.0.layers.0.0", head["dim_feedforward"], h)
        linear(f"{d}.ffns.0.layers.1", h, head["dim_feedforward"])
        for n in range(3):
            norm(f"{d}.norms.{n}", h)
    norm("panoptic_head.transformer_decoder.post_norm", h)
    p("panoptic_head.query_embed.weight", head["num_queries"], h)
    p("panoptic_head.query_feat.weight", head["num_queries"], h)
    p("panoptic_head.level_embed.weight", LEVELS, h)
    linear("panoptic_head.cls_embed", head["num_labels"] + 1, h)
    for i in (0, 2, 4):
        linear(f"panoptic_head.mask_embed.{i}", h, h)
    return sd


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    from transformers import Mask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    return Mask2FormerForUniversalSegmentation(mask2former_config(SWIN, HEAD)).eval()


def test_every_parameter_comes_from_the_official_checkpoint(network: torch.nn.Module) -> None:
    official = official_state_dict()
    load_into(network, official, "synthetic")
    converted = convert_state_dict(official)
    loaded = network.state_dict()
    unused = [k for k in loaded if k not in converted]
    assert unused and all(k.startswith(mmdet_convert.UNUSED_TARGETS) for k in unused)
    assert all(torch.equal(loaded[k], v) for k, v in converted.items())
    # One-to-one renames keep the tensor; packed q/k/v are split by rows; the queries keep their roles.
    m = "model.transformer_module."
    assert torch.equal(loaded["class_predictor.weight"], official["panoptic_head.cls_embed.weight"])
    assert torch.equal(loaded[m + "queries_features.weight"], official["panoptic_head.query_feat.weight"])
    assert torch.equal(loaded[m + "queries_embedder.weight"], official["panoptic_head.query_embed.weight"])
    assert torch.equal(loaded[m + "decoder.mask_predictor.mask_embedder.2.0.weight"],
                       official["panoptic_head.mask_embed.4.weight"])
    packed = official["panoptic_head.transformer_decoder.layers.1.attentions.1.attn.in_proj_weight"]
    assert torch.equal(loaded[m + "decoder.layers.1.self_attn.k_proj.weight"], packed[64:128])
    assert torch.equal(loaded[m + "decoder.layers.1.cross_attn.in_proj_weight"],
                       official["panoptic_head.transformer_decoder.layers.1.attentions.0.attn.in_proj_weight"])
    qkv = official["backbone.stages.2.blocks.1.attn.w_msa.qkv.bias"]
    swin = "model.pixel_level_module.encoder."
    assert torch.equal(loaded[swin + "swin.encoder.layers.2.blocks.1.attention.v_proj.bias"], qkv[256:])
    assert torch.equal(loaded[swin + "hidden_states_norms.stage4.bias"], official["backbone.norm3.bias"])


def test_patch_merging_matches_mmdets_unfold_order(network: torch.nn.Module) -> None:
    """mmdet merges 2x2 patches with nn.Unfold, then norm and reduction; the converted transformers layer must give
    the same output on the same feature map."""
    official = official_state_dict()
    load_into(network, official, "synthetic")
    channels, size = 32, 6
    x = torch.randn(2, size, size, channels)
    unfolded = F.unfold(x.permute(0, 3, 1, 2), kernel_size=2, stride=2).transpose(1, 2)  # [B, L, 4C], mmdet order
    normed = F.layer_norm(unfolded, (4 * channels,), official["backbone.stages.0.downsample.norm.weight"],
                          official["backbone.stages.0.downsample.norm.bias"])
    expected = normed @ official["backbone.stages.0.downsample.reduction.weight"].T
    merging = network.model.pixel_level_module.encoder.swin.encoder.layers[0].downsample
    with torch.no_grad():
        got = merging(x.reshape(2, size * size, channels), (size, size))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_unknown_or_missing_tensors_are_one_line_errors(network: torch.nn.Module) -> None:
    official = official_state_dict()
    with pytest.raises(HarnessError, match="no transformers counterpart"):
        convert_state_dict({**official, "panoptic_head.extra.weight": torch.zeros(1)})
    official.pop("panoptic_head.cls_embed.bias")
    with pytest.raises(HarnessError, match="1 missing"):
        load_into(network, official, "synthetic")


def test_detector_option_loads_an_mmdet_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .pth detector_model goes through the converter; it counts as official only with the official hash."""
    from benchmarks.geneval.benchmark import GenEval
    from harness.perception.mask2former import Mask2FormerDetector

    monkeypatch.setattr(mmdet_convert, "SWIN_S", SWIN)
    monkeypatch.setattr(mmdet_convert, "HEAD", HEAD)
    classes = [f"class{i}" for i in range(80)]
    path = tmp_path / "mask2former.pth"
    torch.save({"state_dict": official_state_dict(), "meta": {"CLASSES": tuple(classes)}}, path)
    detector = Mask2FormerDetector(str(path), classes=classes)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (found,) = detector.detect([image])
    assert len(found.labels) == 100 and found.masks.shape[1:] == (64, 64)
    assert detector.version.startswith("mmdet:mask2former.pth@sha256:") and not detector.official
    bench = GenEval()
    reasons = bench.comparability("real", {}, {"detector": detector, "color": object()}, ["single_object"])
    assert any("detector" in r for r in reasons)
    monkeypatch.setattr(mmdet_convert, "OFFICIAL_SHA256_PREFIX", mmdet_convert.file_sha256(path)[:8])
    official = Mask2FormerDetector(str(path), classes=classes)
    assert official.official
    assert not [r for r in bench.comparability("real", {}, {"detector": official}, ["single_object"])
                if "detector" in r]
    with pytest.raises(HarnessError, match="names its classes differently"):
        load_mmdet_mask2former(path, ["person", *classes[1:]])
