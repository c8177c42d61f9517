"""OWLv2 open-vocabulary detection through transformers: the harness's stand-in for T2I-CompBench's UniDet.

T2I-CompBench scores 2D spatial, 3D spatial, numeracy and complex prompts with UniDet (a detectron2 detector over a
fixed 722-class vocabulary), which cannot be installed here. OWLv2 (``google/owlv2-base-patch16-ensemble``) is
queried instead with the object nouns the official rules look for, so every asked object has a class to be found
as. **This is a substitute: numbers made with it will not match published T2I-CompBench tables exactly**, since a
different detector finds different boxes with differently calibrated scores; the rules, the 0.5 score threshold
and the pixel constants applied afterwards are the official ones.

How detections are made, and why:

* images go through transformers' ``Owlv2Processor`` (pad to a square with zeros at the bottom/right, resize to
  960 px, CLIP normalisation), the model's own preprocessing;
* each object name is queried as ``"a photo of a {name}"`` (OWL-ViT's prompt template), padded to the tokenizer's
  length (16 for OWLv2), and a detection's label is the bare name, so the official name matching (exact for 2D,
  substring for 3D and numeracy) works unchanged;
* each predicted box takes the best of its image's queries (one class per box, as detectron2 returns), sigmoid
  score; boxes scoring at most ``threshold`` are dropped; boxes are in the original image's pixels, clipped to it
  (callers move them into UniDet's 479/480 frame);
* per-label non-maximum suppression at IoU 0.5, the test-time NMS detectron2 applies to UniDet's boxes, so that
  several patches predicting the same object do not count twice (numeracy counts boxes);
* detections come most confident first, the order the official scripts read detectron2's output in.

OWLv2 has no masks, so ``Detections.masks`` are the boxes filled. Weights load from a local folder or the local
Hugging Face cache only, on the first call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from harness.errors import HarnessError
from harness.perception.base import Detections

DEFAULT_MODEL = "google/owlv2-base-patch16-ensemble"
QUERY_TEMPLATE = "a photo of a {}"
NMS_THRESHOLD = 0.5  # detectron2's MODEL.ROI_HEADS.NMS_THRESH_TEST default, which UniDet's configs keep


@runtime_checkable
class QueryDetector(Protocol):
    """Finds the objects named per image: ``names[i]`` are looked for in ``images[i]``, labels are those names."""

    name: str
    version: str

    def detect_names(self, images: list[Image.Image], names: list[list[str]]) -> list[Detections]: ...


def box_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [N, height, width]: each box's pixels (x1 <= x < x2, y1 <= y < y2 after rounding), for detectors that
    predict no masks."""
    masks = np.zeros((len(boxes), height, width), bool)
    for mask, (x1, y1, x2, y2) in zip(masks, np.rint(boxes).astype(int)):
        mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
    return masks


def select_boxes(logits: torch.Tensor, boxes: torch.Tensor, allowed: torch.Tensor, size: tuple[int, int],
                 threshold: float, nms_threshold: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (boxes, scores, query indices) from OWLv2's raw outputs, most confident first.

    logits [P, Q] per predicted box and query; boxes [P, 4] as (cx, cy, w, h) relative to the padded square;
    ``allowed`` bool [Q], the queries that belong to this image. Each box takes its best allowed query, score =
    sigmoid(logit); scores <= ``threshold`` go; boxes are scaled to pixels of the (width, height) ``size`` image
    (the padded square's side is max(width, height)) and clipped to it; then per-query NMS.
    """
    from torchvision.ops import batched_nms

    logits = logits.float().masked_fill(~allowed, float("-inf"))
    best, query = logits.max(dim=-1)
    scores = best.sigmoid()
    keep = scores > threshold
    width, height = size
    side = max(width, height)
    cx, cy, w, h = (boxes[keep].float() * side).unbind(-1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    corners = corners.clamp(min=0).minimum(torch.tensor([width, height, width, height], dtype=corners.dtype))
    scores, query = scores[keep], query[keep]
    order = (batched_nms(corners, scores, query, nms_threshold) if nms_threshold is not None
             else torch.sort(scores, descending=True, stable=True).indices)
    return corners[order].numpy(), scores[order].numpy(), query[order].numpy()


class OwlV2Detector:
    """:class:`QueryDetector` (and :class:`~harness.perception.base.Detector` over ``classes``) backed by OWLv2.

    A substitute for T2I-CompBench's UniDet: see the module docstring for how it differs.
    """

    name = "owlv2-transformers"

    def __init__(self, source: str = DEFAULT_MODEL, device: str = "cpu", threshold: float = 0.5,
                 nms_threshold: float | None = NMS_THRESHOLD, batch_size: int = 4,
                 classes: Sequence[str] = ()) -> None:
        self.source, self.device, self.batch_size = source, device, batch_size
        self.threshold, self.nms_threshold = threshold, nms_threshold
        self.classes = tuple(classes)
        self.version = f"{source} (query {QUERY_TEMPLATE!r}, nms {nms_threshold})"
        self._model: torch.nn.Module | None = None
        self._processor: object = None

    def _load(self) -> tuple[torch.nn.Module, object]:
        if self._model is None:
            from transformers import Owlv2ForObjectDetection, Owlv2Processor

            try:
                model = Owlv2ForObjectDetection.from_pretrained(self.source, local_files_only=True)
                self._processor = Owlv2Processor.from_pretrained(self.source, local_files_only=True)
            except (OSError, ValueError):  # ValueError: a hub id that is not a valid one
                where = (f"folder {self.source} holds no loadable Owlv2ForObjectDetection and Owlv2Processor"
                         if Path(self.source).exists() else
                         f"OWLv2 weights {self.source!r} are not in the local Hugging Face cache")
                raise HarnessError(f"{where}; download them on a machine with internet (huggingface-cli download "
                                   f"{DEFAULT_MODEL}) and pass the folder with --option detector_model=PATH") from None
            self._model = model.eval().to(self.device)
        return self._model, self._processor

    def detect(self, images: list[Image.Image]) -> list[Detections]:
        """Every image queried with ``classes``."""
        if not self.classes:
            raise HarnessError("OwlV2Detector.detect needs class names; pass classes=... or call detect_names")
        return self.detect_names(images, [list(self.classes)] * len(images))

    @torch.no_grad()
    def detect_names(self, images: list[Image.Image], names: list[list[str]]) -> list[Detections]:
        """Detections of ``names[i]`` in ``images[i]``; an image with no names is not run through the model.

        A batch queries the union of its images' names (text embedded once); each image's boxes may only take its
        own names, so batching never changes an image's detections.
        """
        results = [Detections.empty(img.height, img.width) for img in images]
        todo = [i for i, own in enumerate(names) if own]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            model, processor = self._load()
            union = list(dict.fromkeys(n for i in chunk for n in names[i]))
            queries = [QUERY_TEMPLATE.format(n) for n in union]
            batch = [images[i].convert("RGB") for i in chunk]
            inputs = processor(text=[queries] * len(batch), images=batch, padding="max_length",  # type: ignore[operator]
                               truncation=True, return_tensors="pt")
            outputs = model(**inputs.to(self.device))
            for j, i in enumerate(chunk):
                allowed = torch.tensor([n in names[i] for n in union])
                boxes, scores, query = select_boxes(outputs.logits[j].cpu(), outputs.pred_boxes[j].cpu(), allowed,
                                                    batch[j].size, self.threshold, self.nms_threshold)
                results[i] = Detections(boxes.astype(np.float32), scores.astype(np.float32),
                                        [union[q] for q in query], box_masks(boxes, batch[j].height, batch[j].width))
        return results
