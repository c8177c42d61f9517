"""The GenEval benchmark: prompts, seed protocol, per-image verdicts and the official aggregation."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks.geneval.prompts import builtin_metadata, official_classes, official_metadata, read_metadata_jsonl
from benchmarks.geneval.rules import COLORS, Detected, GenEvalOptions, aggregate_tags, filter_class, judge
from benchmarks.registry import Benchmark, FolderContents, PromptItem, Sample, SampleResult, register
from harness.errors import DataError
from harness.perception.base import ColorClassifier, Detector

SAMPLE_NAME = re.compile(r"^\d+\.png$")


def object_crop(image: Image.Image, obj: Detected, bgcolor: str = "#999") -> Image.Image:
    """GenEval's colour crop: pixels outside the instance mask become ``bgcolor``, then the box is cut out."""
    rgb = image.convert("RGB")
    blank = rgb.copy() if bgcolor == "original" else Image.new("RGB", rgb.size, color=bgcolor)
    composite = Image.composite(rgb, blank, Image.fromarray(obj.mask))
    return composite.crop(obj.box)


@register("geneval")
class GenEval(Benchmark):
    version = "1.0"
    description = "GenEval: single/two objects, counting, colours, position, colour attribution (553 prompts x 4)"
    images_per_prompt = 4
    backend_settings = ("detector_model", "clip_model", "clip_pretrained")
    worlds = ("builtin", "real")
    base_seed = 42
    # Real-world perception: the detector and colour model (transformers ids or local folders, open_clip names).
    detector_model = "facebook/mask2former-swin-small-coco-instance"
    # open_clip 3.x builds plain "ViT-L-14" with GELU even for OpenAI weights; the OpenAI model GenEval loaded
    # (open_clip 2.20, which switched to QuickGELU for those weights) is "ViT-L-14-quickgelu".
    clip_model, clip_pretrained = "ViT-L-14-quickgelu", "openai"

    def __init__(self, options: GenEvalOptions | None = None) -> None:
        self.options = options or GenEvalOptions()

    def prompts(self, world: str) -> list[PromptItem]:
        self.check_world(world)
        metadata = builtin_metadata() if world == "builtin" else official_metadata(self.data_dir)
        return [PromptItem(i, m["prompt"], m["tag"], m) for i, m in enumerate(metadata)]

    def seeds(self, item: PromptItem, world: str) -> list[int]:
        """The official script reseeds with 42 before every prompt, so duplicate prompts give duplicate images.

        The builtin prompt set repeats prompts (8 classes instead of 80), so there every image gets its own seed
        (42 + 4 * prompt index + k) and repeats add samples instead of copies.
        """
        if world == "builtin":
            start = self.base_seed + self.images_per_prompt * item.index
            return list(range(start, start + self.images_per_prompt))
        return [self.base_seed + k for k in range(self.images_per_prompt)]

    def generation_defaults(self, world: str) -> dict:
        """``generation/diffusers_generate.py``: 50 steps, guidance 9.0 (the builtin model keeps its own)."""
        return {"num_inference_steps": 50, "guidance_scale": 9.0} if world == "real" else {}

    def perception(self, world: str) -> dict[str, object]:
        """Builtin world: the pixel oracle. Real world: Mask2Former (transformers) and open_clip ViT-L-14.

        The official detector is mmdet 2.x Mask2Former Swin-S; transformers' port of the same checkpoint is the
        default here because mmdet 2.x needs torch 1.x and compiled mmcv ops (see the README for the official one).
        """
        self.check_world(world)
        if world == "builtin":
            from harness.builtin.oracle import OracleColorClassifier, OracleDetector

            return {"detector": OracleDetector(), "color": OracleColorClassifier()}
        from harness.perception.clip_color import ClipColorClassifier
        from harness.perception.mask2former import Mask2FormerDetector

        device = "cuda" if _cuda() else "cpu"
        detector = Mask2FormerDetector(self.detector_model, classes=official_classes(self.data_dir), device=device)
        return {"detector": detector, "color": ClipColorClassifier(self.clip_model, self.clip_pretrained, device)}

    def world_of(self, items: list[PromptItem]) -> str:
        """Which world a prompt set belongs to: builtin when every class it names is a builtin shape."""
        from harness.builtin.world import SHAPES

        classes = {c["class"] for item in items for c in [*item.metadata["include"], *item.metadata.get("exclude", [])]}
        return "builtin" if classes <= set(SHAPES) else "real"

    def read_image_folder(self, folder: Path) -> FolderContents:
        """The official layout: ``<i>/metadata.jsonl`` and ``<i>/samples/NNNN.png`` for every all-digit ``<i>``.

        A prompt folder without metadata or without samples, and an image that does not decode, are skipped and
        listed (never silently scored as wrong); a malformed metadata file is an error.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder; pass the GenEval image folder (<i>/metadata.jsonl, "
                            "<i>/samples/NNNN.png)")
        contents = FolderContents(items=[], images=[])
        subfolders = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
        if not subfolders:
            raise DataError(f"{folder} has no prompt folders named by digits (00000/, 00001/, ...): not GenEval layout")
        for sub in subfolders:
            meta = sub / "metadata.jsonl"
            if not meta.is_file():
                contents.skipped.append(f"{sub.name}: no metadata.jsonl")
                continue
            entries = read_metadata_jsonl(meta)
            if len(entries) != 1:
                raise DataError(f"{meta}: expected one metadata object, found {len(entries)}")
            metadata = entries[0]
            samples = sorted((p for p in (sub / "samples").glob("*.png") if SAMPLE_NAME.match(p.name)),
                             key=lambda p: int(p.stem)) if (sub / "samples").is_dir() else []
            readable = []
            for path in samples:
                try:
                    with Image.open(path) as img:
                        img.load()
                    readable.append(path)
                except (OSError, SyntaxError, ValueError) as err:
                    contents.skipped.append(f"{path.relative_to(folder)}: unreadable image ({err})")
            if not samples:
                contents.skipped.append(f"{sub.name}: no samples/NNNN.png")
            if readable:
                contents.items.append(PromptItem(int(sub.name), metadata["prompt"], metadata["tag"], metadata))
                contents.images.append(readable)
        return contents

    def scorer_id(self, perception: dict[str, object]) -> dict:
        return {**super().scorer_id(perception), "options": asdict(self.options)}

    def score(self, samples: list[Sample], perception: dict[str, object]) -> list[SampleResult]:
        detector: Detector = perception["detector"]  # type: ignore[assignment]
        classifier: ColorClassifier = perception["color"]  # type: ignore[assignment]
        detections = detector.detect([img for _, _, img in samples])
        results = []
        for (item, k, image), dets in zip(samples, detections):
            threshold = self.options.counting_threshold if item.tag == "counting" else self.options.threshold
            detected: dict[str, list[Detected]] = {}
            for cls in dict.fromkeys(dets.labels):
                own = dets.of_class(cls)
                kept = filter_class(own.boxes, own.scores, own.masks, threshold, self.options.max_objects,
                                    self.options.max_overlap)
                if kept:
                    detected[cls] = kept

            def color_of(cls: str, objs: list[Detected], image: Image.Image = image) -> list[str]:
                crops = [object_crop(image, o, self.options.bgcolor) for o in objs]
                return classifier.classify(crops, [cls] * len(crops), list(COLORS))

            correct, reasons = judge(detected, item.metadata, color_of, self.options.position_threshold)
            details = {cls: [[*o.box, o.score] for o in objs] for cls, objs in detected.items()}
            results.append(SampleResult(item.index, k, item.tag, float(correct),
                                        {"reason": "\n".join(reasons), "detections": details}))
        return results

    def aggregate(self, results: list[SampleResult]) -> dict[str, float]:
        return aggregate_tags([r.tag for r in results], [r.score == 1.0 for r in results])

    def write_outputs(self, run_dir: Path, items: list[PromptItem], results: list[SampleResult],
                      image_paths: list[list[Path]]) -> None:
        """``geneval_results.jsonl`` in the official evaluator's format (pandas JSON lines, same fields)."""
        by_index = {item.index: item for item in items}
        paths = {(item.index, k): p for item, ps in zip(items, image_paths) for k, p in enumerate(ps)}
        rows = []
        for r in results:
            item = by_index[r.prompt_index]
            rows.append({
                "filename": str(paths[(r.prompt_index, r.image_index)]),
                "tag": r.tag,
                "prompt": item.prompt,
                "correct": bool(r.score == 1.0),
                "reason": r.details["reason"],
                "metadata": json.dumps(item.metadata),
                "details": json.dumps(r.details["detections"]),
            })
        tmp = run_dir / "geneval_results.jsonl.tmp"
        pd.DataFrame(rows).to_json(tmp, orient="records", lines=True)
        tmp.replace(run_dir / "geneval_results.jsonl")
        write_official_layout(run_dir / "images", items, image_paths)

    @staticmethod
    def prompt_accuracy(results: list[SampleResult]) -> float:
        """Share of prompts with at least one correct image (the summary script's "% correct prompts")."""
        by_prompt: dict[int, bool] = {}
        for r in results:
            by_prompt[r.prompt_index] = by_prompt.get(r.prompt_index, False) or r.score == 1.0
        return float(np.mean(list(by_prompt.values())))


def write_official_layout(root: Path, items: list[PromptItem], image_paths: list[list[Path]]) -> None:
    """Lay the images out as the official generation script does (``00000/metadata.jsonl``,
    ``00000/samples/0000.png``), as hard links where possible, so the official evaluator can run on them too."""
    for item, paths in zip(items, image_paths):
        sample_dir = root / f"{item.index:05d}" / "samples"
        sample_dir.mkdir(parents=True, exist_ok=True)
        (sample_dir.parent / "metadata.jsonl").write_text(json.dumps(item.metadata))
        for k, source in enumerate(paths):
            target = sample_dir / f"{k:04d}.png"
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:
                target.write_bytes(Path(source).read_bytes())


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
