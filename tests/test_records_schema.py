"""Result records, schema 3: JSON Schema checked on write and read, migration of schema 1 and 2, bootstrap intervals.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest

from benchmarks.registry import SampleResult, get_benchmark
from harness import stats
from harness.errors import DataError
from harness.records import MIGRATED_NOTE, SCHEMA_VERSION, UNKNOWN_COMPARABILITY, ResultRecord, attach_statistics
from harness.schemas import load_schema, validate


def record(**changes: object) -> ResultRecord:
    base = ResultRecord(benchmark="geneval", benchmark_version="1.0", world="builtin", model="builtin:shapes",
                        checkpoint_fingerprint="abc", scores={"overall": 0.5, "counting": 0.25}, n_prompts=4,
                        n_images=16, seeds={"protocol": "42 + k"}, sampler={"num_inference_steps": 10},
                        perception={"oracle": "oracle@2"}, created="2026-11-29T00:00:00+00:00",
                        comparable_to_published=False, comparability_reasons=["builtin world"],
                        intervals={"overall": [0.4, 0.6], "counting": [0.0, 0.5]},
                        standard_errors={"overall": 0.05, "counting": 0.12},
                        bootstrap={"method": "percentile bootstrap over prompts", "replicates": 1000, "seed": 0,
                                   "confidence": 0.95, "unit": "prompt", "strata": "tag"},
                        prompt_set_hash="0" * 32, seed_hash="1" * 32, scorer_hash="2" * 32,
                        samples={"file": "samples.jsonl", "sha256": "3" * 64, "rows": 16})
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_round_trip(tmp_path: Path) -> None:
    rec = record()
    rec.save(tmp_path / "r.json")
    loaded = ResultRecord.load(tmp_path / "r.json")
    assert asdict(loaded) == asdict(rec) and loaded.schema_version == SCHEMA_VERSION == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"world": "moon"}, "$.world: 'moon' is not one of"),
        ({"n_images": -1}, "$.n_images: -1 is below the minimum 0"),
        ({"scores": {"counting": 0.2}}, "$.scores: missing required field 'overall'"),
        ({"intervals": {"overall": [0.1]}}, "$.intervals.overall: fewer than 2 items"),
        ({"samples": {"file": "s.jsonl", "sha256": "xyz"}}, "$.samples.sha256: 'xyz' does not match"),
        ({"perception": {"oracle": 2}}, "$.perception.oracle: expected string, got int"),
    ],
)
def test_invalid_records_are_refused_on_write(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(DataError, match="is invalid") as caught:
        record(**changes).save(tmp_path / "r.json")
    assert message in str(caught.value)
    assert not (tmp_path / "r.json").exists()


def test_edited_file_is_refused_on_read(tmp_path: Path) -> None:
    record().save(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    data["n_prompts"] = "four"
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"not a valid result record: \$.n_prompts: expected integer, got str"):
        ResultRecord.load(tmp_path / "r.json")
    del data["n_prompts"]
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="n_prompts"):
        ResultRecord.load(tmp_path / "r.json")


@pytest.mark.parametrize("version", [1, 2])
def test_old_records_migrate_with_a_note(tmp_path: Path, version: int) -> None:
    new = {k: v for k, v in asdict(record()).items()
           if k not in ("prompt_set_hash", "seed_hash", "scorer_hash", "intervals", "standard_errors", "bootstrap",
                        "samples", "notes")}
    if version == 1:
        new = {k: v for k, v in new.items() if k not in ("comparable_to_published", "comparability_reasons")}
    (tmp_path / "old.json").write_text(json.dumps({**new, "schema_version": version}))
    loaded = ResultRecord.load(tmp_path / "old.json")
    assert loaded.schema_version == 3 and loaded.notes == [MIGRATED_NOTE.format(version=version)]
    assert loaded.intervals == {} and loaded.prompt_set_hash == ""
    assert loaded.comparable_to_published is (None if version == 1 else False)
    if version == 1:
        assert loaded.comparability_reasons == [UNKNOWN_COMPARABILITY]
    loaded.save(tmp_path / "migrated.json")  # a migrated record is a valid schema-3 record
    assert ResultRecord.load(tmp_path / "migrated.json").notes == loaded.notes


def test_validator_keywords() -> None:
    schema = {"type": "object", "required": ["a"], "additionalProperties": False, "$defs": {"n": {"type": "integer"}},
              "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"oneOf": [{"type": "string"}, {"const": 3}]},
                             "c": {"type": ["number", "null"], "maximum": 1}}}
    assert validate({"a": 1, "b": "x", "c": None}, schema) == []
    assert validate({"a": True}, schema) == ["$.a: expected integer, got bool"]  # a bool is not an integer
    assert validate({"a": 1, "b": 4}, schema) == ["$.b: matches 0 of the oneOf alternatives, needs exactly one"]
    assert validate({"a": 1, "c": 2.5, "d": 0}, schema) == ["$.c: 2.5 is above the maximum 1", "$: unknown field 'd'"]
    assert validate({}, schema) == ["$: missing required field 'a'"]


def test_unsupported_schema_keywords_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import schemas

    load_schema.cache_clear()
    with pytest.raises(ValueError, match="unsupported keyword"):
        schemas._check_keywords({"properties": {"x": {"type": "string", "format": "date-time"}}}, "test")
    load_schema("result_record")  # the shipped schemas use only supported keywords


def _results(per_tag: dict[str, list[list[float]]]) -> list[SampleResult]:
    out, p = [], 0
    for tag, prompts in per_tag.items():
        for images in prompts:
            out += [SampleResult(p, k, tag, s) for k, s in enumerate(images)]
            p += 1
    return out


def test_bootstrap_is_stratified_by_tag() -> None:
    """Tag A always passes and tag B always fails: every stratified resample keeps both tags' prompt counts, so the
    GenEval overall (mean of tag accuracies) is 0.5 in every replicate; an unstratified one would vary."""
    results = _results({"single_object": [[1.0, 1.0]] * 5, "counting": [[0.0, 0.0]] * 5})
    (boot,) = stats.resample([get_benchmark("geneval").aggregate], [results], replicates=200)
    assert boot.interval("overall") == (0.5, 0.5) and boot.standard_error("overall") == 0.0


def test_bootstrap_counts_a_prompt_drawn_twice_twice() -> None:
    """Aggregations that group images by prompt (DPG-Bench) must see each draw as its own prompt."""
    results = _results({"t": [[1.0], [0.0], [1.0], [0.0]]})

    def n_prompts(rs: list[SampleResult]) -> dict[str, float]:
        return {"overall": float(len({r.prompt_index for r in rs}))}

    (boot,) = stats.resample([n_prompts], [results], replicates=50)
    assert set(boot.draws["overall"].tolist()) == {4.0}


def test_bootstrap_interval_matches_theory_and_is_reproducible() -> None:
    """One tag, 200 single-image prompts at 30% pass: the interval covers 0.3 and its width is about
    2 * 1.96 * sqrt(0.3 * 0.7 / 200) = 0.127; the same seed gives the same interval."""
    scores = [1.0 if i % 10 < 3 else 0.0 for i in range(200)]
    results = _results({"colors": [[s] for s in scores]})
    aggregate = get_benchmark("geneval").aggregate
    (boot,) = stats.resample([aggregate], [results], replicates=1000)
    low, high = boot.interval("overall")
    assert low < 0.3 < high and high - low == pytest.approx(0.127, abs=0.02)
    assert boot.standard_error("overall") == pytest.approx(math.sqrt(0.21 / 200), rel=0.15)
    (again,) = stats.resample([aggregate], [results], replicates=1000)
    assert again.interval("overall") == (low, high)


def test_attach_statistics_from_a_samples_file(tmp_path: Path) -> None:
    rows = [{"prompt_index": p, "image_index": k, "prompt": f"p{p}", "tag": "counting" if p % 2 else "colors",
             "seed": 42 + k, "score": float((p + k) % 3 == 0), "details": {}} for p in range(10) for k in range(4)]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rec = record(intervals={}, standard_errors={}, bootstrap={}, samples={})
    bench = get_benchmark("geneval")
    from harness.records import rows_to_results

    rec.scores = bench.aggregate(rows_to_results(rows))
    attach_statistics(rec, tmp_path / "samples.jsonl", bench.aggregate, replicates=100)
    assert set(rec.intervals) == set(rec.scores) == set(rec.standard_errors) == {"overall", "colors", "counting"}
    for key, (low, high) in rec.intervals.items():
        assert low <= rec.scores[key] <= high
    assert rec.samples["rows"] == 40 and len(rec.samples["sha256"]) == 64 and rec.bootstrap["replicates"] == 100
    assert len(rec.prompt_set_hash) == len(rec.seed_hash) == len(rec.scorer_hash) == 32
    rec.save(tmp_path / "result.json")
