"""The Python API; every CLI verb is a thin wrapper over one function here, with the same names."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, ImageOps
from tqdm.auto import tqdm

from benchmarks.registry import Benchmark, PromptItem, SampleResult, get_benchmark
from harness.errors import HarnessError
from harness.generation import GenerationRequest, generate, process_state, repair_images
from harness.hashing import stable_hash
from harness.policy import Policy
from harness.records import ResultRecord, environment_info
from harness.sampling import SamplerConfig
from harness.store import ImageStore, atomic_write_text

log = logging.getLogger(__name__)
DEFAULT_OUT = Path("harness-runs")


@dataclass
class EvalSettings:
    """Overrides of a run; None keeps the policy's or the benchmark's default."""

    limit: int | None = None  # first N prompts of each benchmark
    tags: tuple[str, ...] | None = None  # keep only these tags/categories
    batch_size: int = 32
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    eta: float | None = None
    score_batch: int = 256
    data_dir: Path | None = None  # official benchmark data files (see harness.data)
    options: dict[str, str] = field(default_factory=dict)  # --option KEY=VALUE: benchmark options and models


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
    # Fail on an unknown benchmark before loading a model.
    benches = [get_benchmark(name, settings.data_dir, settings.options) for name in benchmarks]
    from harness.checkpoints import resolve_checkpoint

    store = ImageStore(out)
    policy = ckpt if isinstance(ckpt, Policy) else resolve_checkpoint(ckpt)
    records = []
    for bench in benches:
        bench.check_world(policy.world)
        overrides = {"num_inference_steps": settings.num_inference_steps, "guidance_scale": settings.guidance_scale,
                     "eta": settings.eta}
        sampler = SamplerConfig.for_policy(policy, **{**bench.generation_defaults(policy.world),
                                                      **{k: v for k, v in overrides.items() if v is not None}})
        items = select_prompts(bench.prompts(policy.world), bench, settings)
        seeds = [bench.seeds(item, policy.world) for item in items]
        requests = [GenerationRequest(item.prompt, s) for item, ss in zip(items, seeds) for s in ss]
        # Load the scorers first: a missing detector or VQA model fails now, not after an hour of generation.
        perception = bench.perception(policy.world) if process_state().is_main_process else {}
        started = time.monotonic()
        report = generate(policy, requests, sampler, store, batch_size=settings.batch_size, progress=progress)
        generation_s = time.monotonic() - started
        if not process_state().is_main_process:
            continue
        # A corrupt cached file is regenerated here rather than failing the scoring below.
        repair_images(store, report, policy, requests, sampler, batch_size=settings.batch_size)
        job = ScoringJob(bench, policy.world, items, _split_like(report.paths(store), seeds),
                         _split_like(report.keys, seeds), seeds)
        record = score_job(job, store, settings, progress, perception, describe={
            "model": policy.name, "checkpoint_fingerprint": policy.fingerprint, "sampler": sampler.to_dict(),
            "method": method, "training": training or {}, "generation_s": generation_s})
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
    """Score a job (reusing cached verdicts), aggregate, and write the run folder; returns the record."""
    bench, items = job.bench, job.items
    started = time.monotonic()
    scorer = bench.scorer_id(perception)
    results = score_cached(bench, perception, items, job.paths, job.keys, store, settings.score_batch, progress)
    scoring_s = time.monotonic() - started
    environment = environment_info()
    options = {"limit": settings.limit, "tags": list(settings.tags or []), **scorer.get("options", {})}
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
    run_key = stable_hash([record.checkpoint_fingerprint, record.sampler, record.options, bench.version])[:10]
    run_dir = store.run_dir(f"{bench.name}-{_slug(record.model)}-{run_key}")
    write_samples(run_dir / "samples.jsonl", items, job.seeds, results, job.paths)
    bench.write_outputs(run_dir, items, results, job.paths)
    record.save(run_dir / "result.json")
    log.info("wrote %s", run_dir / "result.json")
    return record


def score_cached(bench: Benchmark, perception: dict[str, object], items: list[PromptItem], paths: list[list[Path]],
                 keys: list[list[str]], store: ImageStore, batch: int, progress: bool) -> list[SampleResult]:
    """Score every image, reusing verdicts cached under (image content key, scorer id, prompt spec)."""
    scorer = stable_hash(bench.scorer_id(perception))
    flat = [(item, k, path, stable_hash([key, item.metadata]))
            for item, ps, ks in zip(items, paths, keys) for k, (path, key) in enumerate(zip(ps, ks))]
    cached = store.cached_scores([f[3] for f in flat], scorer)
    todo = [f for f in flat if f[3] not in cached]
    fresh: dict[str, object] = {}
    for start in tqdm(range(0, len(todo), batch), disable=not progress or not todo, desc="score", unit="batch"):
        chunk = todo[start : start + batch]
        samples = [(item, k, _open_rgb(path)) for item, k, path, _ in chunk]
        for (*_, key), result in zip(chunk, bench.score(samples, perception)):
            fresh[key] = asdict(result)
    store.put_scores(fresh, scorer)
    cached.update(fresh)
    return [SampleResult(**cached[f[3]]) for f in flat]


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


def _open_rgb(path: Path) -> Image.Image:
    """As the official evaluators read images: EXIF orientation applied, then RGB."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


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
