"""DPG-Bench end to end: official prompts from the data dir, the builtin dense prompts, folder scoring, evaluate."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.dpg_bench import prompts as dpg_prompts
from benchmarks.dpg_bench.prompts import BuiltinItem, builtin_items, builtin_questions, builtin_table
from benchmarks.dpg_bench.rules import DPGOptions, group_items, make_grid, parse_questions
from benchmarks.registry import get_benchmark
from harness.api import EvalSettings, evaluate, score
from harness.builtin.oracle import read_objects
from harness.builtin.oracle_vqa import answer
from harness.builtin.render import render
from harness.builtin.world import Scene, sample_scene
from harness.data import DataFile
from harness.errors import DataError
from tests.conftest import official_data
from tests.fixtures_data import dpg_bench_data

MINI = Path(__file__).parent / "data" / "dpg_bench_mini.csv"


def table_only(root: Path) -> Path:
    """A data dir holding only the (test) question table."""
    (root / "dpg-bench").mkdir(parents=True)
    shutil.copy(MINI, root / "dpg-bench" / "dpg_bench.csv")
    return root


def test_prompts_come_from_the_prompt_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            unpinned_data: None) -> None:
    """The table from ``--data-dir``, the prompt files from ``$HARNESS_DATA_DIR`` (the second place ``harness.data``
    looks), so both lookups are exercised."""
    prompts = dpg_bench_data(tmp_path / "prompts") / "dpg-bench" / "prompts"
    (prompts / "0.txt").write_text("  A field at dawn.\n")  # a prompt file's text, not the table's, and stripped
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "prompts"))
    bench = get_benchmark("dpg-bench", table_only(tmp_path / "data"))
    items = bench.prompts("real")
    assert [i.metadata["item_id"] for i in items] == ["partiprompts97", "0", "countbench1"]
    assert [i.tag for i in items] == ["partiprompts", "numeric", "countbench"] and items[1].prompt == "A field at dawn."
    assert len(items[0].metadata["questions"]) == 7  # the official scorer never asks the table's first row
    bench.options = DPGOptions(official_quirks=False)
    assert len(bench.prompts("real")[0].metadata["questions"]) == 8
    assert bench.seeds(items[2], "real") == [42, 43, 44, 45] and bench.world_of(items) == "real"


def test_official_prompts_come_from_the_prompt_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     unpinned_data: None) -> None:
    """The official prompt files with the test table (not the official one, hence unpinned: the pins of the
    prompt files are checked in test_protocol.py)."""
    prompts = official_data("dpg-bench/prompts") / "dpg-bench" / "prompts"
    monkeypatch.setenv("HARNESS_DATA_DIR", str(prompts.parents[1]))
    assert len(list(prompts.glob("*.txt"))) == 1065
    bench = get_benchmark("dpg-bench", table_only(tmp_path / "data"))
    items = bench.prompts("real")
    assert items[1].prompt == (prompts / "0.txt").read_text().strip() and items[1].prompt.startswith("An expansive")
    table = pd.read_csv(MINI, dtype=str).drop_duplicates("item_id")
    assert [i.prompt for i in items] == [t.strip() for t in table["text"]]  # the files hold the table's texts


def test_missing_question_table_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    nowhere = (tmp_path / "absent.csv").as_uri()  # stands in for the official URL: no network in tests
    monkeypatch.setattr(dpg_prompts, "OFFICIAL_TABLE", DataFile("dpg-bench", "dpg_bench.csv", nowhere))
    with pytest.raises(DataError, match=r"dpg-bench needs dpg_bench.csv.*--data-dir"):
        get_benchmark("dpg-bench", tmp_path).prompts("real")


def test_builtin_prompts_and_question_graphs_are_well_formed() -> None:
    items = builtin_items()
    assert len(items) == 200 and len({i.prompt for i in items}) == 200
    assert builtin_items()[7] == items[7]  # seeded
    questions = builtin_questions(items)
    assert questions == parse_questions(io.StringIO(builtin_table(items)))
    categories = {q.category for q in questions}
    assert categories == {"entity - whole", "attribute - color", "attribute - texture", "attribute - size",
                          "other - count", "relation - spatial"}
    for item, graph in zip(items, group_items(questions).values()):
        assert 3 <= item.prompt.count(".") <= 5
        assert [q.proposition_id for q in graph] == list(range(1, len(graph) + 1))
        kinds = {q.proposition_id: q.category for q in graph}
        for q in graph:
            assert all(p < q.proposition_id and kinds[p] == "entity - whole" for p in q.parents)  # parents first
            assert (q.category == "entity - whole") == (not q.parents)  # entities are exactly the roots
            assert len(q.parents) == (2 if q.category == "relation - spatial" else min(1, len(q.parents)))


def test_every_builtin_question_is_in_the_oracle_grammar() -> None:
    items = builtin_items()
    rng = random.Random(1)
    for item, graph in zip(items, group_items(builtin_questions(items)).values()):
        objects = read_objects(render(sample_scene(item.request, rng)))
        assert all(answer(q.question, objects) > 0.5 for q in graph), item.prompt  # and true of a correct scene


def lay_out(root: Path, items: list[BuiltinItem], wrong: bool = False, seed: int = 0) -> None:
    """Official layout: ``<item_id>.png`` grids of ground-truth renders; ``wrong`` drops each scene's last object."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for item in items:
        scenes = [sample_scene(item.request, rng) for _ in range(4)]
        if wrong:
            scenes = [Scene(objects=s.objects[:-1]) for s in scenes]
        make_grid([render(s) for s in scenes]).save(root / f"{item.item_id}.png")


