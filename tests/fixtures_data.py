"""Small benchmark data folders in the official file formats, written by the tests themselves.

Tests of logic (parsing, selection, the real-world code path) run on these everywhere, offline and without the
official files; tests of the official files themselves use ``tests.conftest.official_data`` and skip (or fail, in
CI) where those are absent. Each writer lays its files out as ``harness.data`` looks them up
(``<root>/<benchmark>/<path>``) and returns ``root``, to pass as ``data_dir``. The prompts are of the official
kind (the first lines of each official file where the test needs one), with the official line endings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

MINI_DPG_TABLE = Path(__file__).parent / "data" / "dpg_bench_mini.csv"

# GenEval: one line per tag, in the official file's order and schema (the first is the official first line).
GENEVAL_METADATA = [
    {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
    {"tag": "two_object", "include": [{"class": "toilet", "count": 1}, {"class": "teddy bear", "count": 1}],
     "prompt": "a photo of a toilet and a teddy bear"},
    {"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}],
     "prompt": "a photo of two clocks"},
    {"tag": "colors", "include": [{"class": "cow", "count": 1, "color": "pink"}], "prompt": "a photo of a pink cow"},
    {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
                                    {"class": "dog", "count": 1, "position": ["right of", 0]}],
     "prompt": "a photo of a dog right of a teddy bear"},
    {"tag": "color_attr", "include": [{"class": "bus", "count": 1, "color": "green"},
                                      {"class": "microwave", "count": 1, "color": "purple"}],
     "prompt": "a photo of a green bus and a purple microwave"},
]
# The classes the lines above name, in COCO order (the official file lists all 80, one per line).
GENEVAL_CLASSES = ["bicycle", "bus", "dog", "cow", "bench", "teddy bear", "clock", "microwave", "toilet"]

# T2I-CompBench: three prompts per val file (CRLF lines, as the official files have).
T2I_VAL = {
    "color": ["a green bench and a blue bowl", "a blue backpack and a red book", "a yellow taxi and a red tire"],
    "shape": ["a big apple and a small phone", "an oval mirror and a square rug", "a round bagel and a long knife"],
    "texture": ["a rubber tire and a glass cup", "a wooden door and a metallic key",
                "a fluffy towel and a leather bag"],
    "spatial": ["a giraffe next to a lamp", "a girl on the top of a frog", "a bird on the left of a cup"],
    "non_spatial": ["a person is looking at a rainbow", "a dog is chasing a ball", "a man is holding a cup"],
    "complex": ["The red hat was on top of the brown coat rack.", "The fluffy cat is on the left of the soft pillow.",
                "The boy is riding a bike and the girl is walking."],
    "3d_spatial": ["a cat in front of a dog", "a chair behind a table", "a lamp hidden by a sofa"],
    "numeracy": ["two boys", "three bottles and one cup", "one bird and two cakes"],
}
# The pre-3310c2f colour file repeats a prompt where the current one does not (the official change, in miniature).
T2I_COLOR_BEFORE_3310C2F = ["a green bench and a blue bowl", "a blue backpack and a red book",
                            "a blue backpack and a red book"]
T2I_COMPLEX_PARTITIONS = {"spatial": T2I_VAL["complex"][:2], "action": T2I_VAL["complex"][2:]}
T2I_NEW_OBJECTS = [("bottle", "bottles"), ("cup", "cups"), ("cake", "cakes"), ("bird", "birds"), ("boy", "boys")]


def geneval_data(root: Path, metadata: list[dict] | None = None) -> Path:
    """``geneval/evaluation_metadata.jsonl`` (JSON lines) and ``geneval/object_names.txt`` (one class a line)."""
    folder = root / "geneval"
    folder.mkdir(parents=True, exist_ok=True)
    lines = metadata if metadata is not None else GENEVAL_METADATA
    (folder / "evaluation_metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    (folder / "object_names.txt").write_text("".join(f"{name}\n" for name in GENEVAL_CLASSES))
    return root


def t2i_compbench_data(root: Path) -> Path:
    """``t2i-compbench/dataset/<category>_val.txt`` and the other files the real prompt sets read, CRLF lines."""
    dataset = root / "t2i-compbench" / "dataset"
    before = root / "t2i-compbench" / "dataset_before_3310c2f"
    for folder in (dataset, before):
        folder.mkdir(parents=True, exist_ok=True)

    def write(path: Path, lines: list[str]) -> None:
        path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())

    for category, prompts in T2I_VAL.items():
        write(dataset / f"{category}_val.txt", prompts)
    write(before / "color_val.txt", T2I_COLOR_BEFORE_3310C2F)
    for partition, prompts in T2I_COMPLEX_PARTITIONS.items():
        write(dataset / f"complex_val_{partition}.txt", prompts)
    write(dataset / "new_objects.txt", [f"{one} - {many}" for one, many in T2I_NEW_OBJECTS])
    return root


def dpg_bench_data(root: Path, table: Path = MINI_DPG_TABLE) -> Path:
    """``dpg-bench/dpg_bench.csv`` (the official columns) and ``dpg-bench/prompts/<item_id>.txt`` for its items,
    holding the table's text column (as the official prompt files do)."""
    folder = root / "dpg-bench"
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    shutil.copy(table, folder / "dpg_bench.csv")
    rows = pd.read_csv(table, dtype=str, keep_default_na=False)
    for item_id, text in dict(zip(rows["item_id"], rows["text"])).items():
        (folder / "prompts" / f"{item_id}.txt").write_text(text)
    return root
