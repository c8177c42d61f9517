"""T2I-CompBench as a benchmark: its prompt sets in both worlds, seeds, oracle scoring of rendered scenes, and
``harness.api.evaluate`` / the CLI on a random-init builtin model."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.registry import available, get_benchmark
from benchmarks.t2i_compbench import T2ICompBench
from benchmarks.t2i_compbench.parsing import BuiltinParser, Parsed, SpacyParser, Token
from benchmarks.t2i_compbench.prompts import (
    BUILTIN_CATEGORIES,
    BUILTIN_RELATIONS,
    CATEGORIES,
    builtin_requests,
)
from benchmarks.t2i_compbench.rules import CompBenchOptions
from harness.builtin.oracle import VERSION as ORACLE_VERSION
from harness.builtin.prompts import group_phrase, vocabulary
from harness.builtin.render import render
from harness.builtin.world import sample_scene
from harness.errors import HarnessError
from tests.conftest import official_data
from tests.fixtures_data import T2I_COLOR_BEFORE_3310C2F, T2I_VAL, t2i_compbench_data

ROOT = Path(__file__).resolve().parents[1]


class WordParser:
    """Whitespace tokens with no tags or chunks: enough to read the real prompt files without spaCy."""

    name, version = "words", "0"

    def parse(self, text: str) -> Parsed:
        return Parsed(tuple(Token(w, "X") for w in text.split()), ())


def real_bench(data_dir: Path, options: CompBenchOptions | None = None) -> T2ICompBench:
    bench = T2ICompBench(options, parser=WordParser())
    bench.data_dir = data_dir
    return bench


@pytest.fixture
def mini_data(tmp_path: Path, unpinned_data: None) -> Path:
    """Val files in the official format (tests/fixtures_data.py)."""
    return t2i_compbench_data(tmp_path / "data")


@pytest.fixture(scope="module")
def official_dir() -> Path:
    return official_data("t2i-compbench/dataset", "t2i-compbench/dataset_before_3310c2f")


@pytest.fixture(scope="module")
def real_items(official_dir: Path) -> list:
    return real_bench(official_dir).prompts("real")


@pytest.fixture(scope="module")
def builtin_items() -> list:
    return T2ICompBench().prompts("builtin")


# --- registry, seeds ---------------------------------------------------------------------------------------------


def test_registered_with_both_worlds() -> None:
    bench = available()["t2i-compbench"]
    assert isinstance(bench, T2ICompBench) and bench.worlds == ("builtin", "real") and bench.images_per_prompt == 10
    assert isinstance(get_benchmark("T2I_CompBench"), T2ICompBench)


def test_seeds_are_42_to_51_for_every_prompt(builtin_items: list) -> None:
    bench = T2ICompBench()
    assert bench.seeds(builtin_items[0], "builtin") == list(range(42, 52))
    assert bench.seeds(builtin_items[-1], "real") == list(range(42, 52))


# --- real world: the official files --------------------------------------------------------------------------------


def test_real_prompt_sets_are_the_val_files(real_items: list) -> None:
    assert Counter(item.tag for item in real_items) == {c: 300 for c in CATEGORIES}
    assert [item.index for item in real_items] == list(range(2400))
    prompts = [item.prompt for item in real_items]
    assert not any("\r" in p or "\n" in p or p != p.strip() for p in prompts)  # CRLF files, some with a final CRLF
    assert not any("_" in p or "/" in p for p in prompts)  # the official file naming needs this
    assert real_items[0].prompt == "a green bench and a blue bowl"
    partitions = Counter(item.metadata["partition"] for item in real_items if item.tag == "complex")
    assert partitions == {"action": 212, "spatial": 58, "spatial_action": 30}


def test_colour_file_defaults_to_the_one_papers_used(mini_data: Path) -> None:
    before = [item.prompt for item in real_bench(mini_data).prompts("real") if item.tag == "color"]
    current = [item.prompt for item in real_bench(mini_data, CompBenchOptions(color_prompts="current")).prompts("real")
               if item.tag == "color"]
    assert before == T2I_COLOR_BEFORE_3310C2F and current == T2I_VAL["color"]
    bench = real_bench(mini_data)
    bench.prompts("real")
    options = bench.scorer_id({})["options"]
    assert options["color_file"] == "dataset_before_3310c2f/color_val.txt" and options["official_quirks"] is True
    assert options["text_parser"] == "words@0"


def test_official_colour_files_differ_in_five_prompts(real_items: list, official_dir: Path) -> None:
    before = [item.prompt for item in real_items if item.tag == "color"]
    current = [item.prompt for item in real_bench(official_dir, CompBenchOptions(color_prompts="current"))
               .prompts("real") if item.tag == "color"]
    assert len(set(before)) == 295 and len(set(current)) == 300  # 3310c2f removed 5 duplicates
    assert sum(a != b for a, b in zip(before, current)) == 5
    assert before[227] == "a yellow taxi and a black tire" and current[227] == "a yellow taxi and a red tire"


def test_missing_spacy_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spacy", None)  # as if spacy were not installed
    with pytest.raises(HarnessError, match=r"pip install 'harness\[t2i-compbench\]'"):
        SpacyParser.load()


@pytest.fixture(scope="module")
def spacy_parser() -> SpacyParser:
    pytest.importorskip("spacy")
    try:
        return SpacyParser.load()
    except HarnessError as err:
        pytest.skip(str(err))


def test_real_specs_with_spacy(spacy_parser: SpacyParser, mini_data: Path) -> None:
    bench = real_bench(mini_data)
    bench.parser = spacy_parser
    items = {item.prompt: item.metadata for item in bench.prompts("real")}
    assert items["a green bench and a blue bowl"]["questions"] == ["a green bench?", "a blue bowl?"]
    # "the top" survives the official filter (only "top" is dropped)
    assert items["a girl on the top of a frog"] == {"category": "spatial", "objects": ["person", "frog"],
                                                    "relation": "on the top of"}
    assert items["two boys"] == {"category": "numeracy", "objects": ["boy"], "counts": [2]}
    hat = items["The red hat was on top of the brown coat rack."]
    assert hat["partition"] == "spatial" and hat["objects"] == ["hat", "coat"] and hat["relation"] == "on top of"
    assert hat["questions"] == ["the red hat?", "the brown coat rack?"]
    assert bench.scorer_id({})["options"]["text_parser"].startswith("spacy/")


# --- builtin world -------------------------------------------------------------------------------------------------


def test_builtin_prompt_sets(builtin_items: list) -> None:
    assert Counter(item.tag for item in builtin_items) == {c: 300 for c in BUILTIN_CATEGORIES}
    prompts = [item.prompt for item in builtin_items]
    assert len(set(prompts)) == len(prompts)
    known = set(vocabulary())  # every word is one the builtin model was trained on
    assert {w for p in prompts for w in p.replace(",", " ,").split()} <= known
    assert T2ICompBench().prompts("builtin") == builtin_items  # seeded: the same set every time


@pytest.mark.parametrize("category", BUILTIN_CATEGORIES)
def test_builtin_prompts_parse_back_to_their_scenes(builtin_items: list, category: str) -> None:
    """The spec read from each prompt's text (the real world's code path) is what the prompt was made from."""
    specs = [item.metadata for item in builtin_items if item.tag == category]
    for request, spec in zip(builtin_requests(category), specs, strict=True):
        groups = request.groups
        in_order = (groups[1], groups[0]) if request.relation else groups  # a relation names group 1 first
        if category in ("color", "shape", "texture", "complex"):
            assert spec["questions"] == [f"{group_phrase(g)}?" for g in in_order]
        if category in ("spatial", "complex"):
            assert spec["objects"] == [groups[1].shape, groups[0].shape]
            assert spec["relation"] == BUILTIN_RELATIONS[request.relation[0]]
        if category == "numeracy":
            assert (spec["objects"], spec["counts"]) == ([g.shape for g in groups], [g.count for g in groups])
        if category == "complex":
            assert spec["partition"] == "spatial"


def test_builtin_parser_chunks_like_spacy_on_attribute_prompts() -> None:
    parsed = BuiltinParser().parse("a small striped red circle, two stars and a heart")
    assert parsed.noun_chunks == ("a small striped red circle", "two stars", "a heart")
    assert [t.pos for t in parsed.tokens][:5] == ["DET", "ADJ", "ADJ", "ADJ", "NOUN"]
    with pytest.raises(HarnessError, match="not a word of the builtin grammar"):
        BuiltinParser().parse("a purple elephant")


def test_builtin_perception_is_the_oracle() -> None:
    perception = T2ICompBench().perception("builtin")
    assert set(perception) == {"vqa", "detector"}
    assert perception["vqa"].name == "oracle-vqa" and perception["detector"].name == "oracle"


@pytest.mark.parametrize("category", BUILTIN_CATEGORIES)
def test_oracle_scores_correct_renders_1_and_mismatched_ones_lower(builtin_items: list, category: str) -> None:
    """Render a correct scene for a few prompts: every category scores it 1; the same images under other prompts
    of the category score lower on average."""
    bench = T2ICompBench()
    perception = bench.perception("builtin")
    items = [item for item in builtin_items if item.tag == category][:6]
    rng = random.Random(0)
    images = [render(sample_scene(r, rng)) for r in builtin_requests(category)[:6]]
    right = bench.score([(item, 0, img) for item, img in zip(items, images)], perception)
    assert [r.score for r in right] == pytest.approx([1.0] * 6), [(r.score, r.details) for r in right]
    wrong = bench.score([(item, 0, img) for item, img in zip(items, images[1:] + images[:1])], perception)
    assert sum(r.score for r in wrong) / 6 < 0.7


# --- end to end ----------------------------------------------------------------------------------------------------


def test_evaluate_writes_per_category_scores_and_official_files(builtin_random_ckpt: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.api import EvalSettings, evaluate

    full = T2ICompBench.prompts

    def two_per_category(self: T2ICompBench, world: str) -> list:
        items = full(self, world)
        return [item for c in BUILTIN_CATEGORIES for item in [i for i in items if i.tag == c][:2]]

    monkeypatch.setattr(T2ICompBench, "prompts", two_per_category)
    (record,) = evaluate(str(builtin_random_ckpt), ["t2i-compbench"], out=tmp_path, progress=False,
                         settings=EvalSettings(limit=12, batch_size=60))
    assert record.world == "builtin" and record.n_prompts == 12 and record.n_images == 120
    assert set(record.scores) == {"overall", *BUILTIN_CATEGORIES}
    assert all(0.0 <= v <= 1.0 for v in record.scores.values())
    assert record.perception == {"vqa": f"oracle-vqa@{ORACLE_VERSION}.1", "detector": f"oracle@{ORACLE_VERSION}"}
    assert record.options["official_quirks"] is True and record.options["text_parser"] == "builtin-grammar@1"
    assert record.seeds["first_prompt"] == list(range(42, 52))
    (run_dir,) = (tmp_path / "runs").iterdir()
    color = [item for item in two_per_category(T2ICompBench(), "builtin") if item.tag == "color"]
    names = sorted(p.name for p in (run_dir / "color" / "samples").iterdir())
    assert names == sorted(f"{item.prompt}_{k:06}.png" for i, item in enumerate(color)
                           for k in range(10 * i, 10 * i + 10))
    blip = json.loads((run_dir / "color" / "annotation_blip" / "vqa_result.json").read_text())
    assert [r["question_id"] for r in blip] == list(range(20))
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    means = {c: sum(s["score"] for s in samples if s["tag"] == c) / 20 for c in BUILTIN_CATEGORIES}
    assert means == pytest.approx({c: record.scores[c] for c in BUILTIN_CATEGORIES})


def test_cli_eval_with_limit_and_tags(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "harness", "eval", "--ckpt", str(builtin_random_ckpt), "--bench", "t2i-compbench",
         "--tags", "numeracy,spatial", "--limit", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "result.json").read_text())
    assert record["n_images"] == 10 and set(record["scores"]) == {"overall", "spatial"}  # spatial comes first
    assert len(list((run_dir / "spatial" / "samples").glob("*_0000*.png"))) == 10
    assert (run_dir / "spatial" / "labels" / "annotation_obj_detection_2d" / "vqa_result.json").is_file()


def test_builtin_world_has_no_real_only_categories(builtin_items: list) -> None:
    tags = {item.tag for item in builtin_items}
    assert "non_spatial" not in tags and "3d_spatial" not in tags
    with pytest.raises(HarnessError, match="unknown tag"):
        from harness.api import EvalSettings, select_prompts

        select_prompts(builtin_items, T2ICompBench(), EvalSettings(tags=("non_spatial",)))

