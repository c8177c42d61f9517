"""The Python API; every CLI verb is a thin wrapper over one function here, with the same names."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from benchmarks.registry import Benchmark, PromptItem, SampleResult, get_benchmark, spread_subset
from harness.errors import HarnessError
from harness.generation import GenerationReport, GenerationRequest, generate, image_keys, process_state, repair_images
from harness.hashing import fingerprint, stable_hash
from harness.numerics import Numerics, place
from harness.policy import LazyPolicy, Policy, PolicyHeader
from harness.records import (
    ResultRecord,
    attach_statistics,
    environment_info,
    read_training_summary,
    training_from_summary,
    training_summary_beside,
    with_run_details,
)
from harness.sampling import SamplerConfig, check_scheduler_name, make_scheduler
from harness.scoring_pool import FileSample, auto_processes, chunk_size, score_in_pool, verdicts
from harness.store import ImageStore, atomic_write_text

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)
DEFAULT_OUT = Path("harness-runs")


@dataclass
class EvalSettings:
    """Overrides of a run; None keeps the policy's or the benchmark's default."""

    limit: int | None = None  # first N prompts of each benchmark
    # a seeded subsample of N prompts spread over the tags (benchmarks.registry.spread_subset), after tags/limit
    sample: int | None = None
    sample_seed: int = 0
    tags: tuple[str, ...] | None = None  # keep only these tags/categories
    batch_size: int | None = None  # images per sampling batch; None: automatic (harness.generation.auto_batch_size)
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    eta: float | None = None
    scheduler: str | None = None  # "ddim", "pipeline" or a diffusers scheduler name (harness.sampling.SCHEDULERS)
    score_batch: int = 256
    # processes that score the images after generation; None: one per usable core when the scorers are the builtin
    # world's pixel oracles (single-threaded CPU code), else 1 (harness.scoring_pool.auto_processes)
    scoring_processes: int | None = None
    # processes that sample on the CPU, one thread each; None: one per usable core (at most 8) for a small model on
    # the CPU, else 1; the images are the same for any number (harness.generation.generation_processes)
    generation_processes: int | None = None
    # score each sampled batch on the writer thread while the next one is sampled (harness.api.ScoreAsWritten);
    # None: only when the model samples on an accelerator (see scores_while_generating)
    score_while_generating: bool | None = None
    data_dir: Path | None = None  # official benchmark data files (see harness.data)
    options: dict[str, str] = field(default_factory=dict)  # --option KEY=VALUE: benchmark options and models
    # device, dtype, torch.compile, attention/VAE slicing of the sampled model (harness.numerics); all "auto"/off:
    # the process's accelerator in float16, or the CPU in float32
    numerics: Numerics = field(default_factory=Numerics)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse values no run can honour, before any model loads: NaN guidance draws black images that then
        score, a negative limit silently drops the last prompts, zero steps or batch size crash mid-run."""
        for name, flag, value in (("limit", "--limit", self.limit), ("sample", "sample", self.sample),
                                  ("batch_size", "--batch-size", self.batch_size),
                                  ("num_inference_steps", "--steps", self.num_inference_steps),
                                  ("score_batch", "score batch", self.score_batch),
                                  ("scoring_processes", "--scoring-processes", self.scoring_processes),
                                  ("generation_processes", "--generation-processes", self.generation_processes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise HarnessError(f"{flag} {value!r}: {name} must be a whole number >= 1")
        for name, flag, value, low in (("guidance_scale", "--guidance", self.guidance_scale, None),
                                       ("eta", "--eta", self.eta, 0.0)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise HarnessError(f"{flag} {value!r}: {name} must be a finite number")
            if low is not None and value < low:
                raise HarnessError(f"{flag} {value!r}: {name} must be >= {low:g}")
        self.numerics.validate()


@dataclass
class ScoringJob:
    """Images to score for one benchmark: per prompt item, its image files, content keys and seeds (if known)."""

    bench: Benchmark
    world: str
    items: list[PromptItem]
    paths: list[list[Path]]
    keys: list[list[str]]
    seeds: list[list[int]] | None = None


def select_prompts(items: list[PromptItem], bench: Benchmark, settings: EvalSettings) -> list[PromptItem]:
    if settings.tags:
        known = {item.tag for item in items}
        unknown = sorted(set(settings.tags) - known)
        if unknown:
            raise HarnessError(
                f"unknown tag(s) {', '.join(unknown)} for {bench.name}; known: {', '.join(sorted(known))}")
        items = [item for item in items if item.tag in settings.tags]
    if settings.limit is not None:
        items = items[: settings.limit]
    if settings.sample is not None:
        items = spread_subset(items, settings.sample, settings.sample_seed)
    if not items:
        raise HarnessError(f"no prompts selected for {bench.name}; check --limit and --tags")
    return items


def evaluate(
    ckpt: str | Policy,
    benchmarks: list[str],
    out: Path | str = DEFAULT_OUT,
    settings: EvalSettings | None = None,
    method: str = "pretrained",
    training: dict | None = None,
    progress: bool = True,
) -> list[ResultRecord]:
    """Generate (or reuse) every benchmark image for ``ckpt``, score it and write one result record per benchmark.

    Returns the records (on the main process; other processes of a sharded run return an empty list).
    """
    settings = settings or EvalSettings()
    settings.validate()  # again: fields may have been set after construction
    if not any(name.strip() for name in benchmarks):
        raise HarnessError("no benchmark named; pass one or more, e.g. --bench geneval (see `harness bench list`)")
    # Fail on an unknown benchmark before loading a model.
    benches = [get_benchmark(name, settings.data_dir, settings.options) for name in benchmarks]
    if settings.scheduler is not None:
        check_scheduler_name(settings.scheduler)
    store = ImageStore(out)
    policy = ckpt if isinstance(ckpt, Policy) else resolve_lazily(ckpt, settings.numerics)
    if isinstance(ckpt, Policy) and not settings.numerics.is_auto:
        place(policy, settings.numerics)  # a policy passed in stays where its caller put it unless told otherwise
    # `harness eval --ckpt RUN/checkpoint` records the method and training of the run, as train-and-eval does,
    # rather than calling a trained model "pretrained".
    beside = training_summary_beside(ckpt) if isinstance(ckpt, str) and method == "pretrained" and training is None \
        else None
    trained_run = read_training_summary(beside) if beside is not None else None
    records = []
    for bench in benches:
        if trained_run is not None:
            method = trained_run["method"]
            training = {**training_from_summary(trained_run, bench.name), "checkpoint": str(ckpt)}
        bench.check_world(policy.world)
        overrides = {"num_inference_steps": settings.num_inference_steps, "guidance_scale": settings.guidance_scale,
                     "eta": settings.eta, "scheduler": settings.scheduler}
        sampler = SamplerConfig.for_policy(policy, **{**bench.generation_defaults(policy.world),
                                                      **{k: v for k, v in overrides.items() if v is not None}})
        items = select_prompts(bench.prompts(policy.world), bench, settings)
        seeds = [bench.seeds(item, policy.world) for item in items]
        requests = [GenerationRequest(item.prompt, s) for item, ss in zip(items, seeds) for s in ss]
        request_keys = image_keys(policy, requests, sampler)
        if not all(map(store.has, request_keys)):
            # Something must be sampled: an unknown scheduler or eta without DDIM fails now, before the scorers load
            # and before any generation. (Every cached image was sampled with this very config, so it is valid.)
            make_scheduler(policy, sampler)
        # Load the scorers first: a missing detector or VQA model fails now, not after an hour of generation. A
        # sharded run loads them in every process, as each scores its own shard.
        state = process_state()
        perception = bench.perception(policy.world)
        scoring = None
        if scores_while_generating(settings):
            flat_keys = _verdict_keys(items, _split_like(request_keys, seeds))
            places = [(item, k) for item, ss in zip(items, seeds) for k in range(len(ss))]
            scoring = ScoreAsWritten(bench, perception, [(*place, key) for place, key in zip(places, flat_keys)],
                                     store)
        started = time.monotonic()
        report = generate(policy, requests, sampler, store, batch_size=settings.batch_size, progress=progress,
                          after_write=scoring, processes=settings.generation_processes)
        generation_s = time.monotonic() - started
        keys = _split_like(report.keys, seeds)
        sharded_s = 0.0
        if state.num_processes > 1:
            processes = settings.scoring_processes or auto_processes(perception, state.num_processes)
            sharded_s = _score_shard(bench, perception, items, keys, report, store, settings.score_batch, progress,
                                     repair=partial(generate, policy, requests, sampler, store,
                                                    batch_size=settings.batch_size, progress=False),
                                     processes=processes)
            if not state.is_main_process:
                continue
        else:
            # A corrupt stored image that must be scored is regenerated here rather than failing the scoring below;
            # an image whose verdict is cached is not read at all.
            verdicts = _verdict_keys(items, keys)
            judged = store.scored(verdicts, stable_hash(bench.scorer_id(perception)))
            repair_images(store, report, policy, requests, sampler, batch_size=settings.batch_size,
                          only=[i for i, verdict in enumerate(verdicts) if verdict not in judged])
        job = ScoringJob(bench, policy.world, items, _split_like(report.paths(store), seeds), keys, seeds)
        generation = {"batch_size": report.batch_size, "batch_size_setting": settings.batch_size or "auto",
                      "generated": report.generated, "cached": report.cached}
        if report.forked_processes:  # sampled in forked 1-thread workers (same images; harness.generation)
            generation["forked_processes"] = report.forked_processes
        if scoring is not None and scoring.scored:  # inside the generation wall time, on the writer thread
            generation.update(scored_while_generating=scoring.scored,
                              scoring_while_generating_s=round(report.after_write_s, 2))
        record = score_job(job, store, settings, progress, perception, describe={
            "model": policy.name, "checkpoint_fingerprint": policy.fingerprint,
            "sampler": {**sampler.to_dict(), **policy.numerics_key},
            "generation": generation,
            "method": method, "training": with_run_details(training or {}), "generation_s": generation_s,
            "scoring_s": sharded_s})
        records.append(record)
    return records


def score(
    benchmark: str,
    images: Path | str,
    out: Path | str = DEFAULT_OUT,
    world: str | None = None,
    settings: EvalSettings | None = None,
    progress: bool = True,
) -> ResultRecord:
    """Score images made elsewhere, laid out in the benchmark's official folder format."""
    settings = settings or EvalSettings()
    settings.validate()
    bench = get_benchmark(benchmark, settings.data_dir, settings.options)
    store = ImageStore(out)
    contents = bench.read_image_folder(Path(images))
    for line in contents.skipped:
        log.warning("skipped %s", line)
    if not contents.items:
        raise HarnessError(f"{images}: no scorable images ({len(contents.skipped)} skipped: "
                           f"{'; '.join(contents.skipped[:3])})")
    world = world or bench.world_of(contents.items)
    kept = {id(item) for item in select_prompts(contents.items, bench, settings)}
    pairs = [(item, paths) for item, paths in zip(contents.items, contents.images) if id(item) in kept]
    items, paths = [p[0] for p in pairs], [p[1] for p in pairs]
    keys = [[_file_key(p) for p in ps] for ps in paths]
    job = ScoringJob(bench, world, items, paths, keys)
    folder = Path(images).resolve()
    return score_job(job, store, settings, progress, bench.perception(world), describe={
        "model": f"folder:{folder}", "checkpoint_fingerprint": stable_hash(keys), "sampler": {},
        "method": "external images", "training": {}, "generation_s": 0.0, "skipped": contents.skipped})


def score_job(job: ScoringJob, store: ImageStore, settings: EvalSettings, progress: bool,
              perception: dict[str, object], describe: dict) -> ResultRecord:
    """Score a job (reusing cached verdicts), aggregate, and write the run folder; returns the record.

    ``describe["scoring_s"]``: seconds already spent scoring this job before the call (a sharded run's shards), added
    to the record's scoring wall time."""
    bench, items = job.bench, job.items
    started = time.monotonic()
    scorer = bench.scorer_id(perception)
    results = score_cached(bench, perception, items, job.paths, job.keys, store, settings.score_batch, progress,
                           processes=settings.scoring_processes or auto_processes(perception))
    scoring_s = time.monotonic() - started + describe.get("scoring_s", 0.0)
    environment = environment_info()
    if "generation" in describe:  # how the images were made (batch size, how many this run sampled); not the sampler
        environment["generation"] = describe["generation"]
    options = {"limit": settings.limit, "tags": list(settings.tags or []), **scorer.get("options", {})}
    if settings.sample is not None:  # only when set, so the run keys of full evaluations stay what they were
        options.update(sample=settings.sample, sample_seed=settings.sample_seed)
    if describe.get("skipped"):
        options["skipped"] = describe["skipped"]
    seeds_info: dict = {}
    if job.seeds is not None:
        protocol = (bench.seeds.__doc__ or "").strip().splitlines()
        seeds_info = {"protocol": protocol[0] if protocol else "", "first_prompt": job.seeds[0]}
    record = ResultRecord(
        benchmark=bench.name,
        benchmark_version=bench.version,
        world=job.world,
        model=describe["model"],
        checkpoint_fingerprint=describe["checkpoint_fingerprint"],
        scores=bench.aggregate(results),
        n_prompts=len(items),
        n_images=sum(map(len, job.paths)),
        seeds=seeds_info,
        sampler=describe["sampler"],
        perception=scorer["perception"],
        options=options,
        method=describe["method"],
        training=describe["training"],
        wall_time_s={"generation": round(describe["generation_s"], 2), "scoring": round(scoring_s, 2)},
        environment=environment,
        created=environment["created"],
    )
    # Decided after scoring: T2I-CompBench learns which text parser it used only while reading its prompts.
    reasons = bench.comparability(job.world, record.sampler, perception, sorted({item.tag for item in items}))
    if settings.sample is not None:
        reasons.append(f"prompts: a seeded subsample of {len(items)} prompts (seed {settings.sample_seed}), not the "
                       "benchmark's full prompt set")
    record.comparable_to_published, record.comparability_reasons = not reasons, reasons
    run_dir = store.run_dir(run_name(record))
    write_samples(run_dir / "samples.jsonl", items, job.seeds, results, job.paths)
    bench.write_outputs(run_dir, items, results, job.paths)
    # Hashes and bootstrap intervals from the samples file just written: what compare and leaderboards check. The
    # previous record of this run folder lends its intervals when its samples file was byte-identical.
    attach_statistics(record, run_dir / "samples.jsonl", bench.aggregate, previous=_previous_record(run_dir))
    record.save(run_dir / "result.json")
    log.info("wrote %s", run_dir / "result.json")
    return record


def score_cached(bench: Benchmark, perception: dict[str, object], items: list[PromptItem], paths: list[list[Path]],
                 keys: list[list[str]], store: ImageStore, batch: int, progress: bool,
                 processes: int = 1) -> list[SampleResult]:
    """Score every image, reusing verdicts cached under (image content key, scorer id, prompt spec); the uncached
    ones in chunks of at most ``batch``, spread over ``processes`` processes (:mod:`harness.scoring_pool`)."""
    scorer = stable_hash(bench.scorer_id(perception))
    flat = _flat_samples(items, paths, keys)
    cached = store.cached_scores([f[3] for f in flat], scorer)
    todo = list({f[3]: f for f in flat if f[3] not in cached}.values())  # byte-identical samples: scored once
    size = chunk_size(len(todo), batch, processes) if processes > 1 else batch
    chunks = [todo[start : start + size] for start in range(0, len(todo), size)]
    cached.update(_score_chunks(bench, perception, chunks, store, scorer, progress, processes))
    # A verdict is keyed by content, so an identical image elsewhere (a copied prompt folder, a repeated sample)
    # hands back the indices it was first scored under: label every verdict with the sample it is returned for.
    return [SampleResult(**{**cached[key], "prompt_index": item.index, "image_index": k})
            for item, k, _, key in flat]


def _flat_samples(items: list[PromptItem], paths: list[list[Path]], keys: list[list[str]]) -> list[FileSample]:
    """Every image of a job, flat in prompt order, with its verdict key (:func:`_verdict_keys`)."""
    places = [(item, k, path) for item, ps in zip(items, paths) for k, path in enumerate(ps)]
    return [(*place, verdict) for place, verdict in zip(places, _verdict_keys(items, keys))]


def _score_chunks(bench: Benchmark, perception: dict[str, object], chunks: list[list[FileSample]], store: ImageStore,
                  scorer: str, progress: bool, processes: int = 1) -> dict[str, object]:
    """Score each chunk in one ``bench.score`` call (in this process, or in a pool of ``processes``:
    :func:`harness.scoring_pool.score_in_pool`) and cache its verdicts in one transaction as soon as it is done, so
    an interrupted run keeps every finished chunk; returns the fresh verdicts by key."""
    fresh: dict[str, object] = {}
    scored = score_in_pool(bench, perception, chunks, processes) if processes > 1 and len(chunks) > 1 \
        else (verdicts(bench, perception, chunk) for chunk in chunks)
    with tqdm(total=len(chunks), disable=not progress or not chunks, desc="score", unit="batch") as bar:
        for done in scored:
            store.put_scores(done, scorer)
            fresh.update(done)
            bar.update()
    return fresh


def _score_and_cache(bench: Benchmark, perception: dict[str, object],
                     samples: list[tuple[PromptItem, int, Image.Image, str]], store: ImageStore,
                     scorer: str) -> dict[str, object]:
    """One ``bench.score`` call over (item, image index, image, verdict key) samples, its verdicts cached in one
    transaction; returns them by verdict key."""
    results = bench.score([(item, k, image) for item, k, image, _ in samples], perception)
    done = {key: asdict(result) for (*_, key), result in zip(samples, results)}
    store.put_scores(done, scorer)
    return done


def scores_while_generating(settings: EvalSettings) -> bool:
    """Whether an evaluation scores each batch as it is written (:class:`ScoreAsWritten`): as set, else (None) only
    when the model samples on an accelerator.

    Why not on a CPU: there the denoiser's threads already fill the cores, and the scorer on the writer thread takes
    its share from them. Measured on the 2-core machine (the main job, 2,212 images, oracle v11): 162 s wall
    overlapped against 160 s scoring after generation; the forwards took 158 s instead of 138 s, so scoring only moved
    inside them. With the model on a GPU the cores wait on the device, and the scoring fills that wait."""
    if settings.score_while_generating is not None:
        return settings.score_while_generating
    return settings.numerics.torch_device().type != "cpu"


class ScoreAsWritten:
    """Scores each batch of a 1-process or sharded evaluation as the generation engine writes it (its
    ``after_write``, on the writer thread), caching the verdicts where :func:`score_cached` looks first.

    Why: with the model on a GPU the cores mostly wait on the device, and the scorers (the builtin oracle on the CPU;
    a detector or VQA model on the same GPU between the denoiser's kernels) fill that wait instead of running after
    the last batch (on a CPU they only take cores from the denoiser: :func:`scores_while_generating`). The verdicts
    are the same: each image is scored alone against its prompt (the same
    ``bench.score`` on the same pixels: the PNG the writer stores is lossless), and cached under the same content
    key, so a later run, or :func:`score_cached` right after generation, reads them instead of scoring again.
    ``flat`` is one (prompt item, image index, verdict key) per generation request, in request order.
    """

    def __init__(self, bench: Benchmark, perception: dict[str, object], flat: list[tuple[PromptItem, int, str]],
                 store: ImageStore) -> None:
        self.bench, self.perception, self.flat, self.store = bench, perception, flat, store
        self.scorer = stable_hash(bench.scorer_id(perception))
        self.scored = 0

    def __call__(self, indices: list[int], images: list[Image.Image]) -> None:
        judged = self.store.scored([self.flat[i][2] for i in indices], self.scorer)
        todo = {}  # one sample per verdict key (byte-identical images of one prompt are one verdict)
        for i, image in zip(indices, images):
            item, k, key = self.flat[i]
            if key not in judged:
                todo[key] = (item, k, image, key)
        if todo:
            _score_and_cache(self.bench, self.perception, list(todo.values()), self.store, self.scorer)
            self.scored += len(todo)


def _shard_chunks(n: int, batch: int, processes: int) -> list[tuple[int, int]]:
    """Cut ``n`` samples into the fewest equal chunks of at most ``batch`` that deal out evenly to ``processes``:
    ``rounds = ceil(n / (processes * batch))``, chunks of ``ceil(n / (processes * rounds))`` samples, as (start,
    stop) ranges. Depends only on the run, never on what is cached, so every process cuts the same chunks unasked."""
    rounds = math.ceil(n / (processes * batch))
    size = max(1, math.ceil(n / (processes * rounds)))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _score_shard(bench: Benchmark, perception: dict[str, object], items: list[PromptItem], keys: list[list[str]],
                 report: GenerationReport, store: ImageStore, batch: int, progress: bool,
                 repair: Callable[[], object], processes: int = 1) -> float:
    """Score this process's shard of a sharded run into the store's verdict cache and wait for every process;
    returns the seconds that took (the check and repair of images before it excluded, as in a 1-process run).

    The job's distinct verdicts (in the order :func:`score_cached` takes them) are cut by :func:`_shard_chunks` and
    whole chunks dealt round-robin, as generation deals its batches; a process scores the uncached samples of its
    chunks, so the main process's :func:`score_cached` afterwards finds every verdict cached. Verdicts are cached per
    image and prompt spec, so they are those a single process computes. A stored image that no longer decodes is
    regenerated first: each process reads its unscored images (the store deletes a corrupt one), all wait, and if
    any image is gone every process calls ``repair`` (a sharded :func:`~harness.generation.generate`) together, as
    a collective call made by some processes only would never return.
    """
    state = process_state()
    scorer = stable_hash(bench.scorer_id(perception))
    flat = _flat_samples(items, _split_like(report.paths(store), keys), keys)
    # One sample per verdict, the last of byte-identical ones, in first-seen order: score_cached's choice
    distinct = list({f[3]: i for i, f in enumerate(flat)}.values())
    mine = [distinct[start:stop] for start, stop in
            _shard_chunks(len(distinct), batch, state.num_processes)[state.process_index :: state.num_processes]]
    judged = store.scored([flat[i][3] for chunk in mine for i in chunk], scorer)
    todo = [left for left in ([i for i in chunk if flat[i][3] not in judged] for chunk in mine) if left]
    for i in (i for chunk in todo for i in chunk):
        store.load(report.keys[i])
    state.wait_for_everyone()
    if not all(map(store.has, report.keys)):
        repair()
    started = time.monotonic()
    _score_chunks(bench, perception, [[flat[i] for i in chunk] for chunk in todo], store, scorer,
                  progress and state.is_local_main_process, processes)
    state.wait_for_everyone()
    return time.monotonic() - started


def _verdict_keys(items: list[PromptItem], keys: list[list[str]]) -> list[str]:
    """The score cache key of each image, flat in prompt order: its content key with its prompt's spec (the same
    image judged against another prompt is another verdict)."""
    return [stable_hash([key, item.metadata]) for item, ks in zip(items, keys) for key in ks]


def _previous_record(run_dir: Path) -> ResultRecord | None:
    """The record an earlier run left in ``run_dir``; None when there is none or it cannot be read."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    try:
        return ResultRecord.load(path)
    except HarnessError:
        return None


def resolve_lazily(spec: str, numerics: Numerics | None = None) -> Policy:
    """``--ckpt spec`` as a policy placed as ``numerics`` says (default: auto). A builtin-model checkpoint
    (``builtin:NAME`` or a saved folder of the builtin pipeline) becomes a :class:`~harness.policy.LazyPolicy` whose
    header comes from its ``model_index.json`` and fingerprint, so a run whose images are all cached loads neither
    its weights nor diffusers (and needs no GPU); every other checkpoint (Stable Diffusion, adapters) is resolved now
    by :func:`harness.checkpoints.resolve_checkpoint`."""
    numerics = numerics or Numerics()

    def load() -> Policy:
        from harness.checkpoints import resolve_checkpoint

        numerics.check_available()
        policy = resolve_checkpoint(spec, device=str(numerics.torch_device()), dtype=numerics.torch_dtype())
        numerics.apply_switches(policy)
        policy.numerics_key = numerics.key()
        return policy

    header = builtin_header(spec)
    if header is not None and numerics.vae_slicing:  # known from the header: fail before any weights load
        raise HarnessError(f"--vae-slicing: {spec} is a builtin model, which has no VAE to slice (it decodes pixels "
                           "directly); leave the switch off")
    return load() if header is None else LazyPolicy(header, load, numerics.key())


# harness.checkpoints.BUILTIN_PREFIX / BUILTIN_DIR and harness.builtin.model.PIPELINE_CLASS, named here because
# importing those modules loads diffusers (tests/test_cached_eval.py checks that they agree).
BUILTIN_PREFIX = "builtin:"
BUILTIN_DIR = Path(__file__).parent / "builtin" / "checkpoints"
BUILTIN_PIPELINE = "HarnessBuiltinPipeline"


def builtin_header(spec: str) -> PolicyHeader | None:
    """The header of a builtin-model checkpoint folder without its weights; None for anything else (or anything
    unreadable, which the eager resolution then names in its error)."""
    folder = BUILTIN_DIR / spec.removeprefix(BUILTIN_PREFIX) if spec.startswith(BUILTIN_PREFIX) \
        else Path(spec).expanduser()
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("_class_name") != BUILTIN_PIPELINE \
            or not isinstance(index.get("resolution"), int):
        return None
    size = index["resolution"]
    return PolicyHeader(name=spec, world="builtin", fingerprint=fingerprint(folder), default_height=size,
                        default_width=size, sampler_defaults=index.get("sampler_defaults") or {})


def write_samples(path: Path, items: list[PromptItem], seeds: list[list[int]] | None, results: list[SampleResult],
                  paths: list[list[Path]]) -> None:
    """Per-image results as JSON lines: prompt, tag, seed, image path, score and details."""
    lines = []
    position = 0
    for i, (item, ps) in enumerate(zip(items, paths)):
        for k, p in enumerate(ps):
            r = results[position]
            seed = seeds[i][k] if seeds is not None else None
            score = None if math.isnan(r.score) else r.score  # an excluded image: null, as strict JSON has no NaN
            lines.append(json.dumps({"prompt_index": item.index, "image_index": k, "prompt": item.prompt,
                                     "tag": item.tag, "seed": seed, "image": str(p), "score": score,
                                     "details": r.details}))
            position += 1
    atomic_write_text(path, "\n".join(lines) + "\n")


def _file_key(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:32]


def _split_like(flat: list, groups: list[list]) -> list[list]:
    out, position = [], 0
    for group in groups:
        out.append(flat[position : position + len(group)])
        position += len(group)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-60:] or "model"


def run_name(record: ResultRecord) -> str:
    """The name of ``record``'s run folder under ``STORE/runs``: benchmark, model and a hash of what decides its
    images and verdicts (checkpoint fingerprint, sampler, options, benchmark version), so a re-run lands in the same
    folder and a changed setting in another."""
    run_key = stable_hash([record.checkpoint_fingerprint, record.sampler, record.options,
                           record.benchmark_version])[:10]
    return f"{record.benchmark}-{_slug(record.model)}-{run_key}"


TRAIN_PROMPTS = "builtin:geneval-train"  # the online methods' training prompts when none are named


def train(
    method: str,
    ckpt: str,
    feedback: str | None,
    prompts: str | None,
    budget: int,
    out: Path | str,
    seed: int = 0,
    settings: dict[str, str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    allow_overlap: bool = False,
    progress: bool = True,
    data: Path | str | None = None,
) -> Path:
    """Align ``ckpt``; returns the checkpoint folder, which ``--ckpt`` loads. Online methods (d3po, ddpo, grpo,
    dpok) sample ``budget`` images on ``prompts`` (default builtin:geneval-train) and learn from ``feedback``
    (:func:`trainers.loop.train`); offline methods (diffusion-dpo, rankdpo) take ``budget`` optimiser steps on the
    ranked dataset ``data``, with ``feedback`` and ``prompts`` None (:func:`trainers.offline.train_offline`)."""
    result, _ = _run_training(method, ckpt, feedback, prompts, data, budget, Path(out), seed=seed, settings=settings,
                              resume=resume, overwrite=overwrite, allow_overlap=allow_overlap, progress=progress)
    return result.checkpoint


def train_and_eval(
    method: str,
    ckpt: str,
    feedback: str | None,
    prompts: str | None,
    budget: int,
    out: Path | str,
    benchmarks: list[str],
    eval_settings: EvalSettings | None = None,
    monitor_every: int | None = None,
    seed: int = 0,
    settings: dict[str, str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    allow_overlap: bool = False,
    eval_out: Path | str | None = None,
    progress: bool = True,
    data: Path | str | None = None,
) -> list[ResultRecord]:
    """Train as :func:`train`, then evaluate base and trained on ``benchmarks`` with the same seeds (in ``eval_out``,
    default OUT/eval); returns the records in the order base, trained for each benchmark.

    The trained records' ``method`` is the method's name and ``training`` is its kind's record
    (:func:`trainers.loop.training_record`: feedback, config, prompts and their overlap, cost, monitor curves;
    :func:`trainers.offline.training_record`: the dataset and its provenance), both with ``in_reward`` (the training
    signal is that benchmark's own scorer, so the gain is not held-out evidence). ``monitor_every``: score a
    held-out benchmark subset every that many rounds (online methods only)."""
    eval_settings = eval_settings or EvalSettings()
    out = Path(out)
    result, training_record = _run_training(
        method, ckpt, feedback, prompts, data, budget, out, seed=seed, settings=settings, resume=resume,
        overwrite=overwrite, allow_overlap=allow_overlap, progress=progress, benchmarks=benchmarks,
        eval_settings=eval_settings, monitor_every=monitor_every)
    eval_out = Path(eval_out) if eval_out is not None else out / "eval"
    base, trained = (resolve_lazily(spec, eval_settings.numerics) for spec in (ckpt, str(result.checkpoint)))
    records = []
    for name in benchmarks:
        records += evaluate(base, [name], out=eval_out, settings=eval_settings, progress=progress)
        records += evaluate(trained, [name], out=eval_out, settings=eval_settings, method=result.summary["method"],
                            training=training_record(result, name), progress=progress)
    return records


def _run_training(method: str, ckpt: str, feedback: str | None, prompts: str | None, data: Path | str | None,
                  budget: int, out: Path, benchmarks: list[str] | None = None,
                  eval_settings: EvalSettings | None = None, monitor_every: int | None = None,
                  **options: Any) -> tuple[Any, Callable[[Any, str], dict]]:
    """The one place that routes a training run: an offline method (``data``) to
    :func:`trainers.offline.train_offline`, an online one (``feedback``) to :func:`trainers.loop.train`; returns the
    ``TrainResult`` and the kind's ``training_record(result, benchmark)``.

    With ``benchmarks`` (train-and-eval), every input error (wrong sources for the method's kind, an unknown
    benchmark, a bad ``monitor_every``) is raised before any training; ``options`` are the trainers' shared
    keyword arguments (seed, settings, resume, overwrite, allow_overlap, progress)."""
    from trainers.offline import check_sources

    offline = check_sources(method, feedback, prompts, data)
    if offline and monitor_every is not None:
        raise HarnessError(f"--monitor-every watches the rounds of an online method; {method} has none, drop it")
    data_dir = None
    if benchmarks is not None:
        eval_settings = eval_settings or EvalSettings()
        data_dir = eval_settings.data_dir
        for name in benchmarks:  # an unknown benchmark fails now, not after training
            get_benchmark(name, data_dir, eval_settings.options)
    if offline:
        from trainers.offline import train_offline, training_record

        return train_offline(method, ckpt, data, budget, out, data_dir=data_dir, **options), training_record
    from trainers.loop import monitor_for, training_record
    from trainers.loop import train as train_online

    monitor = None if monitor_every is None else monitor_for(ckpt, benchmarks or [], monitor_every, out,
                                                             options["seed"], eval_settings or EvalSettings())
    result = train_online(method, ckpt, feedback, prompts or TRAIN_PROMPTS, budget, out, monitor=monitor,
                          data_dir=data_dir, **options)
    return result, training_record


def train_reward(pairs: Path | str, out: Path | str, world: str = "builtin", seed: int = 0, epochs: int = 30,
                 overwrite: bool = False) -> dict:
    """Train a reward model with the Bradley-Terry loss on a pairwise JSONL file (``harness train-reward``); returns
    its metrics. The folder loads as ``--feedback reward:OUT``. See :func:`trainers.reward_model.train_reward_model`."""
    from trainers.reward_model import train_reward_model

    model = train_reward_model(Path(pairs), Path(out), world=world, seed=seed, epochs=epochs, overwrite=overwrite)
    return model.metrics


def method_config(method: str, ckpt: str = "builtin:shapes", settings: dict[str, str] | None = None) -> dict:
    """The full config an online ``method`` trains ``ckpt`` with under ``--set`` ``settings`` (the checkpoint
    world's defaults, then the overrides, checked as ``harness train`` checks them), in the JSON form a run's
    ``summary.json`` records it; loads no model. A table compares an existing run with it before adopting the run."""
    from trainers.loop import checkpoint_world, resolve_config

    _, config, _ = resolve_config(method, checkpoint_world(ckpt), settings)
    return json.loads(json.dumps(asdict(config)))


def build_ranked(ckpts: list[str], prompts: str, k: int, rewards: list[str], out: Path | str,
                 samplers: list[str] | None = None, n_prompts: int | None = None, seed: int = 0,
                 batch_size: int = 32, progress: bool = True) -> object:
    """Build (or finish) a Syn-Pic-style ranked preference dataset (``harness data build-ranked``); returns the
    build summary. See :func:`trainers.ranked_data.build_ranked_dataset`."""
    from trainers.ranked_data import build_ranked_dataset

    return build_ranked_dataset(ckpts, prompts, k, rewards, Path(out), samplers=samplers, n_prompts=n_prompts,
                                seed=seed, batch_size=batch_size, progress=progress)


def compare(a: Path | str, b: Path | str, replicates: int = 1000, seed: int = 0) -> object:
    """Paired comparison of B against A (run folders or published records) on the same prompts and seeds
    (``harness compare``); returns a :class:`harness.compare.Comparison`, or raises naming why they cannot be."""
    from harness.compare import compare as run_compare

    return run_compare(a, b, replicates=replicates, seed=seed)


def leaderboard_publish(run_dirs: list[Path | str], results: Path | str = "results",
                        training_summary: Path | str | None = None) -> list[Path]:
    """Publish run folders as validated records in ``RESULTS/records`` (``harness leaderboard publish``);
    ``training_summary``: the training run's summary.json, for a trained checkpoint evaluated with plain eval."""
    from harness.leaderboard import publish

    return [publish(run_dir, results, training_summary=training_summary) for run_dir in run_dirs]


def leaderboard_build(results: Path | str = "results") -> list[Path]:
    """Render ``LEADERBOARD.md``, ``leaderboard.html`` and plots from the records (``harness leaderboard build``)."""
    from harness.leaderboard import build

    return build(results)


def leaderboard_check(results: Path | str = "results") -> list[str]:
    """Problems with the committed leaderboard, one line each; empty when it is what the records produce."""
    from harness.leaderboard import check

    return check(results)


def export(records: list[Path | str], out: Path | str, format: str = "eee") -> list[Path]:
    """Export records (run folders or published records) to another schema (``harness export``); ``eee``: Every
    Eval Ever v0.3.0. Returns the files written."""
    if format != "eee":
        raise HarnessError(f"unknown export format {format!r}; available: eee")
    from harness.eee import export_eee

    return export_eee(records, out)


def view(paths: list[Path | str] | tuple[Path | str, ...] = (), results: Path | str | None = None,
         stores: list[Path | str] | tuple[Path | str, ...] = (), host: str = "127.0.0.1", port: int = 8766,
         token: bool | str = True) -> object:
    """Serve the image viewer (``harness view``) on a background thread: run folders, record files or image stores
    in ``paths``, every record of ``results`` (and its leaderboard page), images also looked up in ``stores``.
    Returns the running :class:`harness.view.ViewServer` (``.url``, ``.wait()``, ``.stop()``)."""
    from harness.view import serve

    return serve(paths, results=results, stores=stores, host=host, port=port, token=token, announce=log.warning)
