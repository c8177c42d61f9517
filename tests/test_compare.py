"""``harness compare``: paired tests on per-image verdicts, paired bootstrap deltas, and refusals of unfair pairs.

Run folders are written here in the harness's own format (result.json + samples.jsonl) from chosen verdicts, so a
known difference between A and B is built in and the tests check that it is found (and that none is found where
there is none). The aggregation is the installed benchmark's own (GenEval: mean of the tag accuracies).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from benchmarks.registry import get_benchmark
from harness import stats
from harness.compare import compare, load_evaluated
from harness.errors import DataError, HarnessError
from harness.records import ResultRecord, attach_statistics, rows_to_results

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def make_run(folder: Path, verdicts: list[list[float]], benchmark: str = "geneval", seed_offset: int = 0,
             method: str = "pretrained", model: str = "builtin:shapes", training: dict | None = None,
             perception: dict | None = None, version: str | None = None, prompt_prefix: str = "a photo of",
             replicates: int = 200) -> Path:
    """A run folder with one prompt per row of ``verdicts`` (tags cycling through GenEval's six), one image per
    entry, seeds 42 + k (+ ``seed_offset``), and a schema-3 record whose scores follow from the samples."""
    bench = get_benchmark(benchmark)
    rows = []
    for p, images in enumerate(verdicts):
        for k, score in enumerate(images):
            rows.append({"prompt_index": p, "image_index": k, "prompt": f"{prompt_prefix} thing {p}",
                         "tag": TAGS[p % len(TAGS)], "seed": 42 + k + seed_offset, "image": f"/img/{p}-{k}.png",
                         "score": None if math.isnan(score) else score,
                         "details": {"reason": "" if score == 1.0 else "missing object"}})
    folder.mkdir(parents=True)
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = ResultRecord(benchmark=benchmark, benchmark_version=version or bench.version, world="builtin",
                          model=model, checkpoint_fingerprint=f"fp-{model}-{method}",
                          scores=bench.aggregate(rows_to_results(rows)), n_prompts=len(verdicts), n_images=len(rows),
                          seeds={"protocol": "42 + k"}, sampler={"num_inference_steps": 10},
                          perception=perception or {"oracle": "builtin-oracle@2"}, options={"limit": None, "tags": []},
                          method=method, training=training or {}, created="2026-11-29T02:00:00+00:00",
                          comparable_to_published=False, comparability_reasons=["builtin world"])
    attach_statistics(record, folder / "samples.jsonl", bench.aggregate, replicates=replicates)
    record.save(folder / "result.json")
    return folder


def base_verdicts(n_prompts: int = 60, images: int = 4, rate: float = 0.4, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[1.0 if rng.random() < rate else 0.0 for _ in range(images)] for _ in range(n_prompts)]


def improved(verdicts: list[list[float]], flips: int) -> list[list[float]]:
    """The same verdicts with the first ``flips`` failures turned into passes (a known-better model)."""
    out, left = [list(v) for v in verdicts], flips
    for images in out:
        for k, score in enumerate(images):
            if score == 0.0 and left:
                images[k], left = 1.0, left - 1
    return out


def test_mcnemar_exact_hand_computed() -> None:
    # 10 discordant pairs all favouring B: p = 2 * 0.5**10.
    a = [True] * 5 + [False] * 10
    b = [True] * 15
    assert stats.mcnemar_exact(a, b) == (0, 10, pytest.approx(2 * 0.5**10))
    # 3 vs 5 discordant: p = 2 * P[Bin(8, 1/2) <= 3] = 2 * (1 + 8 + 28 + 56) / 256.
    a = [True] * 3 + [False] * 5
    b = [False] * 3 + [True] * 5
    assert stats.mcnemar_exact(a, b)[2] == pytest.approx(2 * 93 / 256)
    assert stats.mcnemar_exact([True, False], [True, False]) == (0, 0, 1.0)


def test_identical_runs_show_no_difference(tmp_path: Path) -> None:
    verdicts = base_verdicts()
    a = make_run(tmp_path / "a", verdicts)
    b = make_run(tmp_path / "b", verdicts)
    result = compare(a, b, replicates=200)
    assert result.p == 1.0 and result.overall.delta == 0.0 and result.overall.interval == (0.0, 0.0)
    assert result.verdict.startswith("no significant difference") and result.test == "McNemar"
    assert all(k.delta == 0.0 for k in result.keys)


def test_known_better_model_gets_a_small_p(tmp_path: Path) -> None:
    verdicts = base_verdicts()
    a = make_run(tmp_path / "a", verdicts)
    b = make_run(tmp_path / "b", improved(verdicts, 30), method="d3po")
    result = compare(a, b, replicates=300)
    assert result.statistic == {"a_only_pass": 0, "b_only_pass": 30}
    assert result.p == pytest.approx(2 * 0.5**30)
    assert result.verdict.startswith("B is better than A") and result.significant
    assert result.overall.delta > 0 and result.overall.interval[0] > 0  # the paired interval excludes zero
    # Reversed, the same evidence says worse.
    assert compare(b, a, replicates=50).verdict.startswith("B is worse than A")
    # Per-tag deltas sum to six times the overall delta (overall = mean of the six tag accuracies).
    tags = [k for k in result.keys if k.key != "overall"]
    assert sum(k.delta for k in tags) == pytest.approx(6 * result.overall.delta)


def test_small_difference_is_not_significant(tmp_path: Path) -> None:
    verdicts = base_verdicts()
    a = make_run(tmp_path / "a", verdicts)
    b = make_run(tmp_path / "b", improved(verdicts, 2))
    result = compare(a, b, replicates=200)
    assert result.p == pytest.approx(0.5) and result.verdict.startswith("no significant difference")
    assert result.overall.interval[0] <= 0 <= result.overall.interval[1] or result.overall.interval[0] >= 0


def test_continuous_scores_use_wilcoxon(tmp_path: Path) -> None:
    rng = random.Random(1)
    verdicts = [[round(rng.random(), 3) for _ in range(3)] for _ in range(40)]
    better = [[min(1.0, s + 0.1) for s in images] for images in verdicts]
    a = make_run(tmp_path / "a", verdicts, benchmark="t2i-compbench")
    b = make_run(tmp_path / "b", better, benchmark="t2i-compbench")
    result = compare(a, b, replicates=100)
    assert result.test == "Wilcoxon" and result.p < 1e-6 and result.verdict.startswith("B is better")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"seed_offset": 100}, "different seeds"),
        ({"prompt_prefix": "a picture of"}, "different prompts"),
        ({"version": "0.9"}, "different benchmark version"),
        ({"perception": {"oracle": "builtin-oracle@1"}}, "different scorer (oracle: builtin-oracle@2 vs builtin"),
        ({"benchmark": "t2i-compbench"}, "different benchmark"),
    ],
)
def test_unfair_pairs_are_refused_with_the_reason(tmp_path: Path, change: dict, reason: str) -> None:
    verdicts = base_verdicts(n_prompts=12)
    a = make_run(tmp_path / "a", verdicts)
    b = make_run(tmp_path / "b", verdicts, **change)
    with pytest.raises(HarnessError, match=r"^not comparable: ") as caught:
        compare(a, b, replicates=10)
    assert reason in str(caught.value)


def test_edited_samples_are_caught(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", base_verdicts(n_prompts=6))
    samples = a / "samples.jsonl"
    samples.write_text(samples.read_text().replace('"score": 0.0', '"score": 1.0', 1))
    with pytest.raises(DataError, match="does not match the sha256"):
        load_evaluated(a)


def test_cli_prints_the_verdict(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    verdicts = base_verdicts()
    a = make_run(tmp_path / "a", verdicts)
    b = make_run(tmp_path / "b", improved(verdicts, 30))
    out = CliRunner().invoke(app, ["compare", str(a), str(b), "--replicates", "50"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "B is better than A" in out.output and "McNemar p = 1.86e-09" in out.output


def test_bootstrap_without_prompt_copies_matches_the_copying_one() -> None:
    """GenEval's and T2I-CompBench's aggregations read tags and scores only, so the bootstrap skips the fresh
    prompt indices of repeat draws: the draws must be exactly those of the copying path."""
    for name in ("geneval", "t2i-compbench"):
        bench = get_benchmark(name)
        assert not bench.aggregate_reads_prompts and not stats.reads_prompts(bench.aggregate)
        assert stats.reads_prompts(lambda results: {}) is True
        rows = [{"prompt_index": p, "image_index": k, "prompt": f"p{p}", "tag": TAGS[p % len(TAGS)],
                 "seed": k, "score": float((p * 7 + k * 3) % 5 < 2)} for p in range(40) for k in range(3)]
        results = rows_to_results(rows)
        fast = stats.resample([bench.aggregate], [results], replicates=50)[0]
        slow = stats.resample([lambda rs, b=bench: b.aggregate(rs)], [results], replicates=50)[0]  # not a bound method
        assert fast.point == slow.point
        assert all(np.array_equal(fast.draws[k], slow.draws[k], equal_nan=True) for k in slow.draws)


def test_tag_means_draws_are_bit_for_bit_the_aggregations_own() -> None:
    """The numpy draws of a TAG_MEANS benchmark equal a call of its aggregate per replicate, bit for bit: continuous
    scores (summed in draw order), uneven image counts, a NaN score; and a false declaration falls back."""
    bench = get_benchmark("t2i-compbench")
    assert bench.aggregate_form == "tag-means" and get_benchmark("geneval").aggregate_form == "tag-means"
    rng = random.Random(3)
    call_each = [lambda rs: bench.aggregate(rs)]  # not a bound method: aggregate is called on every resample
    for images in (lambda p: 1 + p % 3, lambda p: 3):  # uneven image counts, then as many for every prompt
        rows = [{"prompt_index": p, "image_index": k, "prompt": f"p{p}", "tag": TAGS[p % 4], "seed": k,
                 "score": rng.random() / 3} for p in range(30) for k in range(images(p))]
        rows[7]["score"] = math.nan  # a tag whose every draw holding that prompt is NaN, as np.mean makes it
        results = rows_to_results(rows)
        for sets in ([results], [results, rows_to_results([{**r, "score": r["score"] * 0.9} for r in rows])]):
            fast = stats.resample([bench.aggregate] * len(sets), sets, replicates=40)
            slow = stats.resample(call_each * len(sets), sets, replicates=40)
            for f, s in zip(fast, slow):
                assert np.array_equal([f.point[k] for k in s.point], list(s.point.values()), equal_nan=True)
                assert all(np.array_equal(f.draws[k], s.draws[k], equal_nan=True) for k in s.draws)

    class Weighted(type(bench)):  # declares tag means but weighs the tags: the guard must refuse the fast form
        def aggregate(self, results):  # type: ignore[no-untyped-def]
            scores = super().aggregate(results)
            return {**scores, "overall": scores["overall"] * 0.5}

    weighted = Weighted()
    clean = rows_to_results([r for r in rows if not math.isnan(r["score"])])  # the last layout, without the NaN
    fast = stats.resample([weighted.aggregate], [clean], replicates=20)[0]
    slow = stats.resample([lambda rs: weighted.aggregate(rs)], [clean], replicates=20)[0]
    assert np.array_equal(fast.draws["overall"], slow.draws["overall"])
