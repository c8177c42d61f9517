"""The generation engine: batched, seeded, resumable sampling into the :class:`~harness.store.ImageStore`.

Requests are cut into fixed batches *before* sharding, and whole batches are dealt to processes, so an image is
computed in the same batch however many processes run: a 2-process run writes bit-identical files to a 1-process
run. Images already in the store are skipped, so an interrupted or repeated run only does what is missing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
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

log = logging.getLogger(__name__)

# Called on the writer thread after each batch is committed, with the request indices just written and their images.
AfterWrite = Callable[[list[int], list[Image.Image]], None]


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
    batch_size: int | None = None  # images per sampling batch; None when every image was cached (nothing sampled)
    after_write_s: float = 0.0  # seconds this process's writer thread spent in ``after_write``

    def paths(self, store: ImageStore) -> list[Path]:
        return [store.path(k) for k in self.keys]


WRITER_DEPTH = 2  # sampled batches that may wait for the writer thread (0: write in the sampling thread)
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
    when the disk is slower than sampling. A writer error is raised in the caller at its next ``submit`` or at exit,
    and the batches queued behind the failed one are dropped unwritten (the next run samples them again); on any
    other exit the batches already handed over are finished, each whole, before the block is left.

    ``after_write`` (optional) runs on the same thread once a batch is committed, with the batch's request indices
    and images: an evaluation with the model on a GPU scores them there (``harness.api.ScoreAsWritten``), so the
    scoring fills the time the cores wait on the device instead of running after the last batch. It is an
    optimisation only: if it raises, the error is logged, it is not called again, and generation goes on (the caller
    then scores as before and meets the error there). Its seconds are summed in ``after_write_s``.
    """

    def __init__(self, store: ImageStore, depth: int = WRITER_DEPTH, after_write: AfterWrite | None = None) -> None:
        self.store, self.depth, self.after_write = store, depth, after_write
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-writer") if depth > 0 else None
        self.pending: deque[Future] = deque()
        self.failed = threading.Event()
        self.after_write_s = 0.0

    def submit(self, rows: list[tuple[int, str, torch.Tensor, str, str, int]], sampler: dict) -> None:
        """Queue one batch: (request index, key, uint8 pixels [H, W, 3], checkpoint fingerprint, prompt, seed) per
        image.

        With ``depth`` 0 the batch is written here, in the caller's thread, before this returns."""
        if self.pool is None:
            self._write(rows, sampler)
            return
        # Finished batches are collected first (raising a writer error before more work is queued); the single
        # worker runs them in order, so only the oldest can be done or failed.
        while self.pending and (len(self.pending) >= self.depth or self.pending[0].done()):
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, rows, sampler))

    def _write(self, rows: list[tuple[int, str, torch.Tensor, str, str, int]], sampler: dict) -> None:
        if self.failed.is_set():
            return
        try:
            images = [Image.fromarray(pixels.numpy()) for _, _, pixels, *_ in rows]
            with self.store.batch():
                for (_, key, _, checkpoint, prompt, seed), image in zip(rows, images):
                    self.store.put(key, image, checkpoint, prompt, seed, sampler)
        except BaseException:
            self.failed.set()
            raise
        if self.after_write is not None:
            started = time.monotonic()
            try:
                self.after_write([row[0] for row in rows], images)
            except Exception as err:  # an optimisation failed: the caller does the work after generation instead
                log.warning("scoring while generating stopped (%s: %s); the rest is scored after generation",
                            type(err).__name__, err)
                self.after_write = None
            self.after_write_s += time.monotonic() - started

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


