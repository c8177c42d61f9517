"""Our DDPO against TRL 0.11.4's ``DDPOTrainer``: wall time per sampled-and-trained image, in one run.

    python -m benchmarks.perf.trl_peer [--venv ~/.cache/harness-perf/trl-venv] [--images 8] [--rounds 3]
        [--steps 10] [--rank 4] [--out results/perf]

TRL is never a dependency of this project: the script creates its own virtual environment (``--venv``; installed
once, reused after) with ``torch==2.14.1 trl==0.11.4 "diffusers<0.31" peft==0.13.2 "transformers<4.47" rich``
(0.11 is the last release line with ``DDPOTrainer``; ``rich`` is needed but not declared) and drives TRL there
through a small driver written to a temporary file. Both sides then train the same checkpoint, the tests' tiny
random-init Stable Diffusion 1.x pipeline (``tests/tiny_pipelines.py``) saved as a diffusers folder, with:

- the same work per round/epoch: ``--images`` images sampled (one per prompt, DDIM ``--steps`` steps, eta 1,
  CFG 5) and trained on, every timestep, in one optimiser step (TRL: train batch images/2 x 2 accumulation);
- LoRA rank ``--rank`` on the attention projections (to_q, to_k, to_v, to_out.0), lr 3e-4, PPO clip 1e-4;
- the JPEG-compressibility reward (minus the JPEG's size in kB), per-prompt statistics off;
- fp32 on the CPU, no checkpoint writing inside the timed rounds.

Each side's time is its training loop alone (ours: the run summary's ``cost.wall_s``; TRL: ``trainer.train()``),
so interpreter start and model loading are left out of both; the ratio
``time_per_trained_image_ratio_vs_trl = ours / TRL`` is per sampled-and-trained image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.perf.common import RESULTS, ResultsFile, table

VENV = Path.home() / ".cache" / "harness-perf" / "trl-venv"
PEER_PACKAGES = ["torch==2.14.1", "trl==0.11.4", "diffusers<0.31", "peft==0.13.2", "transformers<4.47", "rich"]
PROMPTS = ["cat", "dog", "horse", "monkey", "rabbit", "zebra", "spider", "bird", "sheep", "deer", "cow", "goat",
           "lion", "tiger", "bear", "raccoon", "fox", "wolf", "lizard", "beetle", "ant", "butterfly", "fish", "shark"]
# The peer's side: plain TRL API calls, run with the peer venv's interpreter. Arguments come as one JSON string.
DRIVER = """
import io, json, sys, time
import numpy as np
import torch
from PIL import Image
from trl import DDPOConfig, DDPOTrainer, DefaultDDPOStableDiffusionPipeline

args = json.loads(sys.argv[1])
torch.manual_seed(0)

def jpeg_compressibility(images, prompts, metadata):
    pixels = (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    sizes = []
    for array in pixels:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=95)
        sizes.append(buffer.tell() / 1000)
    return -torch.tensor(sizes), {}

prompts = args["prompts"]
counter = iter(range(10**9))
def prompt_fn():
    return prompts[next(counter) % len(prompts)], {}

config = DDPOConfig(
    num_epochs=args["rounds"], save_freq=10**6, mixed_precision="no", log_with=None, logdir=args["logdir"],
    sample_num_steps=args["steps"], sample_eta=1.0, sample_guidance_scale=5.0,
    sample_batch_size=args["images"], sample_num_batches_per_epoch=1,
    train_batch_size=args["images"] // 2, train_gradient_accumulation_steps=2, train_learning_rate=3e-4,
    train_clip_range=1e-4, train_adv_clip_max=5.0, train_timestep_fraction=1.0, per_prompt_stat_tracking=False,
    project_kwargs={"project_dir": args["logdir"]},
)
pipeline = DefaultDDPOStableDiffusionPipeline(args["ckpt"], use_lora=True)
trainer = DDPOTrainer(config, jpeg_compressibility, prompt_fn, pipeline)  # attaches TRL's LoRA
lora = [m for n, m in pipeline.unet.named_modules() if n.endswith("lora_A.default")]
assert lora and all(m.out_features == args["rank"] for m in lora), "TRL's LoRA rank is not the requested one"
started = time.perf_counter()
trainer.train()
print(json.dumps({"train_s": time.perf_counter() - started, "images": args["rounds"] * args["images"],
                  "versions": {m: __import__(m).__version__ for m in ("trl", "diffusers", "peft", "transformers",
                                                                      "torch")}}))
