"""GenEval's colour classifier: open_clip zero-shot over colour names with GenEval's three templates.

For each class name, a colour's text embedding is the mean of the L2-normalised embeddings of
"a photo of a {c} {cls}", "a photo of a {c}-colored {cls}" and "a photo of a {c} object", normalised again
(CLIP_benchmark's ``zero_shot_classifier``, which GenEval calls); the predicted colour is the argmax of
100 * normalize(image embedding) @ those embeddings. GenEval uses ViT-L-14 with OpenAI weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from harness.errors import HarnessError

TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")


def load_open_clip(model: str, pretrained: str) -> tuple[torch.nn.Module, Callable, Callable]:
    """(model, image transform, tokenizer) from a local file or the local cache; never downloads."""
    import open_clip

    try:
        network, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained)
    except Exception as err:  # open_clip raises RuntimeError/OSError/ValueError variously when weights are absent
        raise HarnessError(
            f"open_clip weights {model}/{pretrained} are not available locally ({type(err).__name__}); fetch them on "
            "a machine with internet into the Hugging Face cache and copy the cache here, or use a local weights file"
        ) from None
    return network.eval(), preprocess, open_clip.get_tokenizer(model)


class ClipColorClassifier:
    """A :class:`~harness.perception.base.ColorClassifier` over any open_clip model."""

    name = "open_clip-zeroshot-color"

    def __init__(self, model: str = "ViT-L-14-quickgelu", pretrained: str = "openai", device: str = "cpu",
                 batch_size: int = 16, network: torch.nn.Module | None = None, preprocess: Callable | None = None,
                 tokenizer: Callable | None = None) -> None:
        if network is None:
            network, preprocess, tokenizer = load_open_clip(model, pretrained)
        self.network, self.preprocess, self.tokenizer = network.to(device), preprocess, tokenizer
        self.device, self.batch_size = device, batch_size
        self.version = f"{model}/{pretrained}"
        self._weights: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}

    @torch.no_grad()
    def class_weights(self, class_name: str, colors: tuple[str, ...]) -> torch.Tensor:
        """[D, n_colors] zero-shot weights for one class, cached."""
        key = (class_name, colors)
        if key not in self._weights:
            columns = []
            for color in colors:
                texts = [t.format(c=color, cls=class_name) for t in TEMPLATES]
                emb = F.normalize(self.network.encode_text(self.tokenizer(texts).to(self.device)).float(), dim=-1)
                columns.append(F.normalize(emb.mean(0), dim=0))
            self._weights[key] = torch.stack(columns, dim=1)
        return self._weights[key]

    @torch.no_grad()
    def classify(self, crops: list[Image.Image], class_names: list[str], colors: list[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            pixels = torch.stack([self.preprocess(c.convert("RGB")) for c in chunk]).to(self.device)
            features = F.normalize(self.network.encode_image(pixels).float(), dim=-1)
            for feat, cls in zip(features, class_names[start : start + self.batch_size]):
                logits = 100.0 * feat @ self.class_weights(cls, tuple(colors))
                out.append(colors[int(logits.argmax())])
        return out
