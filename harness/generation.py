"""The generation engine: batched, seeded, resumable sampling into the :class:`~harness.store.ImageStore`.

Requests are cut into fixed batches *before* sharding, and whole batches are dealt to processes, so an image is
computed in the same batch however many processes run: a 2-process run writes bit-identical files to a 1-process
run. Images already in the store are skipped, so an interrupted or repeated run only does what is missing.

A 1-process run of a small model on the CPU forks worker processes, one thread each (:func:`generation_processes`),
instead of sampling on all cores in one process: a small network's operators are too short to keep several
threads busy (on 2 cores the builtin UNet's forwards run 1.65x faster on 2 threads than on 1, while two 1-thread
processes sample 1.15-1.25x faster than one 2-thread process), and the pixels do not depend on the thread count or on
which process samples a batch.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from PIL import Image
from tqdm.auto import tqdm

from harness.errors import HarnessError
from harness.policy import Policy
from harness.sampling import SamplerConfig, sample
from harness.scoring_pool import usable_cores
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
    generated: int  # by this process (or the workers it forked)
    cached: int  # already in the store when the run started (all processes)
    batch_size: int | None = None  # images per sampling batch; None when every image was cached (nothing sampled)
    after_write_s: float = 0.0  # seconds this process's writer thread spent in ``after_write``
    forked_processes: int = 0  # worker processes this process forked to sample (0: it sampled itself)

    def paths(self, store: ImageStore) -> list[Path]:
        return [store.path(k) for k in self.keys]


WRITER_DEPTH = 2  # sampled batches that may wait for the writer thread (0: write in the sampling thread)
# Latent numbers per denoiser call that the automatic batch size aims at (see auto_batch_size).
AUTO_BATCH_LATENTS = 2**19
MAX_AUTO_BATCH = 64
# Forked CPU generation (generation_processes): models up to this many denoiser parameters count as small (the builtin
# UNet has 3.8 M, SD 1.5's 860 M), and at most this many processes are forked when none is asked for.
SMALL_MODEL_PARAMS = 100_000_000
MAX_AUTO_PROCESSES = 8


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


def generation_processes(policy: Policy, batches: int, requested: int | None = None,
                         after_write: AfterWrite | None = None) -> int:
    """Processes that sample ``batches`` batches in a 1-process run (1: in this process, on torch's threads).

    ``requested`` None: one per usable core, at most ``MAX_AUTO_PROCESSES`` and one per two batches, when the model is
    small (at most ``SMALL_MODEL_PARAMS`` denoiser parameters), on the CPU, not compiled, the run not sharded by
    ``torchrun``, on Linux; else 1. A large model's operators keep many threads busy, and copies of
    its activations per process would multiply the memory; a compiled model would compile again in each process.
    A number > 1 asked for where forking cannot run is a :class:`HarnessError`; it is capped at one per batch.
    Two batches a process at least, because a worker samples on one thread: with one batch each, a process whose
    batch is the last one left would take as long as one process sampling two batches on both cores.
    ``after_write`` (scoring while generating) needs every batch in this process, so it means 1.
    """
    if requested is not None and requested < 1:
        raise HarnessError(f"--generation-processes {requested}: must be a whole number >= 1")
    if requested == 1 or batches < 2:
        return 1
    why_not = None
    if after_write is not None:
        why_not = "with scoring while generating"
    elif process_state().num_processes > 1:
        why_not = "in a run sharded by torchrun or accelerate launch"
    elif "fork" not in multiprocessing.get_all_start_methods():
        why_not = "on a platform without fork"
    elif policy.device.type != "cpu":
        why_not = f"with the model on {policy.device.type}"
    elif policy.numerics_key.get("numerics", {}).get("compile"):
        why_not = "with a compiled model"
    if why_not is not None:
        if requested is None:
            return 1
        raise HarnessError(f"--generation-processes {requested}: forked generation cannot run {why_not}; leave it "
                           "unset or pass 1")
    if requested is None:
        # macOS can fork too, but forking a process that ran Apple's frameworks is not safe there
        if not sys.platform.startswith("linux"):
            return 1
        if sum(p.numel() for p in policy.unet.parameters()) > SMALL_MODEL_PARAMS:
            return 1
        return max(1, min(usable_cores(), MAX_AUTO_PROCESSES, batches // 2))
    return max(1, min(requested, batches))


def generate(
    policy: Policy,
    requests: list[GenerationRequest],
    sampler: SamplerConfig,
    store: ImageStore,
    batch_size: int | None = None,
    progress: bool = True,
    writer_depth: int = WRITER_DEPTH,
    after_write: AfterWrite | None = None,
    processes: int | None = None,
) -> GenerationReport:
    """Make sure every request has an image in ``store``; returns the image keys in request order.

    Runs sharded when launched with ``accelerate launch`` / ``torchrun`` (one shard of whole batches per process)
    and waits for all processes before returning. ``batch_size`` None: :func:`auto_batch_size`. When every image is
    already stored, the policy is asked for nothing but its fingerprint, so a :class:`~harness.policy.LazyPolicy`
    never loads its weights. ``writer_depth``: see :class:`BatchWriter` (0 writes in this thread). ``after_write``:
    called with each batch this process writes (request indices into ``requests``, images), see
    :class:`BatchWriter`; never for cached images. ``processes``: see :func:`generation_processes` (None: automatic);
    the images are the same for any number.
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
    job = _Job(policy, requests, keys, sampler, sampler_dict, store, todo, writer_depth)
    forks = generation_processes(policy, len(todo), processes, after_write)
    with progress_bar(sum(len(missing) for _, missing in todo)) as bar:
        if forks > 1:
            generated, after_write_s = _sample_forked(job, forks, bar.update), 0.0
        else:
            generated, after_write_s = job.run(todo, lambda n: bar.update(n * state.num_processes), after_write)
    state.wait_for_everyone()
    return GenerationReport(keys=keys, generated=generated, cached=cached, batch_size=batch_size,
                            after_write_s=after_write_s, forked_processes=forks if forks > 1 else 0)


@dataclass
class _Job:
    """The batches one :func:`generate` call samples, and where their images go."""

    policy: Policy
    requests: list[GenerationRequest]
    keys: list[str]
    sampler: SamplerConfig
    sampler_dict: dict
    store: ImageStore
    todo: list[tuple[list[int], list[int]]]  # (batch, its missing request indices)
    writer_depth: int

    def run(self, todo: Iterable[tuple[list[int], list[int]]], done: Callable[[int], object],
            after_write: AfterWrite | None = None) -> tuple[int, float]:
        """Sample ``todo`` in this process and write the missing images; ``done(n)`` after each batch. Returns the
        images written and the writer's seconds in ``after_write``."""
        generated = 0
        policy, requests = self.policy, self.requests
        with BatchWriter(self.store, self.writer_depth, after_write) as writer:
            for batch, missing in todo:
                images = sample(policy, [requests[i].prompt for i in batch], [requests[i].seed for i in batch],
                                self.sampler)
                wanted = set(missing)
                writer.submit([(i, self.keys[i], pixels, policy.fingerprint, requests[i].prompt, requests[i].seed)
                               for i, pixels in zip(batch, images) if i in wanted], self.sampler_dict)
                generated += len(missing)
                done(len(missing))
        return generated, writer.after_write_s


# The job of the forked workers of _sample_forked: set in the parent just before the fork, inherited, never pickled.
# (job, threads per worker, next batch to take, images written, results queue)
_forked: tuple[_Job, int, object, object, object] | None = None
STOP_GRACE_S = 30.0  # seconds an interrupted worker gets to finish its batch's files and index rows


def _sample_forked(job: _Job, processes: int, update: Callable[[int], object]) -> int:
    """Sample ``job.todo`` in ``processes`` forked workers, each on ``usable_cores() // processes`` threads and
    writing its images to the store itself; returns the images written. Each worker takes the next batch when it has
    written its last, so the workers finish within one batch of each other even when one of them is slowed.

    Forked, not spawned: the workers start at once with the model loaded (its weights shared copy-on-write), where a
    spawned one would import torch and load the model again. Each worker's :class:`BatchWriter` commits its batches
    as the in-process loop does. A worker's error stops the others and is raised here once they have stopped, as is
    an interruption of this process; a stopped worker first finishes the batch files it is writing, so the images
    already written stay whole and indexed, and the next run samples only what is missing.
    """
    global _forked
    context = multiprocessing.get_context("fork")
    taken, counter, results = context.Value("q", 0), context.Value("q", 0), context.SimpleQueue()
    _forked = (job, max(1, usable_cores() // processes), taken, counter, results)
    workers = [context.Process(target=_forked_worker, args=(shard,), daemon=True,
                               name=f"harness-generate-{shard}") for shard in range(processes)]
    reported, outcomes = 0, {}
    try:
        for worker in workers:
            worker.start()

        def collect() -> None:
            while not results.empty():
                shard, value = results.get()
                outcomes[shard] = value

        while len(outcomes) < processes:
            collect()
            exited = [shard for shard, w in enumerate(workers) if shard not in outcomes and w.exitcode is not None]
            if exited:
                collect()  # a worker puts its outcome before it exits
                for shard in exited:
                    if shard not in outcomes:
                        outcomes[shard] = HarnessError(
                            f"generation process {workers[shard].name} died (exit code {workers[shard].exitcode}); "
                            "run again to finish the missing images")
            if any(isinstance(value, BaseException) for value in outcomes.values()):
                break  # the others are stopped below: the run fails either way, and its finished batches stay
            if reported < counter.value:
                update(counter.value - reported)
                reported = counter.value
            time.sleep(0.05)
    finally:
        _forked = None
        started = [worker for worker in workers if worker.pid is not None]
        for worker in started:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: the worker finishes the files it is writing, then stops
        for worker in started:
            worker.join(STOP_GRACE_S)
            if worker.is_alive():
                worker.kill()
                worker.join()
    if reported < counter.value:
        update(counter.value - reported)
    errors = [value for value in outcomes.values() if isinstance(value, BaseException)]
    if errors:
        raise errors[0]
    return sum(outcomes.values())


def _interrupt_once(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _forked_worker(shard: int) -> None:
    """One forked worker: takes the job's batches one by one until none is left, on its share of the cores; reports
    (shard, images written) or (shard, the exception) on the results queue."""
    assert _forked is not None, "forked generation worker without its job"
    job, threads, taken, counter, results = _forked
    # Ctrl-C reaches the whole process group: the parent alone decides, and stops the workers with SIGTERM, which
    # interrupts the sampling loop like Ctrl-C would (once), so the batch writer still finishes its files and rows.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt_once)
    try:
        torch.set_num_threads(threads)

        def done(n: int) -> None:
            with counter.get_lock():  # type: ignore[attr-defined]
                counter.value += n  # type: ignore[attr-defined]

        def batches() -> Iterator[tuple[list[int], list[int]]]:
            while True:
                with taken.get_lock():  # type: ignore[attr-defined]
                    index = taken.value  # type: ignore[attr-defined]
                    taken.value += 1  # type: ignore[attr-defined]
                if index >= len(job.todo):
                    return
                yield job.todo[index]

        outcome: object = job.run(batches(), done)[0]
    except BaseException as err:  # KeyboardInterrupt included: the parent re-raises it
        outcome = err
    try:
        results.put((shard, outcome))  # type: ignore[attr-defined]
    except Exception as err:  # an exception that does not pickle travels as its text
        results.put((shard, RuntimeError(f"{type(outcome).__name__}: {outcome} ({err})")))  # type: ignore[attr-defined]


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
