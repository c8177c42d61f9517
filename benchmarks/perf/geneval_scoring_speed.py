"""Time GenEval scoring alone (no generation) of the full builtin set: 553 prompts x 4 images, oracle backends.

    python -m benchmarks.perf.geneval_scoring_speed

The images are ground-truth renders of each prompt's scene, so the run also checks that a perfect model scores 1.
"""

from __future__ import annotations

import random
import time

from benchmarks.geneval.prompts import scene_request
from benchmarks.registry import get_benchmark
from harness.builtin.render import render
from harness.builtin.world import sample_scene


def main() -> None:
    bench = get_benchmark("geneval")
    items = bench.prompts("builtin")
    rng = random.Random(0)
    samples = [(item, k, render(sample_scene(scene_request(item.metadata), rng)))
               for item in items for k in range(bench.images_per_prompt)]
    perception = bench.perception("builtin")
    started = time.perf_counter()
    results = bench.score(samples, perception)
    elapsed = time.perf_counter() - started
    scores = bench.aggregate(results)
    print(f"scored {len(samples)} images in {elapsed:.1f} s ({len(samples) / elapsed:.0f} images/s); "
          f"overall {scores['overall']:.4f} on ground-truth renders")


if __name__ == "__main__":
    main()
