"""Protocol fixes: official sampler defaults, schedulers by name, numeracy rule versions, the 3D matching loop,
hash checks of local data files and the comparability label (see also ``test_protocol_mmdet.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.registry import BUILTIN_NOT_COMPARABLE, get_benchmark, sampler_deviations
from benchmarks.t2i_compbench.parsing import Parsed, Token
from benchmarks.t2i_compbench.rules import CompBenchOptions, Detection, match_3d_objects, numeracy_objects
from harness.api import EvalSettings, evaluate
from harness.builtin.model import BuiltinPolicy
from harness.data import DataFile, fetch, git_blob_sha1
from harness.errors import DataError, HarnessError
from harness.records import SCHEMA_VERSION, UNKNOWN_COMPARABILITY, ResultRecord
from harness.sampling import SamplerConfig, make_scheduler, sample
from harness.store import image_key
from tests.conftest import official_data

# --- official sampler defaults --------------------------------------------------------------------------------------


def test_official_sampler_defaults_per_benchmark() -> None:
    geneval, t2i, dpg = (get_benchmark(n) for n in ("geneval", "t2i-compbench", "dpg-bench"))
    # GenEval's diffusers_generate.py: the pipeline's own scheduler, 50 steps, guidance 9.
    assert geneval.generation_defaults("real") == {"num_inference_steps": 50, "guidance_scale": 9.0,
                                                   "scheduler": "pipeline"}
    # T2I-CompBench's inference_eval.py: DDIM, 30 steps, the pipeline's default guidance 7.5.
    assert t2i.generation_defaults("real") == {"num_inference_steps": 30, "guidance_scale": 7.5, "scheduler": "ddim",
                                               "eta": 0.0}
    # DPG-Bench names none: our pick is used, and no sampler can deviate from an official one.
    assert dpg.official_generation("real") == {}
    assert dpg.generation_defaults("real") == {"num_inference_steps": 50, "guidance_scale": 7.5,
                                               "scheduler": "pipeline"}
    for bench in (geneval, t2i, dpg):  # the builtin model keeps its own sampler
        assert bench.generation_defaults("builtin") == {}


def test_cli_help_names_the_benchmark_default() -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "--scheduler" in text and "(default: the model's" not in text
    assert text.count("the benchmark's official default, else the model's") == 3


# --- schedulers by name ---------------------------------------------------------------------------------------------

STEPS = SamplerConfig(num_inference_steps=3, guidance_scale=2.0)


@pytest.fixture(scope="module")
def sd_policy(tmp_path_factory: pytest.TempPathFactory) -> object:
    from harness.checkpoints import resolve_checkpoint
    from tests.tiny_pipelines import save, tiny_sd_pipeline

    tmp = tmp_path_factory.mktemp("sd")
    return resolve_checkpoint(str(save(tiny_sd_pipeline(tmp / "tok"), tmp / "sd")))


def test_pipeline_scheduler_is_the_checkpoints_own_and_leaves_ddim_alone(sd_policy: object) -> None:
    policy = sd_policy
    ddim_config = dict(policy.scheduler.config)
    before = sample(policy, ["a cat"], [1], STEPS)
    pipeline = SamplerConfig(num_inference_steps=3, guidance_scale=2.0, scheduler="pipeline")
    assert pipeline.resolved(policy).scheduler == "pipeline:PNDMScheduler"
    built = make_scheduler(policy, pipeline.resolved(policy))
    assert type(built).__name__ == "PNDMScheduler" and built is not policy.native_scheduler
    assert built.config.prediction_type == policy.native_scheduler.config.prediction_type
    with_pndm = sample(policy, ["a cat"], [1], pipeline)
    euler = sample(policy, ["a cat"], [1], SamplerConfig(num_inference_steps=3, guidance_scale=2.0,
                                                         scheduler="euler"))
    after = sample(policy, ["a cat"], [1], STEPS)
    assert torch.equal(before, after)  # no state of the other schedulers leaked into the policy's DDIM
    assert dict(policy.scheduler.config) == ddim_config and type(policy.scheduler).__name__ == "DDIMScheduler"
    assert not torch.equal(before, with_pndm) and not torch.equal(with_pndm, euler)
    # The scheduler is part of the image cache key.
    keys = {image_key(policy.fingerprint, "a cat", 1, c.resolved(policy).to_dict())
            for c in (STEPS, pipeline, SamplerConfig(num_inference_steps=3, guidance_scale=2.0, scheduler="euler"))}
    assert len(keys) == 3


def test_scheduler_names_and_eta_are_checked(sd_policy: object) -> None:
    with pytest.raises(HarnessError, match=r"unknown scheduler 'fancy'; choose one of pipeline, ddim, pndm, euler"):
        make_scheduler(sd_policy, SamplerConfig(scheduler="fancy"))
    with pytest.raises(HarnessError, match=r"eta=0.5 needs a DDIM-like scheduler; EulerDiscreteScheduler"):
        make_scheduler(sd_policy, SamplerConfig(scheduler="euler", eta=0.5))
    with pytest.raises(HarnessError, match="PNDMScheduler"):
        make_scheduler(sd_policy, SamplerConfig(scheduler="pipeline", eta=0.5).resolved(sd_policy))
    assert type(make_scheduler(sd_policy, SamplerConfig(scheduler="UniPCMultistepScheduler"))).__name__ \
        == "UniPCMultistepScheduler"
    assert make_scheduler(sd_policy, SamplerConfig(eta=0.5)) is sd_policy.scheduler

    class FlowPolicy:  # a flow-matching model (SD3) has no DDIM to fall back on: say so rather than mislabel
        from diffusers import FlowMatchEulerDiscreteScheduler

        name, scheduler = "flow", FlowMatchEulerDiscreteScheduler()

    with pytest.raises(HarnessError, match="flow samples with FlowMatchEulerDiscreteScheduler, which has no DDIM"):
        make_scheduler(FlowPolicy(), SamplerConfig())


def test_builtin_model_keeps_ddim_and_takes_a_named_scheduler(builtin_random_ckpt: Path, tmp_path: Path) -> None:
    policy = BuiltinPolicy.load(builtin_random_ckpt)
    default = SamplerConfig.for_policy(policy)
    assert default.scheduler == "ddim"
    assert SamplerConfig(scheduler="pipeline").resolved(policy).scheduler == "pipeline:DDIMScheduler"
    ddim = sample(policy, ["a photo of a star"], [3], default)
    euler = sample(policy, ["a photo of a star"], [3], SamplerConfig.for_policy(policy, scheduler="euler_ancestral"))
    assert euler.shape == ddim.shape and not torch.equal(euler, ddim)
    assert torch.equal(ddim, sample(policy, ["a photo of a star"], [3], default))
    (record,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path,
                         settings=EvalSettings(limit=1, scheduler="euler"), progress=False)
    assert record.sampler["scheduler"] == "euler" and record.n_images == 4
    with pytest.raises(HarnessError, match="unknown scheduler"):
        evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=EvalSettings(scheduler="nope"))


# --- T2I-CompBench numeracy rule versions and the 3D matching loop -------------------------------------------------

SINGULAR, PLURAL = ("fish", "sheep", "teddy bear", "cat"), ("fish", "sheep", "teddy bears", "cats")


def tokens(text: str) -> Parsed:
    return Parsed(tuple(Token(w, "X") for w in text.split()), ())


@pytest.mark.parametrize(
    ("text", "before", "current"),
    [
        ("three fish", (["fish"], [1]), (["fish"], [3])),  # plural == singular: once before f49c30e
        ("six sheep and two cats", (["sheep", "cat"], [1, 2]), (["sheep", "cat"], [6, 2])),
        ("a fish", (["fish"], [1]), (["fish"], [1])),
        ("two teddy bears", (["teddy bear"], [2]), (["teddy bear"], [2])),
        ("one cats", (["cat"], [1]), (["cat"], [1])),  # "one" before a plural: word2number(one) either way
    ],
)
def test_numeracy_rule_versions(text: str, before: tuple, current: tuple) -> None:
    assert numeracy_objects(tokens(text), SINGULAR, PLURAL, rule="before_f49c30e") == before
    assert numeracy_objects(tokens(text), SINGULAR, PLURAL, rule="current") == current
    assert numeracy_objects(tokens(text), SINGULAR, PLURAL) == before  # the default is the published rule


def test_numeracy_rule_is_an_option_recorded_and_checked() -> None:
    bench = get_benchmark("t2i-compbench", options={"numeracy_rule": "current"})
    assert bench.options.numeracy_rule == "current" and CompBenchOptions().numeracy_rule == "before_f49c30e"
    with pytest.raises(HarnessError, match=r"--option numeracy_rule=newest: numeracy_rule must be one of"):
        get_benchmark("t2i-compbench", options={"numeracy_rule": "newest"})
    reasons = bench.comparability("real", {}, {}, ["numeracy"])
    assert any("numeracy_rule=current" in r for r in reasons)


def test_36_numeracy_val_prompts_parse_differently_under_the_two_rules() -> None:
    """The count in the spec's section 7; the rule reads token texts only, so spaCy's tokenizer is enough."""
    spacy = pytest.importorskip("spacy")
    from benchmarks.t2i_compbench.prompts import read_prompts, real_vocabulary, val_file

    data = official_data("t2i-compbench/dataset/numeracy_val.txt", "t2i-compbench/dataset/new_objects.txt")
    vocabulary = real_vocabulary(data)
    nlp = spacy.blank("en")
    prompts = read_prompts(fetch(val_file("numeracy", CompBenchOptions()), data))
    parsed = [Parsed(tuple(Token(t.text, "X", t.whitespace_) for t in nlp(p)), ()) for p in prompts]
    changed = sum(numeracy_objects(p, vocabulary.singular, vocabulary.plural, rule="before_f49c30e")
                  != numeracy_objects(p, vocabulary.singular, vocabulary.plural, rule="current") for p in parsed)
    assert (len(prompts), changed) == (300, 36)


def test_3d_matching_overwrites_until_both_objects_are_found() -> None:
    """3D_spatial_eval.py walks the detections and overwrites each object's index on every substring hit until
    both are set."""
    hot, dog, person, dog2 = (Detection("hot dog", 0.9, (0, 0, 4, 4)), Detection("dog", 0.8, (1, 0, 5, 4)),
                              Detection("person", 0.6, (1, 0, 5, 4)), Detection("dog", 0.7, (2, 0, 6, 4)))
    assert match_3d_objects("dog", "person", [hot, dog, person, dog2]) == (dog, person)  # last hit before person
    assert match_3d_objects("dog", "person", [person, hot, dog]) == (hot, person)  # both set at "hot dog": stop
    assert match_3d_objects("dog", "cat", [hot, dog]) == (hot, None)  # one object only: its first hit
    assert match_3d_objects("dog", "person", [hot, dog, person], quirks=False) == (dog, person)  # exact names
    assert match_3d_objects("t d", "person", [hot, person]) == (hot, person)
    assert match_3d_objects("g p", "person", [hot, person]) == (None, person)  # only across two names: unset


# --- local data files are checked like downloads ------------------------------------------------------------------


def test_local_data_file_with_a_wrong_hash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    content = b"official content\n"
    pinned = DataFile("bench", "list.txt", None, sha256=__import__("hashlib").sha256(content).hexdigest())
    blob = DataFile("bench", "blob.txt", None, git_blob_sha1=git_blob_sha1(content))
    (tmp_path / "data" / "bench").mkdir(parents=True)
    for name in ("list.txt", "blob.txt"):
        (tmp_path / "data" / "bench" / name).write_bytes(content)
    assert fetch(pinned, tmp_path / "data").read_bytes() == content and fetch(blob, tmp_path / "data").is_file()
    (tmp_path / "data" / "bench" / "list.txt").write_bytes(b"edited\n")
    with pytest.raises(DataError) as err:
        fetch(pinned, tmp_path / "data")
    message = str(err.value)
    assert "\n" not in message and "list.txt: sha256 is " in message and f"expected {pinned.sha256}" in message
    assert "replace it with the official file" in message
    # The same check for $HARNESS_DATA_DIR and for the cache.
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DataError, match="sha256 is"):
        fetch(pinned)
    monkeypatch.delenv("HARNESS_DATA_DIR")
    (tmp_path / "cache" / "data" / "bench").mkdir(parents=True)
    (tmp_path / "cache" / "data" / "bench" / "blob.txt").write_bytes(b"stale\n")
    with pytest.raises(DataError, match=f"git blob hash is {git_blob_sha1(b'stale' + bytes([10]))}, expected"):
        fetch(blob)


def test_dpg_prompt_files_are_pinned(tmp_path: Path) -> None:
    from benchmarks.dpg_bench.prompts import official_prompt, prompt_blobs, prompt_file

    blobs = prompt_blobs()
    assert len(blobs) == 1065 and prompt_file("partiprompts97").git_blob_sha1 == blobs["partiprompts97.txt"]
    folder = tmp_path / "dpg-bench" / "prompts"
    folder.mkdir(parents=True)
    (folder / "partiprompts97.txt").write_text("An edited prompt.")
    with pytest.raises(DataError, match=r"partiprompts97.txt: git blob hash is [0-9a-f]{40}, expected "
                                        + blobs["partiprompts97.txt"]):
        official_prompt("partiprompts97", tmp_path)


def test_the_official_dpg_prompt_files_match_their_pins() -> None:
    from benchmarks.dpg_bench.prompts import prompt_blobs

    data = official_data("dpg-bench/prompts")
    files = {p.name: git_blob_sha1(p.read_bytes()) for p in (data / "dpg-bench" / "prompts").iterdir()}
    assert files == prompt_blobs()


# --- the comparability label ---------------------------------------------------------------------------------------


def test_real_world_reasons_per_benchmark() -> None:
    class Backend:
        name, version = "stand-in", "0"

    geneval, t2i, dpg = (get_benchmark(n) for n in ("geneval", "t2i-compbench", "dpg-bench"))
    official_sampler = {"num_inference_steps": 50, "guidance_scale": 9.0, "scheduler": "pipeline:PNDMScheduler"}
    reasons = geneval.comparability("real", official_sampler, {"detector": Backend()}, ["counting"])
    assert len(reasons) == 1 and reasons[0].startswith("detector: 0 is not GenEval's official mmdet checkpoint")
    ours = {"num_inference_steps": 20, "guidance_scale": 3.0, "scheduler": "ddim", "eta": 0.0}
    assert sampler_deviations(t2i.official_generation("real"), ours) == [
        "sampler: num_inference_steps=20, the official generation uses 30",
        "sampler: guidance_scale=3.0, the official generation uses 7.5"]
    reasons = t2i.comparability("real", ours, {"detector": Backend()}, ["color", "spatial"])
    assert any("stands in for UniDet in spatial" in r for r in reasons) and len(reasons) == 3
    assert t2i.comparability("real", {}, {"vqa": Backend()}, ["color"]) == []  # BLIP and official rules: comparable
    (reason,) = dpg.comparability("real", {"num_inference_steps": 7}, {}, [])
    assert reason.startswith("VQA model: Salesforce/blip-vqa-capfilt-large instead of the official mPLUG-large")
    assert get_benchmark("geneval").comparability("builtin", {}, {}, []) == [BUILTIN_NOT_COMPARABLE]


def test_record_and_printed_table_carry_the_label(builtin_random_ckpt: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import _print_record

    (record,) = evaluate(str(builtin_random_ckpt), ["geneval"], out=tmp_path, settings=EvalSettings(limit=1),
                         progress=False)
    assert record.comparable_to_published is False and record.comparability_reasons == [BUILTIN_NOT_COMPARABLE]
    saved = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())
    assert saved["schema_version"] == SCHEMA_VERSION == 3 and saved["comparable_to_published"] is False
    _print_record(record)
    printed = capsys.readouterr().out
    assert "comparable to published tables: NO" in printed and "not comparable: builtin world" in printed
    assert f"geneval v{record.benchmark_version} - {builtin_random_ckpt} (1 prompts, 4 images)" in printed
    # A version-1 record (before the label) reads as unknown, never as comparable.
    old = {k: v for k, v in saved.items() if k not in ("comparable_to_published", "comparability_reasons")}
    (tmp_path / "v1.json").write_text(json.dumps({**old, "schema_version": 1}))
    loaded = ResultRecord.load(tmp_path / "v1.json")
    assert loaded.comparable_to_published is None and loaded.comparability_reasons == [UNKNOWN_COMPARABILITY]
    _print_record(loaded)
    assert "comparable to published tables: unknown" in capsys.readouterr().out
    (tmp_path / "v9.json").write_text(json.dumps({**saved, "schema_version": 9}))
    with pytest.raises(DataError, match="schema_version 9"):
        ResultRecord.load(tmp_path / "v9.json")
