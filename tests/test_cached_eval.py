"""What a repeated ``harness eval`` skips, and the generation engine's speed switches.

A cached re-run loads no model, decodes no image whose verdict is cached and copies the bootstrap of the identical
samples file it wrote before; the batch size is chosen automatically unless given; the writer thread writes exactly
what writing in the sampling thread writes, and its errors reach the caller with nothing half-written.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from dataclasses import asdict, fields, replace
from pathlib import Path

import pytest
from PIL import Image

from harness import api, checkpoints, records, stats
from harness.api import EvalSettings, evaluate, resolve_lazily
from harness.builtin.model import PIPELINE_CLASS, BuiltinPolicy
from harness.cli import run
from harness.errors import CheckpointError
from harness.generation import GenerationRequest, auto_batch_size, generate
from harness.policy import LazyPolicy, PolicyHeader
from harness.records import ResultRecord
from harness.sampling import SamplerConfig
from harness.store import ImageStore

SAMPLER = SamplerConfig(num_inference_steps=2, guidance_scale=2.0)
REQUESTS = [GenerationRequest(f"a photo of {n} rings", seed) for seed, n in enumerate(["two", "four"] * 5)]


def refuse(what: str) -> object:
    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a cached re-run must not call {what}")

    return refused


def test_cached_rerun_loads_no_model_decodes_nothing_and_reuses_the_bootstrap(
        builtin_random_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = EvalSettings(limit=3)
    (first,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=settings, progress=False)
    auto = auto_batch_size(BuiltinPolicy.load(builtin_random_ckpt), SamplerConfig())
    assert first.environment["generation"] == {"batch_size": auto, "batch_size_setting": "auto", "generated": 12,
                                               "cached": 0}  # on the CPU it scores after generation

    monkeypatch.setattr(checkpoints, "resolve_checkpoint", refuse("resolve_checkpoint (a model load)"))
    monkeypatch.setattr(stats, "resample", refuse("the bootstrap"))
    monkeypatch.setattr(ImageStore, "load", refuse("ImageStore.load (an image decode)"))
    (again,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=settings, progress=False)
    assert again.environment["generation"] == {"batch_size": None, "batch_size_setting": "auto", "generated": 0,
                                               "cached": 12}
    assert again.scores == first.scores and again.samples == first.samples
    assert (again.intervals, again.standard_errors, again.bootstrap) == \
        (first.intervals, first.standard_errors, first.bootstrap)


def test_scoring_while_generating_gives_the_same_record_and_scores_on_the_writer_thread(
        builtin_random_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each written batch is scored on the writer thread (ScoreAsWritten), so after generation nothing is left to
    score; the verdicts, scores and intervals are those of scoring after generation."""
    from benchmarks.geneval.benchmark import GenEval

    threads: list[str] = []
    real_score = GenEval.score

    def score(bench: GenEval, samples: list, perception: dict) -> list:
        threads.append(threading.current_thread().name)
        return real_score(bench, samples, perception)

    monkeypatch.setattr(GenEval, "score", score)
    ckpt = str(builtin_random_ckpt)
    settings = EvalSettings(limit=5, batch_size=8, score_while_generating=True)  # 20 images: 3 batches, one short
    (overlapped,) = evaluate(ckpt, ["geneval"], out=tmp_path / "overlapped", settings=settings, progress=False)
    assert len(threads) == 3 and all(name.startswith("harness-writer") for name in threads)
    assert overlapped.environment["generation"]["scored_while_generating"] == 20
    threads.clear()
    (after,) = evaluate(ckpt, ["geneval"], out=tmp_path / "after", progress=False,  # in this process, not a pool
                        settings=replace(settings, score_while_generating=False, scoring_processes=1))
    assert threads == [threading.current_thread().name]  # one chunk, after generation, on this thread
    assert "scored_while_generating" not in after.environment["generation"]
    def verdicts(store: str) -> list[dict]:  # the per-image rows but for the image path, which names the store
        (path,) = (tmp_path / store / "runs").glob("*/samples.jsonl")
        return [{k: v for k, v in row.items() if k != "image"} for row in records.read_sample_rows(path)]

    assert verdicts("after") == verdicts("overlapped") and len(verdicts("after")) == 20
    assert after.scores == overlapped.scores and after.intervals == overlapped.intervals


def test_scoring_while_generating_is_for_accelerators_unless_set() -> None:
    """On the CPU the denoiser already fills the cores (measured: the same wall time either way), so by default only
    a model sampling on an accelerator scores while generating; either choice can be forced."""
    from harness.numerics import Numerics

    assert not api.scores_while_generating(EvalSettings(numerics=Numerics(device="cpu")))
    assert api.scores_while_generating(EvalSettings(numerics=Numerics(device="cuda:0")))
    assert api.scores_while_generating(EvalSettings(numerics=Numerics(device="cpu"), score_while_generating=True))
    assert not api.scores_while_generating(EvalSettings(numerics=Numerics(device="cuda:0"),
                                                        score_while_generating=False))


