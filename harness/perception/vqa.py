"""BLIP VQA yes-probabilities through transformers, computed as T2I-CompBench's ``vqa_prob`` does.

T2I-CompBench (``BLIPvqa_eval/models/blip_vqa.py``) runs BLIP ViT-B VQA (``model_base_vqa_capfilt_large.pth``,
converted for transformers as ``Salesforce/blip-vqa-capfilt-large``) this way, which transformers' own
``generate`` does not reproduce, so the model's three parts are called here directly:

1. image: 480 x 480 bicubic resize (torchvision ``Resize((480, 480))`` on a PIL image is PIL's bicubic), [0, 1],
   normalised with CLIP's mean and std;
2. question: BERT tokens, at most 35, with the first token ([CLS]) replaced by [ENC] (id 30523), encoded by the
   text encoder attending to the image embeddings;
3. answer: the text decoder reads [DEC] (id 30522, BLIP's BOS) attending to the question states (the official
   batch pads questions and masks the padding); with p = softmax of its first-token logits, the score is
   p[yes] / (p[yes] + p[no]) = sigmoid(logit[yes] - logit[no]), yes = 2748 and no = 2053 in bert-base-uncased.

transformers 5.24 drops the decoder's cross-attention mask (``BlipTextAttention`` hands it to the self-attention
as ``attention_mask``, which that module ignores for cross-attention), so a padded batch would let the answer
attend to padding. Questions are therefore batched by token length, unpadded: the same numbers as the official
masked batch, on any transformers version.

transformers stores the vision position embeddings at ``vision_config.image_size`` (the Salesforce configs leave
the default, 384); at 480 px they are interpolated with ``interpolate_pos_encoding``. The official checkpoint was
fine-tuned at 480 px, so if the conversion interpolated its embeddings down to 384 this round trip is close to,
not bit-identical with, the official model (not checked here: no weights). Weights load from a local folder or
the local Hugging Face cache only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.errors import HarnessError

DEFAULT_MODEL = "Salesforce/blip-vqa-capfilt-large"
IMAGE_SIZE = 480
MAX_QUESTION_TOKENS = 35
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class BlipTokenIds:
    """The ids ``vqa_prob`` hard-codes, valid for BLIP's tokenizer (bert-base-uncased + [DEC] + [ENC])."""

    bos: int = 30522
    enc: int = 30523
    yes: int = 2748
    no: int = 2053


def yes_score(first_token_logits: torch.Tensor, yes: int, no: int) -> torch.Tensor:
    """P(yes) / (P(yes) + P(no)) with P = softmax over the vocabulary of the first answer token's logits [B, V]."""
    prob = torch.softmax(first_token_logits.float(), dim=-1)
    return prob[:, yes] / (prob[:, yes] + prob[:, no])


def blip_pixels(images: list[Image.Image], size: int = IMAGE_SIZE) -> torch.Tensor:
    """[B, 3, size, size]: bicubic resize of each RGB image, scaled to [0, 1], CLIP-normalised."""
    arrays = [np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
              for img in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    return (pixels - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def load_blip(source: str) -> tuple[torch.nn.Module, object]:
    """(model, tokenizer) from a local folder or a hub id already in the local cache; never downloads."""
    from transformers import AutoTokenizer, BlipForQuestionAnswering

    try:
        model = BlipForQuestionAnswering.from_pretrained(source, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except OSError:
        if Path(source).exists():
            problem = f"BLIP VQA folder {source} holds no loadable BlipForQuestionAnswering and tokenizer"
            fix = "write both there with save_pretrained"
        else:
            problem = f"BLIP VQA model {source} is neither a local folder nor in the local Hugging Face cache"
            fix = f"on a machine with internet run `hf download {source}` and copy its HF cache (HF_HOME) here"
        raise HarnessError(f"{problem}; {fix}") from None
    return model.eval(), tokenizer


class BlipVQA:
    """:class:`~harness.perception.base.VQA` backed by BLIP; weights load on the first question."""

    name = "blip-vqa"

    def __init__(self, source: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 32,
                 image_size: int = IMAGE_SIZE, token_ids: BlipTokenIds | None = None) -> None:
        self.source, self.device, self.batch_size, self.image_size = source, device, batch_size, image_size
        self.token_ids = token_ids or BlipTokenIds()
        self.version = source
        self._model: torch.nn.Module | None = None
        self._tokenizer: object = None

    def _load(self) -> tuple[torch.nn.Module, object]:
        if self._model is None:
            model, tokenizer = load_blip(self.source)
            ids = self.token_ids
            found = tokenizer.convert_tokens_to_ids(["yes", "no"])  # type: ignore[attr-defined]
            if found != [ids.yes, ids.no]:
                raise HarnessError(f"{self.source}: its tokenizer maps yes/no to {found}, not {[ids.yes, ids.no]}; "
                                   "T2I-CompBench's score needs BLIP's bert-base-uncased vocabulary")
            self._model, self._tokenizer = model.to(self.device), tokenizer
        return self._model, self._tokenizer

    @torch.no_grad()
    def yes_probability(self, images: list[Image.Image], questions: list[str]) -> list[float]:
        model, tokenizer = self._load()
        ids = self.token_ids
        interpolate = self.image_size != model.config.vision_config.image_size
        out = [0.0] * len(images)
        for start in range(0, len(images), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(images)))
            pixels = blip_pixels([images[i] for i in chunk], self.image_size).to(self.device)
            image_embeds = model.vision_model(pixel_values=pixels, interpolate_pos_encoding=interpolate)[0]
            tokens = tokenizer([questions[i] for i in chunk], truncation=True,  # type: ignore[operator]
                               max_length=MAX_QUESTION_TOKENS)["input_ids"]
            by_length: dict[int, list[int]] = {}
            for j, row in enumerate(tokens):
                by_length.setdefault(len(row), []).append(j)
            for rows in by_length.values():
                input_ids = torch.tensor([tokens[j] for j in rows], device=self.device)
                input_ids[:, 0] = ids.enc
                embeds = image_embeds[rows]
                image_mask = torch.ones(embeds.shape[:-1], dtype=torch.long, device=self.device)
                question = model.text_encoder(input_ids=input_ids, encoder_hidden_states=embeds,
                                              encoder_attention_mask=image_mask)[0]
                bos = torch.full((len(rows), 1), ids.bos, dtype=torch.long, device=self.device)
                logits = model.text_decoder(input_ids=bos, encoder_hidden_states=question).logits
                for j, score in zip(rows, yes_score(logits[:, 0, :], ids.yes, ids.no).tolist()):
                    out[chunk[j]] = score
        return out