def generate(
    policy: Policy,
    requests: list[GenerationRequest],
    sampler: SamplerConfig,
    store: ImageStore,
    batch_size: int | None = None,
    progress: bool = True,
    writer_depth: int = WRITER_DEPTH,
    after_write: AfterWrite | None = None,
) -> GenerationReport:
    """Make sure every request has an image in ``store``; returns the image keys in request order.

    Runs sharded when launched with ``accelerate launch`` / ``torchrun`` (one shard of whole batches per process)
    and waits for all processes before returning. ``batch_size`` None: :func:`auto_batch_size`. When every image is
    already stored, the policy is asked for nothing but its fingerprint, so a :class:`~harness.policy.LazyPolicy`
    never loads its weights. ``writer_depth``: see :class:`BatchWriter` (0 writes in this thread). ``after_write``:
    called with each batch this process writes (request indices into ``requests``, images), see
    :class:`BatchWriter`; never for cached images.
    """
    sampler = sampler.resolved(policy)
    keys = image_keys(policy, requests, sampler)
    present = [store.has(k) for k in keys]
    cached = sum(present)
    state = process_state()

    def progress_bar(total: int) -> tqdm:
        return tqdm(total=total, disable=not progress or not state.is_local_main_process,
                    desc=f"generate ({cached}/{len(keys)} cached)", unit="img")

    if cached == len(keys):
        progress_bar(0).close()  # says so: every image was cached
        state.wait_for_everyone()
        return GenerationReport(keys=keys, generated=0, cached=cached)
    batch_size = batch_size or auto_batch_size(policy, sampler)
    sampler_dict = {**sampler.to_dict(), **policy.numerics_key}
    batches = [list(range(i, min(i + batch_size, len(requests)))) for i in range(0, len(requests), batch_size)]
    mine = batches[state.process_index :: state.num_processes]
    # A batch with any image missing is sampled whole: a network's numerics depend on the batch it runs in, so an
    # image recomputed in a smaller batch (after an interruption, or a corrupt file) would not be bit-identical.
    todo = [(batch, [i for i in batch if not present[i]]) for batch in mine]
    todo = [(batch, missing) for batch, missing in todo if missing]
    generated = 0
    with progress_bar(sum(len(missing) for _, missing in todo)) as bar, \
            BatchWriter(store, writer_depth, after_write) as writer:
        for batch, missing in todo:
            images = sample(policy, [requests[i].prompt for i in batch], [requests[i].seed for i in batch], sampler)
            wanted = set(missing)
            writer.submit([(i, keys[i], pixels, policy.fingerprint, requests[i].prompt, requests[i].seed)
                           for i, pixels in zip(batch, images) if i in wanted], sampler_dict)
            generated += len(missing)
            bar.update(len(missing) * state.num_processes)
    state.wait_for_everyone()
    return GenerationReport(keys=keys, generated=generated, cached=cached, batch_size=batch_size,
                            after_write_s=writer.after_write_s)


def image_keys(policy: Policy, requests: list[GenerationRequest], sampler: SamplerConfig) -> list[str]:
    """The store key of each request's image, as :func:`generate` names it (reads only the policy's fingerprint and
    its numerics key, so a lazy policy is not loaded)."""
    sampler_dict = {**sampler.resolved(policy).to_dict(), **policy.numerics_key}
    return [image_key(policy.fingerprint, r.prompt, r.seed, sampler_dict) for r in requests]


def repair_images(store: ImageStore, report: GenerationReport, policy: Policy, requests: list[GenerationRequest],
                  sampler: SamplerConfig, batch_size: int | None = None, only: list[int] | None = None) -> int:
    """Regenerate the run's cached images that no longer decode (the store deletes them); returns how many.

    ``only``: the positions in ``report.keys`` to check (default all), e.g. the images about to be scored: decoding
    is what costs, and an image whose verdict is cached need not be read. Checks one image at a time, so a large run
    is never held in memory just to be verified.
    """
    positions = range(len(report.keys)) if only is None else only
    missing = [i for i in positions if store.load(report.keys[i]) is None]
    if missing:  # all requests, so that the batches are those of the run and the images bit-identical
        generate(policy, requests, sampler, store, batch_size=batch_size, progress=False)
    return len(missing)


def load_images(store: ImageStore, report: GenerationReport, policy: Policy, requests: list[GenerationRequest],
                sampler: SamplerConfig, batch_size: int | None = None) -> list[Image.Image]:
    """Every image of a run; a corrupt cached file is removed and regenerated instead of failing the run."""
    repair_images(store, report, policy, requests, sampler, batch_size)
    return [store.load(key) for key in report.keys]
