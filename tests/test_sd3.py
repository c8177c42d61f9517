"""SD3 as a policy: a tiny random-init SD3 pipeline built from configs (the real diffusers/transformers classes:
``SD3Transformer2DModel``, two CLIPs with projection, a T5 encoder, flow-matching Euler) resolves through --ckpt,
samples through harness.sampling and the generation engine, and trains with both offline methods."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPTextModelWithProjection, PreTrainedTokenizerFast, T5Config, T5EncoderModel

from harness.checkpoints import resolve_checkpoint
from harness.generation import GenerationRequest, generate
from harness.sampling import SamplerConfig, sample
from harness.sd3_policy import StableDiffusion3Policy
from harness.store import ImageStore
from tests.tiny_pipelines import text_config, write_tokenizer
from trainers.offline import Noiser, encode_images, train_offline

T5_DIM = 64  # joint attention width; the two 32-wide CLIP sequences concatenate to it


def t5_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level stand-in for T5's sentencepiece tokenizer (the pipeline pads it to max_sequence_length)."""
    words = ["a", "red", "blue", "circle", "square"]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=32)


def tiny_sd3_pipeline(tmp: Path) -> StableDiffusion3Pipeline:
    torch.manual_seed(0)
    tokenizer = write_tokenizer(tmp / "tokenizer_files")
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=T5_DIM, caption_projection_dim=32, pooled_projection_dim=64,
        pos_embed_max_size=16,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        shift_factor=0.0609, scaling_factor=1.5305, use_quant_conv=False, use_post_quant_conv=False,
    )
    t5 = T5EncoderModel(T5Config(vocab_size=8, d_model=T5_DIM, d_ff=64, d_kv=16, num_layers=1, num_heads=4))
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=CLIPTextModelWithProjection(text_config(tokenizer)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(text_config(tokenizer)), tokenizer_2=tokenizer,
        text_encoder_3=t5, tokenizer_3=t5_tokenizer(),
    )


@pytest.fixture(scope="module")
def sd3_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sd3")
    tiny_sd3_pipeline(tmp).save_pretrained(tmp / "sd3", safe_serialization=True)
    return tmp / "sd3"


FAST = SamplerConfig(num_inference_steps=2, guidance_scale=3.0, scheduler="pipeline")


def test_resolves_and_samples(sd3_folder: Path, tmp_path: Path) -> None:
    policy = resolve_checkpoint(str(sd3_folder))
    assert isinstance(policy, StableDiffusion3Policy)
    assert (policy.default_height, policy.default_width) == (16, 16)
    assert policy.sampler_defaults["num_inference_steps"] == 28
    images = sample(policy, ["a red circle", "a blue square"], [0, 1], FAST)
    assert images.shape == (2, 16, 16, 3) and images.dtype == torch.uint8
    again = sample(policy, ["a red circle", "a blue square"], [0, 1], FAST)
    assert torch.equal(images, again)
    other = sample(policy, ["a red circle"], [5], FAST)
    assert not torch.equal(images[:1], other)
    report = generate(policy, [GenerationRequest("a red circle", 0)], FAST, ImageStore(tmp_path), progress=False)
    assert report.generated == 1 and ImageStore(tmp_path).load(report.keys[0]) is not None


def test_flow_matching_training_inputs(sd3_folder: Path) -> None:
    policy = resolve_checkpoint(str(sd3_folder))
    noiser = Noiser(policy.scheduler)
    assert noiser.flow
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    latents = encode_images(policy, pixels)
    assert latents.shape == (2, 4, 8, 8)
    noise = torch.randn_like(latents)
    x_t, timesteps, target = noiser.noised(latents, noise, torch.tensor([0, 999]))
    assert torch.allclose(target, noise - latents)
    assert torch.allclose(x_t[0], noise[0])  # index 0 is σ = 1: pure noise
    velocity = policy.denoise(x_t, timesteps, policy.encode_prompts(["a red circle", ""]))
    assert velocity.shape == latents.shape


@pytest.mark.parametrize("method", ["diffusion-dpo", "rankdpo"])
def test_offline_methods_train_sd3(method: str, sd3_folder: Path, tmp_path: Path) -> None:
    policy = resolve_checkpoint(str(sd3_folder))
    images = sample(policy, ["a red circle"] * 2, [0, 1], FAST)
    from PIL import Image

    for i, pixels in enumerate(images):
        Image.fromarray(pixels.numpy()).save(tmp_path / f"{i}.png")
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"prompt": "a red circle", "image_w": "0.png",
                                                      "image_l": "1.png"}) + "\n")
    settings = {"batch_size": "1", "grad_accumulation": "1", "warmup_steps": "0", "scale_lr": "false",
                "learning_rate": "1e-4", "save_every": "1"}
    result = train_offline(method, str(sd3_folder), tmp_path / "pairs.jsonl", 1, tmp_path / "run",
                           settings=settings, progress=False)
    loss = result.summary["final_metrics"]["loss"]
    assert torch.isfinite(torch.tensor(loss))
    trained = resolve_checkpoint(str(result.checkpoint))
    assert isinstance(trained, StableDiffusion3Policy)
    before, after = policy.unet.state_dict(), trained.unet.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_lora_adapter_round_trip(sd3_folder: Path, tmp_path: Path) -> None:
    from peft import LoraConfig

    policy = resolve_checkpoint(str(sd3_folder))
    policy.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights="gaussian",
                                       target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    policy.save(tmp_path / "adapter")
    loaded = resolve_checkpoint(str(tmp_path / "adapter"))
    assert isinstance(loaded, StableDiffusion3Policy)
    assert any("lora_" in name for name, _ in loaded.unet.named_parameters())
    images = sample(loaded, ["a red circle"], [0], FAST)
    assert torch.equal(images, sample(policy, ["a red circle"], [0], FAST))
