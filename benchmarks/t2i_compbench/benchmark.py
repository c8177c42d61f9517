"""The T2I-CompBench(++) benchmark: prompt sets, the official seeds, per-category scoring, official output files."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import cache
from pathlib import Path

import torch

from benchmarks.registry import TAG_MEANS, Benchmark, FolderContents, PromptItem, Sample, SampleResult, register
from benchmarks.t2i_compbench.export import RESULT_PATHS, export_samples, write_vqa_result
from benchmarks.t2i_compbench.parsing import OFFICIAL_SPACY_VERSION, BuiltinParser, Parser, SpacyParser
from benchmarks.t2i_compbench.prompts import ATTRIBUTE_CATEGORIES, builtin_items, real_items, real_prompts, val_file
from benchmarks.t2i_compbench.rules import (
    NUMERACY_RENAMES,
    NUMERACY_RULE_PUBLISHED,
    CompBenchOptions,
    Detection,
    attribute_score,
    category_scores,
    complex_score,
    depth_in_unidet_frame,
    numeracy_score,
    remove_duplicates,
    spatial_3d_score,
    spatial_score,
    unidet_frame,
)
from harness.errors import DataError, HarnessError
from harness.images import image_problem
from harness.perception.base import VQA, Detections, ImageTextScorer
from harness.perception.clip_score import DEFAULT_MODEL as CLIP_MODEL
from harness.perception.clip_score import DEFAULT_PRETRAINED as CLIP_PRETRAINED
from harness.perception.depth import DEFAULT_MODEL as DPT_MODEL
from harness.perception.depth import DepthEstimator
from harness.perception.open_vocab import DEFAULT_MODEL as OWL_MODEL
from harness.perception.open_vocab import QueryDetector
from harness.perception.vqa import DEFAULT_MODEL as BLIP_MODEL

log = logging.getLogger(__name__)
Scored = list[tuple[float, dict]]  # per sample: (score, details)
_NUMBER = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also accepts "³", which int() rejects

# What a perception without a detector or depth backend lacks, for the categories that need them.
_NO_DETECTOR = ("needs the UniDet detector or a substitute (a 'detector' perception backend; the real world uses "
                "OWLv2)")
_NO_DEPTH = "needs a depth backend (a 'depth' perception backend; the real world uses DPT-Hybrid MiDaS)"


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
    aggregate_reads_prompts = False  # per-tag means over images
    aggregate_form = TAG_MEANS  # rules: overall = the unweighted mean of the tag means
    description = ("T2I-CompBench(++): colour/shape/texture binding, 2D/3D spatial, numeracy, non-spatial, complex "
                   "(300 val prompts x 10 per category)")
    images_per_prompt = 10
    backend_settings = ("vqa_model", "clip_model", "clip_pretrained", "detector_model", "depth_model")
    worlds = ("builtin", "real")
    base_seed = 42
    # Real-world perception (hub ids in the local cache, or folders): transformers BLIP VQA, an open_clip model, OWLv2
    # standing in for UniDet, and DPT-Hybrid depth.
    vqa_model = BLIP_MODEL
    clip_model, clip_pretrained = CLIP_MODEL, CLIP_PRETRAINED
    detector_model, depth_model = OWL_MODEL, DPT_MODEL

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

    def read_image_folder(self, folder: Path) -> FolderContents:
        """The official layout: ``samples/{prompt}_{k:06}.png`` under ``folder`` (or ``folder`` itself as samples/).

        As the evaluators do, the prompt is the name up to the first "_" and images are ordered by ``k``. The
        prompts are looked up among the builtin prompts (when any is one) or the official val files; a prompt
        listed in several categories takes the one the folder's other prompts have (the official layout keeps one
        category per folder), else it is read once per category so that ``--tags`` picks. Files not named so,
        images that do not decode and prompts of no val file are skipped and listed, never scored as wrong.
        """
        folder = Path(folder)
        samples = folder / "samples" if (folder / "samples").is_dir() else folder
        if not samples.is_dir():
            raise DataError(f"{folder} is not a folder; pass T2I-CompBench's samples/ folder ({{prompt}}_{{k:06}}.png)")
        files = sorted(p for p in samples.iterdir() if p.is_file() and p.suffix.lower() == ".png")
        if not files:
            raise DataError(f"{samples} holds no .png images; T2I-CompBench expects samples/{{prompt}}_{{k:06}}.png")
        contents = FolderContents(items=[], images=[])
        by_prompt: dict[str, list[tuple[int, Path]]] = {}
        for path in files:
            number = path.stem.rsplit("_", 1)[-1]
            if "_" not in path.stem or not _NUMBER.fullmatch(number):
                contents.skipped.append(f"{path.name}: not named {{prompt}}_{{k:06}}.png")
                continue
            problem = image_problem(path)
            if problem:
                contents.skipped.append(f"{path.name}: {problem}")
                continue
            by_prompt.setdefault(path.name.split("_")[0], []).append((int(number), path))
        catalogue, items_of = self._catalogue(set(by_prompt))
        certain = {next(iter(catalogue[p])) for p in by_prompt if len(catalogue.get(p, ())) == 1}
        wanted: dict[int, list[Path]] = {}
        for prompt, numbered in by_prompt.items():
            categories = catalogue.get(prompt, {})
            if not categories:
                contents.skipped.append(f"{prompt!r} ({len(numbered)} image(s)): in no T2I-CompBench prompt list")
                continue
            if len(categories) > 1:
                inferred = [c for c in categories if c in certain]
                if len(inferred) == 1:
                    categories = {inferred[0]: categories[inferred[0]]}
                else:
                    log.warning("%r is a prompt of %s: scored as each; pick one with --tags", prompt,
                                ", ".join(categories))
            for index in categories.values():
                wanted[index] = [path for _, path in sorted(numbered)]
        for item in items_of(sorted(wanted)):
            contents.items.append(item)
            contents.images.append(wanted[item.index])
        return contents

    def _catalogue(self, prompts: set[str]
                   ) -> tuple[dict[str, dict[str, int]], Callable[[list[int]], list[PromptItem]]]:
        """{prompt: {category: index}} of the builtin prompt sets if any of ``prompts`` is a builtin prompt (the
        builtin grammar shares no prompt with the val files), else of the official val files (a prompt repeated in
        a file keeps its first index); and a function making the items at given indices (real ones parsed only
        then)."""
        builtin = _builtin_items(self.options)
        catalogue: dict[str, dict[str, int]] = {}
        if prompts & {item.prompt for item in builtin}:
            self._parser_used = f"{BuiltinParser.name}@{BuiltinParser.version}"
            for item in builtin:
                catalogue.setdefault(item.prompt, {}).setdefault(item.tag, item.index)
            return catalogue, lambda indices: [builtin[i] for i in indices]
        for index, (category, prompt) in enumerate(real_prompts(self.data_dir, self.options)):
            catalogue.setdefault(prompt, {}).setdefault(category, index)

        def items_of(indices: list[int]) -> list[PromptItem]:
            if self.parser is None:
                self.parser = SpacyParser.load()
            self._parser_used = f"{self.parser.name}@{self.parser.version}"
            return real_items(self.data_dir, self.options, self.parser, indices)

        return catalogue, items_of

    def world_of(self, items: list[PromptItem]) -> str:
        """builtin when the prompts are builtin ones (:meth:`read_image_folder` never mixes worlds), else real."""
        builtin = {item.prompt for item in _builtin_items(self.options)}
        return "builtin" if {item.prompt for item in items} & builtin else "real"

    def seeds(self, item: PromptItem, world: str) -> list[int]:
        """Image n of every prompt uses seed 42 + n (seeds 42..51), as the official inference_eval.py does."""
        return [self.base_seed + n for n in range(self.images_per_prompt)]

    def official_generation(self, world: str) -> dict:
        """``GORS_finetune/inference_eval.py``: DDIM (``DDIMScheduler.from_pretrained`` of the model's scheduler
        config), 30 steps, the pipeline's default guidance 7.5, eta 0. The builtin model keeps its own."""
        return {"num_inference_steps": 30, "guidance_scale": 7.5, "scheduler": "ddim", "eta": 0.0} \
            if world == "real" else {}

    def comparability(self, world: str, sampler: dict, perception: dict[str, object], tags: list[str]) -> list[str]:
        """Besides the sampler: UniDet replaced by another detector (2D/3D spatial, numeracy, complex), perception
        models other than the official ones, rule versions other than the published ones, and a spaCy model other
        than the official en_core_web_sm 3.5.0."""
        reasons = super().comparability(world, sampler, perception, tags)
        if world == "builtin":
            return reasons
        detected = sorted(set(tags) & {"spatial", "3d_spatial", "numeracy", "complex"})
        if detected and "detector" in perception:
            reasons.append(f"detector: {self.detector_model} stands in for UniDet in {', '.join(detected)}")
        models = (("vqa", self.vqa_model, BLIP_MODEL, (*ATTRIBUTE_CATEGORIES, "complex")),
                  ("clip", f"{self.clip_model}/{self.clip_pretrained}", f"{CLIP_MODEL}/{CLIP_PRETRAINED}",
                   ("non_spatial", "complex")),
                  ("depth", self.depth_model, DPT_MODEL, ("3d_spatial",)))
        for role, used, official, categories in models:
            if used != official and set(tags) & set(categories):
                reasons.append(f"{role} model: {used} instead of the official {official}")
        if "numeracy" in tags and self.options.numeracy_rule != NUMERACY_RULE_PUBLISHED:
            reasons.append(f"rules: numeracy_rule={self.options.numeracy_rule} (published numbers used "
                           f"{NUMERACY_RULE_PUBLISHED})")
        if "color" in tags and self.options.color_prompts != "before_3310c2f":
            reasons.append(f"prompts: color_prompts={self.options.color_prompts} (published numbers used "
                           "before_3310c2f)")
        if not self.options.official_quirks:
            reasons.append("rules: official_quirks=false")
        parser = self._parser_used or ""
        if parser.startswith("spacy/") and not parser.split("@", 1)[-1].startswith(OFFICIAL_SPACY_VERSION):
            reasons.append(f"text parser: {parser}, the official scripts pin en_core_web_sm {OFFICIAL_SPACY_VERSION} "
                           "(not on PyPI); some prompts parse differently")
        return reasons

    def perception(self, world: str) -> dict[str, object]:
        """Builtin world: the oracle VQA and detector. Real world: BLIP VQA, CLIPScore, OWLv2 and DPT depth.

        Each real-world backend loads its weights on first use, so only the categories scored need theirs.
        OWLv2, queried with the prompt's object names at ``options.detection_threshold``, stands in for UniDet,
        which needs detectron2: 2D/3D spatial, numeracy and complex scores will not match published tables
        exactly (see ``harness.perception.open_vocab``).
        """
        self.check_world(world)
        if world == "builtin":
            from harness.builtin.oracle import OracleDetector
            from harness.builtin.oracle_vqa import OracleVQA

            return {"vqa": OracleVQA(), "detector": OracleDetector()}
        from harness.perception.clip_score import OpenClipScorer
        from harness.perception.depth import DptDepth
        from harness.perception.open_vocab import OwlV2Detector
        from harness.perception.vqa import BlipVQA

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return {"vqa": BlipVQA(self.vqa_model, device),
                "clip": OpenClipScorer(self.clip_model, self.clip_pretrained, device),
                "detector": OwlV2Detector(self.detector_model, device, threshold=self.options.detection_threshold),
                "depth": DptDepth(self.depth_model, device)}

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
        if category == "3d_spatial":
            return self._spatial_3d(part, perception)
        raise HarnessError(f"T2I-CompBench has no category {category!r}")

    @staticmethod
    def _backend(perception: dict[str, object], role: str, category: str) -> object:
        if role not in perception:
            needs = {"detector": _NO_DETECTOR, "depth": _NO_DEPTH}.get(role, f"needs a {role!r} perception backend")
            raise HarnessError(f"T2I-CompBench {category!r} {needs}")
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

    def _detections(self, part: list[Sample], perception: dict[str, object], category: str,
                    names: list[list[str]]) -> list[list[Detection]]:
        """Detections in UniDet's frame. An open-vocabulary detector (:class:`QueryDetector`) is asked for each
        image's ``names``, the objects its rule looks for; a fixed-vocabulary one (UniDet, the oracle) for all."""
        detector = self._backend(perception, "detector", category)
        images = [image for _, _, image in part]
        found = (detector.detect_names(images, names) if isinstance(detector, QueryDetector)
                 else detector.detect(images))  # type: ignore[attr-defined]
        return [unidet_detections(d, image.size, self.options.detection_threshold)
                for d, image in zip(found, images)]

    def _spatial(self, part: list[Sample], perception: dict[str, object], category: str) -> Scored:
        """2D spatial: the two objects' first detections and their relative position."""
        o = self.options
        out = []
        for (item, _, _), found in zip(part, self._detections(part, perception, category, _object_names(part))):
            obj1, obj2 = item.metadata["objects"]
            out.append(spatial_score(obj1, obj2, item.metadata["relation"], found, o.iou_threshold,
                                     o.distance_threshold, o.official_quirks))
        return out

    def _numeracy(self, part: list[Sample], perception: dict[str, object]) -> Scored:
        """Numeracy: presence and exact count of each asked object among de-duplicated detections."""
        asked = [[NUMERACY_RENAMES.get(o, o) for o in item.metadata["objects"]] for item, _, _ in part]
        out = []
        for (item, _, _), found in zip(part, self._detections(part, perception, "numeracy", asked)):
            names = [d.name for d in remove_duplicates(found)]
            out.append(numeracy_score(item.metadata["objects"], item.metadata["counts"], names))
        return out

    def _spatial_3d(self, part: list[Sample], perception: dict[str, object]) -> Scored:
        """3D spatial: the two objects' detections and their mean depths, depth maps in UniDet's frame."""
        depth: DepthEstimator = self._backend(perception, "depth", "3d_spatial")  # type: ignore[assignment]
        self._backend(perception, "detector", "3d_spatial")  # fail before the depth model runs
        found = self._detections(part, perception, "3d_spatial", _object_names(part))
        levels = depth.depth_levels([image for _, _, image in part])
        out = []
        for (item, _, _), detections, level in zip(part, found, levels):
            obj1, obj2 = item.metadata["objects"]
            out.append(spatial_3d_score(obj1, obj2, item.metadata["relation"], detections,
                                        depth_in_unidet_frame(level), self.options.official_quirks))
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
            elif category in ("spatial", "numeracy", "3d_spatial"):
                write_vqa_result(folder / RESULT_PATHS[category], [r.score for r in rows])
            elif category == "non_spatial":
                write_vqa_result(folder / RESULT_PATHS["clip"], [r.score for r in rows])
            elif category == "complex":
                write_vqa_result(folder / RESULT_PATHS["complex"], [r.score for r in rows])
                write_vqa_result(folder / RESULT_PATHS["attribute"], [f"{r.details['attribute']:.4f}" for r in rows])
                for key, role in (("spatial", "spatial"), ("action", "clip")):
                    if all(r.details[key] is not None for r in rows):
                        write_vqa_result(folder / RESULT_PATHS[role], [r.details[key] for r in rows])


@cache
def _builtin_items(options: CompBenchOptions) -> tuple[PromptItem, ...]:
    """The builtin prompt sets, drawn once per options (an image folder is looked up in them twice)."""
    return tuple(builtin_items(options))


def _pick(part: Sequence[Sample], indices: list[int]) -> list[Sample]:
    return [part[i] for i in indices]


def _object_names(part: Sequence[Sample]) -> list[list[str]]:
    """Each sample's distinct object names (a prompt without a parsed object asks for none)."""
    return [[o for o in dict.fromkeys(item.metadata["objects"]) if o] for item, _, _ in part]
