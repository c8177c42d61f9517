"""The eye audit's arithmetic on two tiny synthetic GenEval runs and a hand-written label file.

Each run holds two (prompt, seed) slots per tag, so the draw takes every slot; the labels and oracle verdicts are
set so that every number of the report can be worked out by hand (see each test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.audits.eye_audit import (
    AuditImage,
    attach,
    audit_images,
    build_report,
    eye_aggregate,
    format_report,
    load_labels,
    main,
    write_sheets,
)
from benchmarks.geneval.prompts import TAGS
from benchmarks.registry import SampleResult
from harness.errors import DataError, HarnessError

PER_TAG = 2


def _metadata(tag: str) -> dict:
    if tag == "counting":
        return {"tag": tag, "include": [{"class": "star", "count": 2}], "exclude": [{"class": "star", "count": 3}]}
    if tag in ("two_object", "position", "color_attr"):
        return {"tag": tag, "include": [{"class": "circle", "count": 1}, {"class": "square", "count": 1}]}
    return {"tag": tag, "include": [{"class": "circle", "count": 1}]}


def _oracle(model: str, tag: str, k: int) -> bool:
    """Slot 0 of every tag passes, slot 1 fails, except: single_object slot 1 passes for both models (the base
    image of it is a false positive, the eye says wrong) and two_object slot 1 fails for trained too."""
    return k == 0 or tag == "single_object"


def _eye(model: str, tag: str, k: int) -> str:
    """Base: slot 0 correct, slot 1 wrong, every tag. Trained: the same, but single_object slot 1 correct and
    two_object slot 1 unsure."""
    if model == "trained" and tag == "single_object" and k == 1:
        return "correct"
    if model == "trained" and tag == "two_object" and k == 1:
        return "unsure"
    return "correct" if k == 0 else "wrong"


def _write_run(folder: Path, model: str) -> None:
    folder.mkdir()
    samples, results = [], []
    for t, tag in enumerate(TAGS):
        for k in range(PER_TAG):
            prompt_index = t * PER_TAG + k
            path = folder / f"{prompt_index}.png"
            Image.new("RGB", (48, 48), (10 * prompt_index, 100 if model == "base" else 200, 0)).save(path)
            prompt = f"a photo of {tag} {k}"
            samples.append({"prompt_index": prompt_index, "image_index": 0, "prompt": prompt, "tag": tag,
                            "seed": 42, "image": str(path)})
            results.append({"filename": str(path), "tag": tag, "prompt": prompt, "correct": _oracle(model, tag, k),
                            "reason": "", "metadata": json.dumps({**_metadata(tag), "prompt": prompt}),
                            "details": "{}"})
    for name, rows in (("samples.jsonl", samples), ("geneval_results.jsonl", results)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _raw(image: AuditImage) -> dict:
    k = image.slot.slot % PER_TAG
    verdict = _eye(image.model, image.slot.tag, k)
    # The trained single_object images show two circles (one more than asked); everything else what was asked.
    extra = image.model == "trained" and image.slot.tag == "single_object"
    objects = [{"shape": "circle", "color": "red", "texture": "solid", "size": "large"}] * (2 if extra else 1)
    return {"id": image.id, "objects": objects, "verdict": verdict, "note": ""}


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    base, trained = tmp_path / "base-run", tmp_path / "trained-run"
    _write_run(base, "base")
    _write_run(trained, "trained")
    return base, trained


@pytest.fixture
def labelled(runs: tuple[Path, Path], tmp_path: Path) -> tuple[list[AuditImage], Path]:
    images = audit_images(*runs, per_tag=PER_TAG)
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(label) + "\n" for label in attach(images, [_raw(i) for i in images])))
    return images, path


def test_the_draw_pairs_every_slot_and_hides_the_model(runs: tuple[Path, Path], tmp_path: Path) -> None:
    images = audit_images(*runs, per_tag=PER_TAG)
    assert len(images) == 2 * PER_TAG * len(TAGS)
    assert sorted(i.id for i in images) == [f"A{k:03d}" for k in range(1, len(images) + 1)]
    by_slot: dict[int, set[str]] = {}
    for image in images:
        by_slot.setdefault(image.slot.slot, set()).add(image.model)
    assert all(models == {"base", "trained"} for models in by_slot.values())
    assert [i.id for i in audit_images(*runs, per_tag=PER_TAG)] == [i.id for i in images]  # fixed seeds
    write_sheets(images, tmp_path / "sheets")
    blind = [json.loads(line) for line in (tmp_path / "sheets" / "blind.jsonl").read_text().splitlines()]
    assert set(blind[0]) == {"id", "prompt", "tag"}  # no model, no verdict
    assert Image.open(tmp_path / "sheets" / "sheet01.png").width == 6 * (48 * 4 + 12)


def test_accuracy_and_paired_deltas_match_the_hand_computed_values(labelled: tuple[list[AuditImage], Path],
                                                                   runs: tuple[Path, Path]) -> None:
    images, path = labelled
    report = build_report(load_labels(path), images, *runs, replicates=200)
    acc, delta = report["accuracy"], report["delta"]
    # Eye, base: 1 of 2 per tag. Trained: single_object 2/2, two_object 1 + 0.5 (unsure) of 2, the rest 1/2.
    assert acc["eye:base"]["overall"]["point"] == pytest.approx(0.5)
    assert acc["eye:trained"]["two_object"]["point"] == pytest.approx(0.75)
    assert acc["eye:trained"]["overall"]["point"] == pytest.approx((1 + 0.75 + 4 * 0.5) / 6)
    assert acc["eye_unsure_wrong:trained"]["two_object"]["point"] == pytest.approx(0.5)
    assert acc["eye_unsure_correct:trained"]["two_object"]["point"] == pytest.approx(1.0)
    assert delta["eye_unsure_wrong"]["overall"]["point"] == pytest.approx(0.5 / 6)
    assert delta["eye_unsure_correct"]["overall"]["point"] == pytest.approx(1 / 6)
    # Oracle: single_object 2/2 for both models, every other tag 1/2.
    assert acc["oracle:base"]["overall"]["point"] == pytest.approx((1 + 5 * 0.5) / 6)
    assert delta["oracle"]["overall"]["point"] == pytest.approx(0.0)
    assert delta["eye"]["overall"]["point"] == pytest.approx(0.125)
    assert delta["eye_minus_oracle"]["overall"]["point"] == pytest.approx(0.125)
    # Where both models get the same verdict on every slot, every paired resample gives a delta of exactly 0.
    assert delta["eye"]["counting"]["interval"] == [0.0, 0.0]
    # single_object: trained gains exactly the slots the resample draws as slot 1, so the delta lies in [0, 1].
    low, high = delta["eye"]["single_object"]["interval"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    assert report["mcnemar"]["eye"] == {"pairs": 11, "base_only": 0, "trained_only": 1, "p": 1.0}


def test_agreement_and_object_counts(labelled: tuple[list[AuditImage], Path], runs: tuple[Path, Path]) -> None:
    images, path = labelled
    report = build_report(load_labels(path), images, *runs, replicates=50)
    base, trained = report["agreement"]["base"], report["agreement"]["trained"]
    # Base single_object: slot 0 both correct; slot 1 the oracle passes what the eye calls wrong.
    assert base["single_object"] | {"wilson": None} == {
        "n": 2, "agreement": 0.5, "wilson": None, "kappa": 0.0, "both_correct": 1, "both_wrong": 0, "misses": 0,
        "false_positives": 1, "unsure": 0}
    assert trained["single_object"]["agreement"] == 1.0
    assert trained["two_object"]["n"] == 1 and trained["two_object"]["unsure"] == 1
    assert base["all"]["n"] == 12 and base["all"]["false_positives"] == 1 and trained["all"]["unsure"] == 1
    objects = report["objects"]
    assert objects["trained"]["single_object"] == {"images": 2, "mean_objects": 2.0, "more_than_asked": 1.0}
    assert objects["base"]["all"]["more_than_asked"] == 0.0
    assert objects["trained"]["all"]["more_than_asked"] == pytest.approx(2 / 12)
    assert "| eye |" in format_report(report)


def test_unsure_counts_half_a_pass_through_the_official_aggregation() -> None:
    results = [SampleResult(0, 0, "colors", 1.0), SampleResult(1, 0, "colors", 0.5),
               SampleResult(2, 0, "position", 0.5), SampleResult(3, 0, "position", 0.0)]
    scores = eye_aggregate(results)
    assert scores["colors"] == pytest.approx(0.75) and scores["position"] == pytest.approx(0.25)
    assert scores["overall"] == pytest.approx(0.5)


def test_labels_of_changed_images_or_missing_ids_are_refused(labelled: tuple[list[AuditImage], Path],
                                                            runs: tuple[Path, Path], tmp_path: Path) -> None:
    images, path = labelled
    labels = load_labels(path)
    with pytest.raises(DataError, match="missing"):
        attach(images, [_raw(i) for i in images[1:]])
    labels[0] = labels[0] | {"image_hash": "0" * 32}
    with pytest.raises(DataError, match="no longer apply"):
        build_report(labels, images, *runs, replicates=10)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"id": "A001", "verdict": "maybe"}) + "\n")
    with pytest.raises(DataError, match="missing fields"):
        load_labels(broken)
    with pytest.raises(HarnessError, match="fewer than"):
        audit_images(*runs, per_tag=3)


def test_report_command_writes_markdown_and_json(labelled: tuple[list[AuditImage], Path],
                                                 runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, path = labelled
    out = tmp_path / "out"
    main(["report", "--base", str(runs[0]), "--trained", str(runs[1]), "--per-tag", str(PER_TAG), "--labels",
          str(path), "--out", str(out), "--replicates", "20"])
    report = json.loads((out / "report.json").read_text())
    assert report["command"].startswith("python -m benchmarks.audits.eye_audit report")
    assert "# Eye audit" in (out / "report.md").read_text()
