"""The GenEval benchmark: prompts, seed protocol, per-image verdicts and the official aggregation."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks.geneval.prompts import builtin_metadata, official_classes, official_metadata, read_metadata_jsonl
from benchmarks.geneval.rules import COLORS, Detected, GenEvalOptions, aggregate_tags, filter_class, judge
from benchmarks.registry import TAG_MEANS, Benchmark, FolderContents, PromptItem, Sample, SampleResult, register
from harness.errors import DataError
from harness.images import image_problem
from harness.perception.base import ColorClassifier, Detector
from harness.store import atomic_write_bytes, atomic_write_text

# ASCII digits only: str.isdigit() and \d also accept digits such as "٣" or "³", which int() reads as 3 or rejects.
PROMPT_FOLDER = re.compile(r"[0-9]+")
OFFICIAL_CLIP = ("ViT-L-14-quickgelu", "openai")
SAMPLE_NAME = re.compile(r"([0-9]+)\.png")


def object_crop(image: Image.Image, obj: Detected, bgcolor: str = "#999") -> Image.Image:
    """GenEval's colour crop: pixels outside the instance mask become ``bgcolor``, then the box is cut out."""
    rgb = image.convert("RGB")
    blank = rgb.copy() if bgcolor == "original" else Image.new("RGB", rgb.size, color=bgcolor)
    composite = Image.composite(rgb, blank, Image.fromarray(obj.mask))
    return composite.crop(obj.box)


