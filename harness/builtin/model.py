"""The builtin world's tiny text-to-image model, built from diffusers/transformers classes.

Pixels (3 x 48 x 48 in [-1, 1]) are folded into a 27 x 16 x 16 latent by an invertible space-to-depth
(``pixel_unshuffle``), so no VAE is needed and the UNet works at 16 x 16. The text side is a word-level tokenizer
over the world's vocabulary and a two-layer ``CLIPTextModel``, trained jointly with the UNet.

On disk the model is a diffusers-style folder (``model_index.json`` plus one subfolder per component), so it loads
through the same ``--ckpt`` path as any other local checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from harness.builtin.prompts import vocabulary
from harness.builtin.world import CANVAS
from harness.hashing import fingerprint
from harness.policy import Conditioning, Policy

PIPELINE_CLASS = "HarnessBuiltinPipeline"
PATCH = 3  # space-to-depth factor: 48 x 48 x 3 pixels <-> 16 x 16 x 27 latents
MAX_TOKENS = 24
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]")


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer; every prompt starts with [BOS] so even the empty prompt has one token to attend to."""
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *vocabulary()])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", vocab["[BOS]"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", model_max_length=MAX_TOKENS
    )


def build_text_encoder(vocab_size: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=96,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=2,
        projection_dim=96,
    )
    return CLIPTextModel(config)


def build_unet() -> UNet2DConditionModel:
    channels = 3 * PATCH * PATCH
    return UNet2DConditionModel(
        sample_size=CANVAS // PATCH,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(48, 96, 96),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=4,
        norm_num_groups=16,
        cross_attention_dim=96,
    )


def build_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        clip_sample=True,
        set_alpha_to_one=False,
    )


def pixels_to_latents(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, 48, 48] in [-1, 1] -> [B, 27, 16, 16]."""
    return F.pixel_unshuffle(pixels, PATCH)


def latents_to_pixels(latents: torch.Tensor) -> torch.Tensor:
    return F.pixel_shuffle(latents, PATCH)


class BuiltinPolicy(Policy):
    """The tiny model as a :class:`Policy`."""

    world = "builtin"

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text_encoder: CLIPTextModel,
        tokenizer: PreTrainedTokenizerFast,
        scheduler: DDIMScheduler,
        name: str = "builtin:new",
        fingerprint: str = "untrained",
        sampler_defaults: dict | None = None,
    ) -> None:
        self.unet, self.text_encoder, self.tokenizer, self.scheduler = unet, text_encoder, tokenizer, scheduler
        self.name, self.fingerprint = name, fingerprint
        # What a LoRA adapter saved from this policy names as its base (set when loaded from a --ckpt spec).
        self.base, self.base_fingerprint = name, fingerprint
        self.default_height = self.default_width = CANVAS
        self.sampler_defaults = sampler_defaults or {}

    @classmethod
    def new(cls) -> BuiltinPolicy:
        tokenizer = build_tokenizer()
        return cls(build_unet(), build_text_encoder(len(tokenizer)), tokenizer, build_scheduler())

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"unet": self.unet, "text_encoder": self.text_encoder}

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        ).to(self.device)

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        tokens = self.tokenize(prompts)
        hidden = self.text_encoder(tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return Conditioning(hidden, tokens["attention_mask"])

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        if height % PATCH or width % PATCH:
            raise ValueError(f"builtin model needs sizes divisible by {PATCH}, got {height}x{width}")
        return (3 * PATCH * PATCH, height // PATCH, width // PATCH)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        pixels = latents_to_pixels(latents.float()).clamp(-1, 1)
        return ((pixels + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)

    def save(self, path: Path, dtype: torch.dtype = torch.float16) -> None:
        """Write the diffusers-style folder (weights in fp16 by default: half the size, same samples to the eye),
        or, with LoRA attached, only the adapter and the name of its base."""
        from harness.sd_policy import has_lora, save_lora_adapter

        path = Path(path)
        if has_lora(self.unet):
            save_lora_adapter(self.unet, path, self.base, self.base_fingerprint)
            return
        path.mkdir(parents=True, exist_ok=True)
        for sub, module in self.modules().items():
            original = next(module.parameters()).dtype
            module.to(dtype)
            module.save_pretrained(path / sub, safe_serialization=True)
            module.to(original)
        self.tokenizer.save_pretrained(path / "tokenizer")
        self.scheduler.save_pretrained(path / "scheduler")
        index = {
            "_class_name": PIPELINE_CLASS,
            "unet": ["diffusers", "UNet2DConditionModel"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "resolution": CANVAS,
            "patch": PATCH,
            "sampler_defaults": self.sampler_defaults,
        }
        (path / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path, name: str | None = None, device: str = "cpu") -> BuiltinPolicy:
        path = Path(path)
        index = json.loads((path / "model_index.json").read_text())
        unet = UNet2DConditionModel.from_pretrained(path / "unet", torch_dtype=torch.float32)
        text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", dtype=torch.float32)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(path / "tokenizer")
        scheduler = DDIMScheduler.from_pretrained(path / "scheduler")
        policy = cls(
            unet.eval(),
            text_encoder.eval(),
            tokenizer,
            scheduler,
            name=name or str(path),
            fingerprint=fingerprint(path),
            sampler_defaults=index.get("sampler_defaults", {}),
        )
        return policy.to(device)
