"""DPG-Bench's scoring rules as pure functions (``TencentQQGYLab/ELLA@3c228f1:dpg_bench/compute_dpg_bench.py``).

Each rule says its formula; the benchmark class only wires perception outputs into them. The two scorer bugs
(first CSV row dropped, ELLA issue #61; category scores from the last tile only, #60) are reproduced when
``official_quirks`` is on, so numbers stay comparable with published tables, and fixed when it is off.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from harness.errors import DataError

COLUMNS = ("item_id", "text", "keywords", "proposition_id", "dependency", "category_broad", "category_detailed",
           "tuple", "question_natural_language")
TILES = 4  # the official `--pic-num` of dist_eval.sh: four images per prompt, tiled 2x2


@dataclass(frozen=True)
class DPGOptions:
    official_quirks: bool = True  # drop the first CSV row (#61) and take category scores from the last tile (#60)


@dataclass(frozen=True)
class Question:
    """One row of the question table: a proposition of a prompt's DSG graph, asked as a yes/no question."""

    item_id: str
    proposition_id: int
    parents: tuple[int, ...]  # the ``dependency`` column without its "no parent" marker 0
    dsg_tuple: str  # the ``tuple`` column, e.g. "attribute - color (car, red)"
    question: str  # question_natural_language: what the VQA model is asked
    row: int = 0  # 1-based data row in the CSV (header excluded), for error messages

    @property
    def category(self) -> str:
        """The L2 category the scorer reports: ``tuple.split('(')[0].strip()``, e.g. "attribute - color"."""
        return self.dsg_tuple.split("(")[0].strip()

    def to_dict(self) -> dict:
        return {"id": self.proposition_id, "parents": list(self.parents), "tuple": self.dsg_tuple,
                "question": self.question}

    @classmethod
    def from_dict(cls, item_id: str, data: dict) -> Question:
        return cls(item_id, int(data["id"]), tuple(data["parents"]), data["tuple"], data["question"])


def l1_category(category: str) -> str:
    """The L1 category of an L2 one, its part before '-': "attribute - color" -> "attribute", "global -" -> "global"."""
    return category.split("-")[0].strip()


