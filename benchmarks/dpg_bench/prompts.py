"""DPG-Bench prompt sets and question tables: the official ones (data dir or pinned download) and the builtin world's.

The builtin world's set is DPG-style dense prompts over the shapes world: 2-3 groups of objects (distinct shapes,
2-4 objects in all, 4 being the most a builtin scene holds) described in 3-5 sentences with colours, textures, sizes,
counts and at most one spatial relation, each with a DSG-style question graph written in the official CSV schema and
parsed by the same code as the official table. Entity questions are the roots ("Is there a star?"); count, attribute
and relation questions depend on the entities they mention, so a missing object zeroes everything said about it.
Every question is in the oracle VQA's grammar (``harness.builtin.oracle_vqa``).

What the builtin world cannot express, so its questions never cover these official categories: ``other - text``
(no rendered text), ``global -`` (no styles or scenes: one flat grey background), ``relation - non-spatial``
(no actions or interactions), ``entity - part`` and ``entity - state`` (shapes have no parts or states) and
``attribute - shape`` / ``attribute - other`` (the shape is the entity itself; no materials or other attributes).

The table's first row is builtin0's first entity question, so with ``official_quirks`` the official #61 row drop
leaves its dependents without a parent and builtin0 is left out, exactly as the official scorer would treat the
official table in that case: the builtin world reproduces the quirk rather than hiding it.

200 builtin prompts (800 images, about 1,570 questions): every builtin L2 category gets about 100 questions or more,
even counting only last tiles as the official category scores do, and the DPG score's sampling error over prompts,
sd / sqrt(200), stays near a point for per-prompt spreads up to 0.15-0.2; the run costs about a third of the builtin
GenEval (553 x 4 images) on a CPU. The generator is seeded, so the set is fixed for a given harness version.
"""

from __future__ import annotations

import io
import random
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import pandas as pd

from benchmarks.dpg_bench.rules import COLUMNS, Question, parse_questions
from harness.builtin.prompts import article
from harness.builtin.world import (
    COLORS,
    MAX_INSTANCES,
    NUMBERS,
    PLURALS,
    RELATIONS,
    SHAPES,
    SIZES,
    TEXTURES,
    ObjectRequest,
    SceneRequest,
)
from harness.data import DataFile, fetch

_COMMIT = "3c228f1dc6c4d3cad0a47493816151a419f14db3"
_RAW = f"https://raw.githubusercontent.com/TencentQQGYLab/ELLA/{_COMMIT}/dpg_bench"
BENCHMARK_DIR = "dpg-bench"
OFFICIAL_TABLE = DataFile(BENCHMARK_DIR, "dpg_bench.csv", f"{_RAW}/dpg_bench.csv",
                          git_blob_sha1="98457fc9901943f51ff9a30367250fc292533bed")
PROMPT_BLOBS = Path(__file__).with_name("prompt_blobs.txt")
BUILTIN_PREFIX = "builtin"
N_BUILTIN = 200
BUILTIN_SEED = 0


@cache
def prompt_blobs() -> dict[str, str]:
    """{file name: git blob hash} of the official ``dpg_bench/prompts/`` at the pinned commit (``git ls-tree``,
    committed as ``prompt_blobs.txt``), so a prompt file from any source is checked like a download."""
    lines = PROMPT_BLOBS.read_text(encoding="utf-8").splitlines()
    return {name: blob for blob, name in (line.split() for line in lines if line and not line.startswith("#"))}


def prompt_file(item_id: str) -> DataFile:
    """``prompts/<item_id>.txt``: the prompt the official generation reads (the table's item ids name these files),
    pinned by its git blob hash (a prompt of no official item has none to check)."""
    name = f"{item_id}.txt"
    return DataFile(BENCHMARK_DIR, f"prompts/{name}", f"{_RAW}/prompts/{name}", git_blob_sha1=prompt_blobs().get(name))


def source_tag(item_id: str) -> str:
    """An item's tag, the prompt source its id starts with ("partiprompts97" -> "partiprompts", "COCOval2014..." ->
    "COCOval"); the numeric ids 0-299, whose source the paper does not name, are tagged "numeric"."""
    match = re.match(r"[A-Za-z]+", item_id)
    return match.group(0) if match else "numeric"


def official_questions(data_dir: Path | None = None) -> list[Question]:
    """Every row of the official ``dpg_bench.csv``, from the data dir or downloaded and checked by git blob hash."""
    return parse_questions(fetch(OFFICIAL_TABLE, data_dir))


def official_prompt(item_id: str, data_dir: Path | None = None) -> str:
    """The text of ``prompts/<item_id>.txt`` without its surrounding whitespace (only one file ends in a newline)."""
    return fetch(prompt_file(item_id), data_dir).read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class BuiltinItem:
    """A builtin dense prompt: its id, text, question-table rows and the scene a perfect model would draw."""

    item_id: str
    prompt: str
    rows: list[dict]
    request: SceneRequest


def _noun(group: ObjectRequest) -> str:
    return group.shape if group.count == 1 else PLURALS[group.shape]


def _definite(group: ObjectRequest) -> str:
    return f"the {_noun(group)}"


def _verb(group: ObjectRequest) -> str:
    return "is" if group.count == 1 else "are"


def _intro(group: ObjectRequest) -> str:
    """How the first sentence introduces a group: count and colour ("two blue circles", "a heart")."""
    head = " ".join(w for w in (group.color, _noun(group)) if w)
    return f"{article(head)} {head}" if group.count == 1 else f"{NUMBERS[group.count]} {head}"


