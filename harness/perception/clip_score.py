"""CLIPScore as T2I-CompBench's non-spatial metric computes it: the plain cosine of CLIP embeddings.

``CLIPScore_eval/CLIP_similarity.py`` loads OpenAI CLIP ViT-B/32 with ``clip.load`` (224 px bicubic resize of the
short side, centre crop, CLIP normalisation; ``clip.tokenize``) and scores normalise(image) . normalise(text):
no x100, no 2.5 weight, no clipping at 0, unlike Hessel et al.'s CLIPScore. The open_clip equivalent is
``ViT-B-32-quickgelu`` with ``pretrained="openai"``: OpenAI's weights were trained with QuickGELU, and open_clip 3.x
builds plain ``ViT-B-32`` with GELU even for the openai tag (it only warns). Any open_clip model works by name
(``local-dir:PATH`` for a saved folder); weights come from a local file or the local cache only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from harness.perception.clip_color import load_open_clip

DEFAULT_MODEL, DEFAULT_PRETRAINED = "ViT-B-32-quickgelu", "openai"


def clip_cosine(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Row-wise cos(image_i, text_i) = (x_i / |x_i|) . (t_i / |t_i|), unscaled, in [-1, 1]."""
    return (F.normalize(image_features.float(), dim=-1) * F.normalize(text_features.float(), dim=-1)).sum(-1)


class OpenClipScorer:
    """:class:`~harness.perception.base.ImageTextScorer` over any open_clip model; weights load on first use."""

    name = "open_clip-cosine"

    def __init__(self, model: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED, device: str = "cpu",
                 batch_size: int = 32) -> None:
        self.model, self.pretrained, self.device, self.batch_size = model, pretrained, device, batch_size
        self.version = f"{model}/{pretrained}"
        self._loaded: tuple[torch.nn.Module, Callable, Callable] | None = None

    @torch.no_grad()
    def similarity(self, images: list[Image.Image], texts: list[str]) -> list[float]:
        if self._loaded is None:
            network, preprocess, tokenizer = load_open_clip(self.model, self.pretrained)
            self._loaded = (network.to(self.device), preprocess, tokenizer)
        network, preprocess, tokenizer = self._loaded
        out: list[float] = []
        for start in range(0, len(images), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            pixels = torch.stack([preprocess(img.convert("RGB")) for img in images[chunk]]).to(self.device)
            tokens = tokenizer(texts[chunk]).to(self.device)
            out.extend(clip_cosine(network.encode_image(pixels), network.encode_text(tokens)).tolist())
        return out
