"""Generation throughput by batch size, the model's FLOPs per image, and the fraction of the matmul peak reached.

    python -m benchmarks.perf.sampling_speed [--models builtin:shapes,tiny-sd] [--batch-sizes 16,32,64]
        [--images 128] [--steps N] [--guidance G] [--threads T] [--out results/perf]

For each model and batch size: images/s of pure sampling (:func:`harness.sampling.sample`), then, at the largest
batch, of the generation engine (:func:`harness.generation.generate`: PNG files and the SQLite index as well), whose
gap to pure sampling is the engine's overhead. FLOPs per image are counted with ``torch.utils.flop_counter`` over one
sampling call (text encoders, every guided denoiser step, decode); the fraction of peak is
``flops_per_image x images/s / peak``, with the peak measured in the same run by a large ``torch.matmul``
(:func:`benchmarks.perf.common.matmul_peak_flops`). ``tiny-sd`` is the random-init Stable Diffusion 1.x pipeline of
the tests (``tests/tiny_pipelines.py``): real diffusers classes at toy sizes, 16 x 16 pixels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.perf.common import RESULTS, ResultsFile, matmul_peak_flops, table
from harness.checkpoints import resolve_checkpoint
from harness.generation import GenerationRequest, generate
from harness.policy import Policy
from harness.sampling import SamplerConfig, sample
from harness.store import ImageStore

PROMPT = "a photo of a red circle left of a blue square"
TINY_SD = "tiny-sd"


def load_model(name: str, scratch: Path) -> Policy:
    """A ``--ckpt`` spec, or ``tiny-sd``: the tests' random-init SD 1.x pipeline saved to ``scratch`` and loaded back
    through the same path as any diffusers folder."""
    if name != TINY_SD:
        return resolve_checkpoint(name)
    from transformers.utils import logging as transformers_logging

    from tests.tiny_pipelines import save, tiny_sd_pipeline

    transformers_logging.set_verbosity_error()  # its letter tokenizer truncates every prompt, and says so per call
    return resolve_checkpoint(str(save(tiny_sd_pipeline(scratch), scratch / "tiny-sd")))


def flops_per_image(policy: Policy, config: SamplerConfig, batch: int = 2) -> float:
    """Model FLOPs of one image: everything one :func:`sample` call runs, counted by ``FlopCounterMode``, / batch."""
    counter = FlopCounterMode(display=False)
    with counter:
        sample(policy, [PROMPT] * batch, list(range(batch)), config)
    return counter.get_total_flops() / batch


def sampling_rate(policy: Policy, config: SamplerConfig, batch: int, images: int) -> float:
    """Images/s of pure sampling at ``batch`` (after one warm-up batch), whole batches only."""
    sample(policy, [PROMPT] * batch, list(range(batch)), config)
    batches = max(1, round(images / batch))
    started = time.perf_counter()
    for b in range(batches):
        sample(policy, [PROMPT] * batch, list(range(b * batch, (b + 1) * batch)), config)
    return batches * batch / (time.perf_counter() - started)


def engine_rate(policy: Policy, config: SamplerConfig, batch: int, images: int, folder: Path) -> float:
    """Images/s of :func:`generate` into a fresh store: sampling plus PNG encoding, files and the SQLite index."""
    store = ImageStore(folder)
    requests = [GenerationRequest(f"{PROMPT} {i % 7}", 10_000 + i) for i in range(images)]
    generate(policy, requests[:batch], config, store, batch_size=batch, progress=False)  # warm-up
    started = time.perf_counter()
    generate(policy, requests[batch:], config, store, batch_size=batch, progress=False)
    return (images - batch) / (time.perf_counter() - started)


def measure(models: list[str], batch_sizes: list[int], images: int, steps: int | None, guidance: float | None,
            results: ResultsFile) -> list[dict]:
    rows = []
    peak = matmul_peak_flops()
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            policy = load_model(name, Path(tmp))
            config = SamplerConfig.for_policy(policy, num_inference_steps=steps, guidance_scale=guidance)
            flops = flops_per_image(policy, config)
            rates = {batch: sampling_rate(policy, config, batch, images) for batch in batch_sizes}
            peak = max(peak, matmul_peak_flops())  # the better of two samples of the peak, around the model's runs
            largest = max(batch_sizes)
            engine = engine_rate(policy, config, largest, max(images, 2 * largest), Path(tmp) / f"store-{len(rows)}")
            for batch, rate in rates.items():
                rows.append({"model": name, "batch": batch, "what": "sample", "images_per_s": rate})
            rows.append({"model": name, "batch": largest, "what": "generate", "images_per_s": engine,
                         "engine_overhead_share": max(0.0, 1 - engine / rates[largest])})
            for row in rows:
                if row["model"] == name:
                    row.update(gflop_per_image=flops / 1e9, steps=config.num_inference_steps,
                               guidance=config.guidance_scale, resolution=config.height)
    for row in rows:
        row["matmul_peak_gflops"] = peak / 1e9
        row["fraction_of_peak"] = row["gflop_per_image"] * 1e9 * row["images_per_s"] / peak
        row["threads"] = torch.get_num_threads()
        results.add(**row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=f"builtin:shapes,{TINY_SD}", help="comma-separated --ckpt specs")
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--images", type=int, default=128, help="images per measurement")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = ResultsFile("sampling_speed", args.out)
    rows = measure(args.models.split(","), [int(b) for b in args.batch_sizes.split(",")], args.images, args.steps,
                   args.guidance, results)
    print(table(rows, ["model", "what", "batch", "images_per_s", "gflop_per_image", "fraction_of_peak",
                       "engine_overhead_share"]))
    print(f"matmul peak {rows[0]['matmul_peak_gflops']:.1f} GFLOP/s, {torch.get_num_threads()} threads; "
          f"wrote {results.write()}")


if __name__ == "__main__":
    main()
