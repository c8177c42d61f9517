"""Mask2Former instance detection through transformers, post-processed as mmdet 2.x does for GenEval.

GenEval's official detector is OpenMMLab's mmdet 2.x checkpoint ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco``
(Swin-S, COCO instance). Two ways to run it here:

* ``model`` = the path of that mmdet ``.pth`` file: its weights are converted into transformers' Mask2Former
  (:mod:`harness.perception.mmdet_convert`), no mmcv needed; the official checkpoint itself.
* ``model`` = a transformers checkpoint (hub id in the local cache or a folder). The default,
  ``facebook/mask2former-swin-small-coco-instance``, is FAIR's training of the same architecture, **not** the
  official checkpoint: different weights and calibration, so GenEval scores with it are not comparable with
  published ones (the result record says so).

transformers' own ``post_process_instance_segmentation`` differs from mmdet's (fixed 384 px mask resize, score
threshold before top-k), so we post-process the raw outputs the mmdet way (``MaskFormerFusionHead
.instance_postprocess``): top-k over all (query, class) scores, masks binarised at logit 0, score = class
probability x mean mask probability inside the mask, box = the mask's extent.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from harness.errors import HarnessError
from harness.perception.base import Detections

DEFAULT_MODEL = "facebook/mask2former-swin-small-coco-instance"
# mmdet 2.x Mask2Former test pipeline: keep-ratio resize to (1333, 800), ImageNet normalisation, pad to 32.
TEST_SCALE = {"shortest_edge": 800, "longest_edge": 1333}


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """mmdet's ``mask2bbox``: (x1, y1, x2 + 1, y2 + 1) of each mask's pixels, zeros for an empty mask."""
    boxes = torch.zeros(masks.shape[0], 4)
    x_any, y_any = masks.any(dim=1), masks.any(dim=2)
    for i in range(masks.shape[0]):
        xs, ys = torch.where(x_any[i])[0], torch.where(y_any[i])[0]
        if len(xs) and len(ys):
            boxes[i] = torch.tensor([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=torch.float32)
    return boxes


def instance_postprocess(class_logits: torch.Tensor, mask_logits: torch.Tensor, max_per_image: int = 100
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's (labels, scores, masks, boxes) from queries' class logits [Q, C+1] and mask logits [Q, H, W].

    scores = softmax(class_logits)[:, :C] (the last class is "no object"); keep the top ``max_per_image`` of the
    Q*C (query, class) pairs; mask = mask_logit > 0; final score = class score x (sum of sigmoid inside the mask /
    mask area).
    """
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    scores = F.softmax(class_logits, dim=-1)[:, :num_classes]
    labels = torch.arange(num_classes).repeat(num_queries)
    k = min(max_per_image, scores.numel())
    top_scores, top_index = scores.flatten().topk(k, sorted=False)
    mask_logits = mask_logits[top_index // num_classes]
    binary = (mask_logits > 0).float()
    mask_scores = (mask_logits.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    masks = binary.bool()
    return labels[top_index], top_scores * mask_scores, masks, masks_to_boxes(masks)


class Mask2FormerDetector:
    """A :class:`~harness.perception.base.Detector` over any transformers Mask2Former instance checkpoint."""

    name = "mask2former-transformers"

    def __init__(self, model: str = DEFAULT_MODEL, classes: list[str] | None = None, device: str = "cpu",
                 max_per_image: int = 100, batch_size: int = 4, network: object | None = None,
                 processor: object | None = None) -> None:
        from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

        self.official = False  # True only for the official mmdet checkpoint file (checked by its sha256)
        if network is None and str(model).endswith(".pth"):
            from harness.perception.mmdet_convert import load_mmdet_mask2former

            network, loaded = load_mmdet_mask2former(model, classes)
            self.official = loaded["official"]
            # mmdet's test pipeline normalises with ImageNet mean/std x 255: the processor's defaults.
            processor = processor or Mask2FormerImageProcessor()
            model = f"mmdet:{loaded['file']}@sha256:{loaded['sha256'][:16]}"
        try:
            self.network = network or Mask2FormerForUniversalSegmentation.from_pretrained(model, local_files_only=True)
            self.processor = processor or Mask2FormerImageProcessor.from_pretrained(model, local_files_only=True)
        except OSError:
            raise HarnessError(
                f"detector weights {model!r} are not available locally; download them on a machine with internet "
                f"(huggingface-cli download {model}), pass a local folder, or the official mmdet .pth file") from None
        self.processor.size = dict(TEST_SCALE)
        self.processor.size_divisor = 32
        self.network.eval().to(device)
        self.device, self.max_per_image, self.batch_size = device, max_per_image, batch_size
        config = self.network.config
        self.classes = tuple(classes or [config.id2label[i] for i in range(config.num_labels)])
        if len(self.classes) != config.num_labels:
            raise HarnessError(f"{len(self.classes)} class names for a detector with {config.num_labels} classes")
        if str(model).startswith("mmdet:"):
            self.version = model
        else:
            self.version = f"{getattr(config, '_name_or_path', None) or model}@" \
                           f"{getattr(config, '_commit_hash', None) or 'local'}"

    @torch.no_grad()
    def detect(self, images: list[Image.Image]) -> list[Detections]:
        results = []
        for start in range(0, len(images), self.batch_size):
            batch = [img.convert("RGB") for img in images[start : start + self.batch_size]]
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
            outputs = self.network(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])
            padded = inputs["pixel_values"].shape[-2:]
            mask_logits = F.interpolate(outputs.masks_queries_logits, size=padded, mode="bilinear", align_corners=False)
            for i, image in enumerate(batch):
                valid = inputs["pixel_mask"][i]
                h, w = int(valid.any(1).sum()), int(valid.any(0).sum())
                per_image = F.interpolate(mask_logits[i : i + 1, :, :h, :w], size=(image.height, image.width),
                                          mode="bilinear", align_corners=False)[0]
                labels, scores, masks, boxes = instance_postprocess(
                    outputs.class_queries_logits[i].float().cpu(), per_image.float().cpu(), self.max_per_image)
                order = torch.argsort(scores, descending=True)
                results.append(Detections(
                    boxes=boxes[order].numpy().astype(np.float32),
                    scores=scores[order].numpy().astype(np.float32),
                    labels=[self.classes[int(j)] for j in labels[order]],
                    masks=masks[order].numpy(),
                ))
        return results
