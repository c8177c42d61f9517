"""Sampling throughput of a checkpoint (images/s), the number behind the "5 images/s on 2 cores" target.

    python -m benchmarks.perf.sampling_speed --ckpt builtin:shapes --images 256 --batch-size 64
"""

from __future__ import annotations

import argparse
import time

import torch

from harness.checkpoints import resolve_checkpoint
from harness.sampling import SamplerConfig, sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="builtin:shapes")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    policy = resolve_checkpoint(args.ckpt)
    config = SamplerConfig.for_policy(policy, num_inference_steps=args.steps, guidance_scale=args.guidance)
    prompts = ["a photo of a red circle left of a blue square"] * args.batch_size
    sample(policy, prompts[:4], list(range(4)), config)  # warm-up
    done, started = 0, time.perf_counter()
    while done < args.images:
        n = min(args.batch_size, args.images - done)
        sample(policy, prompts[:n], list(range(done, done + n)), config)
        done += n
    elapsed = time.perf_counter() - started
    print(f"{args.ckpt}: {done} images in {elapsed:.1f} s = {done / elapsed:.2f} images/s "
          f"(batch {args.batch_size}, {config.num_inference_steps} DDIM steps, guidance {config.guidance_scale}, "
          f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
