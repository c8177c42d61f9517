"""``resolve_checkpoint`` and the SD policies on tiny random-init pipelines, fully offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig
from safetensors.torch import save_file

from harness import checkpoints, hashing
from harness.builtin.model import BuiltinPolicy
from harness.checkpoints import default_dtype, resolve_checkpoint
from harness.errors import CheckpointError
from harness.hashing import fingerprint
from harness.policy import Policy
from harness.sd_policy import StableDiffusionPolicy, StableDiffusionXLPolicy
from tests.tiny_pipelines import MAX_TOKENS, save, save_single_file_sd, tiny_sd_pipeline, tiny_sdxl_pipeline

torch.set_num_threads(1)
PROMPTS = ["a red cube", ""]
T = torch.tensor(500)


@pytest.fixture(autouse=True)
def empty_hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty HF cache of the test's own, which it may fill (the user's cache must not change the outcome)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.fixture(scope="module")
def sd_pipe(tmp_path_factory: pytest.TempPathFactory) -> StableDiffusionPipeline:
    """SD 2.x-style: v-prediction, to check that the DDIM scheduler keeps it."""
    return tiny_sd_pipeline(tmp_path_factory.mktemp("sd_tok"), prediction_type="v_prediction")


@pytest.fixture(scope="module")
def sd_folder(sd_pipe: StableDiffusionPipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(sd_pipe, tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl_tok")), tmp_path_factory.mktemp("sdxl") / "tiny-xl")


@pytest.fixture(scope="module")
def builtin_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("builtin") / "tiny"
    BuiltinPolicy.new().save(folder)
    return folder


def latents(policy: Policy, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *policy.latent_shape(policy.default_height, policy.default_width), generator=_gen())


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def add_random_lora(policy: Policy) -> None:
    """A rank-4 LoRA (alpha 8, so a lost alpha would show) with non-zero B, as after some training."""
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v"])
    policy.unet.add_adapter(config)
    generator = _gen()
    with torch.no_grad():
        for param in policy.trainable_parameters():
            param.copy_(0.2 * torch.randn(param.shape, generator=generator))


def one_line_error(spec: str, *fragments: str) -> None:
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint(spec)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_sd_folder_policy(sd_pipe: StableDiffusionPipeline, sd_folder: Path) -> None:
    policy = resolve_checkpoint(str(sd_folder))
    assert isinstance(policy, StableDiffusionPolicy) and policy.name == str(sd_folder)
    assert type(policy.scheduler).__name__ == "DDIMScheduler"
    assert policy.scheduler.config.prediction_type == "v_prediction" and not policy.scheduler.config.clip_sample
    assert policy.scheduler.config.beta_schedule == "scaled_linear" and policy.dtype == torch.float32

    cond = policy.encode_prompts(PROMPTS)
    assert cond.embeds.shape == (2, MAX_TOKENS, 32) and cond.mask is None
    _, uncond = sd_pipe.encode_prompt(["x"], "cpu", 1, True)
    torch.testing.assert_close(cond.embeds[1:], uncond)  # "" is exactly the pipeline's unconditional branch

    x = latents(policy)
    assert policy.latent_shape(16, 24) == (4, 8, 12)
    assert policy.denoise(x, T, cond).shape == x.shape
    images = policy.decode(x)
    assert images.dtype == torch.uint8 and images.shape == (2, 16, 16, 3)
    with pytest.raises(ValueError):
        policy.latent_shape(15, 16)
    assert resolve_checkpoint(str(sd_folder), dtype=torch.bfloat16).dtype == torch.bfloat16
    assert default_dtype("cuda") == torch.float16 and default_dtype("cpu") == torch.float32


def test_sdxl_folder_policy(sdxl_folder: Path) -> None:
    policy = resolve_checkpoint(str(sdxl_folder))
    assert isinstance(policy, StableDiffusionXLPolicy) and set(policy.modules()) >= {"text_encoder_2", "vae"}
    cond = policy.encode_prompts(PROMPTS)
    assert cond.embeds.shape == (2, MAX_TOKENS, 64) and cond.added["text_embeds"].shape == (2, 32)
    assert cond.added["time_ids"].tolist() == [[16, 16, 0, 0, 16, 16]] * 2
    # force_zeros_for_empty_prompt: diffusers' unconditional branch is zeros, not the encoding of ""
    _, uncond, _, uncond_pooled = policy.pipeline.encode_prompt(["x"], device="cpu", do_classifier_free_guidance=True)
    assert not uncond.any() and not uncond_pooled.any()
    assert not cond.embeds[1].any() and not cond.added["text_embeds"][1].any() and cond.embeds[0].any()

    x = latents(policy)
    assert policy.denoise(x, T, cond).shape == x.shape
    assert policy.decode(x).shape == (2, 16, 16, 3)
    # Off the native size the micro-conditioning follows the sampled size, as in diffusers' pipeline.
    tall = torch.randn(2, 4, 12, 8, generator=_gen())
    added = {**cond.added, "time_ids": torch.tensor([[24.0, 16, 0, 0, 24, 16]] * 2)}
    expected = policy.unet(tall, T.expand(2), encoder_hidden_states=cond.embeds, added_cond_kwargs=added).sample
    torch.testing.assert_close(policy.denoise(tall, T, cond), expected)

    policy.pipeline.register_to_config(force_zeros_for_empty_prompt=False)
    _, uncond, _, uncond_pooled = policy.pipeline.encode_prompt(["x"], device="cpu", do_classifier_free_guidance=True)
    cond = policy.encode_prompts(PROMPTS)
    torch.testing.assert_close(cond.embeds[1:], uncond)
    torch.testing.assert_close(cond.added["text_embeds"][1:], uncond_pooled)


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_save_round_trip(which: str, sd_folder: Path, sdxl_folder: Path, tmp_path: Path) -> None:
    policy = resolve_checkpoint(str(sd_folder if which == "sd" else sdxl_folder))
    policy.save(tmp_path / "copy")
    again = resolve_checkpoint(str(tmp_path / "copy"))
    assert type(again) is type(policy) and type(again.scheduler).__name__ == "DDIMScheduler"
    settings = [{k: v for k, v in p.scheduler.config.items() if not k.startswith("_")} for p in (policy, again)]
    assert settings[0] == settings[1]
    cond, x = policy.encode_prompts(PROMPTS), latents(policy)
    torch.testing.assert_close(again.encode_prompts(PROMPTS).embeds, cond.embeds)
    torch.testing.assert_close(again.denoise(x, T, cond), policy.denoise(x, T, cond))


def test_fp16_variant_only_folder(sd_pipe: StableDiffusionPipeline, tmp_path: Path) -> None:
    """Folders downloaded with only the ``*.fp16.safetensors`` files (common for SDXL) load without extra flags."""
    sd_pipe.save_pretrained(tmp_path / "fp16", variant="fp16")
    assert isinstance(resolve_checkpoint(str(tmp_path / "fp16")), StableDiffusionPolicy)


def test_sd_lora_round_trip(sd_folder: Path, sdxl_folder: Path, tmp_path: Path) -> None:
    policy = resolve_checkpoint(str(sd_folder))
    cond, x = policy.encode_prompts(PROMPTS), latents(policy)
    base_out, base_fingerprint = policy.denoise(x, T, cond), policy.fingerprint
    add_random_lora(policy)
    assert policy.trainable_parameters() and all(
        "lora_" in n for n, p in policy.unet.named_parameters() if p.requires_grad
    )
    adapted_out = policy.denoise(x, T, cond)

    policy.save(tmp_path / "lora")
    assert sorted(p.name for p in (tmp_path / "lora").iterdir()) == [
        "harness_adapter.json",
        "pytorch_lora_weights.safetensors",
    ]
    assert json.loads((tmp_path / "lora" / "harness_adapter.json").read_text())["base"] == str(sd_folder.resolve())

    spec = f"{sd_folder}+{tmp_path / 'lora'}"
    loaded = resolve_checkpoint(spec)
    assert loaded.name == spec and loaded.fingerprint != base_fingerprint
    out = loaded.denoise(x, T, cond)
    assert not torch.allclose(out, base_out, atol=1e-3)
    torch.testing.assert_close(out, adapted_out)
    alone = resolve_checkpoint(str(tmp_path / "lora"))  # the adapter's JSON names its base
    torch.testing.assert_close(alone.denoise(x, T, cond), adapted_out)
    assert alone.fingerprint == loaded.fingerprint
    one_line_error(f"{sdxl_folder}+{tmp_path / 'lora'}", "cannot load the LoRA")


def test_builtin_lora_round_trip(builtin_folder: Path, tmp_path: Path) -> None:
    policy = resolve_checkpoint(str(builtin_folder))
    assert isinstance(policy, BuiltinPolicy)
    cond, x = policy.encode_prompts(["a red circle"]), latents(policy, 1)
    base_out = policy.denoise(x, T, cond)
    add_random_lora(policy)
    adapted_out = policy.denoise(x, T, cond)
    policy.save(tmp_path / "lora")  # with LoRA attached, save writes only the adapter and names its base
    assert (tmp_path / "lora" / "harness_adapter.json").is_file()
    assert not (tmp_path / "lora" / "unet").exists()

    for spec in (f"{builtin_folder}+{tmp_path / 'lora'}", str(tmp_path / "lora")):
        loaded = resolve_checkpoint(spec)
        assert isinstance(loaded, BuiltinPolicy)
        out = loaded.denoise(x, T, cond)
        assert not torch.allclose(out, base_out, atol=1e-3)
        torch.testing.assert_close(out, adapted_out)


def test_builtin_names(builtin_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(builtin_folder, tmp_path / "tiny")
    monkeypatch.setattr(checkpoints, "BUILTIN_DIR", tmp_path)
    policy = resolve_checkpoint("builtin:tiny")
    assert isinstance(policy, BuiltinPolicy) and policy.name == "builtin:tiny"
    one_line_error("builtin:nope", "unknown builtin model", "builtin:tiny")


def test_single_file(sd_folder: Path, tmp_path: Path) -> None:
    """An original-layout file loads offline with the configs beside it, or with the HF cache's default configs."""
    reference = resolve_checkpoint(str(sd_folder))
    cond, x = reference.encode_prompts(PROMPTS), latents(reference)
    beside = tmp_path / "beside"
    shutil.copytree(sd_folder, beside, ignore=shutil.ignore_patterns("*.safetensors"))  # configs only
    file = save_single_file_sd(reference.pipeline, beside / "model.safetensors")
    policy = resolve_checkpoint(str(file))
    assert isinstance(policy, StableDiffusionPolicy) and policy.scheduler.config.prediction_type == "v_prediction"
    torch.testing.assert_close(policy.encode_prompts(PROMPTS).embeds, cond.embeds)
    torch.testing.assert_close(policy.denoise(x, T, cond), reference.denoise(x, T, cond))
    assert torch.equal(policy.decode(x), reference.decode(x))
    pickled = resolve_checkpoint(str(save_single_file_sd(reference.pipeline, beside / "model.ckpt")))
    torch.testing.assert_close(pickled.denoise(x, T, cond), reference.denoise(x, T, cond))

    lone = tmp_path / "lone" / "model.safetensors"
    lone.parent.mkdir()
    shutil.copy(file, lone)
    repo = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    one_line_error(str(lone), repo, f"hf download {repo} --include")
    fake_hub_snapshot(repo, beside)
    assert isinstance(resolve_checkpoint(str(lone)), StableDiffusionPolicy)


