"""The GenEval benchmark: prompts, seed protocol, per-image verdicts and the official aggregation."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks.geneval.prompts import builtin_metadata
from benchmarks.geneval.rules import COLORS, Detected, GenEvalOptions, aggregate_tags, filter_class, judge
from benchmarks.registry import Benchmark, PromptItem, Sample, SampleResult, register
from harness.perception.base import ColorClassifier, Detector


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
    worlds = ("builtin",)
    base_seed = 42

    def __init__(self, options: GenEvalOptions | None = None) -> None:
        self.options = options or GenEvalOptions()

    def prompts(self, world: str) -> list[PromptItem]:
        self.check_world(world)
        return [PromptItem(i, m["prompt"], m["tag"], m) for i, m in enumerate(builtin_metadata())]

    def seeds(self, item: PromptItem, world: str) -> list[int]:
        """The official script reseeds with 42 before every prompt, so duplicate prompts give duplicate images.

        The builtin prompt set repeats prompts (8 classes instead of 80), so there every image gets its own seed
        (42 + 4 * prompt index + k) and repeats add samples instead of copies.
        """
        if world == "builtin":
            start = self.base_seed + self.images_per_prompt * item.index
            return list(range(start, start + self.images_per_prompt))
        return [self.base_seed + k for k in range(self.images_per_prompt)]

    def perception(self, world: str) -> dict[str, object]:
        self.check_world(world)
        from harness.builtin.oracle import OracleColorClassifier, OracleDetector

        return {"detector": OracleDetector(), "color": OracleColorClassifier()}

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

    @staticmethod
    def prompt_accuracy(results: list[SampleResult]) -> float:
        """Share of prompts with at least one correct image (the summary script's "% correct prompts")."""
        by_prompt: dict[int, bool] = {}
        for r in results:
            by_prompt[r.prompt_index] = by_prompt.get(r.prompt_index, False) or r.score == 1.0
        return float(np.mean(list(by_prompt.values())))
