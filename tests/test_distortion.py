"""The distortion-rate benchmark: the Wilson interval, the oracle judge, human flag files, prompt sets, end to end."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.distortion.flag_rate import rate_scores, wilson_interval
from benchmarks.distortion.prompts import ANYTHING_PROMPTS, builtin_distortion_prompts, read_prompt_lines
from benchmarks.registry import get_benchmark
from harness.builtin.prompts import vocabulary
from harness.builtin.render import render
from harness.builtin.world import SHAPES, Scene, SceneObject
from harness.errors import DataError, HarnessError
from harness.perception.distortion import DistortionJudge, ImageClassifierJudge, OracleDistortionJudge
from harness.perception.human_labels import LabelJudge, pixel_digest, read_flag_labels

ROOT = Path(__file__).resolve().parents[1]
BLANK = Image.new("RGB", (48, 48), (150, 150, 150))


def noise_image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8))


def scene(*objects: tuple[str, str, str, int, int]) -> Image.Image:
    return render(Scene(objects=tuple(SceneObject(s, c, "solid", size, x, y) for s, c, size, x, y in objects)))


# --- the interval --------------------------------------------------------------------------------------------------


def test_wilson_interval_matches_hand_computed_values() -> None:
    # 5 of 20: p = 0.25, z^2 / n = 0.19207; centre = (0.25 + 0.09604) / 1.19207 = 0.29029;
    # half = 1.95996 * sqrt(0.009375 + 0.0024009) / 1.19207 = 0.17842  ->  (0.11187, 0.46871)
    low, high = wilson_interval(5, 20)
    assert low == pytest.approx(0.11187, abs=1e-4) and high == pytest.approx(0.46871, abs=1e-4)
    # 0 of 10: the lower end is 0 and the upper z^2 / (n + z^2) = 3.8415 / 13.8415 = 0.27753, not a zero width
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_rate_leaves_unjudged_images_out_and_reports_counts() -> None:
    nan = float("nan")
    scores = rate_scores(["a", "a", "b", "b", "b"], [1.0, 0.0, nan, 1.0, 1.0])
    assert scores["overall"] == 0.75 and scores["n_judged"] == 4 and scores["n_flagged"] == 3
    assert scores["n_unjudged"] == 1 and scores["a"] == 0.5 and scores["b"] == 1.0
    assert (scores["overall_low95"], scores["overall_high95"]) == pytest.approx(wilson_interval(3, 4))


# --- the oracle judge ----------------------------------------------------------------------------------------------


def test_oracle_judge_passes_clean_renders() -> None:
    judge = OracleDistortionJudge()
    assert isinstance(judge, DistortionJudge)
    images = [scene((shape, "blue", "large", 4 + 2 * i, 10), ("circle", "red", "small", 34, 34))
              for i, shape in enumerate(SHAPES)]
    flags = judge.judge(images, [""] * len(images), [None] * len(images))
    assert [f.flagged for f in flags] == [False] * len(SHAPES), [f.reason for f in flags]


def test_oracle_judge_flags_blank_noise_and_merged_shapes() -> None:
    """Two same-colour shapes overlapping into one blob (offset 8, 6) are malformed; the same two shapes only
    touching (offset 10, 8) are cut apart at their neck by oracle v5 and read as two plain objects, as a person
    reads them (the eye-labelling rule: merged objects count when each part is still plainly its own shape)."""
    judge = OracleDistortionJudge()
    merged = scene(("circle", "blue", "large", 10, 10), ("square", "blue", "large", 18, 16))
    merged_beside_clean = scene(("circle", "blue", "large", 2, 2), ("square", "blue", "large", 10, 8),
                                ("heart", "red", "large", 30, 30))
    touching = scene(("circle", "blue", "large", 10, 10), ("square", "blue", "large", 20, 18))
    flags = judge.judge([BLANK, noise_image(), merged, merged_beside_clean, touching], [""] * 5, [None] * 5)
    assert not flags[4].flagged and flags[4].details["objects"] == ["blue circle", "blue square"]
    flags = flags[:4]
    assert all(f.flagged for f in flags)
    assert flags[0].reason == "no object"
    assert "noise" in flags[1].reason and "no object" in flags[1].reason
    assert "malformed" in flags[2].reason
    assert flags[3].reason == "malformed" and flags[3].details["objects"] == ["red heart"]


# --- human flag files ----------------------------------------------------------------------------------------------


def write_lines(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_flag_file_majority_by_pixels_and_by_seed(tmp_path: Path) -> None:
    red = scene(("circle", "red", "large", 10, 10))
    (tmp_path / "imgs").mkdir()
    red.save(tmp_path / "imgs" / "a.png")
    labels = write_lines(tmp_path / "flags.jsonl", [
        {"prompt": "p", "image": "imgs/a.png", "annotator": "ana", "distorted": True},
        {"prompt": "p", "image": "imgs/a.png", "annotator": "ben", "distorted": False},
        {"prompt": "p", "image": "imgs/a.png", "annotator": "cy", "distorted": True, "unsafe": False},
        {"prompt": "q", "seed": 7, "annotator": "ana", "distorted": True},
        {"prompt": "q", "seed": 7, "annotator": "ana", "distorted": False},  # a relabel: the last line wins
        {"prompt": "q", "seed": 8, "annotator": "ana", "unsafe": True},  # another flag: ignored for distortion
        "",
    ])
    judge = LabelJudge(labels, "distorted")
    # The file read back under another name and encoding still matches: by pixels, not by path.
    flags = judge.judge([red.copy(), BLANK, BLANK, BLANK], ["other prompt", "q", "q", "q"], [None, 7, 8, None])
    assert flags[0].flagged is True and flags[0].score == pytest.approx(2 / 3)
    assert flags[1].flagged is False
    assert flags[2].flagged is None and flags[3].flagged is None  # no distortion label: not judged
    assert judge.annotators == ["ana", "ben", "cy"]
    assert pixel_digest(red) == pixel_digest(Image.open(tmp_path / "imgs" / "a.png"))
    tie = write_lines(tmp_path / "tie.jsonl", [{"prompt": "q", "seed": 1, "annotator": "a", "distorted": True},
                                                {"prompt": "q", "seed": 1, "annotator": "b", "distorted": False}])
    assert LabelJudge(tie, "distorted").judge([BLANK], ["q"], [1])[0].flagged is False  # one yes, one no


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", "not valid JSON"),
    ('{"prompt": "p", "annotator": "a", "distorted": true}', "give 'image'"),
    ('{"prompt": "p", "seed": 1, "distorted": true}', "'annotator'"),
    ('{"prompt": "p", "seed": 1, "annotator": "a", "distorted": "yes"}', "'distorted' must be true or false"),
    ('{"prompt": "p", "seed": "1", "annotator": "a", "distorted": true}', "'seed' must be an integer"),
    ('{"prompt": "p", "seed": 1, "annotator": "a"}', "no flag"),
    ('{"prompt": "p", "image": "missing.png", "annotator": "a", "distorted": true}', "no such file"),
    ("[1, 2]", "expected a JSON object"),
])
def test_malformed_flag_line_is_one_line_error_naming_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    path = write_lines(tmp_path / "flags.jsonl", [{"prompt": "p", "seed": 1, "annotator": "a", "distorted": True},
                                                   "", bad])
    with pytest.raises(DataError) as err:
        read_flag_labels(path)
    text = str(err.value)
    assert text.startswith(f"{path}:3: ") and message in text and "\n" not in text


def test_labels_judge_needs_a_file_and_its_flag(tmp_path: Path) -> None:
    bench = get_benchmark("distortion", options={"judge": "labels"})
    with pytest.raises(HarnessError, match="--option labels=FILE"):
        bench.perception("builtin")
    unsafe_only = write_lines(tmp_path / "u.jsonl", [{"prompt": "p", "seed": 1, "annotator": "a", "unsafe": True}])
    with pytest.raises(DataError, match="no line carries the 'distorted' flag"):
        get_benchmark("distortion", options={"judge": "labels", "labels": str(unsafe_only)}).perception("builtin")
    with pytest.raises(HarnessError, match="needs a flag file"):
        get_benchmark("distortion").perception("real")  # the real world's default judge is people


# --- prompt sets ---------------------------------------------------------------------------------------------------


def test_builtin_prompt_set_covers_every_shape_in_the_models_vocabulary() -> None:
    items = builtin_distortion_prompts()
    assert len(items) == 32 and [it.index for it in items] == list(range(32))
    assert {it.tag for it in items} == {"single", "color", "counting", "two_object"}
    assert [it.prompt for it in items[:8]] == [f"a photo of a {s}" for s in SHAPES]
    words = set(vocabulary())
    assert all(set(it.prompt.split()) <= words for it in items)
    assert builtin_distortion_prompts() == items  # seeded
    bench = get_benchmark("distortion")
    seeds = [s for it in items for s in bench.seeds(it, "builtin")]
    assert len(seeds) == 32 * 8 == len(set(seeds))


def test_builtin_world_and_perception_never_import_these_benchmarks() -> None:
    """The benchmarks build their builtin prompts from the grammar; the world and the judges know no benchmark."""
    mine = {"benchmarks.distortion", "benchmarks.safety"}
    for path in [*(ROOT / "harness" / "builtin").rglob("*.py"), *(ROOT / "harness" / "perception").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(".".join(n.split(".")[:2]) in mine for n in names), path


def test_d3po_prompt_files_are_read_from_the_data_dir_and_checked(tmp_path: Path) -> None:
    assert read_prompt_lines("f", "1girl, solo\r\n\r\n1boy, hat  \r\n") == ["1girl, solo", "1boy, hat"]
    (tmp_path / "d3po").mkdir()
    (tmp_path / "d3po" / ANYTHING_PROMPTS.path).write_text("1girl, edited copy\n")
    bench = get_benchmark("distortion", data_dir=tmp_path, options={"prompt_set": "d3po-anything"})
    with pytest.raises(DataError, match="sha256 is"):
        bench.prompts("real")
    hand = get_benchmark("distortion", options={"prompt_set": "d3po-hand", "images_per_prompt": "3"})
    (item,) = hand.prompts("real")
    assert item.prompt == "1 hand" and hand.seeds(item, "real") == [0, 1, 2]
    assert get_benchmark("distortion", options={"prompt_set": "d3po-hand"}).images_for("real") == 1000
    with pytest.raises(HarnessError, match="unknown prompt_set"):
        get_benchmark("distortion", options={"prompt_set": "nope"}).prompts("builtin")


# --- the pluggable classifier --------------------------------------------------------------------------------------


def tiny_classifier(folder: Path) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=2, id2label={0: "ok", 1: "deformed"},
                       label2id={"ok": 0, "deformed": 1})
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_image_classifier_judge_sums_the_named_classes(tmp_path: Path) -> None:
    folder = tiny_classifier(tmp_path / "clf")
    images = [BLANK, noise_image()]
    low = ImageClassifierJudge(folder, ("deformed",), threshold=0.0).judge(images, ["", ""], [None, None])
    both = ImageClassifierJudge(folder, ("deformed", "ok"), threshold=0.99).judge(images, ["", ""], [None, None])
    assert all(f.flagged and 0.0 < f.score < 1.0 for f in low)
    assert all(f.flagged and f.score == pytest.approx(1.0) for f in both)  # the two classes sum to 1
    judge = ImageClassifierJudge(folder, ("deformed",))
    assert judge.version.startswith("clf@") and isinstance(judge, DistortionJudge)
    with pytest.raises(HarnessError, match="among the model's labels"):
        ImageClassifierJudge(folder, ("blurry",))
    with pytest.raises(HarnessError, match="not a folder"):
        ImageClassifierJudge(tmp_path / "none", ("deformed",))


# --- end to end ----------------------------------------------------------------------------------------------------


def harness(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


@pytest.mark.slow  # 240-250 s on the loaded 2-core machine (the safety end-to-end test took 15 s)
def test_eval_builtin_shapes_writes_a_rate_record_then_scores_human_labels(tmp_path: Path) -> None:
    out = tmp_path / "store"
    common = ["eval", "--ckpt", "builtin:shapes", "--bench", "distortion", "--limit", "1", "--out", str(out),
              "--option", "images_per_prompt=3"]
    result = harness(*common)
    assert result.returncode == 0, result.stderr
    assert "comparable to published tables: NO" in result.stdout and "no published table" in result.stdout
    (run,) = (out / "runs").iterdir()
    record = json.loads((run / "result.json").read_text())
    assert record["benchmark"] == "distortion" and record["n_images"] == 3
    assert record["perception"] == {"judge": f"oracle-distortion@{OracleDistortionJudge().version}"}
    scores = record["scores"]
    assert scores["n_judged"] == 3 and 0 <= scores["overall"] <= 1
    assert scores["overall_low95"] <= scores["overall"] <= scores["overall_high95"]
    assert not record["comparable_to_published"] and len(record["comparability_reasons"]) == 2
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["score"] for s in samples] == [float(s["details"]["distorted"]) for s in samples]
    assert scores["overall"] == pytest.approx(sum(s["score"] for s in samples) / 3)

    # Human flags on two of the three images (the first flagged, the second not): the rate is 1 / 2 of 2 judged.
    rows = [{"prompt": s["prompt"], "image": s["image"], "annotator": "ana", "distorted": k == 0}
            for k, s in enumerate(samples[:2])]
    labels = write_lines(tmp_path / "flags.jsonl", rows)
    result = harness(*common, "--option", "judge=labels", "--option", f"labels={labels}")
    assert result.returncode == 0, result.stderr
    run = next(p for p in (out / "runs").iterdir() if p.name != run.name)
    record = json.loads((run / "result.json").read_text())
    assert record["perception"]["judge"].startswith("human-labels@")
    assert record["scores"]["n_judged"] == 2 and record["scores"]["n_unjudged"] == 1
    assert record["scores"]["overall"] == pytest.approx(1 / 2)


@pytest.mark.slow  # 240-250 s on the loaded 2-core machine (the safety end-to-end test took 15 s)
def test_score_a_flag_file_by_its_own_labels_or_by_the_oracle(tmp_path: Path) -> None:
    from harness.api import EvalSettings, score

    (tmp_path / "round").mkdir()
    clean, broken = scene(("heart", "red", "large", 10, 10)), noise_image()
    clean.save(tmp_path / "round" / "0.png")
    broken.save(tmp_path / "round" / "1.png")
    flags = write_lines(tmp_path / "flags.jsonl", [
        {"prompt": "a photo of a heart", "image": "round/0.png", "annotator": "ana", "distorted": False},
        {"prompt": "a photo of a heart", "image": "round/1.png", "annotator": "ana", "distorted": True},
        {"prompt": "a photo of a heart", "image": "round/1.png", "annotator": "ben", "distorted": True},
        {"prompt": "a photo of a star", "seed": 3, "annotator": "ana", "distorted": True},
    ])
    record = score("distortion", flags, out=tmp_path / "store", progress=False)
    assert record.world == "builtin" and record.n_images == 2 and record.perception["judge"].startswith("human-")
    assert record.scores["overall"] == 0.5 and len(record.options["skipped"]) == 1
    oracle = score("distortion", flags, out=tmp_path / "store", progress=False,
                   settings=EvalSettings(options={"judge": "oracle"}))
    assert oracle.perception["judge"].startswith("oracle-distortion@") and oracle.scores["overall"] == 0.5
    with pytest.raises(DataError, match="expected a flag file"):
        score("distortion", tmp_path / "round", out=tmp_path / "store", progress=False)


def test_reads_the_labeling_export_layout(tmp_path: Path) -> None:
    """``harness label export`` writes ROUND/export/flags.jsonl with image ids relative to ROUND and a ``showing``."""
    (tmp_path / "images").mkdir()
    (tmp_path / "export").mkdir()
    image = scene(("ring", "green", "large", 12, 12))
    image.save(tmp_path / "images" / "00003.png")
    flags = write_lines(tmp_path / "export" / "flags.jsonl", [
        {"prompt": "a photo of a ring", "image": "images/00003.png", "annotator": "ana", "showing": 1,
         "distorted": True, "unsafe": False},
        {"prompt": "a photo of a ring", "image": "images/00003.png", "annotator": "ana", "showing": 2,
         "distorted": False, "unsafe": False},
    ])
    (label,) = {lab.path for lab in read_flag_labels(flags)}
    assert label == tmp_path / "images" / "00003.png"
    assert LabelJudge(flags, "distorted").judge([image], [""], [None])[0].flagged is False  # the later showing
    assert LabelJudge(flags, "unsafe").judge([image], [""], [None])[0].flagged is False


# --- D3PO's training prompts (issue 15, item 5) ----------------------------------------------------------------------


def test_distortion_training_prompts_ask_for_the_benchmarks_kinds_in_other_words() -> None:
    from harness.builtin.world import SIZES, TEXTURES
    from trainers.prompts import overlap_report, resolve_training_prompts

    items = resolve_training_prompts("builtin:distortion-train", "builtin")
    measured = builtin_distortion_prompts()
    assert len(items) == 64 and len({item.prompt for item in items}) == 64
    # every (kind, shape) the benchmark measures is trained, twice, each prompt with a size or texture word
    asked = [(item.tag, item.metadata["shapes"][0]) for item in items]
    assert sorted(set(asked)) == sorted({(m.tag, m.metadata["shapes"][0]) for m in measured})
    assert all(asked.count(pair) == 2 for pair in set(asked))
    words = set(vocabulary())
    for item in items:
        assert set(item.prompt.split()) <= words and set(item.prompt.split()) & {*SIZES, *TEXTURES}, item.prompt
    report = overlap_report(items, "builtin")
    assert report.exact_total == 0  # harness train would refuse a benchmark prompt
    assert next(b for b in report.benchmarks if b.benchmark == "distortion").combinations > 0  # said, not hidden
    again = resolve_training_prompts("builtin:distortion-train", "builtin", seed=0)
    other = resolve_training_prompts("builtin:distortion-train", "builtin", n=8, seed=1)
    assert [i.prompt for i in again] == [i.prompt for i in items] and len(other) == 8
    assert [i.prompt for i in other] != [i.prompt for i in items[:8]]
