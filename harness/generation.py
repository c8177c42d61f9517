"""The generation engine: batched, seeded, resumable sampling into the :class:`~harness.store.ImageStore`.

Requests are cut into fixed batches *before* sharding, and whole batches are dealt to processes, so an image is
computed in the same batch however many processes run: a 2-process run writes bit-identical files to a 1-process
run. Images already in the store are skipped, so an interrupted or repeated run only does what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from PIL import Image
from tqdm.auto import tqdm

from harness.policy import Policy
from harness.sampling import SamplerConfig, sample
from harness.store import ImageStore, image_key


def process_state() -> PartialState:
    """This process's place in a sharded run (``torchrun``/``accelerate launch``); gloo on machines without CUDA."""
    return PartialState(cpu=not torch.cuda.is_available())


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    seed: int


@dataclass(frozen=True)
class GenerationReport:
    keys: list[str]
    generated: int  # by this process
    cached: int  # already in the store when the run started (all processes)

    def paths(self, store: ImageStore) -> list[Path]:
        return [store.path(k) for k in self.keys]


def generate(
    policy: Policy,
    requests: list[GenerationRequest],
    sampler: SamplerConfig,
    store: ImageStore,
    batch_size: int = 32,
    progress: bool = True,
) -> GenerationReport:
    """Make sure every request has an image in ``store``; returns the image keys in request order.

    Runs sharded when launched with ``accelerate launch`` / ``torchrun`` (one shard of whole batches per process)
    and waits for all processes before returning.
    """
    sampler = sampler.resolved(policy)
    sampler_dict = sampler.to_dict()
    keys = [image_key(policy.fingerprint, r.prompt, r.seed, sampler_dict) for r in requests]
    batches = [list(range(i, min(i + batch_size, len(requests)))) for i in range(0, len(requests), batch_size)]
    state = process_state()
    mine = batches[state.process_index :: state.num_processes]
    # A batch with any image missing is sampled whole: a network's numerics depend on the batch it runs in, so an
    # image recomputed in a smaller batch (after an interruption, or a corrupt file) would not be bit-identical.
    todo = [(batch, [i for i in batch if not store.has(keys[i])]) for batch in mine]
    todo = [(batch, missing) for batch, missing in todo if missing]
    cached = sum(store.has(k) for k in keys)
    generated = 0
    with tqdm(total=sum(len(missing) for _, missing in todo), disable=not progress or not state.is_local_main_process,
              desc=f"generate ({cached}/{len(keys)} cached)", unit="img") as bar:
        for batch, missing in todo:
            images = sample(policy, [requests[i].prompt for i in batch], [requests[i].seed for i in batch], sampler)
            for i, pixels in zip(batch, images):
                if i in missing:
                    store.put(keys[i], Image.fromarray(pixels.numpy()), policy.fingerprint, requests[i].prompt,
                              requests[i].seed, sampler_dict)
            generated += len(missing)
            bar.update(len(missing) * state.num_processes)
    state.wait_for_everyone()
    return GenerationReport(keys=keys, generated=generated, cached=cached)


def repair_images(store: ImageStore, report: GenerationReport, policy: Policy, requests: list[GenerationRequest],
                  sampler: SamplerConfig, batch_size: int = 32) -> int:
    """Regenerate the run's cached images that no longer decode (the store deletes them); returns how many.

    Checks one image at a time, so a large run is never held in memory just to be verified.
    """
    missing = [i for i, key in enumerate(report.keys) if store.load(key) is None]
    if missing:  # all requests, so that the batches are those of the run and the images bit-identical
        generate(policy, requests, sampler, store, batch_size=batch_size, progress=False)
    return len(missing)


def load_images(store: ImageStore, report: GenerationReport, policy: Policy, requests: list[GenerationRequest],
                sampler: SamplerConfig, batch_size: int = 32) -> list[Image.Image]:
    """Every image of a run; a corrupt cached file is removed and regenerated instead of failing the run."""
    repair_images(store, report, policy, requests, sampler, batch_size)
    return [store.load(key) for key in report.keys]
