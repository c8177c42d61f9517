"""The generation engine: batched, seeded, resumable sampling into the :class:`~harness.store.ImageStore`.

Requests are cut into fixed batches *before* sharding, and whole batches are dealt to processes, so an image is
computed in the same batch however many processes run: a 2-process run writes bit-identical files to a 1-process
run. Images already in the store are skipped, so an interrupted or repeated run only does what is missing.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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


# Latent numbers per denoiser call that the automatic batch size aims at (see auto_batch_size).
AUTO_BATCH_LATENTS = 2**19
MAX_AUTO_BATCH = 64


def auto_batch_size(policy: Policy, sampler: SamplerConfig) -> int:
    """Images per batch when none is given: ``2^floor(log2(AUTO_BATCH_LATENTS / latent numbers per image))``,
    clipped to [1, 64].

    Small models are bound by per-call overhead (Python, kernel launches, the scheduler step), so they need large
    batches to keep the cores busy; large ones fill them with few images, and memory grows with the batch. The rule
    depends only on the model's latent shape, never on the machine, so a run cuts the same batches everywhere and
    its images stay bit-identical across machines and process counts. It gives 64 for the builtin model (27 x 16 x
    16 latents), 32 for SD 1.5 at 512 px (4 x 64 x 64), 8 for SDXL at 1024 px (4 x 128 x 128).
    """
    sampler = sampler.resolved(policy)
    per_image = math.prod(policy.latent_shape(sampler.height, sampler.width))
    return max(1, min(MAX_AUTO_BATCH, 2 ** int(math.log2(max(1, AUTO_BATCH_LATENTS // per_image)))))


class BatchWriter:
    """Writes sampled batches to the store on one background thread while the next batch is sampled.

    PNG encoding, the file writes and the batch's one SQLite transaction (:meth:`ImageStore.batch`) then overlap the
    denoiser, which holds the cores in torch's own threads. At most ``depth`` batches wait, so memory stays bounded
    when the disk is slower than sampling. A writer error is raised in the caller at its next ``submit`` or at exit;
    on any exit the batches already handed over are finished, each whole, before the block is left.
    """

    def __init__(self, store: ImageStore, depth: int = 2) -> None:
        self.store, self.depth = store, depth
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-writer")
        self.pending: deque[Future] = deque()

    def submit(self, rows: list[tuple[str, torch.Tensor, str, str, int]], sampler: dict) -> None:
        """Queue one batch: (key, uint8 pixels [H, W, 3], checkpoint fingerprint, prompt, seed) per image."""
        # Finished batches are collected first (raising a writer error before more work is queued); the single
        # worker runs them in order, so only the oldest can be done or failed.
        while self.pending and (len(self.pending) >= self.depth or self.pending[0].done()):
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, rows, sampler))

    def _write(self, rows: list[tuple[str, torch.Tensor, str, str, int]], sampler: dict) -> None:
        with self.store.batch():
            for key, pixels, checkpoint, prompt, seed in rows:
                self.store.put(key, Image.fromarray(pixels.numpy()), checkpoint, prompt, seed, sampler)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)


def generate(
    policy: Policy,
    requests: list[GenerationRequest],
    sampler: SamplerConfig,
    store: ImageStore,
    batch_size: int | None = None,
    progress: bool = True,
) -> GenerationReport:
    """Make sure every request has an image in ``store``; returns the image keys in request order.

    Runs sharded when launched with ``accelerate launch`` / ``torchrun`` (one shard of whole batches per process)
    and waits for all processes before returning. ``batch_size`` None: :func:`auto_batch_size`.
    """
    sampler = sampler.resolved(policy)
    batch_size = batch_size or auto_batch_size(policy, sampler)
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
              desc=f"generate ({cached}/{len(keys)} cached)", unit="img") as bar, BatchWriter(store) as writer:
        for batch, missing in todo:
            images = sample(policy, [requests[i].prompt for i in batch], [requests[i].seed for i in batch], sampler)
            wanted = set(missing)
            writer.submit([(keys[i], pixels, policy.fingerprint, requests[i].prompt, requests[i].seed)
                           for i, pixels in zip(batch, images) if i in wanted], sampler_dict)
            generated += len(missing)
            bar.update(len(missing) * state.num_processes)
    state.wait_for_everyone()
    return GenerationReport(keys=keys, generated=generated, cached=cached)


def repair_images(store: ImageStore, report: GenerationReport, policy: Policy, requests: list[GenerationRequest],
                  sampler: SamplerConfig, batch_size: int | None = None) -> int:
    """Regenerate the run's cached images that no longer decode (the store deletes them); returns how many.

    Checks one image at a time, so a large run is never held in memory just to be verified.
    """
    missing = [i for i, key in enumerate(report.keys) if store.load(key) is None]
    if missing:  # all requests, so that the batches are those of the run and the images bit-identical
        generate(policy, requests, sampler, store, batch_size=batch_size, progress=False)
    return len(missing)


def load_images(store: ImageStore, report: GenerationReport, policy: Policy, requests: list[GenerationRequest],
                sampler: SamplerConfig, batch_size: int | None = None) -> list[Image.Image]:
    """Every image of a run; a corrupt cached file is removed and regenerated instead of failing the run."""
    repair_images(store, report, policy, requests, sampler, batch_size)
    return [store.load(key) for key in report.keys]
