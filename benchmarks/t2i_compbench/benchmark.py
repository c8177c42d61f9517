"""The T2I-CompBench(++) benchmark: prompt sets, the official seeds, per-category scoring, official output files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks.registry import Benchmark, PromptItem, Sample, SampleResult, register
from benchmarks.t2i_compbench.export import RESULT_PATHS, export_samples, write_vqa_result
from benchmarks.t2i_compbench.parsing import BuiltinParser, Parser, SpacyParser
from benchmarks.t2i_compbench.prompts import ATTRIBUTE_CATEGORIES, builtin_items, real_items, val_file
from benchmarks.t2i_compbench.rules import (
    CompBenchOptions,
    Detection,
    attribute_score,
    category_scores,
    complex_score,
    numeracy_score,
    remove_duplicates,
    spatial_score,
    unidet_frame,
)
from harness.errors import HarnessError
from harness.perception.base import VQA, Detections, Detector, ImageTextScorer
from harness.perception.clip_score import DEFAULT_MODEL as CLIP_MODEL
from harness.perception.clip_score import DEFAULT_PRETRAINED as CLIP_PRETRAINED
from harness.perception.vqa import DEFAULT_MODEL as BLIP_MODEL

Scored = list[tuple[float, dict]]  # per sample: (score, details)

# What the real world lacks for the UniDet categories, and what to do instead.
_NO_UNIDET = ("needs the UniDet detector (detectron2 with the Unified_learned_OCIM RS200/R50 checkpoints), which the "
              "harness does not provide for the real world; score the other categories with "
              "--tags color,shape,texture,non_spatial")


def unidet_detections(detections: Detections, size: tuple[int, int], threshold: float) -> list[Detection]:
    """A detector's output as UniDet's evaluators see it: scores > threshold, most confident first, boxes scaled
    into UniDet's resized frame (:func:`unidet_frame`) so that the pixel constants mean what they do there."""
    width, height = size
    new_width, new_height = unidet_frame(width, height)
    sx, sy = new_width / width, new_height / height
    order = sorted(range(len(detections)), key=lambda i: -float(detections.scores[i]))
    return [Detection(detections.labels[i], float(detections.scores[i]),
                      tuple(float(v) * s for v, s in zip(detections.boxes[i], (sx, sy, sx, sy))))  # type: ignore[arg-type]
            for i in order if detections.scores[i] > threshold]


