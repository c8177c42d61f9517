"""GenEval-style accuracy and speed of a builtin checkpoint under several sampler settings, on HELD-OUT prompts.

    python -m benchmarks.perf.builtin_sampler_sweep --ckpt .pretrain/shapes/model \
        [--state .pretrain/shapes/train_state.pt]

The prompts come from the builtin GenEval recipe with another seed (7, not the benchmark's 43), one image each, so
choosing a model's default sampler here does not tune on the benchmark itself. With ``--state`` it also compares
the EMA weights with the raw (non-averaged) weights of a pretraining state.
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image

from benchmarks.geneval.prompts import builtin_metadata
from benchmarks.registry import PromptItem, get_benchmark
from harness.builtin.model import BuiltinPolicy
from harness.checkpoints import resolve_checkpoint
from harness.policy import Policy
from harness.sampling import SamplerConfig, sample

SETTINGS = ((20, 3.0), (20, 2.0), (20, 1.5), (10, 2.0), (10, 1.5))


def sweep(name: str, policy: Policy, items: list[PromptItem], batch: int = 64) -> None:
    bench = get_benchmark("geneval")
    perception = bench.perception("builtin")
    for steps, guidance in SETTINGS:
        config = SamplerConfig(num_inference_steps=steps, guidance_scale=guidance)
        started, images = time.perf_counter(), []
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            images += list(sample(policy, [i.prompt for i in chunk], [1000 + i.index for i in chunk], config).numpy())
        rate = len(items) / (time.perf_counter() - started)
        results = bench.score([(i, 0, Image.fromarray(im)) for i, im in zip(items, images)], perception)
        scores = bench.aggregate(results)
        print(f"{name:>6} steps {steps:2d} guidance {guidance:.1f}: overall {scores['overall']:.3f}  "
              + "  ".join(f"{k} {v:.2f}" for k, v in scores.items() if k != "overall") + f"  ({rate:.1f} img/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--state", default=None, help="pretraining train_state.pt: also sweep its raw weights")
    parser.add_argument("--every", type=int, default=2, help="use every Nth held-out prompt")
    args = parser.parse_args()
    items = [PromptItem(i, m["prompt"], m["tag"], m) for i, m in enumerate(builtin_metadata(seed=7)[:: args.every])]
    sweep("ema", resolve_checkpoint(args.ckpt), items)
    if args.state:
        state = torch.load(args.state, weights_only=False)
        raw = BuiltinPolicy.new()
        for key, module in raw.modules().items():
            module.load_state_dict(state["model"][key])
            module.eval()
        sweep("raw", raw, items)


if __name__ == "__main__":
    main()
