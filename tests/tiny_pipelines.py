"""Tiny random-init Stable Diffusion 1.x and XL pipelines, built from configs so tests run offline in seconds.

The architectures are the real diffusers/transformers classes at toy sizes (UNet 32/64 channels, a two-block VAE,
two-layer CLIP text encoders, a CLIP BPE tokenizer over a hand-written letter vocabulary), so every code path that a
real checkpoint takes (save_pretrained, from_pretrained, LoRA, single-file conversion) is exercised.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

LATENT_SIZE = 8  # latent 8 x 8 -> 16 x 16 pixels through the two-block VAE
MAX_TOKENS = 16  # CLIP's is 77; shorter keeps the text encoders cheap
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is the letters, each alone and word-final, plus the two special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase)
    tokens = [*letters, *(f"{c}</w>" for c in letters), BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)


def text_config(tokenizer: CLIPTokenizer, hidden: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=hidden,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )


def sd_scheduler(prediction_type: str = "epsilon") -> PNDMScheduler:
    """SD 1.5's own scheduler config (PNDM), so the policy's switch to DDIM is exercised."""
    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
        prediction_type=prediction_type,
    )


def tiny_sd_pipeline(tmp: Path, prediction_type: str = "epsilon") -> StableDiffusionPipeline:
    torch.manual_seed(0)
    tokenizer = write_tokenizer(tmp / "tokenizer_files")
    unet = UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    return StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=CLIPTextModel(text_config(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sd_scheduler(prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_sdxl_pipeline(tmp: Path) -> StableDiffusionXLPipeline:
    """SDXL layout: two text encoders (the second with a projection that gives the pooled embedding), text_time."""
    torch.manual_seed(0)
    tokenizer = write_tokenizer(tmp / "tokenizer_files")
    time_dim, text_dim = 8, 32
    unet = UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + text_dim,
        cross_attention_dim=2 * text_dim,
    )
    scheduler = sd_scheduler()
    return StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=CLIPTextModel(text_config(tokenizer, text_dim)),
        text_encoder_2=CLIPTextModelWithProjection(text_config(tokenizer, text_dim)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def save(pipeline: StableDiffusionPipeline | StableDiffusionXLPipeline, folder: Path) -> Path:
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


# --- the original (LDM / CompVis) single-file layout, the format of most .safetensors on model sites ---------------

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_FIXED = {"conv_norm_out": "norm_out"}


def _rename(suffix: str, table: dict[str, str]) -> str:
    head, _, param = suffix.rpartition(".")
    return f"{table.get(head, head)}.{param}"


def _ldm_unet_key(key: str, unet: UNet2DConditionModel) -> str:
    """Diffusers UNet key -> CompVis key: the inverse of diffusers' ``convert_ldm_unet_checkpoint`` for SD 1.x."""
    per_block = unet.config.layers_per_block + 1  # CompVis counts the down/upsampler as one more layer
    parts = key.split(".")
    if parts[0] in ("down_blocks", "up_blocks"):
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":
            return f"input_blocks.{per_block * (block + 1)}.0.op.{parts[-1]}"
        if kind == "upsamplers":
            slot = 2 if hasattr(unet.up_blocks[block], "attentions") else 1
            return f"output_blocks.{per_block * block + per_block - 1}.{slot}.conv.{parts[-1]}"
        layer, rest = int(parts[3]), ".".join(parts[4:])
        index = per_block * block + layer + 1 if parts[0] == "down_blocks" else per_block * block + layer
        group = "input_blocks" if parts[0] == "down_blocks" else "output_blocks"
        if kind == "resnets":
            return f"{group}.{index}.0.{_rename(rest, _UNET_RESNET)}"
        return f"{group}.{index}.1.{rest}"
    if parts[0] == "mid_block":
        layer, rest = int(parts[2]), ".".join(parts[3:])
        if parts[1] == "resnets":
            return f"middle_block.{2 * layer}.{_rename(rest, _UNET_RESNET)}"
        return f"middle_block.1.{rest}"
    return _rename(key, _UNET_FIXED)


def _ldm_vae_item(key: str, value: torch.Tensor, vae: AutoencoderKL) -> tuple[str, torch.Tensor]:
    """Diffusers VAE key -> CompVis key (attention projections become 1x1 convolutions there)."""
    parts = key.split(".")
    coder = parts[0]
    if len(parts) > 2 and parts[1] == "down_blocks":
        if parts[3] == "downsamplers":
            return f"{coder}.down.{parts[2]}.downsample.conv.{parts[-1]}", value
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.down.{parts[2]}.block.{parts[4]}.{rest}", value
    if len(parts) > 2 and parts[1] == "up_blocks":
        block = len(vae.decoder.up_blocks) - 1 - int(parts[2])
        if parts[3] == "upsamplers":
            return f"{coder}.up.{block}.upsample.conv.{parts[-1]}", value
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.up.{block}.block.{parts[4]}.{rest}", value
    if len(parts) > 2 and parts[1] == "mid_block":
        if parts[2] == "resnets":
            rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{coder}.mid.block_{int(parts[3]) + 1}.{rest}", value
        rest = _rename(".".join(parts[4:]), _VAE_ATTENTION)
        return f"{coder}.mid.attn_1.{rest}", value[..., None, None] if value.ndim == 2 else value
    return f"{coder}.{_rename('.'.join(parts[1:]), _VAE_FIXED)}" if len(parts) > 2 else key, value


def save_single_file_sd(pipeline: StableDiffusionPipeline, file: Path) -> Path:
    """Write the pipeline as one CompVis-layout file, as SD 1.x files on model sites are laid out.

    ``.safetensors`` holds the flat state dict; ``.ckpt`` pickles it under ``state_dict``, as CompVis's trainer did.
    """
    state = {
        f"model.diffusion_model.{_ldm_unet_key(k, pipeline.unet)}": v for k, v in pipeline.unet.state_dict().items()
    }
    for key, value in pipeline.vae.state_dict().items():
        ldm_key, ldm_value = _ldm_vae_item(key, value, pipeline.vae)
        state[f"first_stage_model.{ldm_key}"] = ldm_value
    for key, value in pipeline.text_encoder.state_dict().items():
        state[f"cond_stage_model.transformer.text_model.{key}"] = value
    state = {k: v.contiguous() for k, v in state.items()}
    if file.suffix == ".ckpt":
        torch.save({"state_dict": state}, file)
    else:
        save_file(state, file)
    return file
