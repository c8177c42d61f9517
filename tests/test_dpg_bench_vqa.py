"""DPG-Bench's real-world VQA backend on tiny random-init transformers models (BLIP VQA, a LLaVA-style chat model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmarks.dpg_bench.benchmark import DPGBench
from benchmarks.dpg_bench.rules import make_grid
from harness.api import EvalSettings, score
from harness.errors import HarnessError
from harness.perception.vqa_generative import GenerativeVQA, is_yes
from tests.fixtures_data import dpg_bench_data

BLIP_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "is", "there", "a", "red", "circle", "?", "yes",
              "no"]


def tiny_blip() -> tuple[torch.nn.Module, object]:
    """BLIP VQA as transformers builds it, shrunk: 32 px images, one layer each, a 14-word BERT vocabulary."""
    from transformers import BertTokenizerFast, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(BLIP_WORDS)}, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    layer = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37, "hidden_size": 32}
    config = BlipConfig(
        text_config={**layer, "vocab_size": len(BLIP_WORDS), "bos_token_id": 5, "sep_token_id": 3, "pad_token_id": 0,
                     "max_position_embeddings": 64, "encoder_hidden_size": 32},
        vision_config={**layer, "image_size": 32, "patch_size": 8}, projection_dim=32)
    torch.manual_seed(0)
    return BlipForQuestionAnswering(config).eval(), processor


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    network, processor = tiny_blip()
    path = tmp_path_factory.mktemp("vqa") / "tiny-blip-vqa"
    network.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def force(bias: torch.Tensor, token: int) -> None:
    """Make a random model answer ``token`` whatever it sees: a bias that dwarfs every logit."""
    with torch.no_grad():
        bias.zero_()
        bias[token] = 1e4


def test_official_answer_rule() -> None:
    assert is_yes("yes") and is_yes(" yes\n") and not is_yes("Yes") and not is_yes("yes yes") and not is_yes("no")
    assert is_yes("Yes.", exact_match=False) and not is_yes("Yes, two.", exact_match=False)


def test_blip_vqa_loads_from_a_local_folder_and_answers_by_the_rule(blip_dir: Path) -> None:
    vqa = GenerativeVQA(str(blip_dir), batch_size=2, max_new_tokens=1)
    assert vqa.version == f"{blip_dir}@local" and not vqa.chat
    images = [Image.new("RGB", (40, 30), "red"), Image.new("RGB", (20, 20), "blue"), Image.new("RGB", (8, 8))]
    questions = ["is there a red circle?", "is there a circle?", "is a circle red?"]
    assert set(vqa.yes_probability(images, questions)) <= {0.0, 1.0}
    force(vqa.network.text_decoder.cls.predictions.bias, BLIP_WORDS.index("yes"))
    assert vqa.answers(images, questions) == ["yes"] * 3 and vqa.yes_probability(images, questions) == [1.0] * 3
    force(vqa.network.text_decoder.cls.predictions.bias, BLIP_WORDS.index("no"))
    assert vqa.yes_probability(images, questions) == [0.0] * 3


def test_chat_model_gets_its_template_and_only_the_answer_is_read() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    words = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "USER", ":", "ASSISTANT", "is", "there", "a", "circle", "?",
             "Yes", "no"]
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    template = ("{% for m in messages %}USER : {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
                "{% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
                "{% if add_generation_prompt %}ASSISTANT :{% endif %}")
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                                  crop_size={"height": 16, "width": 16}),
                               tokenizer=tokenizer, patch_size=8, chat_template=template,
                               vision_feature_select_strategy="full", num_additional_image_tokens=1)
    small = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16}
    config = LlavaConfig(
        vision_config={**small, "model_type": "clip_vision_model", "image_size": 16, "patch_size": 8},
        text_config={**small, "model_type": "llama", "vocab_size": len(words), "num_key_value_heads": 1,
                     "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3},
        image_token_index=4, vision_feature_select_strategy="full", vision_feature_layer=-1)
    torch.manual_seed(0)
    network = LlavaForConditionalGeneration(config).eval()
    network.lm_head = torch.nn.Linear(16, len(words), bias=True)  # so the answer can be forced
    torch.nn.init.zeros_(network.lm_head.weight)
    force(network.lm_head.bias, words.index("Yes"))
    vqa = GenerativeVQA(network=network, processor=processor, batch_size=2, max_new_tokens=1)
    assert vqa.chat and vqa._prompts(["is there a circle ?"]) == ["USER : <image> is there a circle ? ASSISTANT :"]
    images = [Image.new("RGB", (20, 20), "red")] * 3
    questions = ["is there a circle ?", "is there ?", "a circle ?"]  # different lengths: left padding
    assert vqa.answers(images, questions) == ["Yes"] * 3
    assert vqa.yes_probability(images, questions) == [0.0] * 3  # the official rule wants lowercase "yes"
    lenient = GenerativeVQA(network=network, processor=processor, max_new_tokens=1, exact_match=False)
    assert lenient.yes_probability(images, questions) == [1.0] * 3 and lenient.version.endswith("+lenient-yes")


def test_missing_or_non_generative_models_are_clear_errors() -> None:
    from transformers import ViltConfig, ViltForQuestionAnswering

    with pytest.raises(HarnessError, match="not available locally"):
        GenerativeVQA("no-such-org/no-such-vqa")
    classifier = ViltForQuestionAnswering(ViltConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                     intermediate_size=16, num_labels=2, image_size=32, patch_size=16))
    with pytest.raises(HarnessError, match="does not generate answers"):
        GenerativeVQA("vilt", network=classifier, processor=object())


def test_real_world_folder_scored_with_the_transformers_backend(blip_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                unpinned_data: None) -> None:
    dpg_bench_data(tmp_path / "data")
    monkeypatch.setattr(DPGBench, "vqa_model", str(blip_dir))
    images = tmp_path / "model-x"
    images.mkdir()
    for item_id, color in (("partiprompts97", "red"), ("0", "green"), ("countbench1", "blue")):
        make_grid([Image.new("RGB", (24, 24), color)] * 4).save(images / f"{item_id}.png")
    record = score("dpg-bench", images, out=tmp_path / "store", settings=EvalSettings(data_dir=tmp_path / "data"),
                   progress=False)
    assert record.world == "real" and record.n_prompts == 3
    assert record.perception == {"vqa": f"transformers-generative-vqa@{blip_dir}@local"}
    assert 0.0 <= record.scores["overall"] <= 100.0 and record.options["official_quirks"] is True
    lines = next((tmp_path / "store" / "runs").glob("dpg-bench-*")).joinpath("dpg-bench_results.txt").read_text()
    assert "partiprompts97.png" not in lines and f"{images / '0.png'}, " in lines  # the #61 casualty is left out
