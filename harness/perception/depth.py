"""DPT monocular depth through transformers, producing the 8-bit depth maps T2I-CompBench's 3D-spatial rule reads.

T2I-CompBench++ (``UniDet_eval/experts/model_bank_3d.py``, the Prismer depth expert) runs DPT-Hybrid
(``dpt_hybrid-midas-501f0c75.pt``; transformers' conversion is ``Intel/dpt-hybrid-midas``) this way:

1. image: resized to 480 x 480 (torchvision ``Resize([480, 480])`` on a PIL image: PIL bilinear), [0, 1],
   normalised with mean = std = 0.5;
2. prediction (MiDaS inverse depth: larger = nearer) resized back to the image's size (bicubic), then min-max
   normalised per image;
3. written as an 8-bit grey PNG, as matplotlib's ``imsave(cmap="gray")`` quantises: level = min(floor(256 v), 255).

The evaluator then re-reads that PNG through UniDet's ``Resize(479, max_size=480)`` and divides by 255; that step
belongs to the rule and lives in ``benchmarks/t2i_compbench/rules.py`` (``depth_in_unidet_frame``). Here
:meth:`DptDepth.depth_levels` returns the PNG's content, uint8 [H, W] at the image's size. Weights load from a
local folder or the local Hugging Face cache only, on the first call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from harness.errors import HarnessError

DEFAULT_MODEL = "Intel/dpt-hybrid-midas"
IMAGE_SIZE = 480
MEAN = STD = 0.5


@runtime_checkable
class DepthEstimator(Protocol):
    """Relative depth of each image as 8-bit levels at the image's size, larger = nearer."""

    name: str
    version: str

    def depth_levels(self, images: list[Image.Image]) -> list[np.ndarray]: ...


def dpt_pixels(images: list[Image.Image], size: int = IMAGE_SIZE) -> torch.Tensor:
    """[B, 3, size, size]: bilinear resize of each RGB image, scaled to [0, 1], normalised with mean = std = 0.5."""
    arrays = [np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
              for img in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    return (pixels - MEAN) / STD


def depth_to_levels(prediction: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """One prediction [h, w] -> uint8 [height, width] for a (width, height) ``size``: bicubic resize, per-image
    min-max to [0, 1] (a constant map becomes 0), then level = min(floor(256 v), 255) as imsave writes it."""
    width, height = size
    resized = F.interpolate(prediction[None, None].float(), size=(height, width), mode="bicubic",
                            align_corners=False)[0, 0]
    low, high = resized.min(), resized.max()
    unit = (resized - low) / (high - low) if high > low else torch.zeros_like(resized)
    return (unit * 256).floor().clamp(0, 255).to(torch.uint8).numpy()


class DptDepth:
    """:class:`DepthEstimator` backed by transformers' ``DPTForDepthEstimation`` (default DPT-Hybrid MiDaS)."""

    name = "dpt-transformers"

    def __init__(self, source: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 4,
                 image_size: int = IMAGE_SIZE) -> None:
        self.source, self.device, self.batch_size, self.image_size = source, device, batch_size, image_size
        self.version = source
        self._model: torch.nn.Module | None = None

    def _load(self) -> torch.nn.Module:
        if self._model is None:
            from transformers import DPTForDepthEstimation

            try:
                model = DPTForDepthEstimation.from_pretrained(self.source, local_files_only=True)
            except (OSError, ValueError):  # ValueError: a hub id that is not a valid one
                where = (f"folder {self.source} holds no loadable DPTForDepthEstimation" if Path(self.source).exists()
                         else f"DPT weights {self.source!r} are not in the local Hugging Face cache")
                raise HarnessError(f"{where}; download them on a machine with internet (huggingface-cli download "
                                   f"{DEFAULT_MODEL}) and pass the folder with --option depth_model=PATH") from None
            self._model = model.eval().to(self.device)
        return self._model

    @torch.no_grad()
    def depth_levels(self, images: list[Image.Image]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            pixels = dpt_pixels(batch, self.image_size).to(self.device)
            predicted = self._load()(pixel_values=pixels).predicted_depth.cpu()
            out.extend(depth_to_levels(p, img.size) for p, img in zip(predicted, batch))
        return out
