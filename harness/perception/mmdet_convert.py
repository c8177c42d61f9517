"""Load GenEval's official detector, an OpenMMLab mmdet 2.x Mask2Former checkpoint, into transformers' Mask2Former.

GenEval's ``evaluation/evaluate_images.py`` runs mmdet 2.x with ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco``
and the weights file ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth`` (mmdet names a
published file with the first 8 hex digits of its sha256). mmdet 2.x needs torch 1.x and compiled mmcv ops; this
module needs neither: it reads the ``.pth`` (``{"state_dict": ..., "meta": ...}``) with plain torch and renames its
tensors to transformers' ``Mask2FormerForUniversalSegmentation`` with a Swin backbone, the same architecture:

* backbone (mmdet ``SwinTransformer``): ``stages.i.blocks.j.{norm1, attn.w_msa.{qkv, proj,
  relative_position_bias_table}, norm2, ffn.layers.{0.0, 1}}``, ``stages.i.downsample.{reduction, norm}``,
  ``patch_embed.{projection, norm}`` and the output norms ``norm0..3``. ``qkv`` is split into q, k, v (rows in that
  order). mmdet's patch merging gathers each 2x2 neighbourhood with ``nn.Unfold`` (channel-major, neighbours in
  (0,0), (0,1), (1,0), (1,1) order) where Swin and transformers concatenate the four neighbours (x0, x1, x2, x3 =
  (0,0), (1,0), (0,1), (1,1)); mmdet's own ``swin_converter`` reorders the reduction's input columns and the norm
  with the permutation [0, 2, 1, 3], and :func:`unfold_to_concat` undoes it.
* pixel decoder (``MSDeformAttnPixelDecoder``): ``input_convs.i.{conv, gn}`` (top level first, as transformers'
  ``input_projections``), the deformable encoder ``encoder.layers.k.{attentions.0, norms.0, ffns.0, norms.1}``
  (post-norm), ``level_encoding``, the FPN ``lateral_convs.0`` / ``output_convs.0`` and ``mask_feature``.
* transformer decoder (``Mask2FormerHead``): per layer ``attentions.0`` = masked cross-attention, ``attentions.1`` =
  self-attention (``nn.MultiheadAttention`` packed ``in_proj``, split into q, k, v for transformers' self-attention),
  ``norms.0/1/2`` after cross-attention, self-attention and the FFN; ``post_norm``; ``query_embed`` (the queries'
  positional embedding) and ``query_feat`` (their initial features); ``level_embed``; ``cls_embed`` (80 COCO classes
  + no-object) and the 3-layer ``mask_embed`` (Linear, ReLU, Linear, ReLU, Linear).

The key mapping is checked by ``tests/test_protocol_mmdet.py`` on a synthetic state dict with the official names
and shapes. Numerical agreement with mmdet's forward pass (e.g. its cv2 resize and padding) is not verified here,
as mmcv does not install beside torch 2.x; a run with the official file records it as the official checkpoint,
loaded through this converter.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from harness.errors import HarnessError

OFFICIAL_FILE = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth"
OFFICIAL_SHA256_PREFIX = "743b7d99"
# Swin-S as the mmdet config builds it (swin-t base with depths [2, 2, 18, 2]), Mask2Former instance head for COCO.
SWIN_S = {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), "window_size": 7}
HEAD = {"num_labels": 80, "num_queries": 100, "hidden_dim": 256, "encoder_layers": 6, "decoder_layers": 9,
        "encoder_feedforward_dim": 1024, "dim_feedforward": 2048, "num_attention_heads": 8}
# Parameters of transformers' model that mmdet's has no counterpart of and that the forward pass never reads.
UNUSED_TARGETS = ("model.pixel_level_module.encoder.swin.layernorm.", "criterion.")
_BACKBONE = "model.pixel_level_module.encoder."
_PIXEL = "model.pixel_level_module.decoder."
_DECODER = "model.transformer_module."


def mask2former_config(swin: dict | None = None, head: dict | None = None) -> object:
    """transformers' ``Mask2FormerConfig`` of the mmdet model (default: the official Swin-S COCO instance model).

    ``head["decoder_layers"]`` counts mmdet's decoder layers; transformers' config counts one more (its first
    mask prediction reads the queries before any layer).
    """
    from transformers import Mask2FormerConfig, SwinConfig

    swin, head = {**SWIN_S, **(swin or {})}, {**HEAD, **(head or {})}
    backbone = SwinConfig(embed_dim=swin["embed_dim"], depths=list(swin["depths"]), num_heads=list(swin["num_heads"]),
                          window_size=swin["window_size"], out_features=["stage1", "stage2", "stage3", "stage4"])
    width = head["hidden_dim"]
    return Mask2FormerConfig(backbone_config=backbone, num_labels=head["num_labels"], num_queries=head["num_queries"],
                             hidden_dim=width, mask_feature_size=width, feature_size=width,
                             encoder_layers=head["encoder_layers"], decoder_layers=head["decoder_layers"] + 1,
                             encoder_feedforward_dim=head["encoder_feedforward_dim"],
                             dim_feedforward=head["dim_feedforward"], num_attention_heads=head["num_attention_heads"])


def unfold_to_concat(weight: torch.Tensor) -> torch.Tensor:
    """Patch-merging parameters from mmdet's unfold channel order to the concatenation order.

    mmdet stores input channel c * 4 + p (p = position in unfold order); the concatenation order is block b * C + c
    with b = [0, 2, 1, 3][p]. Works for the reduction weight [out, 4C] and the norm's [4C] parameters.
    """
    lead = weight.shape[:-1]
    channels = weight.shape[-1] // 4
    blocks = weight.reshape(*lead, channels, 4).transpose(-1, -2)
    return blocks[..., [0, 2, 1, 3], :].reshape(*lead, 4 * channels)


def _split3(prefix: str) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """A packed q/k/v tensor (rows q, k, v) as three named tensors ``prefix{q,k,v}_proj.<kind>``."""
    def split(tensor: torch.Tensor, kind: str = "") -> dict[str, torch.Tensor]:
        q, k, v = tensor.chunk(3, dim=0)
        return {f"{prefix}q_proj.{kind}": q, f"{prefix}k_proj.{kind}": k, f"{prefix}v_proj.{kind}": v}
    return split


# Prefixes of the mmdet names (regex) and of transformers' names (with the block / layer indices carried over).
_BLOCK, _SWIN_BLOCK = r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.", _BACKBONE + r"swin.encoder.layers.\1.blocks.\2."
_ENC, _PIXEL_ENC = r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\.", _PIXEL + r"encoder.layers.\1."
_DEC, _DEC_LAYER = r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.", _DECODER + r"decoder.layers.\1."
_PIX = r"panoptic_head\.pixel_decoder\."
# (pattern over mmdet names, replacement) for one-to-one renames; first match wins.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"backbone\.patch_embed\.projection\.", _BACKBONE + "swin.embeddings.patch_embeddings.projection."),
    (r"backbone\.patch_embed\.norm\.", _BACKBONE + "swin.embeddings.norm."),
    (_BLOCK + r"norm1\.", _SWIN_BLOCK + "layernorm_before."),
    (_BLOCK + r"norm2\.", _SWIN_BLOCK + "layernorm_after."),
    (_BLOCK + r"attn\.w_msa\.proj\.", _SWIN_BLOCK + "attention.o_proj."),
    (_BLOCK + r"attn\.w_msa\.relative_position_bias_table$",
     _SWIN_BLOCK + "attention.relative_position_bias.relative_position_bias_table"),
    (_BLOCK + r"ffn\.layers\.0\.0\.", _SWIN_BLOCK + "mlp.fc1."),
    (_BLOCK + r"ffn\.layers\.1\.", _SWIN_BLOCK + "mlp.fc2."),
    (r"backbone\.norm(\d)\.", _BACKBONE + "hidden_states_norms.stage{+1}."),
    (_PIX + r"input_convs\.(\d+)\.conv\.", _PIXEL + r"input_projections.\1.0."),
    (_PIX + r"input_convs\.(\d+)\.gn\.", _PIXEL + r"input_projections.\1.1."),
    (_ENC + r"attentions\.0\.", _PIXEL_ENC + "self_attn."),
    (_ENC + r"norms\.0\.", _PIXEL_ENC + "self_attn_layer_norm."),
    (_ENC + r"norms\.1\.", _PIXEL_ENC + "final_layer_norm."),
    (_ENC + r"ffns\.0\.layers\.0\.0\.", _PIXEL_ENC + "fc1."),
    (_ENC + r"ffns\.0\.layers\.1\.", _PIXEL_ENC + "fc2."),
    (_PIX + r"level_encoding\.weight$", _PIXEL + "level_embed"),
    (_PIX + r"lateral_convs\.0\.conv\.", _PIXEL + "adapter_1.0."),
    (_PIX + r"lateral_convs\.0\.gn\.", _PIXEL + "adapter_1.1."),
    (_PIX + r"output_convs\.0\.conv\.", _PIXEL + "layer_1.0."),
    (_PIX + r"output_convs\.0\.gn\.", _PIXEL + "layer_1.1."),
    (_PIX + r"mask_feature\.", _PIXEL + "mask_projection."),
    (_DEC + r"attentions\.0\.attn\.in_proj_", _DEC_LAYER + "cross_attn.in_proj_"),
    (_DEC + r"attentions\.0\.attn\.out_proj\.", _DEC_LAYER + "cross_attn.out_proj."),
    (_DEC + r"attentions\.1\.attn\.out_proj\.", _DEC_LAYER + "self_attn.out_proj."),
    (_DEC + r"norms\.0\.", _DEC_LAYER + "cross_attn_layer_norm."),
    (_DEC + r"norms\.1\.", _DEC_LAYER + "self_attn_layer_norm."),
    (_DEC + r"norms\.2\.", _DEC_LAYER + "final_layer_norm."),
    (_DEC + r"ffns\.0\.layers\.0\.0\.", _DEC_LAYER + "fc1."),
    (_DEC + r"ffns\.0\.layers\.1\.", _DEC_LAYER + "fc2."),
    (r"panoptic_head\.transformer_decoder\.post_norm\.", _DECODER + "decoder.layernorm."),
    (r"panoptic_head\.query_embed\.", _DECODER + "queries_embedder."),
    (r"panoptic_head\.query_feat\.", _DECODER + "queries_features."),
    (r"panoptic_head\.level_embed\.", _DECODER + "level_embed."),
    (r"panoptic_head\.cls_embed\.", "class_predictor."),
    (r"panoptic_head\.mask_embed\.([024])\.", _DECODER + "decoder.mask_predictor.mask_embedder.{/2}.0."),
)
# Buffers mmdet saves that transformers recomputes.
_DROPPED = re.compile(r"backbone\.stages\.\d+\.blocks\.\d+\.attn\.w_msa\.relative_position_index$")
_QKV = re.compile(r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.qkv\.(weight|bias)$")
_SELF_IN = re.compile(r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.attentions\.1\.attn\.in_proj_(weight|bias)$")
_MERGE = re.compile(r"backbone\.stages\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$")


def _rename(key: str) -> str | None:
    for pattern, target in _RENAMES:
        match = re.match(pattern, key)
        if match is None:
            continue
        target = match.expand(target) if "\\" in target else target
        # Index arithmetic the regex language lacks: norm{i} -> stage{i+1}, mask_embed.{0,2,4} -> {0,1,2}.
        if "{+1}" in target:
            target = target.replace("{+1}", str(int(match.group(1)) + 1))
        if "{/2}" in target:
            target = target.replace("{/2}", str(int(match.group(1)) // 2))
        return target + key[match.end():]
    return None


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmdet Mask2Former (Swin) tensors under transformers' names; an mmdet key no rule knows is an error."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        if _DROPPED.match(key):
            continue
        if match := _QKV.match(key):
            stage, block, kind = match.groups()
            prefix = f"{_BACKBONE}swin.encoder.layers.{stage}.blocks.{block}.attention."
            out.update(_split3(prefix)(tensor, kind))
        elif match := _SELF_IN.match(key):
            layer, kind = match.groups()
            out.update(_split3(f"{_DECODER}decoder.layers.{layer}.self_attn.")(tensor, kind))
        elif match := _MERGE.match(key):
            stage, part, kind = match.groups()
            out[f"{_BACKBONE}swin.encoder.layers.{stage}.downsample.{part}.{kind}"] = unfold_to_concat(tensor)
        elif (target := _rename(key)) is not None:
            out[target] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise HarnessError(f"{len(unknown)} mmdet tensor(s) with no transformers counterpart (first: {unknown[0]}); "
                           "not a Mask2Former Swin checkpoint of mmdet 2.x")
    return out


def load_into(network: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy a converted state dict into ``network``; every parameter it reads must come from ``state``."""
    converted = convert_state_dict(state)
    target = network.state_dict()
    missing = [k for k in target if k not in converted and not k.startswith(UNUSED_TARGETS)]
    extra = [k for k in converted if k not in target]
    wrong = [k for k in converted if k in target and converted[k].shape != target[k].shape]
    if missing or extra or wrong:
        first = (missing or extra or wrong)[0]
        raise HarnessError(f"{source} does not fit the Swin-S Mask2Former: {len(missing)} missing, {len(extra)} "
                           f"unexpected, {len(wrong)} mis-shaped tensor(s) (first: {first})")
    network.load_state_dict(converted, strict=False)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], tuple[str, ...] | None]:
    """(state_dict, class names from ``meta["CLASSES"]`` if present) of an mmdet ``.pth`` file.

    Read with ``weights_only=True``: a checkpoint is data, and nothing in it may run code.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds (pickle, zip, OSError) for a bad file
        raise HarnessError(f"cannot read mmdet checkpoint {path}: {str(err).splitlines()[0]}; pass the official "
                           f"{OFFICIAL_FILE}") from None
    if not isinstance(checkpoint, dict):
        raise HarnessError(f"{path} is not an mmdet checkpoint (expected a dict with 'state_dict')")
    state = checkpoint.get("state_dict", checkpoint)
    classes = (checkpoint.get("meta") or {}).get("CLASSES")
    return state, tuple(classes) if classes else None


def load_mmdet_mask2former(path: Path | str, classes: Sequence[str] | None = None, swin: dict | None = None,
                           head: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """transformers Mask2Former with the weights of the mmdet checkpoint at ``path``, and what was loaded:
    ``{"file", "sha256", "official"}`` (official = the sha256 starts with the official file's 8-digit suffix)."""
    from transformers import Mask2FormerForUniversalSegmentation

    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"detector checkpoint {path} does not exist; download {OFFICIAL_FILE} from OpenMMLab's "
                           "mmdetection model zoo (v2.0/mask2former) and pass its path")
    state, saved_classes = read_checkpoint(path)
    if classes is not None and saved_classes is not None and tuple(classes) != saved_classes:
        raise HarnessError(f"{path} names its classes differently from the benchmark's class list "
                           f"(first difference: {next((a, b) for a, b in zip(classes, saved_classes) if a != b)})")
    network = Mask2FormerForUniversalSegmentation(mask2former_config(swin, head))
    load_into(network, state, str(path))
    sha = file_sha256(path)
    return network, {"file": path.name, "sha256": sha, "official": sha.startswith(OFFICIAL_SHA256_PREFIX)}