@register("t2i-compbench")
class T2ICompBench(Benchmark):
    version = "1.0"
    description = ("T2I-CompBench(++): colour/shape/texture binding, 2D/3D spatial, numeracy, non-spatial, complex "
                   "(300 val prompts x 10 per category)")
    images_per_prompt = 10
    backend_settings = ("vqa_model", "clip_model", "clip_pretrained")
    worlds = ("builtin", "real")
    base_seed = 42
    # Real-world perception: a transformers BLIP VQA (hub id in the local cache, or a folder) and an open_clip model.
    vqa_model = BLIP_MODEL
    clip_model, clip_pretrained = CLIP_MODEL, CLIP_PRETRAINED

    def __init__(self, options: CompBenchOptions | None = None, parser: Parser | None = None) -> None:
        self.options = options or CompBenchOptions()
        self.parser = parser  # real-world text analysis; spaCy's en_core_web_sm when None
        self._parser_used: str | None = None

    def prompts(self, world: str) -> list[PromptItem]:
        """Real world: the official val files, parsed with spaCy. Builtin world: see ``prompts.py``."""
        self.check_world(world)
        if world == "builtin":
            self._parser_used = f"{BuiltinParser.name}@{BuiltinParser.version}"
            return builtin_items(self.options)
        if self.parser is None:
            self.parser = SpacyParser.load()
        self._parser_used = f"{self.parser.name}@{self.parser.version}"
        return real_items(self.data_dir, self.options, self.parser)

    def seeds(self, item: PromptItem, world: str) -> list[int]:
        """Image n of every prompt uses seed 42 + n (seeds 42..51), as the official inference_eval.py does."""
        return [self.base_seed + n for n in range(self.images_per_prompt)]

    def perception(self, world: str) -> dict[str, object]:
        """Builtin world: the oracle VQA and detector. Real world: BLIP VQA and CLIPScore, loaded on first use.

        UniDet (2D/3D spatial, numeracy, complex) and DPT depth (3D spatial) have no backend here, so those
        categories cannot be scored in the real world; asking for them is an error that says so.
        """
        self.check_world(world)
        if world == "builtin":
            from harness.builtin.oracle import OracleDetector
            from harness.builtin.oracle_vqa import OracleVQA

            return {"vqa": OracleVQA(), "detector": OracleDetector()}
        from harness.perception.clip_score import OpenClipScorer
        from harness.perception.vqa import BlipVQA

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return {"vqa": BlipVQA(self.vqa_model, device), "clip": OpenClipScorer(self.clip_model, self.clip_pretrained,
                                                                               device)}

    def scorer_id(self, perception: dict[str, object]) -> dict:
        options = {**asdict(self.options), "color_file": val_file("color", self.options).path,
                   "text_parser": self._parser_used}
        return {**super().scorer_id(perception), "options": options}

    def score(self, samples: list[Sample], perception: dict[str, object]) -> list[SampleResult]:
        by_category: dict[str, list[int]] = {}
        for i, (item, _, _) in enumerate(samples):
            by_category.setdefault(item.tag, []).append(i)
        results: list[SampleResult] = [None] * len(samples)  # type: ignore[list-item]
        for category, indices in by_category.items():
            part = [samples[i] for i in indices]
            for i, (value, details) in zip(indices, self._score_category(category, part, perception)):
                item, k, _ = samples[i]
                results[i] = SampleResult(item.index, k, category, float(value), details)
        return results

    def _score_category(self, category: str, part: list[Sample], perception: dict[str, object]) -> Scored:
        if category in ATTRIBUTE_CATEGORIES:
            return self._attribute(part, perception)
        if category == "spatial":
            return self._spatial(part, perception, category)
        if category == "numeracy":
            return self._numeracy(part, perception)
        if category == "non_spatial":
            return self._clip(part, perception)
        if category == "complex":
            return self._complex(part, perception)
        raise HarnessError("T2I-CompBench '3d_spatial' needs UniDet R50 and DPT-Hybrid depth, which the harness does "
                           "not provide; score the other categories with --tags")

    @staticmethod
    def _backend(perception: dict[str, object], role: str, category: str) -> object:
        if role not in perception:
            raise HarnessError(f"T2I-CompBench {category!r} {_NO_UNIDET}" if role == "detector"
                               else f"T2I-CompBench {category!r} needs a {role!r} perception backend")
        return perception[role]

    def _attribute(self, part: list[Sample], perception: dict[str, object]) -> Scored:
        """BLIP-VQA: one yes-probability per noun-phrase question, multiplied per image."""
        vqa: VQA = self._backend(perception, "vqa", part[0][0].tag)  # type: ignore[assignment]
        pairs = [(image, q) for item, _, image in part for q in item.metadata["questions"]]
        answers = iter(vqa.yes_probability([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else [])
        out = []
        for item, _, _ in part:
            mine = [next(answers) for _ in item.metadata["questions"]]
            score = attribute_score(mine, self.options.official_quirks)
            out.append((score, {"questions": item.metadata["questions"], "answers": mine}))
        return out

    def _detections(self, part: list[Sample], perception: dict[str, object], category: str) -> list[list[Detection]]:
        detector: Detector = self._backend(perception, "detector", category)  # type: ignore[assignment]
        found = detector.detect([image for _, _, image in part])
        return [unidet_detections(d, image.size, self.options.detection_threshold)
                for d, (_, _, image) in zip(found, part)]

    def _spatial(self, part: list[Sample], perception: dict[str, object], category: str) -> Scored:
        """2D spatial: the two objects' first detections and their relative position."""
        o = self.options
        out = []
        for (item, _, _), found in zip(part, self._detections(part, perception, category)):
            obj1, obj2 = item.metadata["objects"]
            out.append(spatial_score(obj1, obj2, item.metadata["relation"], found, o.iou_threshold,
                                     o.distance_threshold, o.official_quirks))
        return out

    def _numeracy(self, part: list[Sample], perception: dict[str, object]) -> Scored:
        """Numeracy: presence and exact count of each asked object among de-duplicated detections."""
        out = []
        for (item, _, _), found in zip(part, self._detections(part, perception, "numeracy")):
            names = [d.name for d in remove_duplicates(found)]
            out.append(numeracy_score(item.metadata["objects"], item.metadata["counts"], names))
        return out

    def _clip(self, part: list[Sample], perception: dict[str, object]) -> Scored:
        """CLIPScore: cosine of image and text embeddings."""
        scorer: ImageTextScorer = self._backend(perception, "clip", part[0][0].tag)  # type: ignore[assignment]
        texts = [item.metadata["clip_text"] for item, _, _ in part]
        return [(s, {"text": t}) for s, t in zip(scorer.similarity([image for _, _, image in part], texts), texts)]

    def _complex(self, part: list[Sample], perception: dict[str, object]) -> Scored:
        """3-in-1: attribute everywhere; spatial where the partition has it; CLIP where it has an action."""
        partitions = [item.metadata["partition"] for item, _, _ in part]
        with_spatial = [i for i, p in enumerate(partitions) if p != "action"]
        with_action = [i for i, p in enumerate(partitions) if p != "spatial"]
        if with_spatial:
            self._backend(perception, "detector", "complex")  # fail before the other components run
        attribute = self._attribute(part, perception)
        spatial = dict(zip(with_spatial, self._spatial(_pick(part, with_spatial), perception, "complex"))
                       ) if with_spatial else {}
        action = dict(zip(with_action, self._clip(_pick(part, with_action), perception))) if with_action else {}
        out = []
        for i, partition in enumerate(partitions):
            a, s, c = attribute[i][0], spatial.get(i, (None, {}))[0], action.get(i, (None, {}))[0]
            details = {"partition": partition, "attribute": a, "spatial": s, "action": c,
                       "attribute_details": attribute[i][1], "spatial_details": spatial.get(i, (None, None))[1]}
            out.append((complex_score(partition, a, s, c), details))
        return out

    def aggregate(self, results: list[SampleResult]) -> dict[str, float]:
        return category_scores([r.tag for r in results], [r.score for r in results])

    def write_outputs(self, run_dir: Path, items: list[PromptItem], results: list[SampleResult],
                      image_paths: list[list[Path]]) -> None:
        """Per category, ``<category>/samples/{prompt}_{k:06}.png`` and the official evaluators' vqa_result.json
        files (complex: the 3-in-1 file plus each component computed for every image)."""
        by_key = {(r.prompt_index, r.image_index): r for r in results}
        categories: dict[str, list[tuple[PromptItem, list[Path]]]] = {}
        for item, paths in zip(items, image_paths):
            categories.setdefault(item.tag, []).append((item, paths))
        for category, entries in categories.items():
            folder = run_dir / category
            export_samples(folder / "samples", [(item.prompt, paths) for item, paths in entries])
            rows = [by_key[(item.index, k)] for item, paths in entries for k in range(len(paths))]
            if category in ATTRIBUTE_CATEGORIES:
                write_vqa_result(folder / RESULT_PATHS["attribute"], [f"{r.score:.4f}" for r in rows])
            elif category in ("spatial", "numeracy"):
                write_vqa_result(folder / RESULT_PATHS[category], [r.score for r in rows])
            elif category == "non_spatial":
                write_vqa_result(folder / RESULT_PATHS["clip"], [r.score for r in rows])
            elif category == "complex":
                write_vqa_result(folder / RESULT_PATHS["complex"], [r.score for r in rows])
                write_vqa_result(folder / RESULT_PATHS["attribute"], [f"{r.details['attribute']:.4f}" for r in rows])
                for key, role in (("spatial", "spatial"), ("action", "clip")):
                    if all(r.details[key] is not None for r in rows):
                        write_vqa_result(folder / RESULT_PATHS[role], [r.details[key] for r in rows])


def _pick(part: Sequence[Sample], indices: list[int]) -> list[Sample]:
    return [part[i] for i in indices]
