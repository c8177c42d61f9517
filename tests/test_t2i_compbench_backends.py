"""T2I-CompBench's neural backends on tiny random-init networks saved to disk and loaded the real way: BLIP VQA
(transformers) and CLIPScore (open_clip). They check preprocessing, batching, the token ids and the score rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.t2i_compbench import T2ICompBench
from harness.errors import HarnessError
from harness.perception.base import VQA, ImageTextScorer
from harness.perception.clip_score import OpenClipScorer, clip_cosine
from harness.perception.vqa import CLIP_MEAN, CLIP_STD, BlipTokenIds, BlipVQA, blip_pixels

WORDS = ["a", "red", "blue", "green", "bench", "bowl", "big", "circle", "?", "yes", "no"]
QUESTIONS = ["a red bench?", "a big green bowl?", "a circle?", "blue?"]


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BlipTokenIds]:
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering

    folder = tmp_path_factory.mktemp("blip")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "[DEC]", "[ENC]"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    tokenizer.save_pretrained(folder)
    ids = BlipTokenIds(bos=vocab.index("[DEC]"), enc=vocab.index("[ENC]"), yes=vocab.index("yes"),
                       no=vocab.index("no"))
    torch.manual_seed(0)
    text = {"vocab_size": len(vocab), "hidden_size": 16, "encoder_hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 40,
            "bos_token_id": ids.bos, "pad_token_id": 0, "sep_token_id": vocab.index("[SEP]")}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 16}
    BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
    return folder, ids


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(n)]


def test_blip_preprocessing_is_the_official_transform() -> None:
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    official = transforms.Compose([transforms.Resize((480, 480), interpolation=InterpolationMode.BICUBIC),
                                   transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])
    img = images(1)[0]
    assert torch.allclose(blip_pixels([img])[0], official(img), atol=1e-6)


def test_blip_yes_probability_on_a_tiny_model(blip_folder: tuple[Path, BlipTokenIds]) -> None:
    folder, ids = blip_folder
    vqa = BlipVQA(str(folder), token_ids=ids, image_size=64, batch_size=4)
    assert isinstance(vqa, VQA)
    imgs = images(4)
    scores = vqa.yes_probability(imgs, QUESTIONS)
    assert len(scores) == 4 and all(0.0 < s < 1.0 for s in scores)
    # padding in a batch of questions of different lengths changes nothing
    one_by_one = BlipVQA(str(folder), token_ids=ids, image_size=64, batch_size=1).yes_probability(imgs, QUESTIONS)
    assert scores == pytest.approx(one_by_one, abs=1e-5)
    # the question starts with [ENC], and the decoder reads [DEC]
    seen: dict[str, torch.Tensor] = {}
    encoder, decoder = vqa._model.text_encoder, vqa._model.text_decoder  # type: ignore[union-attr]
    hooks = [encoder.register_forward_pre_hook(lambda m, a, kw: seen.update(question=kw["input_ids"]),
                                               with_kwargs=True),
             decoder.register_forward_pre_hook(lambda m, a, kw: seen.update(answer=kw["input_ids"]),
                                               with_kwargs=True)]
    vqa.yes_probability(imgs[:1], QUESTIONS[:1])
    for hook in hooks:
        hook.remove()
    assert seen["question"][0, 0] == ids.enc and seen["answer"].tolist() == [[ids.bos]]
    # score = sigmoid(logit_yes - logit_no): raising the yes logit by d moves it to sigmoid(logit(s) + d)
    bias = vqa._model.text_decoder.cls.predictions.bias  # type: ignore[union-attr]
    with torch.no_grad():
        bias[ids.yes] += 2.0
    shifted = vqa.yes_probability(imgs, QUESTIONS)
    expected = [1 / (1 + math.exp(-(math.log(s / (1 - s)) + 2.0))) for s in scores]
    assert shifted == pytest.approx(expected, abs=1e-5)


def test_blip_checks_the_yes_no_ids(blip_folder: tuple[Path, BlipTokenIds]) -> None:
    folder, _ = blip_folder
    with pytest.raises(HarnessError, match="maps yes/no to"):  # the official ids 2748/2053 are not this vocabulary
        BlipVQA(str(folder), image_size=64).yes_probability(images(1), QUESTIONS[:1])


@pytest.mark.parametrize(("source", "message"), [
    ("Salesforce/blip-vqa-capfilt-large", "hf download Salesforce/blip-vqa-capfilt-large"),
    ("/nonexistent/blip", "neither a local folder nor in the local Hugging Face cache"),
])
def test_missing_blip_weights_is_a_one_line_error(source: str, message: str) -> None:
    vqa = BlipVQA(source)  # nothing loads until the first question
    with pytest.raises(HarnessError, match=message) as err:
        vqa.yes_probability(images(1), QUESTIONS[:1])
    assert "\n" not in str(err.value) and source in str(err.value)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("clip")
    config = {"embed_dim": 16, "quick_gelu": True,
              "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    preprocess = {"mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic",
                  "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": preprocess}))
    torch.manual_seed(0)
    model = open_clip.CLIP(**config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    return folder


def test_clip_score_on_a_tiny_open_clip_model(clip_folder: Path) -> None:
    import open_clip

    scorer = OpenClipScorer(f"local-dir:{clip_folder}", pretrained="")
    assert isinstance(scorer, ImageTextScorer)
    imgs, texts = images(3), ["a red bench", "a blue bowl", "two circles"]
    scores = scorer.similarity(imgs, texts)
    # the same network loaded independently: cosine of its embeddings, no scaling
    network, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{clip_folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{clip_folder}")
    with torch.no_grad():
        pixels = torch.stack([preprocess(img) for img in imgs])
        expected = clip_cosine(network.eval().encode_image(pixels), network.encode_text(tokenizer(texts)))
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert OpenClipScorer(f"local-dir:{clip_folder}", "", batch_size=1).similarity(imgs, texts) == pytest.approx(
        scores, abs=1e-5)


def test_missing_clip_weights_is_a_clear_error() -> None:
    pytest.importorskip("open_clip")
    with pytest.raises(HarnessError, match="ViT-B-32-quickgelu/openai"):
        OpenClipScorer().similarity(images(1), ["a photo"])


def test_real_world_perception_is_loaded_lazily() -> None:
    perception = T2ICompBench().perception("real")  # constructing loads nothing: no weights needed yet
    assert set(perception) == {"vqa", "clip", "detector", "depth"}
    assert perception["vqa"].version == "Salesforce/blip-vqa-capfilt-large"
    assert perception["clip"].version == "ViT-B-32-quickgelu/openai"