def _int(value: str, column: str, where: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise DataError(f"{where}: {column} {value!r} is not an integer") from None


def parse_questions(source: Path | str | io.StringIO) -> list[Question]:
    """Every row of a DPG question table, in file order, validated; a problem raises a DataError naming the row.

    Read with pandas as the official scorer does (quoted fields may hold commas and newlines), but as text, so
    item ids such as "0" stay strings. Checks: all nine columns; integer proposition ids, unique within an item;
    ``dependency`` a comma-separated list of integers (0 = no parent) naming propositions of the same item; each
    item's rows contiguous (the official parser silently keeps only an item's last run of rows otherwise).
    """
    name = str(source) if isinstance(source, Path | str) else getattr(source, "name", "question table")
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{name}: cannot read as CSV ({err})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {', '.join(missing)}; DPG-Bench tables have {', '.join(COLUMNS)}")
    questions: list[Question] = []
    seen_items: set[str] = set()
    for i, line in enumerate(table.itertuples(index=False), start=1):
        item_id = str(line.item_id).strip()
        where = f"{name} row {i} (item {item_id!r})"
        if not item_id:
            raise DataError(f"{name} row {i}: empty item_id")
        if questions and item_id != questions[-1].item_id and item_id in seen_items:
            raise DataError(f"{where}: the item's rows are not contiguous; each item's questions must be one block")
        seen_items.add(item_id)
        pid = _int(line.proposition_id, "proposition_id", where)
        deps = [_int(d, "dependency", where) for d in str(line.dependency).split(",")]
        if pid <= 0 or any(d < 0 for d in deps):
            raise DataError(f"{where}: proposition ids must be positive and dependencies >= 0")
        if not str(line.question_natural_language).strip():
            raise DataError(f"{where}: empty question_natural_language")
        questions.append(Question(item_id, pid, tuple(d for d in deps if d != 0), str(line.tuple),
                                  str(line.question_natural_language), i))
    for item_id, item in group_items(questions).items():
        ids: set[int] = set()
        for q in item:
            if q.proposition_id in ids:
                raise DataError(f"{name} row {q.row} (item {item_id!r}): proposition_id {q.proposition_id} repeats")
            ids.add(q.proposition_id)
        for q in item:
            absent = [p for p in q.parents if p not in ids]
            if absent:
                raise DataError(f"{name} row {q.row} (item {item_id!r}): dependency names proposition(s) "
                                f"{absent} that the item does not have")
    if not questions:
        raise DataError(f"{name}: no question rows")
    return questions


def official_rows(questions: list[Question], official_quirks: bool) -> list[Question]:
    """The rows the official scorer uses: ``prepare_dpg_data`` skips data row 0 (issue #61), so with quirks on the
    first question of the first item (``partiprompts97`` in the official table) is never asked."""
    return questions[1:] if official_quirks else questions


def group_items(questions: Iterable[Question]) -> dict[str, list[Question]]:
    """Questions by item id, items and questions in table order."""
    items: dict[str, list[Question]] = {}
    for q in questions:
        items.setdefault(q.item_id, []).append(q)
    return items


def missing_parents(questions: Sequence[Question]) -> list[int]:
    """Parents named by an item's questions but absent from them (only after the #61 row drop). The official scorer
    then raises a KeyError while zeroing, catches it, and leaves the whole image out of every mean."""
    ids = {q.proposition_id for q in questions}
    return sorted({p for q in questions for p in q.parents if p not in ids})


def answered_yes(p_yes: float) -> float:
    """s_q = 1 if the VQA model says yes, else 0. The official rule is ``answer == 'yes'`` on generated text; a
    backend that reports a probability says yes when p(yes) > 0.5 (generative backends report exactly 0 or 1)."""
    return float(p_yes > 0.5)


def zero_dependents(raw: Sequence[float], questions: Sequence[Question]) -> list[float]:
    """Dependency zeroing in table order: s_q <- 0 if any parent p of q has s_p == 0.

    One pass over the questions in CSV order that reads parents' already-updated scores, as the official loop does:
    a "no" propagates transitively down every chain whose parents are listed before their children.
    """
    scores = {q.proposition_id: float(s) for q, s in zip(questions, raw, strict=True)}
    for q in questions:
        if any(scores[p] == 0 for p in q.parents):
            scores[q.proposition_id] = 0.0
    return [scores[q.proposition_id] for q in questions]


def tile_score(zeroed: Sequence[float]) -> float:
    """A tile's score: the mean over the item's questions of the zeroed s_q."""
    return float(np.mean(zeroed))


def image_score(tile_scores: Sequence[float]) -> float:
    """A prompt's score: the mean over its tiles (the official "image" is the 2x2 grid of a prompt's 4 images)."""
    return float(np.mean(tile_scores))


def dpg_score(image_scores: Sequence[float]) -> float:
    """DPG-Bench score = 100 x mean over images (grids), so every prompt weighs the same."""
    return 100.0 * float(np.mean(image_scores))


def category_scores(answers: Iterable[tuple[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """(L1, L2) category scores from (L2 category, raw s_q) pairs: 100 x mean of the *raw* answers (no zeroing) over
    all pairs in the category; an L1 score pools every pair of its L2 categories (not a mean of means). Sorted by name.
    """
    l2: dict[str, list[float]] = {}
    for category, s in answers:
        l2.setdefault(category, []).append(float(s))
    l1: dict[str, list[float]] = {}
    for category, values in l2.items():
        l1.setdefault(l1_category(category), []).extend(values)
    return ({k: 100.0 * float(np.mean(v)) for k, v in sorted(l1.items())},
            {k: 100.0 * float(np.mean(v)) for k, v in sorted(l2.items())})


@dataclass(frozen=True)
class DPGScores:
    overall: float  # the DPG-Bench score, 0-100
    l1: dict[str, float]
    l2: dict[str, float]

    def flat(self) -> dict[str, float]:
        """``overall`` then the L1 and L2 scores by the names the official scorer prints."""
        return {"overall": self.overall, **self.l1, **self.l2}


@dataclass(frozen=True)
class TileVerdict:
    """What one tile got: p(yes) per question, the raw s_q, the zeroed s_q, in the item's question order."""

    tile: int  # position in the prompt's 2x2 grid: 0 top-left .. 3 bottom-right
    box: tuple[int, int, int, int]  # the official crop box of this tile in the grid
    p_yes: tuple[float, ...]
    raw: tuple[float, ...]
    zeroed: tuple[float, ...]

    @property
    def score(self) -> float:
        return tile_score(self.zeroed)

    def to_dict(self) -> dict:
        return {"tile": self.tile, "box": list(self.box), "p_yes": list(self.p_yes), "raw": list(self.raw),
                "zeroed": list(self.zeroed), "score": self.score}

    @classmethod
    def from_dict(cls, data: dict) -> TileVerdict:
        return cls(data["tile"], tuple(data["box"]), tuple(data["p_yes"]), tuple(data["raw"]), tuple(data["zeroed"]))


def judge_tile(tile: int, box: tuple[int, int, int, int], p_yes: Sequence[float], questions: Sequence[Question]
               ) -> TileVerdict:
    """One tile's verdict: s_q = answered_yes(p_q), then dependency zeroing."""
    raw = [answered_yes(p) for p in p_yes]
    return TileVerdict(tile, box, tuple(p_yes), tuple(raw), tuple(zero_dependents(raw, questions)))


def aggregate(prompts: Iterable[tuple[Sequence[str], Sequence[TileVerdict]]], official_quirks: bool) -> DPGScores:
    """The DPG-Bench score and the L1/L2 category scores from each prompt's (question categories, tiles).

    overall = 100 x mean over prompts of image_score(tile scores). Category scores use the raw answers of the last
    tile only (bottom-right, issue #60: the official ``qid2scores_orig`` is overwritten per tile) when
    ``official_quirks``, else of every tile.
    """
    image_scores: list[float] = []
    answers: list[tuple[str, float]] = []
    for categories, tiles in prompts:
        ordered = sorted(tiles, key=lambda t: t.tile)
        image_scores.append(image_score([t.score for t in ordered]))
        for t in ordered[-1:] if official_quirks else ordered:
            answers.extend(zip(categories, t.raw, strict=True))
    if not image_scores:
        return DPGScores(float("nan"), {}, {})
    return DPGScores(dpg_score(image_scores), *category_scores(answers))


def tile_boxes(resolution: int) -> list[tuple[int, int, int, int]]:
    """The official crop boxes of a 2R x 2R grid, in tile order: top-left, top-right, bottom-left, bottom-right."""
    r = resolution
    return [(0, 0, r, r), (r, 0, 2 * r, r), (0, r, r, 2 * r), (r, r, 2 * r, 2 * r)]


def grid_resolution(size: tuple[int, int]) -> int:
    """R of a 2R x 2R grid (the official scorer's ``--resolution``), or a DataError for any other shape."""
    width, height = size
    if width != height or width % 2 or width == 0:
        raise DataError(f"a DPG-Bench grid must be 2R x 2R (square, even side), got {width}x{height}")
    return width // 2


def split_grid(grid: Image.Image) -> list[Image.Image]:
    """The four tiles of a grid, cropped with the official boxes."""
    return [grid.crop(box) for box in tile_boxes(grid_resolution(grid.size))]


def make_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Tile four R x R images 2x2 in the official order, the layout the official scorer expects."""
    if len(images) != TILES or len({im.size for im in images}) != 1 or images[0].width != images[0].height:
        raise ValueError(f"a grid needs {TILES} square images of one size, got {[im.size for im in images]}")
    grid = Image.new("RGB", (2 * images[0].width, 2 * images[0].width))
    for image, box in zip(images, tile_boxes(images[0].width)):
        grid.paste(image.convert("RGB"), box[:2])
    return grid