def _relation_words(relation: str) -> str:
    return f"to the {relation}" if relation in ("left of", "right of") else relation


def _sample_groups(rng: random.Random) -> tuple[ObjectRequest, ...]:
    n_groups = rng.choice((2, 2, 3))
    shapes = rng.sample(SHAPES, n_groups)
    counts = [1] * n_groups
    for _ in range(MAX_INSTANCES - n_groups):  # spend the spare objects on larger counts now and then
        if rng.random() < 0.35:
            counts[rng.randrange(n_groups)] += 1
    return tuple(ObjectRequest(
        shape=shape, count=count,
        color=rng.choice(tuple(COLORS)) if rng.random() < 0.85 else None,
        texture=rng.choice(TEXTURES) if rng.random() < 0.45 else None,
        size=rng.choice(tuple(SIZES)) if rng.random() < 0.45 else None,
    ) for shape, count in zip(shapes, counts))


def builtin_item(index: int, rng: random.Random) -> BuiltinItem:
    """One dense prompt with its DSG graph; at least three sentences (details are added until there are)."""
    groups = list(_sample_groups(rng))
    # A relation between groups 0 and 1 of at most 3 objects, so every scene it asks for can be drawn unambiguously.
    related = groups[0].count + groups[1].count <= 3
    relation = rng.choice(RELATIONS) if related and rng.random() < 0.7 else None
    while 1 + sum(bool(g.texture or g.size) for g in groups) + (relation is not None) < 3:
        i = rng.choice([i for i, g in enumerate(groups) if not (g.texture or g.size)])
        groups[i] = replace(groups[i], texture=rng.choice(TEXTURES))
    sentences = ["A photo of " + ", ".join(_intro(g) for g in groups[:-1]) + f" and {_intro(groups[-1])}."]
    for g in groups:
        details = [w for w in (g.size, g.texture) if w]
        if details:
            sentences.append(f"{_definite(g).capitalize()} {_verb(g)} {' and '.join(details)}.")
    if relation is not None:
        first, second = groups[1], groups[0]
        sentences.append(f"{_definite(first).capitalize()} {_verb(first)} {_relation_words(relation)} "
                         f"{_definite(second)}.")
    prompt = " ".join(sentences)
    item_id = f"{BUILTIN_PREFIX}{index}"
    rows: list[dict] = []

    def add(dsg_tuple: str, question: str, parents: list[int], keywords: str) -> int:
        broad, _, detailed = (part.strip() for part in dsg_tuple.split("(")[0].partition("-"))
        rows.append({"item_id": item_id, "text": prompt, "keywords": keywords, "proposition_id": len(rows) + 1,
                     "dependency": ",".join(map(str, parents or [0])), "category_broad": broad,
                     "category_detailed": detailed, "tuple": dsg_tuple, "question_natural_language": question})
        return len(rows)

    entity: dict[str, int] = {}
    for g in groups:
        question = f"Is there {article(g.shape)} {g.shape}?" if g.count == 1 else f"Are there {PLURALS[g.shape]}?"
        entity[g.shape] = add(f"entity - whole ({g.shape})", question, [], g.shape)
    for g in groups:
        subject = f"{_verb(g).capitalize()} {_definite(g)}"
        if g.count > 1:
            add(f"other - count ({g.shape}, =={g.count})", f"Are there {NUMBERS[g.count]} {PLURALS[g.shape]}?",
                [entity[g.shape]], f"{g.shape}, {g.count}")
        for kind, word in (("color", g.color), ("texture", g.texture), ("size", g.size)):
            if word:
                add(f"attribute - {kind} ({g.shape}, {word})", f"{subject} {word}?", [entity[g.shape]],
                    f"{g.shape}, {word}")
    if relation is not None:
        first, second = groups[1], groups[0]
        add(f"relation - spatial ({first.shape}, {second.shape}, {relation})",
            f"{_verb(first).capitalize()} {_definite(first)} {relation} {_definite(second)}?",
            [entity[first.shape], entity[second.shape]], f"{first.shape}, {second.shape}")
    request = SceneRequest(groups=tuple(groups), relation=(relation, 0) if relation else None)
    return BuiltinItem(item_id, prompt, rows, request)


def builtin_items(n: int = N_BUILTIN, seed: int = BUILTIN_SEED) -> list[BuiltinItem]:
    """The builtin prompt set: ``n`` distinct dense prompts drawn with a seeded generator."""
    rng = random.Random(seed)
    items: list[BuiltinItem] = []
    seen: set[str] = set()
    while len(items) < n:
        item = builtin_item(len(items), rng)
        if item.prompt not in seen:
            seen.add(item.prompt)
            items.append(item)
    return items


def builtin_table(items: list[BuiltinItem]) -> str:
    """The builtin question table as CSV text in the official schema (what ``dpg_bench.csv`` is to the real world)."""
    return pd.DataFrame([row for item in items for row in item.rows], columns=list(COLUMNS)).to_csv(index=False)


def builtin_questions(items: list[BuiltinItem]) -> list[Question]:
    """The builtin table read back through the official parser, so both worlds score from the same structures."""
    buffer = io.StringIO(builtin_table(items))
    buffer.name = "builtin dpg_bench.csv"
    return parse_questions(buffer)
