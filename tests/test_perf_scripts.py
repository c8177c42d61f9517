"""The perf scripts' logic at toy sizes: the forward timer, the results lines, the table, FLOP counting, the equal
batch of the training comparison, the GPU switches' refusals on a machine without one, the real-size SDXL UNet's
architecture (on the meta device) and its denoising loop (on the tests' tiny SDXL UNet), the operator profile's
categories, and tiny measurements end to end."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks.perf.common import (
    ResultsFile,
    conv_peak_flops,
    device_peak,
    forward_timer,
    matmul_peak_flops,
    table,
)
from benchmarks.perf.training_speed import OFFLINE, ONLINE, method_settings
from harness.scoring_pool import usable_cores


class Sleepy(nn.Module):
    def __init__(self, seconds: float, inner: nn.Module | None = None) -> None:
        super().__init__()
        self.seconds, self.inner = seconds, inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x if self.inner is None else self.inner(x)


def test_forward_timer_counts_outermost_calls_once_and_restores_forward() -> None:
    inner = Sleepy(0.02)
    outer = Sleepy(0.03, inner)
    with forward_timer({"outer": outer, "inner": inner}) as spent:
        outer(torch.zeros(1))  # 0.05 s, all of it charged to the outer call
        inner(torch.zeros(1))  # 0.02 s on its own
    assert 0.05 <= spent["outer"] < 0.5
    assert 0.02 <= spent["inner"] < 0.5
    assert spent["outer"] + spent["inner"] < 0.05 + 0.02 + 0.5  # the nested 0.02 s was not counted twice
    assert "forward" not in outer.__dict__ and "forward" not in inner.__dict__
    with forward_timer({"outer": outer}) as again:
        pass
    outer(torch.zeros(1))
    assert again["outer"] == 0.0  # outside the block nothing is timed


def test_results_lines_carry_the_environment(tmp_path: Path) -> None:
    results = ResultsFile("demo", tmp_path)
    results.add(model="m", images_per_s=2.5)
    results.add(model="n", images_per_s=3.0)
    path = results.write()
    results.write()  # appends: a second run's lines go after the first's
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert path == tmp_path / "demo.jsonl" and len(lines) == 4
    for line in lines:
        assert line["machine"] and line["date"] and "git_commit" in line
        assert "torch" in line["environment"]["packages"] or line["environment"]["python"]
    assert [line["model"] for line in lines] == ["m", "n", "m", "n"]


def test_table_aligns_and_rounds() -> None:
    text = table([{"a": "x", "b": 1.23456}, {"a": "longer", "b": None}], ["a", "b"])
    assert text.splitlines() == ["     a     b", "     x  1.23", "longer      "]


def test_flop_counter_and_peak_agree_with_hand_counts() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    layer = nn.Linear(64, 32, bias=False)
    counter = FlopCounterMode(display=False)
    with counter:
        layer(torch.zeros(8, 64))
    assert counter.get_total_flops() == 2 * 8 * 64 * 32  # multiply-adds of an [8, 64] x [64, 32] product
    assert matmul_peak_flops(size=128, repeats=1) > 1e6


def test_results_lines_name_numpys_blas_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each line says which kernel set numpy's BLAS runs and the core type the environment forces (the oracle's
    speed depends on both)."""
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    blas = ResultsFile("probe", tmp_path).environment["numpy_blas"]
    assert blas and all(entry["library"] for entry in blas)
    assert all(entry.get("forced_coretype") == "Haswell" for entry in blas if entry["library"] == "openblas")


