"""DPG-Bench rules against hand-computed cases: table parsing, dependency zeroing, tiles, scores, both quirk modes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.dpg_bench.benchmark import DPGBench, prompt_items
from benchmarks.dpg_bench.prompts import OFFICIAL_TABLE
from benchmarks.dpg_bench.rules import (
    COLUMNS,
    DPGOptions,
    Question,
    TileVerdict,
    aggregate,
    category_scores,
    dpg_score,
    group_items,
    image_score,
    l1_category,
    make_grid,
    missing_parents,
    official_rows,
    parse_questions,
    split_grid,
    tile_boxes,
    zero_dependents,
)
from harness.data import DataFile, fetch, git_blob_sha1
from harness.errors import DataError

HEADER = ",".join(COLUMNS)
MINI = Path(__file__).parent / "data" / "dpg_bench_mini.csv"


def table(*rows: str) -> io.StringIO:
    """A question table from rows ``item_id,proposition_id,dependency,tuple,question`` (other columns filled in)."""
    lines = [HEADER]
    for row in rows:
        item, pid, dep, tup, question = row.split("|")
        lines.append(f'{item},prompt,kw,{pid},"{dep}",b,d,"{tup}","{question}"')
    buffer = io.StringIO("\n".join(lines) + "\n")
    buffer.name = "t.csv"
    return buffer


# The golden table. A's first row (a global question nobody depends on) is what the official #61 bug drops;
# B has a chain dog -> tail -> tail colour, so zeroing must be transitive.
GOLDEN = (
    "A|1|0|global - (photo)|Is this a photo?",
    "A|2|0|entity - whole (cat)|Is there a cat?",
    "A|3|2|attribute - color (cat, black)|Is the cat black?",
    "A|4|0|entity - whole (hat)|Is there a hat?",
    "A|5|2,4|relation - spatial (hat, cat, on)|Is the hat on the cat?",
    "B|1|0|entity - whole (dog)|Is there a dog?",
    "B|2|1|entity - part (dog, tail)|Does the dog have a tail?",
    "B|3|2|attribute - color (tail, white)|Is the tail white?",
    "B|4|1|other - count (dog, ==1)|Is there one dog?",
)
# Raw VQA answers per question, one per tile (t0, t1, t2, t3).
ANSWERS = {
    "Is this a photo?": (1, 1, 1, 0),
    "Is there a cat?": (1, 0, 1, 1),
    "Is the cat black?": (1, 0, 0, 1),
    "Is there a hat?": (1, 1, 0, 1),
    "Is the hat on the cat?": (1, 1, 0, 0),
    "Is there a dog?": (1, 0, 1, 1),
    "Does the dog have a tail?": (1, 1, 0, 1),
    "Is the tail white?": (1, 1, 1, 0),
    "Is there one dog?": (1, 1, 0, 1),
}
# By hand, quirks off (all rows; categories over all tiles):
#   A raw per tile [photo, cat, black, hat, on] -> zeroed -> tile score
#     t0 [1,1,1,1,1] -> [1,1,1,1,1] 1.0 | t1 [1,0,0,1,1] -> [1,0,0,1,0] 0.4 (no cat: black, on zeroed)
#     t2 [1,1,0,0,0] -> [1,1,0,0,0] 0.4 | t3 [0,1,1,1,0] -> [0,1,1,1,0] 0.6        image A = 2.4 / 4 = 0.6
#   B raw [dog, tail, white, one]
#     t0 [1,1,1,1] 1.0 | t1 [0,1,1,1] -> [0,0,0,0] 0.0 (no dog: tail, and through it white, zeroed)
#     t2 [1,0,1,0] -> [1,0,0,0] 0.25 | t3 [1,1,0,1] 0.75                              image B = 2.0 / 4 = 0.5
#   overall = 100 * (0.6 + 0.5) / 2 = 55.0
#   L2 (raw, 4 tiles): global 3/4; entity-whole cat 3 + hat 3 + dog 3 = 9/12; colour black 2 + white 3 = 5/8;
#   spatial 2/4; part 3/4; count 3/4. L1: entity (9 + 3) / 16, the rest as their only L2.
FIXED = {"overall": 55.0, "attribute": 62.5, "entity": 75.0, "global": 75.0, "other": 75.0, "relation": 50.0,
         "attribute - color": 62.5, "entity - part": 75.0, "entity - whole": 75.0, "global -": 75.0,
         "other - count": 75.0, "relation - spatial": 50.0}
# Quirks on: row 1 (A's photo question) is dropped, so A has 4 questions [cat, black, hat, on]:
#     t0 [1,1,1,1] 1.0 | t1 [0,0,1,1] -> [0,0,1,0] 0.25 | t2 [1,0,0,0] 0.25 | t3 [1,1,1,0] 0.75
#     image A = 2.25 / 4 = 0.5625; B unchanged 0.5; overall = 100 * 1.0625 / 2 = 53.125
#   Categories from the last tile (t3) only: A [1,1,1,0], B [1,1,0,1]: entity-whole cat 1, hat 1, dog 1 -> 100;
#   colour black 1 + white 0 -> 50; spatial 0 -> 0; part 1 -> 100; count 1 -> 100; no global question left.
QUIRKY = {"overall": 53.125, "attribute": 50.0, "entity": 100.0, "other": 100.0, "relation": 0.0,
          "attribute - color": 50.0, "entity - part": 100.0, "entity - whole": 100.0, "other - count": 100.0,
          "relation - spatial": 0.0}
COLOURS = ("red", "green", "blue", "white")  # tile t is painted COLOURS[t], so the stub VQA knows which tile it sees


class TableVQA:
    """Answers ANSWERS by the tile an image is (read from its colour)."""

    name, version = "table-vqa", "1"

    def yes_probability(self, images: list[Image.Image], questions: list[str]) -> list[float]:
        index = {Image.new("RGB", (1, 1), c).getpixel((0, 0)): t for t, c in enumerate(COLOURS)}
        return [float(ANSWERS[q][index[im.getpixel((0, 0))]]) for im, q in zip(images, questions)]


def test_parse_keeps_string_ids_dependencies_and_categories() -> None:
    questions = parse_questions(MINI)
    assert [q.item_id for q in questions][:1] == ["partiprompts97"] and len(questions) == 23
    cabbage = group_items(questions)["0"]  # a numeric id stays a string
    assert cabbage[5].parents == (1, 2) and cabbage[0].parents == ()
    assert cabbage[5].category == "relation - spatial" and l1_category(cabbage[5].category) == "relation"
    text = group_items(questions)["countbench1"][-1]
    assert text.dsg_tuple == 'other - text (text, "Feeling Lucky")' and text.category == "other - text"
    assert l1_category("global -") == "global"


@pytest.mark.parametrize(("rows", "message"), [
    (("A|x|0|entity - whole (a)|Q?",), r"t.csv row 1 \(item 'A'\): proposition_id 'x' is not an integer"),
    (("A|1|0|entity - whole (a)|Q?", "A|2|1;3|attribute - color (a, red)|R?"), r"row 2 .*dependency '1;3'"),
    (("A|1|0|entity - whole (a)|Q?", "A|2|3|attribute - color (a, red)|R?"), r"row 2 .*proposition\(s\) \[3\]"),
    (("A|1|0|entity - whole (a)|Q?", "A|1|0|entity - whole (b)|R?"), r"row 2 .*proposition_id 1 repeats"),
    (("A|1|0|e (a)|Q?", "B|1|0|e (b)|R?", "A|2|0|e (c)|S?"), r"row 3 \(item 'A'\): .*not contiguous"),
    (("A|1|0|e (a)| ",), r"row 1 .*empty question"),
])
def test_malformed_tables_name_the_row(rows: tuple[str, ...], message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_questions(table(*rows))


def test_missing_columns_are_named() -> None:
    buffer = io.StringIO("item_id,text\nA,x\n")
    with pytest.raises(DataError, match=r"missing column.*keywords"):
        parse_questions(buffer)


def test_zeroing_follows_table_order_transitively() -> None:
    parents = [(), (1,), (2,), (1, 5), ()]
    questions = [Question("A", i, p, "e", f"q{i}") for i, p in enumerate(parents, start=1)]
    assert zero_dependents([0, 1, 1, 1, 1], questions) == [0, 0, 0, 0, 1]  # 1 -> 2 -> 3, and 4 through 1
    assert zero_dependents([1, 1, 1, 1, 0], questions) == [1, 1, 1, 0, 0]  # a later parent: its raw answer counts
    assert zero_dependents([1, 0, 1, 1, 1], questions) == [1, 0, 0, 1, 1]


def test_first_row_quirk_and_the_items_it_breaks() -> None:
    questions = parse_questions(MINI)
    kept = group_items(official_rows(questions, official_quirks=True))
    assert len(kept["partiprompts97"]) == 7 and missing_parents(kept["partiprompts97"]) == [1]
    assert missing_parents(kept["0"]) == [] and official_rows(questions, official_quirks=False) == questions


def test_tiles_and_grid_round_trip() -> None:
    assert tile_boxes(3) == [(0, 0, 3, 3), (3, 0, 6, 3), (0, 3, 3, 6), (3, 3, 6, 6)]
    tiles = [Image.new("RGB", (3, 3), c) for c in COLOURS]
    grid = make_grid(tiles)
    assert grid.size == (6, 6) and grid.getpixel((4, 1)) == (0, 128, 0) and grid.getpixel((1, 4)) == (0, 0, 255)
    assert [t.tobytes() for t in split_grid(grid)] == [t.tobytes() for t in tiles]
    with pytest.raises(DataError, match="2R x 2R"):
        split_grid(Image.new("RGB", (6, 5)))
    with pytest.raises(ValueError, match="square images"):
        make_grid(tiles[:3])


def test_scores_by_hand() -> None:
    assert image_score([1.0, 0.5, 0.0, 0.5]) == 0.5 and dpg_score([0.5, 1.0]) == 75.0
    l1, l2 = category_scores([("entity - whole", 1), ("entity - part", 0), ("entity - whole", 1), ("global -", 0)])
    # L1 pools the pairs (2 of 3), rather than averaging the L2 means (75).
    assert l1 == pytest.approx({"entity": 100 * 2 / 3, "global": 0.0})
    assert l2 == {"entity - part": 0.0, "entity - whole": 100.0, "global -": 0.0}


@pytest.mark.parametrize(("quirks", "expected"), [(False, FIXED), (True, QUIRKY)])
def test_golden_scores_tiles_and_grids_alike(quirks: bool, expected: dict[str, float]) -> None:
    bench = DPGBench(DPGOptions(official_quirks=quirks))
    items = prompt_items(parse_questions(table(*GOLDEN)), {"A": "a", "B": "b"}, quirks)
    tiles = [Image.new("RGB", (4, 4), c) for c in COLOURS]
    # Generated: each image is one tile. Folder: each item has one official grid, with tiles_per_image = 4.
    as_tiles = bench.score([(item, k, tiles[k]) for item in items for k in range(4)], {"vqa": TableVQA()})
    grids = [type(item)(item.index, item.prompt, item.tag, {**item.metadata, "tiles_per_image": 4}) for item in items]
    as_grids = bench.score([(item, 0, make_grid(tiles)) for item in grids], {"vqa": TableVQA()})
    for results in (as_tiles, as_grids):
        assert bench.aggregate(results) == pytest.approx(expected)
        assert list(bench.aggregate(results)) == list(expected)  # overall, L1 sorted, L2 sorted
    a_tiles = as_tiles[:4]
    assert [r.score for r in a_tiles] == pytest.approx([1.0, 0.25, 0.25, 0.75] if quirks else [1.0, 0.4, 0.4, 0.6])
    assert as_grids[1].score == pytest.approx(0.5)  # B's image score, the mean of its four tiles
    assert as_tiles[5].details["tiles"][0]["zeroed"] == [0, 0, 0, 0]


def test_broken_item_is_left_out_not_scored_wrong() -> None:
    questions = parse_questions(table("A|1|0|entity - whole (cat)|Is there a cat?",
                                      "A|2|1|attribute - color (cat, black)|Is the cat black?",
                                      *[r for r in GOLDEN if r.startswith("B")]))
    bench = DPGBench()
    items = prompt_items(questions, {"A": "a", "B": "b"}, official_quirks=True)
    results = bench.score([(item, k, Image.new("RGB", (4, 4), COLOURS[k])) for item in items for k in range(4)],
                          {"vqa": TableVQA()})
    assert all("excluded" in r.details for r in results[:4]) and "#61" in results[0].details["excluded"]
    assert bench.aggregate(results)["overall"] == pytest.approx(50.0)  # B alone
    verdict = TileVerdict.from_dict(results[4].details["tiles"][0])
    assert verdict.to_dict() == results[4].details["tiles"][0]
    assert aggregate([], official_quirks=True).flat() == {"overall": pytest.approx(float("nan"), nan_ok=True)}


def test_git_blob_hash_and_verified_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of it
    assert OFFICIAL_TABLE.git_blob_sha1 == "98457fc9901943f51ff9a30367250fc292533bed"
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    data = MINI.read_bytes()
    good = DataFile("dpg-bench", "dpg_bench.csv", MINI.resolve().as_uri(), git_blob_sha1=git_blob_sha1(data))
    assert fetch(good).read_bytes() == data  # downloaded into the cache, verified
    bad = DataFile("dpg-bench", "other.csv", MINI.resolve().as_uri(), git_blob_sha1="0" * 40)
    with pytest.raises(DataError, match="git blob hash"):
        fetch(bad)
    assert not (tmp_path / "cache" / "data" / "dpg-bench" / "other.csv").exists()
