"""Yes/no VQA with a generative transformers model, judged as DPG-Bench judges mPLUG: yes iff the answer is "yes".

DPG-Bench's official VQA model is mPLUG-large (ModelScope ``damo/mplug_visual-question-answering_coco_large_en``),
which transformers does not implement. The closest model in transformers is BLIP's VQA model
``Salesforce/blip-vqa-capfilt-large``: like mPLUG, a ViT image encoder with a text decoder fine-tuned on VQAv2 (COCO
images) that generates short lowercase answers, so the official exact-match rule carries over unchanged. (The BLIP
backend of ``harness.perception.vqa`` reproduces T2I-CompBench's yes-probability instead; DPG-Bench reads the
generated text.) Any other transformers model that generates text from an image and a question works too (BLIP-2,
LLaVA, Qwen-VL, PaliGemma...): the class named in its config is loaded, a chat template is applied when the processor
has one, and ``exact_match=False`` accepts "Yes." as chat models write it. Weights load from local folders or the
local Hugging Face cache only.
"""

from __future__ import annotations

import torch
from PIL import Image

from harness.errors import HarnessError

DEFAULT_MODEL = "Salesforce/blip-vqa-capfilt-large"


def is_yes(answer: str, exact_match: bool = True) -> bool:
    """The official rule ``answer == 'yes'`` (after stripping decoding whitespace); ``exact_match=False`` also ignores
    case and trailing punctuation, for chat models."""
    answer = answer.strip()
    return answer == "yes" if exact_match else answer.lower().rstrip(".!") == "yes"


def load_generative_vqa(model: str) -> tuple[torch.nn.Module, object]:
    """(network, processor) of a local folder or cached hub id, as the class its config names; never downloads."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(model, local_files_only=True)
        processor = transformers.AutoProcessor.from_pretrained(model, local_files_only=True)
        architecture = (config.architectures or [None])[0]
        cls = getattr(transformers, architecture, None) if architecture else None
        network = (cls or transformers.AutoModelForImageTextToText).from_pretrained(model, local_files_only=True)
    except OSError:
        raise HarnessError(
            f"VQA weights {model!r} are not available locally; download them on a machine with internet "
            f"(huggingface-cli download {model}) or pass a local folder") from None
    return network, processor


class GenerativeVQA:
    """A :class:`~harness.perception.base.VQA` whose probability of "yes" is 1.0 or 0.0: the generated answer's
    verdict under :func:`is_yes`, decoded without sampling so a verdict is reproducible."""

    name = "transformers-generative-vqa"

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 16,
                 max_new_tokens: int = 10, exact_match: bool = True, network: torch.nn.Module | None = None,
                 processor: object | None = None) -> None:
        if network is None or processor is None:
            network, processor = load_generative_vqa(model)
        if not network.can_generate():
            raise HarnessError(f"{model!r} ({type(network).__name__}) does not generate answers; DPG-Bench needs a "
                               "generative VQA model such as BLIP VQA or a vision-language chat model")
        self.network, self.processor = network.eval().to(device), processor
        self.device, self.batch_size, self.max_new_tokens = device, batch_size, max_new_tokens
        self.exact_match = exact_match
        self.chat = bool(getattr(processor, "chat_template", None))
        if self.chat:  # decoder-only chat models continue the prompt, so pad on the left
            processor.tokenizer.padding_side = "left"
        source = getattr(network.config, "_name_or_path", None) or model
        commit = getattr(network.config, "_commit_hash", None) or "local"
        self.version = f"{source}@{commit}{'' if exact_match else '+lenient-yes'}"

    def _prompts(self, questions: list[str]) -> list[str]:
        if not self.chat:
            return questions
        return [self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}], add_generation_prompt=True)
            for q in questions]

    @torch.no_grad()
    def answers(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        """The generated answer text for each (image, question) pair.

        Questions are batched only with questions of the same token length, so no batch is padded: transformers'
        BLIP text decoder ignores its cross-attention padding mask, and an answer must not depend on its batch.
        """
        prompts = self._prompts(questions)
        lengths = [len(ids) for ids in self.processor.tokenizer(prompts)["input_ids"]]
        groups: dict[int, list[int]] = {}
        for i, length in enumerate(lengths):
            groups.setdefault(length, []).append(i)
        out: list[str] = [""] * len(prompts)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = [images[i].convert("RGB") for i in chunk]
                inputs = self.processor(images=batch, text=[prompts[i] for i in chunk], return_tensors="pt",
                                        padding=True).to(self.device)
                generated = self.network.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
                prompt, n = inputs["input_ids"], inputs["input_ids"].shape[1]
                # Decoder-only models return the prompt followed by the answer; BLIP's decoder returns the answer.
                if generated.shape[1] >= n and torch.equal(generated[:, :n], prompt):
                    generated = generated[:, n:]
                for i, answer in zip(chunk, self.processor.batch_decode(generated, skip_special_tokens=True)):
                    out[i] = answer
        return out

    def yes_probability(self, images: list[Image.Image], questions: list[str]) -> list[float]:
        return [float(is_yes(a, self.exact_match)) for a in self.answers(images, questions)]
