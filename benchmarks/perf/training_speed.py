"""Step time and peak memory of every training method at an equal batch on the same policy.

    python -m benchmarks.perf.training_speed [--ckpt builtin:shapes] [--images 8] [--steps 2] [--device auto|cpu|cuda]
        [--out results/perf]

Each method runs as its own ``harness train`` process (so peak RSS is that method's alone, read from the kernel's
accounting of the finished child with ``os.wait4``; on a GPU, the peak GPU memory is the run summary's
``cost.peak_gpu_memory_mb``: ``torch.cuda.max_memory_allocated`` of that process), on ``--images`` images per step:

- online (D3PO, DDPO, GRPO): a step is one round, sampling ``--images`` images (2 prompts x images/2, 10 DDIM steps,
  CFG 2) with ``objective:geneval`` feedback and one optimiser update over all of them;
- offline (Diffusion-DPO, RankDPO): a step is one optimiser step over 2 ranked lists of images/2 images each, from a
  ranked dataset the script builds first with ``harness data build-ranked`` (not timed).

Step time is the run summary's ``cost.wall_s`` (training alone: no interpreter start, model load or checkpoint
writing) over the steps taken; an online step includes its sampling, an offline one has none, which is the
difference between the two families and not overhead.

Where the policy trains: the trainers place it on their ``accelerate`` device, which is the GPU whenever one is
visible (``Accelerator(cpu=not torch.cuda.is_available())``). ``--device cpu`` therefore hides the GPUs from the
children (``CUDA_VISIBLE_DEVICES=""``), ``--device cuda`` refuses to run without one, and on CUDA a method whose
summary reports no GPU memory at all is an error (it trained on the CPU). Each line names the device (the GPU's
product name).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.perf.common import RESULTS, ResultsFile, device_name, table

ONLINE = ("d3po", "ddpo", "grpo")
OFFLINE = ("diffusion-dpo", "rankdpo")


def child_environment(device: str) -> tuple[dict[str, str], str]:
    """The environment for the ``harness`` children and the device type they will train on: ``cpu`` hides every
    GPU (the trainers' accelerator then picks the CPU), ``cuda`` needs one here, ``auto`` takes what is visible."""
    if device not in ("auto", "cpu", "cuda"):
        raise SystemExit(f"error: --device {device!r}: choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device here (torch.cuda.is_available() is False); use "
                         "--device cpu or auto")
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        return env, "cpu"
    return env, "cuda" if torch.cuda.is_available() else "cpu"


def run_child(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``python -m harness ARGS``; returns (wall seconds, peak RSS in MiB) of that process alone."""
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a full pipe would stall the child
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=log, stderr=subprocess.STDOUT,
                                 env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        if child.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"harness {' '.join(args[:3])} failed:\n{log.read()[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def method_settings(method: str, images: int) -> list[str]:
    """``--set`` options that give every method the same images per step and the same sampler."""
    half = images // 2
    if method in OFFLINE:
        values = {"batch_size": 2, "grad_accumulation": 1}
    else:
        values = {"prompts_per_round": 2, "images_per_prompt": half, "num_inference_steps": 10,
                  "guidance_scale": 2.0, "save_every": 1000,
                  # all of a round's samples in one optimiser step: prompt groups for D3PO, samples for the others
                  "train_batch_size": 2 if method == "d3po" else images}
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def measure(ckpt: str, images: int, steps: int, methods: list[str], folder: Path, results: ResultsFile,
            device: str = "auto") -> list[dict]:
    if images < 4 or images % 2:
        raise SystemExit(f"--images {images}: need an even number >= 4 (two prompts or lists per step)")
    env, device_type = child_environment(device)
    name = device_name("cuda" if device_type == "cuda" else "cpu")
    data = folder / "ranked"
    if any(m in OFFLINE for m in methods):
        run_child(["data", "build-ranked", "--ckpt", ckpt, "--prompts", "builtin:geneval-train", "--n", "8",
                   "--k", str(images // 2), "--rewards", "objective:geneval-partial", "--out", str(data)], env)
    rows = []
    for method in methods:
        out = folder / method
        source = ["--data", str(data)] if method in OFFLINE else ["--feedback", "objective:geneval"]
        budget = steps if method in OFFLINE else steps * images
        wall, rss = run_child(["train", "--method", method, "--ckpt", ckpt, *source, "--budget", str(budget),
                               "--out", str(out), *method_settings(method, images)], env)
        summary = json.loads((out / "summary.json").read_text())
        cost = summary["cost"]
        if device_type == "cuda" and not cost.get("peak_gpu_memory_mb"):
            raise RuntimeError(f"{method}: the run allocated no GPU memory, so it trained on the CPU although a GPU "
                               "is visible; the numbers would not be GPU numbers")
        taken = summary.get("rounds") or summary.get("steps") or steps
        row = results.add(method=method, ckpt=ckpt, images_per_step=images, steps=taken,
                          step_s=cost["wall_s"] / taken, s_per_image=cost["wall_s"] / (taken * images),
                          peak_rss_mb=rss, peak_gpu_mb=cost.get("peak_gpu_memory_mb"), process_wall_s=wall,
                          samples_in_step=method not in OFFLINE, device=name, device_type=device_type)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="builtin:shapes")
    parser.add_argument("--images", type=int, default=8, help="images per step (even)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--methods", default=",".join(ONLINE + OFFLINE))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (auto: the GPU if there is one)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = ResultsFile("training_speed", args.out)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args.ckpt, args.images, args.steps, args.methods.split(","), Path(tmp), results, args.device)
    print(table(rows, ["method", "device", "images_per_step", "steps", "step_s", "s_per_image", "peak_rss_mb",
                       "peak_gpu_mb", "samples_in_step"]))
    print(f"wrote {results.write()}")


if __name__ == "__main__":
    main()