"""


def ensure_venv(venv: Path) -> Path:
    """The peer's interpreter, creating the venv and installing TRL there on first use (pip finds the wheels the
    machine's pip configuration points at; this takes minutes the first time)."""
    python = venv / "bin" / "python"
    marker = venv / ".harness-perf-installed"
    if marker.is_file():
        return python
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    marker.write_text(" ".join(PEER_PACKAGES) + "\n")
    return python


def run_ours(ckpt: Path, prompts: Path, images: int, rounds: int, steps: int, rank: int, out: Path) -> dict:
    settings = {"prompts_per_round": images, "images_per_prompt": 1, "num_inference_steps": steps, "eta": 1.0,
                "guidance_scale": 5.0, "train_batch_size": images, "learning_rate": 3e-4, "clip_range": 1e-4,
                "adv_clip_max": 5.0, "timestep_fraction": 1.0, "per_prompt_stat_tracking": "false",
                "lora_rank": rank, "save_every": 10**6}
    command = [sys.executable, "-m", "harness", "train", "--method", "ddpo", "--ckpt", str(ckpt), "--feedback",
               "objective:jpeg-compressibility", "--prompts", str(prompts), "--budget", str(images * rounds),
               "--out", str(out)]
    command += [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"our DDPO failed:\n{done.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"train_s": summary["cost"]["wall_s"], "images": summary["rounds"] * images}


def run_trl(python: Path, ckpt: Path, images: int, rounds: int, steps: int, rank: int, folder: Path) -> dict:
    driver = folder / "trl_driver.py"
    driver.write_text(DRIVER)
    args = {"ckpt": str(ckpt), "images": images, "rounds": rounds, "steps": steps, "rank": rank,
            "prompts": PROMPTS, "logdir": str(folder / "trl-logs")}
    env = {**os.environ, "WANDB_DISABLED": "true", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(python), str(driver), json.dumps(args)], capture_output=True, text=True, env=env,
                          cwd=folder)
    if done.returncode != 0:
        raise RuntimeError(f"TRL's DDPOTrainer failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(venv: Path, images: int, rounds: int, steps: int, rank: int, results: ResultsFile) -> list[dict]:
    from tests.tiny_pipelines import save, tiny_sd_pipeline

    python = ensure_venv(venv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = save(tiny_sd_pipeline(folder), folder / "tiny-sd")
        # The peer's older transformers reads a CLIP tokenizer from vocab.json + merges.txt, which newer releases
        # no longer save beside tokenizer.json: give it the files the tokenizer was built from.
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(folder / "tokenizer_files" / name, ckpt / "tokenizer" / name)
        prompts = folder / "prompts.txt"
        prompts.write_text("\n".join(PROMPTS) + "\n")
        started = time.perf_counter()
        ours = run_ours(ckpt, prompts, images, rounds, steps, rank, folder / "ours")
        peer = run_trl(python, ckpt, images, rounds, steps, rank, folder)
        elapsed = time.perf_counter() - started
    ours_per, peer_per = ours["train_s"] / ours["images"], peer["train_s"] / peer["images"]
    common = {"model": "tiny-sd (random init)", "images_per_round": images, "rounds": rounds, "steps": steps,
              "lora_rank": rank, "peer_versions": peer["versions"], "both_s": elapsed}
    rows = [results.add(side="harness ddpo", train_s=ours["train_s"], images=ours["images"], s_per_image=ours_per,
                        **common),
            results.add(side="trl DDPOTrainer", train_s=peer["train_s"], images=peer["images"], s_per_image=peer_per,
                        **common)]
    rows.append(results.add(side="ratio", time_per_trained_image_ratio_vs_trl=ours_per / peer_per, **common))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=VENV)
    parser.add_argument("--images", type=int, default=8, help="images per round (even)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = ResultsFile("trl_peer", args.out)
    rows = measure(args.venv, args.images, args.rounds, args.steps, args.rank, results)
    print(table(rows, ["side", "images", "train_s", "s_per_image", "time_per_trained_image_ratio_vs_trl"]))
    print(f"wrote {results.write()}")


if __name__ == "__main__":
    main()