@register("geneval")
class GenEval(Benchmark):
    version = "1.0"
    aggregate_reads_prompts = False  # per-tag means over images
    aggregate_form = TAG_MEANS  # rules: overall = the unweighted mean of the tag means
    description = "GenEval: single/two objects, counting, colours, position, colour attribution (553 prompts x 4)"
    images_per_prompt = 4
    backend_settings = ("detector_model", "clip_model", "clip_pretrained")
    worlds = ("builtin", "real")
    base_seed = 42
    # Real-world perception: the detector (a transformers id or folder, or the official mmdet .pth file) and the
    # colour model (open_clip names). The default detector is NOT the official checkpoint (see ``perception``).
    detector_model = "facebook/mask2former-swin-small-coco-instance"
    # open_clip 3.x builds plain "ViT-L-14" with GELU even for OpenAI weights; the OpenAI model GenEval loaded
    # (open_clip 2.20, which switched to QuickGELU for those weights) is "ViT-L-14-quickgelu".
    clip_model, clip_pretrained = OFFICIAL_CLIP

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

    def official_generation(self, world: str) -> dict:
        """``generation/diffusers_generate.py``: the pipeline's own scheduler (it never replaces it: PNDM for SD 1.5,
        Euler for SDXL), 50 steps, guidance 9.0. The builtin model keeps its own (DDIM)."""
        return {"num_inference_steps": 50, "guidance_scale": 9.0, "scheduler": "pipeline"} if world == "real" else {}

    def comparability(self, world: str, sampler: dict, perception: dict[str, object], tags: list[str]) -> list[str]:
        """Besides the sampler: the detector must be the official mmdet checkpoint (loaded from its ``.pth`` file,
        checked by hash), the colour model OpenAI CLIP ViT-L-14, and the evaluator options the official defaults."""
        reasons = super().comparability(world, sampler, perception, tags)
        if world == "builtin":
            return reasons
        detector = perception.get("detector")
        if detector is not None and not getattr(detector, "official", False):
            reasons.append(f"detector: {getattr(detector, 'version', detector)} is not GenEval's official mmdet "
                           "checkpoint mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco (pass its .pth file with "
                           "--option detector_model=PATH)")
        if (self.clip_model, self.clip_pretrained) != OFFICIAL_CLIP:
            reasons.append(f"colour model: {self.clip_model}/{self.clip_pretrained} instead of OpenAI ViT-L-14")
        changed = [f"{f.name}={getattr(self.options, f.name)}" for f in fields(self.options)
                   if getattr(self.options, f.name) != f.default]
        if changed:
            reasons.append(f"rules: evaluator options differ from the official defaults ({', '.join(changed)})")
        return reasons

    def perception(self, world: str) -> dict[str, object]:
        """Builtin world: the pixel oracle. Real world: Mask2Former (transformers) and open_clip ViT-L-14.

        The official detector is OpenMMLab's mmdet 2.x checkpoint ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco``;
        ``--option detector_model=PATH.pth`` loads that file through :mod:`harness.perception.mmdet_convert` (no
        mmcv). The default, ``facebook/mask2former-swin-small-coco-instance``, is a different training of the same
        architecture (FAIR's), so runs with it are labelled not comparable with published tables.
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
        """The official layout: ``<i>/metadata.jsonl`` and ``<i>/samples/NNNN.png`` for every ``<i>`` of ASCII digits.

        Everything the official evaluator would pass over without a word is listed as skipped, one line per folder
        or image, never silently dropped or scored as wrong: prompt folders without metadata or samples, folders
        not named by ASCII digits (or repeating an index: ``3/`` and ``00003/``), sample files not named
        ``NNNN.png`` (``0001.PNG``, ``0001.jpg``), missing samples (``0000, 0001, 0003`` or 3 of 4), images that do
        not decode, declare too many pixels or carry a damaged EXIF block. A malformed metadata file is an error.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder; pass the GenEval image folder (<i>/metadata.jsonl, "
                            "<i>/samples/NNNN.png)")
        contents = FolderContents(items=[], images=[])
        folders = sorted(p for p in folder.iterdir() if p.is_dir())
        subfolders = sorted((p for p in folders if PROMPT_FOLDER.fullmatch(p.name)),
                            key=lambda p: (int(p.name), p.name))
        if not subfolders:
            raise DataError(f"{folder} has no prompt folders named by digits (00000/, 00001/, ...): not GenEval layout")
        contents.skipped.extend(f"{p.name}/: not a prompt folder (not named by the digits 0-9)"
                                for p in folders if not PROMPT_FOLDER.fullmatch(p.name))
        first_of: dict[int, str] = {}
        for sub in subfolders:
            index = int(sub.name)
            if index in first_of:
                contents.skipped.append(f"{sub.name}/: the same prompt index as {first_of[index]}/, not read twice")
                continue
            first_of[index] = sub.name
            meta = sub / "metadata.jsonl"
            if not meta.is_file():
                contents.skipped.append(f"{sub.name}: no metadata.jsonl")
                continue
            entries = read_metadata_jsonl(meta)
            if len(entries) != 1:
                raise DataError(f"{meta}: expected one metadata object, found {len(entries)}")
            metadata = entries[0]
            readable = self._read_samples(folder, sub, contents.skipped)
            if readable:
                contents.items.append(PromptItem(index, metadata["prompt"], metadata["tag"], metadata))
                contents.images.append(readable)
        return contents

    def _read_samples(self, root: Path, sub: Path, skipped: list[str]) -> list[Path]:
        """The scorable ``sub/samples/NNNN.png`` in number order; every other file and every gap goes to ``skipped``."""
        samples = sub / "samples"
        files = sorted(p for p in samples.iterdir() if p.is_file()) if samples.is_dir() else []
        numbered: list[tuple[int, Path]] = []
        for path in files:
            match = SAMPLE_NAME.fullmatch(path.name)
            if match:
                numbered.append((int(match.group(1)), path))
            else:
                skipped.append(f"{path.relative_to(root)}: not named NNNN.png, which is all the official evaluator "
                               "reads")
        if not numbered:
            skipped.append(f"{sub.name}: no samples/NNNN.png")
            return []
        numbered.sort()
        present = {n for n, _ in numbered}
        expected = max(self.images_per_prompt, numbered[-1][0] + 1)
        skipped.extend(f"{sub.name}/samples/{n:04d}.png: missing ({len(present)} of {expected} images)"
                       for n in range(expected) if n not in present)
        readable = []
        for _, path in numbered:
            problem = image_problem(path)
            if problem:
                skipped.append(f"{path.relative_to(root)}: {problem}")
            else:
                readable.append(path)
        return readable

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
    ``00000/samples/0000.png``), as hard links where possible, so the official evaluator can run on them too.
    A file already there with the same content (a re-run) is left alone: a cached re-run rewrites nothing."""
    for item, paths in zip(items, image_paths):
        sample_dir = root / f"{item.index:05d}" / "samples"
        sample_dir.mkdir(parents=True, exist_ok=True)
        metadata, text = sample_dir.parent / "metadata.jsonl", json.dumps(item.metadata)
        if not (metadata.is_file() and metadata.read_text() == text):
            atomic_write_text(metadata, text)
        for k, source in enumerate(paths):
            target = sample_dir / f"{k:04d}.png"
            if target.is_file() and os.path.samefile(source, target):
                continue
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:
                atomic_write_bytes(target, Path(source).read_bytes())


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
