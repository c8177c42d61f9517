"""The DPG-Bench benchmark: prompts with question graphs, seeds, per-image VQA verdicts, official aggregation and files.

The harness generates and scores a prompt's four images one by one (image k is tile k of the official 2x2 grid);
a folder of official grids (``<item_id>.png``) is scored grid by grid, each cut into its four tiles. Both give the
same per-tile verdicts, so ``aggregate`` is one rule for both: per prompt, the tile mean; overall, 100 x the mean over
prompts.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict
from pathlib import Path

from PIL import Image

from benchmarks.dpg_bench.prompts import (
    BUILTIN_PREFIX,
    builtin_items,
    builtin_questions,
    official_prompt,
    official_questions,
    source_tag,
)
from benchmarks.dpg_bench.rules import (
    TILES,
    DPGOptions,
    DPGScores,
    Question,
    TileVerdict,
    aggregate,
    grid_resolution,
    group_items,
    image_score,
    judge_tile,
    make_grid,
    missing_parents,
    official_rows,
    tile_boxes,
)
from benchmarks.registry import Benchmark, FolderContents, PromptItem, Sample, SampleResult, register
from harness.errors import DataError
from harness.images import image_problem
from harness.perception.base import VQA
from harness.store import atomic_write_bytes, atomic_write_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
OFFICIAL_VQA = "damo/mplug_visual-question-answering_coco_large_en"  # ModelScope, as compute_dpg_bench.py loads it
RESULTS_FILE = "dpg-bench_results.txt"  # the official name without its timestamp, so a rerun replaces it
_BUILTIN_ID = re.compile(rf"^{BUILTIN_PREFIX}\d+$")


def item_questions(item: PromptItem) -> list[Question]:
    return [Question.from_dict(item.metadata["item_id"], q) for q in item.metadata["questions"]]


def prompt_items(questions: list[Question], texts: dict[str, str], official_quirks: bool) -> list[PromptItem]:
    """One PromptItem per item of a question table, in table order, carrying its question graph as scored (after the
    official row drop when ``official_quirks``)."""
    graphs = group_items(official_rows(questions, official_quirks))
    return [PromptItem(index, texts[item_id], source_tag(item_id),
                       {"item_id": item_id, "questions": [q.to_dict() for q in qs]})
            for index, (item_id, qs) in enumerate(graphs.items())]


def is_generated(item: PromptItem) -> bool:
    """Whether an item's images are single tiles made by the harness, rather than official grids read from a folder."""
    return item.metadata.get("tiles_per_image", 1) == 1


