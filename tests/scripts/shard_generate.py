"""Run by tests/test_generation.py under torchrun: each process generates its shard into the same store."""

import sys

import torch

from harness.builtin.model import BuiltinPolicy
from harness.generation import GenerationRequest, generate
from harness.sampling import SamplerConfig
from harness.store import ImageStore

torch.set_num_threads(1)
ckpt, root = sys.argv[1], sys.argv[2]
policy = BuiltinPolicy.load(ckpt)
requests = [GenerationRequest(f"a photo of {n} stars", seed) for seed, n in enumerate(["two", "three"] * 5)]
report = generate(policy, requests, SamplerConfig(num_inference_steps=2, guidance_scale=2.0), ImageStore(root),
                  batch_size=3, progress=False)
print("generated", report.generated)