def test_a_failure_while_scoring_during_generation_falls_back_to_scoring_after_it(
        builtin_random_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Scoring on the writer thread is an optimisation: if it fails, every image is still written and scored."""
    calls = []

    def broken(self: api.ScoreAsWritten, indices: list[int], images: list) -> None:
        calls.append(indices)
        raise RuntimeError("scorer exploded")

    monkeypatch.setattr(api.ScoreAsWritten, "__call__", broken)
    settings = EvalSettings(limit=5, batch_size=8, score_while_generating=True)
    (record,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=settings, progress=False)
    assert len(calls) == 1  # not called again after the failure
    assert record.environment["generation"]["generated"] == 20 and record.n_images == 20
    assert "scored_while_generating" not in record.environment["generation"]
    assert record.samples["rows"] == 20
    assert "scoring while generating stopped (RuntimeError: scorer exploded)" in caplog.text


def test_a_missing_image_loads_the_model_and_is_scored(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    settings = EvalSettings(limit=2, batch_size=4)
    (first,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=settings, progress=False)
    (run_dir,) = (tmp_path / "runs").iterdir()
    removed = Path(records.read_sample_rows(run_dir / "samples.jsonl")[5]["image"])
    original = removed.read_bytes()
    removed.unlink()
    (again,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=settings, progress=False)
    assert again.environment["generation"] == {"batch_size": 4, "batch_size_setting": 4, "generated": 1,
                                               "cached": 7}
    assert removed.read_bytes() == original  # sampled again in its whole batch of 4: the same bits
    assert again.scores == first.scores and again.samples == first.samples


def test_lazy_header_is_what_the_loaded_model_says(builtin_random_ckpt: Path) -> None:
    for spec in ("builtin:shapes", str(builtin_random_ckpt)):
        lazy = resolve_lazily(spec)
        assert isinstance(lazy, LazyPolicy) and not lazy.loaded
        eager = checkpoints.resolve_checkpoint(spec)
        for f in fields(PolicyHeader):
            assert getattr(lazy, f.name) == getattr(eager, f.name), f.name
        assert lazy.latent_shape(48, 48) == eager.latent_shape(48, 48) and lazy.loaded  # first use loads it
        assert type(lazy.policy()) is BuiltinPolicy and lazy.base == eager.base


def test_lazy_constants_match_the_modules_that_own_them() -> None:
    assert (api.BUILTIN_PREFIX, api.BUILTIN_DIR, api.BUILTIN_PIPELINE) == \
        (checkpoints.BUILTIN_PREFIX, checkpoints.BUILTIN_DIR, PIPELINE_CLASS)


def test_other_checkpoints_resolve_eagerly_and_errors_stay_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="unknown builtin model"):
        resolve_lazily("builtin:nope")
    (tmp_path / "model_index.json").write_text("{")  # unreadable: the eager path says what is wrong
    with pytest.raises(CheckpointError):
        resolve_lazily(str(tmp_path))


def test_a_header_that_disagrees_with_the_weights_fails_on_load(builtin_random_ckpt: Path) -> None:
    header = replace(resolve_lazily(str(builtin_random_ckpt))._header, fingerprint="0" * 32)
    lazy = LazyPolicy(header, lambda: checkpoints.resolve_checkpoint(str(builtin_random_ckpt)))
    assert lazy.fingerprint == "0" * 32
    with pytest.raises(CheckpointError, match=r"disagree.*fingerprint"):
        _ = lazy.unet


def test_bootstrap_is_redrawn_unless_the_previous_record_matches(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.registry import get_benchmark

    bench = get_benchmark("geneval")
    rows = [{"prompt_index": p, "image_index": 0, "prompt": f"p{p}", "tag": "single_object" if p % 2 else "colors",
             "seed": p, "image": "x.png", "score": float(p % 3 == 0), "details": {}} for p in range(8)]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(f"{json.dumps(r)}\n" for r in rows))
    results = records.rows_to_results(records.read_sample_rows(samples))

    def fresh() -> ResultRecord:
        return ResultRecord("geneval", bench.version, "builtin", "m", "f", bench.aggregate(results), 8, 8, {}, {},
                            {}, environment={"git_commit": "abc"})

    first = fresh()
    records.attach_statistics(first, samples, bench.aggregate, replicates=50)
    calls: list[int] = []
    real = stats.resample
    monkeypatch.setattr(stats, "resample", lambda *a, **k: calls.append(1) or real(*a, **k))
    same = fresh()
    records.attach_statistics(same, samples, bench.aggregate, replicates=50, previous=first)
    assert not calls and same.intervals == first.intervals
    for changed in ({"environment": {"git_commit": "def"}}, {"bootstrap": {**first.bootstrap, "seed": 1}},
                    {"samples": {**first.samples, "sha256": "0" * 64}}, {"scores": {**first.scores, "overall": 0.5}}):
        other = fresh()
        records.attach_statistics(other, samples, bench.aggregate, replicates=50,
                                  previous=replace(first, **changed))
        assert other.intervals == first.intervals  # redrawn, and the seeded draw is the same
    assert len(calls) == 4
    records.attach_statistics(fresh(), samples, bench.aggregate, replicates=60, previous=first)
    assert len(calls) == 5  # other settings: redrawn


def test_batch_size_is_automatic_unless_given(policy: BuiltinPolicy, tmp_path: Path) -> None:
    auto = generate(policy, REQUESTS, SAMPLER, ImageStore(tmp_path / "auto"), progress=False)
    assert auto.batch_size == auto_batch_size(policy, SAMPLER) == 64
    given = generate(policy, REQUESTS, SAMPLER, ImageStore(tmp_path / "given"), batch_size=3, progress=False)
    assert given.batch_size == 3 and given.keys == auto.keys
    assert generate(policy, REQUESTS, SAMPLER, ImageStore(tmp_path / "given"), progress=False).batch_size is None


@pytest.mark.parametrize(("value", "message"), [
    ("x", "error: --batch-size 'x': expected auto or a whole number >= 1"),
    ("0", "error: --batch-size 0: batch_size must be a whole number >= 1"),
    ("2.5", "error: --batch-size '2.5': expected auto or a whole number >= 1"),
])
def test_bad_batch_size_is_one_line(value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["harness", "eval", "--batch-size", value, "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exited:
        run()
    assert exited.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [message]
    assert not (tmp_path / "out").exists()


def index_rows(root: Path) -> list[tuple]:
    with sqlite3.connect(root / "index.sqlite") as db:
        return sorted(db.execute("SELECT key, checkpoint, prompt, seed, sampler FROM images"))


def test_writer_thread_writes_what_the_sampling_thread_writes(policy: BuiltinPolicy, tmp_path: Path) -> None:
    threaded, inline = tmp_path / "threaded", tmp_path / "inline"
    generate(policy, REQUESTS, SAMPLER, ImageStore(threaded), batch_size=4, progress=False)
    generate(policy, REQUESTS, SAMPLER, ImageStore(inline), batch_size=4, progress=False, writer_depth=0)
    a = {p.name: p.read_bytes() for p in (threaded / "images").rglob("*.png")}
    b = {p.name: p.read_bytes() for p in (inline / "images").rglob("*.png")}
    assert len(a) == len(REQUESTS) and a == b
    assert index_rows(threaded) == index_rows(inline) and len(index_rows(inline)) == len(REQUESTS)


@pytest.mark.parametrize("depth", [2, 0])
def test_writer_error_reaches_the_caller_and_leaves_only_whole_files(
        policy: BuiltinPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, depth: int) -> None:
    import harness.store
    from harness.generation import BatchWriter

    real_replace, renames = harness.store.os.replace, []
    real_submit, third_batch_queued = BatchWriter.submit, threading.Event()

    def submit(writer: BatchWriter, *args: object) -> None:
        real_submit(writer, *args)
        if len(writer.pending) == 2:  # the failing batch is still being written and the next one waits behind it
            third_batch_queued.set()

    def disk_full_on_the_sixth(src: str, dst: str) -> None:
        renames.append(dst)
        if len(renames) == 6:
            if depth:  # fail only once the next batch is queued: it must be dropped, not written
                assert third_batch_queued.wait(timeout=60)
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(BatchWriter, "submit", submit)
    monkeypatch.setattr(harness.store.os, "replace", disk_full_on_the_sixth)
    store = ImageStore(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        generate(policy, REQUESTS, SAMPLER, store, batch_size=4, progress=False, writer_depth=depth)
    monkeypatch.undo()
    assert not list(tmp_path.rglob("*.tmp"))  # the failed write's temporary file is gone
    written = sorted((tmp_path / "images").rglob("*.png"))
    assert len(written) == 5
    for path in written:  # every file there is whole
        with Image.open(path) as image:
            image.load()
    assert {row[0] for row in index_rows(tmp_path)} <= {p.stem for p in written}  # no row without its image
    resumed = generate(policy, REQUESTS, SAMPLER, store, batch_size=4, progress=False)
    assert (resumed.cached, resumed.generated) == (5, 5)  # the unfinished batches are sampled again, whole


def test_records_keep_the_generation_settings_out_of_the_sampler(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    """The sampler dict is part of image keys (the viewer recomputes them) and of leaderboard identity: the batch
    size, which does not change an image's content key, is recorded beside it, under environment.generation."""
    (record,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=EvalSettings(limit=1),
                         progress=False)
    assert "batch_size" not in record.sampler and set(asdict(SamplerConfig())) == set(record.sampler)
