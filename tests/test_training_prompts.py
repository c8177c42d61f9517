"""Training prompt sets: never a benchmark prompt, every GenEval skill, seeded; prompt files; overlap reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.geneval.prompts import TAGS
from benchmarks.registry import PromptItem, get_benchmark
from harness.builtin.render import render
from harness.builtin.world import sample_scene
from harness.errors import DataError, HarnessError
from trainers.prompts import (
    check_overlap,
    combination,
    geneval_train_items,
    normalise,
    overlap_report,
    resolve_training_prompts,
)


@pytest.fixture(scope="module")
def train_items() -> list[PromptItem]:
    return resolve_training_prompts("builtin:geneval-train", "builtin")


@pytest.fixture(scope="module")
def builtin_report(train_items):
    return overlap_report(train_items, "builtin")


def test_never_a_builtin_benchmark_prompt(train_items):
    benchmark_prompts = set()
    for name in ("geneval", "t2i-compbench", "dpg-bench"):
        for item in get_benchmark(name).prompts("builtin"):
            benchmark_prompts |= {normalise(item.prompt), normalise(f"a photo of {item.prompt}")}
    own = {normalise(item.prompt) for item in train_items}
    assert len(train_items) == 600
    assert own.isdisjoint(benchmark_prompts)
    # Other seeds and sizes keep the guarantee (single-object prompts run out first).
    for seed in (1, 2):
        assert {normalise(i.prompt) for i in geneval_train_items(300, seed)}.isdisjoint(
            {normalise(i.prompt) for i in get_benchmark("geneval").prompts("builtin")})


def test_covers_every_geneval_tag_with_valid_metadata(train_items):
    tags = [item.tag for item in train_items]
    assert set(tags) == set(TAGS)
    assert all(tags.count(t) == 100 for t in TAGS)
    for item in train_items:
        meta = item.metadata
        assert meta["prompt"] == item.prompt and meta["tag"] == item.tag
        # every prompt differs from the plain form by at least one size/texture word
        assert any("size" in c or "texture" in c for c in meta["include"])
        if item.tag == "counting":
            (clause,) = meta["include"]
            assert 2 <= clause["count"] <= 4 and meta["exclude"] == [{"class": clause["class"],
                                                                      "count": clause["count"] + 1}]


def test_geneval_rule_scores_training_prompts_ignoring_size_and_texture(train_items):
    """A render of the request passes GenEval's rule; a render that gets size and texture wrong passes too, since
    the rule never checks them (the docstring's promise); a wrong class fails."""
    import random

    from harness.builtin.oracle import OracleColorClassifier, OracleDetector
    from trainers.prompts import _request

    bench = get_benchmark("geneval")
    perception = {"detector": OracleDetector(), "color": OracleColorClassifier()}
    rng = random.Random(0)
    samples, flipped = [], []
    for item in [i for i in train_items if i.tag in ("counting", "position", "color_attr")][:12]:
        request = _request(item.metadata)
        samples.append((item, 0, render(sample_scene(request, rng))))
        other = type(request)(groups=tuple(
            type(g)(g.shape, g.count, g.color, texture="solid" if g.texture == "striped" else "striped",
                    size="small" if g.size == "large" else "large") for g in request.groups),
            relation=request.relation)
        flipped.append((item, 1, render(sample_scene(other, rng))))
    results = bench.score(samples + flipped, perception)
    assert all(r.score == 1.0 for r in results), [r.details["reason"] for r in results if r.score != 1.0]
    # The rule still checks what GenEval checks: the same scenes with the first group's class swapped fail.
    swapped = []
    for item, k, _ in samples:
        request = _request(item.metadata)
        first = request.groups[0]
        shape = next(s for s in ("ring", "star", "cross") if s not in {g.shape for g in request.groups})
        groups = (type(first)(shape, first.count, first.color, first.texture, first.size), *request.groups[1:])
        swapped.append((item, k, render(sample_scene(type(request)(groups, request.relation), rng))))
    assert all(r.score == 0.0 for r in bench.score(swapped, perception))


def test_deterministic_per_seed():
    first = [i.prompt for i in geneval_train_items(60, seed=3)]
    assert first == [i.prompt for i in geneval_train_items(60, seed=3)]
    assert first != [i.prompt for i in geneval_train_items(60, seed=4)]


def test_builtin_set_errors():
    with pytest.raises(HarnessError, match="unknown builtin prompt set 'nope'; known: builtin:geneval-train"):
        resolve_training_prompts("builtin:nope", "builtin")
    with pytest.raises(HarnessError, match="builtin-world prompt set"):
        resolve_training_prompts("builtin:geneval-train", "real")
    with pytest.raises(HarnessError, match="at least 1"):
        resolve_training_prompts("builtin:geneval-train", "builtin", n=0)


def test_prompt_files(tmp_path: Path):
    txt = tmp_path / "p.txt"
    txt.write_text("a photo of a large circle\n\n  two striped stars \n")
    items = resolve_training_prompts(str(txt), "builtin")
    assert [(i.index, i.prompt, i.tag) for i in items] == [(0, "a photo of a large circle", "custom"),
                                                           (1, "two striped stars", "custom")]
    jsonl = tmp_path / "p.jsonl"
    rows = [{"prompt": "a cat on a mat"},
            {"prompt": "a photo of two dogs", "tag": "counting", "include": [{"class": "dog", "count": 2}],
             "exclude": [{"class": "dog", "count": 3}]}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = resolve_training_prompts(str(jsonl), "real", n=5)
    assert [i.tag for i in items] == ["custom", "counting"]
    assert items[1].metadata["include"] == [{"class": "dog", "count": 2}]
    assert len(resolve_training_prompts(str(jsonl), "real", n=1)) == 1


@pytest.mark.parametrize(("name", "text", "world", "message"), [
    ("bad.jsonl", '{"prompt": "a cat"}\n{"prompt": "a dog"\n', "real", r"bad.jsonl:2: not valid JSON"),
    ("bad.jsonl", '{"prompt": "a cat"}\n["a dog"]\n', "real", r"bad.jsonl:2: expected a JSON object"),
    ("bad.jsonl", '\n{"text": "a dog"}\n', "real", r"bad.jsonl:2: missing or empty 'prompt'"),
    ("bad.jsonl", '{"prompt": "a dog", "include": [{"class": "dog"}], "tag": "counting"}\n', "real",
     r"bad.jsonl:1: malformed clause"),
    ("bad.jsonl", '{"prompt": "a dog", "include": [], "tag": "dogs"}\n', "real", r"bad.jsonl:1: unknown tag 'dogs'"),
    ("bad.txt", "a photo of a circle\na photo of a dog\n", "builtin",
     r"bad.txt:2: 'dog' not in the builtin world's vocabulary"),
    ("empty.txt", "\n \n", "real", r"empty.txt: no prompts"),
    ("p.csv", "a,b\n", "real", r"unsupported prompt file type '.csv'"),
])
def test_prompt_file_errors(tmp_path: Path, name: str, text: str, world: str, message: str):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        resolve_training_prompts(str(path), world)
    assert "\n" not in str(info.value)


def test_missing_prompt_file(tmp_path: Path):
    with pytest.raises(DataError, match="no such prompt file"):
        resolve_training_prompts(str(tmp_path / "none.txt"), "builtin")


def test_combination_reads_every_builtin_form():
    geneval = {"tag": "position", "include": [{"class": "star", "count": 1},
                                              {"class": "circle", "count": 1, "position": ["right of", 0]}]}
    expected = ((("circle", 1, None), ("star", 1, None)), ("star", "left of", "circle"))
    assert combination(PromptItem(0, "a photo of a circle right of a star", "position", geneval)) == expected
    assert combination(PromptItem(0, "a large circle right of a striped star", "x", {})) == expected
    assert combination(PromptItem(0, "a photo of a star left of a circle", "x", {})) == expected
    dsg = {"questions": [{"tuple": "entity - whole (circle)"}, {"tuple": "entity - whole (star)"},
                         {"tuple": "relation - spatial (circle, star, right of)"}]}
    assert combination(PromptItem(0, "A circle. A star.", "x", dsg)) == expected
    counted = combination(PromptItem(0, "three red circles, a star and two hearts", "x", {}))
    assert counted == ((("circle", 3, "red"), ("heart", 2, None), ("star", 1, None)), None)
    assert combination(PromptItem(0, "a cat sitting on a mat", "x", {})) is None


def test_overlap_report_on_a_crafted_file(tmp_path: Path):
    path = tmp_path / "crafted.txt"
    # 1: a builtin GenEval prompt verbatim (case and spacing changed); 2: a T2I-CompBench prompt verbatim;
    # 3: a GenEval counting combination in other words; 4: nothing any benchmark asks for (four rings is not a
    # GenEval counting prompt only if the seeded set lacks it, so use a combination outside every set: 3 groups).
    geneval_prompt = get_benchmark("geneval").prompts("builtin")[0].prompt
    t2i_prompt = get_benchmark("t2i-compbench").prompts("builtin")[0].prompt
    path.write_text(f"  {geneval_prompt.upper()} \n{t2i_prompt}\na photo of three large circles\n"
                    "a small circle, a large star and a striped ring\n")
    items = resolve_training_prompts(str(path), "builtin")
    report = overlap_report(items, "builtin")
    by_name = {b.benchmark: b for b in report.benchmarks}
    assert [i for i, _ in by_name["geneval"].exact] == [0]
    assert [i for i, _ in by_name["t2i-compbench"].exact] == [1]
    assert by_name["dpg-bench"].exact == []
    # the distortion rate's builtin set holds every shape alone ("a photo of a star"), like GenEval's first prompts
    assert [i for i, _ in by_name["distortion"].exact] == [0]
    assert report.exact_total == 3
    assert by_name["geneval"].comparable == 4 and by_name["geneval"].combinations >= 2  # items 0 and 2 at least
    summary = report.summary()
    assert "geneval (553 prompts): 1 exact" in summary and "t2i-compbench (1800 prompts): 1 exact" in summary
    with pytest.raises(HarnessError, match=r"3 training prompt\(s\) are benchmark prompts verbatim") as info:
        check_overlap(report, allow=False)
    assert "\n" not in str(info.value)
    check_overlap(report, allow=True)


def test_training_set_reports_no_exact_overlap(builtin_report):
    assert builtin_report.exact_total == 0
    check_overlap(builtin_report, allow=False)
    geneval = next(b for b in builtin_report.benchmarks if b.benchmark == "geneval")
    assert geneval.comparable == 600 and 0 < geneval.combinations <= 600  # same skills, other words


def test_missing_real_world_files_are_not_checked(tmp_path: Path, train_items, monkeypatch):
    """Offline with no official files: each real-world set read from a file is reported as not checked, and nothing
    is refused (the distortion rate's real-world default, D3PO's "1 hand", needs no file and is checked)."""
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    report = overlap_report(train_items[:5], "real", data_dir=tmp_path / "nothing")
    checked = {b.benchmark for b in report.benchmarks if not b.not_checked}
    assert checked == {"distortion"} and len(report.benchmarks) == 5, report.summary()
    assert "not checked:" in report.summary()
    check_overlap(report, allow=False)  # nothing compared, nothing refused
