"""Run by tests/test_scoring_shards.py, alone or under torchrun: ``harness eval`` of GenEval on the builtin world,
printing which samples each process hands to the benchmark's scorer.

Arguments: CKPT OUT SAMPLE SCORE_BATCH CRASH_AT BATCH_SIZE OVERLAP, SAMPLE prompts spread over the tags. CRASH_AT > 0:
process 1 dies (``os._exit``, no cleanup) when about to make its CRASH_AT-th scorer call counting from 0, as a run
killed mid-scoring does. BATCH_SIZE 0: automatic. OVERLAP 1: score while generating (``score_while_generating``);
0: after generation, so that the sharded scoring of ``harness.api._score_shard`` does it all.
"""

import json
import os
import sys

import torch

from benchmarks.registry import get_benchmark
from harness.api import EvalSettings, evaluate
from harness.generation import process_state

torch.set_num_threads(1)
ckpt, out = sys.argv[1], sys.argv[2]
sample, score_batch, crash_at, batch_size, overlap = (int(arg) for arg in sys.argv[3:8])
bench_class = type(get_benchmark("geneval"))
original = bench_class.score
calls = 0


def counted(self, samples, perception):  # type: ignore[no-untyped-def]
    global calls
    rank = process_state().process_index
    if crash_at and rank == 1 and calls == crash_at:
        os._exit(3)
    calls += 1
    results = original(self, samples, perception)
    print("scored", rank, json.dumps([[item.index, k] for item, k, _ in samples]), flush=True)
    return results


bench_class.score = counted
settings = EvalSettings(sample=sample, score_batch=score_batch, batch_size=batch_size or None,
                        score_while_generating=bool(overlap))
records = evaluate(ckpt, ["geneval"], out=out, settings=settings, progress=False)
print("records", process_state().process_index, len(records), flush=True)