def test_oracle_scores_ground_truth_high_and_wrong_renders_lower(tmp_path: Path) -> None:
    items = builtin_items()[:12]
    lay_out(tmp_path / "right", items)
    right = score("dpg-bench", tmp_path / "right", out=tmp_path / "store", progress=False)
    assert right.world == "builtin" and right.n_prompts == 12 and right.options["official_quirks"] is True
    assert set(right.scores.values()) == {100.0}
    # builtin0's first row is the one the official scorer drops; its dependents then make the image fail, so it is
    # listed in the results as excluded, not scored.
    samples = (Path(tmp_path / "store" / "runs").glob("dpg-bench-*/samples.jsonl"))
    assert '"excluded"' in next(iter(samples)).read_text().splitlines()[0]
    lay_out(tmp_path / "wrong", items, wrong=True)
    wrong = score("dpg-bench", tmp_path / "wrong", out=tmp_path / "store", progress=False)
    assert wrong.scores["overall"] < 80.0 and wrong.scores["entity - whole"] < 100.0


def test_folder_skips_missing_corrupt_and_unknown_grids(tmp_path: Path) -> None:
    items = builtin_items()[1:5]
    lay_out(tmp_path, items)
    (tmp_path / f"{items[1].item_id}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / f"{items[2].item_id}.png").unlink()
    make_grid([render(Scene(objects=()))] * 4).crop((0, 0, 96, 90)).save(tmp_path / f"{items[3].item_id}.png")
    (tmp_path / "builtin99999.png").write_bytes((tmp_path / f"{items[0].item_id}.png").read_bytes())
    (tmp_path / "dpg-bench_results.txt").write_text("not an image: ignored\n")
    contents = get_benchmark("dpg-bench").read_image_folder(tmp_path)
    assert [i.metadata["item_id"] for i in contents.items] == [items[0].item_id]
    skipped = "\n".join(contents.skipped)
    assert f"{items[1].item_id}.png: unreadable grid" in skipped
    assert "197 item(s) of the builtin question table have no grid image: builtin0, builtin3, builtin5," in skipped
    assert "96x90" in skipped and "builtin99999.png: no such item" in skipped
    record = score("dpg-bench", tmp_path, out=tmp_path / "store", progress=False)
    assert record.n_images == 1 and record.scores["overall"] == 100.0 and len(record.options["skipped"]) == 4
    with pytest.raises(DataError, match="holds no images"):
        score("dpg-bench", tmp_path / "store" / "runs", out=tmp_path / "store", progress=False)


def test_evaluate_writes_grids_and_official_results(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    (record,) = evaluate(str(builtin_random_ckpt), ["dpg-bench"], out=tmp_path,
                         settings=EvalSettings(limit=3, batch_size=12), progress=False)
    assert record.benchmark == "dpg-bench" and record.world == "builtin"
    assert record.n_prompts == 3 and record.n_images == 12 and 0.0 <= record.scores["overall"] <= 100.0
    assert record.seeds["protocol"].startswith("Seeds 42, 43, 44, 45")
    assert record.perception["vqa"].startswith("oracle-vqa@")
    run = next((tmp_path / "runs").glob("dpg-bench-*"))
    grids = sorted(p.name for p in (run / "images").iterdir())
    assert grids == ["builtin0.png", "builtin1.png", "builtin2.png"]
    lines = (run / "dpg-bench_results.txt").read_text().splitlines()
    assert lines[0].startswith(str(run / "images" / "builtin1.png")) and len(lines[0].split(", ")) == 6
    assert lines[-1] == f"DPG-Bench score: {record.scores['overall']}" and "L2 category scores:" in lines
    detail = (run / "dpg-bench_results_detail.txt").read_text().splitlines()
    assert detail[0].startswith(f"{run / 'images' / 'builtin1.png'}, (0, 0, 48, 48), Is there a")
    # Scoring the grids the run wrote gives the same numbers: one scorer for generated tiles and official grids.
    again = score("dpg-bench", run / "images", out=tmp_path, progress=False)
    assert again.scores == pytest.approx(record.scores)