def test_peaks_keep_the_better_of_two_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sample taken under load lowers neither peak: each is the better of the new sample and the one before."""
    from benchmarks.perf import common

    monkeypatch.setattr(common, "matmul_peak_flops", lambda **_: 2e9)
    monkeypatch.setattr(common, "conv_peak_flops", lambda **_: 5e9)
    assert common.sample_peaks("cpu", torch.float32) == (2e9, 5e9)
    assert common.sample_peaks("cpu", torch.float32, (3e9, 4e9)) == (3e9, 5e9)


def test_conv_peak_counts_the_direct_convolutions_flops() -> None:
    """The convolution peak's FLOPs are the ones torch's own counter gives its 3 x 3 convolution, and the better
    peak is the divisor of the device fraction, so that fraction is never above the matmul one."""
    from torch.utils.flop_counter import FlopCounterMode

    x, weight = torch.zeros(2, 8, 6, 6), torch.zeros(8, 8, 3, 3)
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.conv2d(x, weight, padding=1)
    assert counter.get_total_flops() == 2 * 2 * 8 * 8 * 9 * 6 * 6
    assert conv_peak_flops(shape=(2, 16, 8), repeats=1) > 1e6
    assert device_peak(2e9, 3e9) == {"matmul_peak_gflops": 2.0, "conv_peak_gflops": 3.0, "device_peak_gflops": 3.0}


def test_training_comparison_gives_every_method_the_same_batch() -> None:
    images = 8
    for method in ONLINE:
        values = dict(arg.split("=") for arg in method_settings(method, images)[1::2])
        assert int(values["prompts_per_round"]) * int(values["images_per_prompt"]) == images
        assert values["num_inference_steps"] == "10"
    for method in OFFLINE:
        values = dict(arg.split("=") for arg in method_settings(method, images)[1::2])
        assert int(values["batch_size"]) * int(values["grad_accumulation"]) * (images // 2) == images


def test_training_comparison_chooses_where_the_children_train() -> None:
    from benchmarks.perf.training_speed import child_environment

    env, device = child_environment("cpu")
    assert env["CUDA_VISIBLE_DEVICES"] == "" and device == "cpu"  # no GPU visible: accelerate picks the CPU
    env, device = child_environment("auto")
    assert device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert env.get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
    with pytest.raises(SystemExit, match="--device 'tpu'"):
        child_environment("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            child_environment("cuda")


@pytest.mark.slow
def test_eval_overhead_on_one_prompt(tmp_path: Path) -> None:
    from benchmarks.perf.eval_overhead import run_once
    from harness.scoring_pool import usable_cores

    row = run_once("builtin:shapes", "geneval", 1, tmp_path)
    assert row["images"] == 4 and 0 < row["forward_s"] < row["wall_s"]
    assert row["scoring_processes"] == usable_cores()  # the builtin oracles score in a pool by default
    assert 0 < row["eval_overhead_share"] < 1
    assert row["forward_unet_s"] > row["forward_text_encoder_s"] > 0


@pytest.mark.slow
def test_sampling_speed_on_the_builtin_model(tmp_path: Path) -> None:
    from benchmarks.perf.sampling_speed import ENGINE_BATCHES, measure
    from harness.checkpoints import resolve_checkpoint
    from harness.generation import generation_processes

    results = ResultsFile("sampling_speed", tmp_path)
    rows = measure(["builtin:shapes"], [2], 4, 2, None, results)
    # The forked engine's row is there exactly where harness eval would fork workers on this machine.
    forks = generation_processes(resolve_checkpoint("builtin:shapes"), ENGINE_BATCHES)
    assert [r["what"] for r in rows] == ["sample", "generate", *(["generate-forked"] if forks > 1 else [])]
    assert all(r["gflop_per_image"] > 0 and r["fraction_of_peak"] > 0 for r in rows)
    assert all(0 < r["fraction_of_device_peak"] <= r["fraction_of_peak"] for r in rows)
    assert len(results.rows) == len(rows)


class LatentsOnly:
    """The two things auto_batch_size reads of a policy: its native size and its latent shape."""

    def __init__(self, channels: int, factor: int, size: int) -> None:
        self.channels, self.factor = channels, factor
        self.default_height = self.default_width = size

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (self.channels, height // self.factor, width // self.factor)


def test_auto_batch_size_follows_the_latent_size() -> None:
    from harness.generation import auto_batch_size
    from harness.sampling import SamplerConfig

    sampler = SamplerConfig()
    assert auto_batch_size(LatentsOnly(27, 3, 48), sampler) == 64  # builtin: 6,912 numbers -> 75 -> 64
    assert auto_batch_size(LatentsOnly(4, 8, 512), sampler) == 32  # SD 1.5: 16,384 -> 32
    assert auto_batch_size(LatentsOnly(4, 8, 1024), sampler) == 8  # SDXL: 65,536 -> 8
    assert auto_batch_size(LatentsOnly(4, 8, 4096), sampler) == 1  # larger than the target: one at a time
    assert auto_batch_size(LatentsOnly(4, 2, 16), sampler) == 64  # tiny: capped


def test_store_batch_commits_all_rows_once_even_when_interrupted(tmp_path: Path) -> None:
    import sqlite3

    from PIL import Image

    from harness.store import ImageStore

    store = ImageStore(tmp_path)
    image = Image.new("RGB", (4, 4), (200, 10, 10))

    def rows() -> int:
        with sqlite3.connect(tmp_path / "index.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    with store.batch():
        store.put("k1", image, "ckpt", "p", 1, {})
        store.put("k2", image, "ckpt", "p", 2, {})
        assert rows() == 0 and store.has("k1")  # files first, rows at the end of the batch
    assert rows() == 2
    with pytest.raises(KeyboardInterrupt), store.batch():
        store.put("k3", image, "ckpt", "p", 3, {})
        raise KeyboardInterrupt
    assert rows() == 3 and store.has("k3")  # the written file keeps its row
    store.put("k4", image, "ckpt", "p", 4, {})  # outside a batch: at once
    assert rows() == 4 and not list(tmp_path.rglob("*.tmp"))


def test_sdxl_unet_config_is_the_2_6_billion_parameter_sdxl_base_unet() -> None:
    from benchmarks.perf.sampling_speed import sdxl_unet

    with torch.device("meta"):
        unet = sdxl_unet()
    parameters = sum(p.numel() for p in unet.parameters())
    assert abs(parameters / 2.567e9 - 1) < 0.005  # SDXL base 1.0's UNet: 2,567,463,684 parameters
    assert next(unet.parameters()).device.type == "meta"  # the architecture only: no memory was allocated
    assert unet.config.addition_embed_type == "text_time" and unet.config.cross_attention_dim == 2048


@pytest.mark.slow
def test_sdxl_unet_flops_are_counted_without_running_it() -> None:
    from benchmarks.perf.sampling_speed import SDXL_UNET_CONFIG, denoiser_call_flops

    guided, single = denoiser_call_flops(SDXL_UNET_CONFIG, 2), denoiser_call_flops(SDXL_UNET_CONFIG, 1)
    assert guided == 2 * single  # the CFG batch costs two images' calls, no more
    assert 12e12 < guided < 15e12  # the 13.5 TFLOP per guided call that the GPU command's time budget rests on


def test_denoising_loop_runs_an_sdxl_layout_unet(tmp_path: Path) -> None:
    from benchmarks.perf.sampling_speed import denoise, measure_denoiser
    from tests.tiny_pipelines import tiny_sdxl_pipeline

    unet = tiny_sdxl_pipeline(tmp_path).unet.eval()
    first, again = denoise(unet, 2, 2, 3.0), denoise(unet, 2, 2, 3.0)
    assert first.shape == (2, 4, 8, 8) and torch.equal(first, again)  # seeded noise, seeded random embeddings
    assert not torch.equal(first, denoise(unet, 2, 2, 1.0))  # guidance changes the result
    rows = measure_denoiser(unet, "tiny-unet", [1, 2], 2, 2, 3.0)
    assert [(r["batch"], r["what"]) for r in rows] == [(1, "denoise"), (2, "denoise")]
    assert all(r["images_per_s"] > 0 and r["gflop_per_image"] > 0 and r["output_finite"] for r in rows)
    assert rows[0]["parameters"] == sum(p.numel() for p in unet.parameters())
    assert rows[0]["peak_gpu_mb"] is None  # a CPU run has no GPU peak


def one_line_exit(argv: list[str]) -> str:
    from benchmarks.perf.sampling_speed import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    message = str(stopped.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_sampling_speed_refuses_cuda_without_a_gpu(tmp_path: Path) -> None:
    assert "no CUDA device" in one_line_exit(["--device", "cuda", "--out", str(tmp_path)])
    assert "--dtype" in one_line_exit(["--dtype", "fp8", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())  # refused before any measurement


def test_sampling_speed_refuses_the_real_size_unet_on_a_cpu(tmp_path: Path) -> None:
    message = one_line_exit(["--models", "tiny-sd,sdxl-unet", "--device", "cpu", "--out", str(tmp_path)])
    assert "--allow-cpu-sdxl" in message
    assert not list(tmp_path.iterdir())


def test_sampling_speed_measures_tiny_sdxl_and_names_the_placement(tmp_path: Path) -> None:
    from benchmarks.perf.sampling_speed import main

    main(["--models", "tiny-sdxl", "--batch-sizes", "1,2", "--images", "2", "--steps", "2", "--device", "cpu",
          "--dtype", "fp32", "--engine-batches", "4", "--out", str(tmp_path)])
    lines = [json.loads(line) for line in (tmp_path / "sampling_speed.jsonl").read_text().splitlines()]
    forked = [("generate-forked", 2)] if usable_cores() >= 2 else []  # the engine as harness eval runs it here
    assert [(line["what"], line["batch"]) for line in lines] == [("sample", 1), ("sample", 2), ("generate", 2),
                                                                 *forked]
    assert lines[2]["processes"] == 1 and all(line["processes"] >= 2 for line in lines[3:])
    for line in lines:
        assert line["model"] == "tiny-sdxl" and line["device"] == "cpu" and line["dtype"] == "float32"
        assert line["compile"] is False and line["peak_gpu_mb"] is None
        assert line["images_per_s"] > 0 and line["gflop_per_image"] > 0 and line["fraction_of_peak"] > 0


def test_a_failing_model_costs_only_its_own_lines(tmp_path: Path) -> None:
    message = one_line_exit(["--models", "builtin:no-such-model", "--batch-sizes", "1", "--images", "1",
                             "--device", "cpu", "--out", str(tmp_path)])
    assert "1 of 1 models failed" in message and "builtin:no-such-model: CheckpointError" in message
    (line,) = [json.loads(line) for line in (tmp_path / "sampling_speed.jsonl").read_text().splitlines()]
    assert line["model"] == "builtin:no-such-model" and "unknown builtin model" in line["error"]
    assert line["device"] == "cpu" and line["dtype"] == "float32"


def test_op_profile_categorises_operators_by_name() -> None:
    from benchmarks.perf.op_profile import OTHER, categorise

    expected = {
        "aten::mkldnn_convolution": "convolution", "aten::cudnn_convolution": "convolution",
        "aten::conv2d": "convolution", "aten::addmm": "matmul", "aten::mm": "matmul", "aten::baddbmm": "matmul",
        "aten::linear": "matmul", "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
        "aten::_efficient_attention_forward": "attention", "aten::native_group_norm": "normalisation",
        "aten::native_layer_norm": "normalisation", "aten::add": "elementwise", "aten::silu": "elementwise",
        "aten::div_": "elementwise", "aten::copy_": "copies and layout", "aten::cat": "copies and layout",
        "aten::upsample_nearest2d": "copies and layout", "aten::_to_copy": "copies and layout",
        "aten::some_new_kernel": OTHER, "cudaLaunchKernel": OTHER,
    }
    assert {op: categorise(op) for op in expected} == expected


def test_op_profile_on_tiny_sd(tmp_path: Path) -> None:
    from benchmarks.perf.op_profile import NAMES, main

    main(["--models", "tiny-sd", "--batch", "2", "--steps", "2", "--repeats", "1", "--device", "cpu",
          "--out", str(tmp_path)])
    (line,) = [json.loads(line) for line in (tmp_path / "op_profile.jsonl").read_text().splitlines()]
    assert line["model"] == "tiny-sd" and line["batch"] == 2 and line["device"] == "cpu"
    assert set(line["shares"]) == set(NAMES) and sum(line["shares"].values()) == pytest.approx(1.0)
    assert line["shares"]["convolution"] > 0 and line["shares"]["matmul"] > 0 and line["compute_share"] > 0
    assert all(op["category"] in NAMES and op["calls"] > 0 for op in line["top_ops"])
    assert line["images_per_s"] > 0 and line["gflop_per_image"] > 0 and line["matmul_peak_gflops"] > 0
    # the whole call's fraction is the compute kernels' fraction scaled by their share of the call
    assert line["fraction_of_peak"] == pytest.approx(line["compute_share"] * line["compute_fraction_of_peak"])
    assert set(line["inside_compute_shares"]) <= set(NAMES) - {"convolution", "matmul", "attention"}
    assert line["compute_share"] <= line["compute_share_with_inside"] <= 1