def fake_hub_snapshot(repo: str, folder: Path) -> None:
    """Lay ``folder`` out as the HF cache would after ``hf download repo``."""
    commit = "0" * 40
    cached = Path(huggingface_hub.constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text(commit)
    shutil.copytree(folder, cached / "snapshots" / commit)


def test_hub_id(sd_folder: Path) -> None:
    one_line_error("org/tiny-sd", "not in the local Hugging Face cache", "hf download org/tiny-sd")
    fake_hub_snapshot("org/tiny-sd", sd_folder)
    policy = resolve_checkpoint("org/tiny-sd")
    assert isinstance(policy, StableDiffusionPolicy) and policy.name == "org/tiny-sd"
    assert policy.fingerprint == resolve_checkpoint(str(sd_folder)).fingerprint


def test_errors(sd_folder: Path, tmp_path: Path) -> None:
    one_line_error(str(tmp_path / "missing"), "no such file or folder")
    (tmp_path / "empty").mkdir()
    one_line_error(str(tmp_path / "empty"), "no model_index.json")
    (tmp_path / "notes.txt").write_text("hi")
    one_line_error(str(tmp_path / "notes.txt"), "not a checkpoint")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(sd_folder, corrupt)
    weights = corrupt / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    one_line_error(str(corrupt), "truncated or corrupt")
    one_line_error(str(weights), "truncated or corrupt")

    for class_name, fragment in [
        ("KandinskyPipeline", "'KandinskyPipeline' is not supported"),
        ("StableDiffusion3Pipeline", "cannot load StableDiffusion3Pipeline"),
    ]:
        other = tmp_path / class_name
        shutil.copytree(sd_folder, other, ignore=shutil.ignore_patterns("*.safetensors"))
        index = json.loads((other / "model_index.json").read_text())
        (other / "model_index.json").write_text(json.dumps({**index, "_class_name": class_name}))
        one_line_error(str(other), fragment)

    (tmp_path / "not_lora").mkdir()
    one_line_error(f"{sd_folder}+{tmp_path / 'not_lora'}", "no pytorch_lora_weights.safetensors")
    one_line_error(f"{sd_folder}+a+b", "one adapter folder")
    bare = tmp_path / "bare_lora"
    bare.mkdir()
    (bare / "pytorch_lora_weights.safetensors").write_bytes(b"")
    one_line_error(str(bare), "pass BASE+")


def test_fingerprint_samples_large_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the whole-file limit every tensor's first bytes count, bytes deep inside a tensor do not."""
    monkeypatch.setattr(hashing, "WHOLE_FILE_LIMIT", 1024)
    monkeypatch.setattr(hashing, "TENSOR_SAMPLE", 64)
    tensors = {"a": torch.zeros(4096), "b": torch.zeros(4096)}
    file = tmp_path / "m" / "w.safetensors"
    file.parent.mkdir()
    save_file(tensors, file)
    base = fingerprint(file.parent)
    (tmp_path / "m" / ".cache").mkdir()
    (tmp_path / "m" / ".cache" / "stamp").write_text("download time")
    assert fingerprint(file.parent) == base
    tensors["b"][-1] = 1.0  # deep inside a tensor: not sampled
    save_file(tensors, file)
    assert fingerprint(file.parent) == base
    tensors["b"][0] = 1.0  # a tensor's start, as any dense change to it would touch
    save_file(tensors, file)
    assert fingerprint(file.parent) != base