@register("dpg-bench")
class DPGBench(Benchmark):
    version = "1.0"
    description = "DPG-Bench (ELLA): dense prompts, DSG question graphs answered by VQA; 0-100 (1065 prompts x 4)"
    images_per_prompt = TILES
    backend_settings = ("vqa_model",)
    worlds = ("builtin", "real")
    base_seed = 42
    vqa_model = "Salesforce/blip-vqa-capfilt-large"  # stands in for mPLUG-large (see harness.perception.vqa_generative)

    def __init__(self, options: DPGOptions | None = None) -> None:
        self.options = options or DPGOptions()

    def prompts(self, world: str) -> list[PromptItem]:
        """Builtin: the generated dense prompts. Real: the items of ``dpg_bench.csv`` in table order, with the text
        of ``prompts/<item_id>.txt`` (the table is read first, so a missing table fails before any generation)."""
        self.check_world(world)
        if world == "builtin":
            items = builtin_items()
            texts = {item.item_id: item.prompt for item in items}
            questions = builtin_questions(items)
        else:
            questions = official_questions(self.data_dir)
            texts = {i: official_prompt(i, self.data_dir) for i in dict.fromkeys(q.item_id for q in questions)}
        return prompt_items(questions, texts, self.options.official_quirks)

    def seeds(self, item: PromptItem, world: str) -> list[int]:
        """Seeds 42, 43, 44, 45 for the four images of every prompt (DPG-Bench does not fix seeds: ELLA issue #67).

        The same four seeds for every prompt, as GenEval's official script reseeds per prompt; prompts are distinct in
        both worlds, so no two images repeat.
        """
        return [self.base_seed + k for k in range(self.images_per_prompt)]

    def generation_defaults(self, world: str) -> dict:
        """DPG-Bench names no sampler (ELLA issue #67; :meth:`official_generation` is empty), so real-world runs use
        the checkpoint's own scheduler at diffusers' pipeline defaults, 50 steps and guidance 7.5. ELLA's own
        ``inference.py`` sampled with DPM-Solver++ (``DPMSolverMultistepScheduler``), 50 steps, guidance 12: select
        that with ``--scheduler dpm++ --guidance 12``. The builtin model keeps its own."""
        return {"num_inference_steps": 50, "guidance_scale": 7.5, "scheduler": "pipeline"} if world == "real" else {}

    def comparability(self, world: str, sampler: dict, perception: dict[str, object], tags: list[str]) -> list[str]:
        """The official VQA is mPLUG-large (ModelScope), which transformers does not have: any other VQA model gives
        numbers not comparable with published tables. The sampler is not judged (the protocol names none)."""
        reasons = super().comparability(world, sampler, perception, tags)
        if world == "builtin":
            return reasons
        if self.vqa_model != OFFICIAL_VQA:
            reasons.append(f"VQA model: {self.vqa_model} instead of the official mPLUG-large ({OFFICIAL_VQA}); "
                           "DPG-Bench scores depend strongly on the VQA model")
        if not self.options.official_quirks:
            reasons.append("rules: official_quirks=false")
        return reasons

    def perception(self, world: str) -> dict[str, object]:
        """Builtin world: the oracle VQA. Real world: a generative transformers VQA model judged by the official
        ``answer == 'yes'`` rule (default BLIP VQA, the closest transformers model to the official mPLUG-large)."""
        self.check_world(world)
        if world == "builtin":
            from harness.builtin.oracle_vqa import OracleVQA

            return {"vqa": OracleVQA()}
        import torch

        from harness.perception.vqa_generative import GenerativeVQA

        return {"vqa": GenerativeVQA(self.vqa_model, device="cuda" if torch.cuda.is_available() else "cpu")}

    def scorer_id(self, perception: dict[str, object]) -> dict:
        return {**super().scorer_id(perception), "options": asdict(self.options)}

    def world_of(self, items: list[PromptItem]) -> str:
        return "builtin" if all(_BUILTIN_ID.match(item.metadata["item_id"]) for item in items) else "real"

    def score(self, samples: list[Sample], perception: dict[str, object]) -> list[SampleResult]:
        """Each sample is one tile (a generated image) or one official grid (four tiles, from an image folder); every
        tile is asked every question of its item in one batched VQA call."""
        vqa: VQA = perception["vqa"]  # type: ignore[assignment]
        images: list[Image.Image] = []
        texts: list[str] = []
        plans: list[tuple[list[Question], list[tuple[int, tuple[int, int, int, int]]], str | None]] = []
        for item, k, image in samples:
            questions = item_questions(item)
            missing = missing_parents(questions)
            if missing:
                plans.append((questions, [], f"dependency on proposition(s) {missing} dropped with the first CSV row "
                                             "(official quirk #61): the official scorer fails on this image"))
                continue
            if is_generated(item):
                tiles = [(k, tile_boxes(image.width)[k], image)]
            else:
                boxes = tile_boxes(grid_resolution(image.size))
                tiles = [(k * TILES + t, box, image.crop(box)) for t, box in enumerate(boxes)]
            for _, _, tile in tiles:
                images.extend([tile] * len(questions))
                texts.extend(q.question for q in questions)
            plans.append((questions, [(t, box) for t, box, _ in tiles], None))
        p_yes = vqa.yes_probability(images, texts) if images else []
        results, position = [], 0
        for (item, k, _), (questions, tiles, excluded) in zip(samples, plans):
            if excluded:
                results.append(SampleResult(item.index, k, item.tag, float("nan"), {"excluded": excluded}))
                continue
            verdicts = []
            for t, box in tiles:
                verdicts.append(judge_tile(t, box, p_yes[position : position + len(questions)], questions))
                position += len(questions)
            results.append(SampleResult(item.index, k, item.tag, image_score([v.score for v in verdicts]), {
                "tiles": [v.to_dict() for v in verdicts], "categories": [q.category for q in questions]}))
        return results

    def scores(self, results: list[SampleResult]) -> DPGScores:
        """The official aggregation over every prompt that was scored (images the official scorer fails on are out)."""
        tiles: dict[int, list[TileVerdict]] = {}
        categories: dict[int, list[str]] = {}
        for r in results:
            if "excluded" not in r.details:
                tiles.setdefault(r.prompt_index, []).extend(TileVerdict.from_dict(t) for t in r.details["tiles"])
                categories[r.prompt_index] = r.details["categories"]
        return aggregate(((categories[p], ts) for p, ts in tiles.items()), self.options.official_quirks)

    def aggregate(self, results: list[SampleResult]) -> dict[str, float]:
        """``overall`` = the DPG-Bench score, then the L1 and L2 category scores, all 0-100 as published."""
        return self.scores(results).flat()

    def read_image_folder(self, folder: Path) -> FolderContents:
        """The official layout: one 2R x 2R grid ``<item_id>.<ext>`` per prompt (the id is the name up to its first
        dot, as the official scorer reads it). Builtin ids select the builtin question table, anything else the
        official one. Items without a grid, grids that do not decode or are not 2R x 2R, and images of unknown items
        are skipped and listed, never scored as wrong; other files (e.g. result txts) are ignored.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder; pass the DPG-Bench image folder (<item_id>.png 2x2 grids)")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder} holds no images; DPG-Bench expects one 2x2 grid <item_id>.png per prompt")
        by_id: dict[str, Path] = {}
        for path in files:
            by_id.setdefault(path.name.split(".")[0], path)
        world = "builtin" if all(_BUILTIN_ID.match(i) for i in by_id) else "real"
        contents = FolderContents(items=[], images=[])
        known, missing = set(), []
        for item in self.prompts(world):
            item_id = item.metadata["item_id"]
            known.add(item_id)
            path = by_id.get(item_id)
            if path is None:
                missing.append(item_id)
                continue
            problem = image_problem(path)
            if problem is None:
                try:
                    with Image.open(path) as img:
                        grid_resolution(img.size)
                except DataError as err:
                    problem = str(err)
            if problem:
                contents.skipped.append(f"{path.name}: unreadable grid ({problem})")
                continue
            metadata = {**item.metadata, "tiles_per_image": TILES}
            contents.items.append(PromptItem(item.index, item.prompt, item.tag, metadata))
            contents.images.append([path])
        contents.skipped.extend(f"{path.name}: no such item in the {world} question table"
                                for item_id, path in by_id.items() if item_id not in known)
        if missing:  # one line, however many: a partial folder is normal when scoring a subset
            shown = ", ".join(missing[:10]) + (f", ... ({len(missing) - 10} more)" if len(missing) > 10 else "")
            contents.skipped.append(f"{len(missing)} item(s) of the {world} question table have no grid image: {shown}")
        return contents

    def write_outputs(self, run_dir: Path, items: list[PromptItem], results: list[SampleResult],
                      image_paths: list[list[Path]]) -> None:
        """The official 2x2 grids ``images/<item_id>.png`` (for generated images) and the official result files:
        ``dpg-bench_results.txt`` (``path, tile scores..., mean`` per grid, then the summary block) and
        ``dpg-bench_results_detail.txt`` (``path, crop box, question, answer`` per tile and question; the answer
        column holds the verdict, yes or no, since a backend reports p(yes) rather than free text)."""
        by_prompt: dict[int, list[SampleResult]] = {}
        for r in results:
            by_prompt.setdefault(r.prompt_index, []).append(r)
        lines, detail = [], []
        image_root = run_dir / "images"
        for item, paths in zip(items, image_paths):
            grid_path = paths[0]
            if is_generated(item) and len(paths) == TILES:
                grid_path = image_root / f"{item.metadata['item_id']}.png"
                buffer = io.BytesIO()
                make_grid([Image.open(p) for p in paths]).save(buffer, format="PNG")
                atomic_write_bytes(grid_path, buffer.getvalue())
            else:
                image_root = grid_path.parent
            scored = by_prompt.get(item.index, [])
            if not scored or any("excluded" in r.details for r in scored):
                continue
            tiles = sorted((TileVerdict.from_dict(t) for r in scored for t in r.details["tiles"]), key=lambda t: t.tile)
            scores = [t.score for t in tiles]
            lines.append(f"{grid_path}, {', '.join(map(str, scores))}, {image_score(scores)}")
            for tile in tiles:
                detail.extend(f"{grid_path}, {tuple(tile.box)}, {q.question}, {'yes' if s else 'no'}"
                              for q, s in zip(item_questions(item), tile.raw))
        summary = self.scores(results)
        results_path = run_dir / RESULTS_FILE
        block = [f"Model: {run_dir.name}", "L1 category scores:", *(f"\t{k}: {v}" for k, v in summary.l1.items()),
                 "L2 category scores:", *(f"\t{k}: {v}" for k, v in summary.l2.items()),
                 f"Image path: {image_root}", f"Save results to: {results_path}",
                 f"DPG-Bench score: {summary.overall}"]
        atomic_write_text(results_path, "\n".join([*lines, *block]) + "\n")
        atomic_write_text(results_path.with_name(RESULTS_FILE.replace(".txt", "_detail.txt")), "\n".join(detail) + "\n")

