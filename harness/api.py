"""The Python API; every CLI verb is a thin wrapper over one function here, with the same names."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from benchmarks.registry import Benchmark, PromptItem, SampleResult, get_benchmark
from harness.errors import HarnessError
from harness.generation import GenerationRequest, generate, load_images, process_state
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


def select_prompts(bench: Benchmark, world: str, settings: EvalSettings) -> list[PromptItem]:
    items = bench.prompts(world)
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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-60:] or "model"


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
    benches = [get_benchmark(name) for name in benchmarks]  # fail on an unknown name before loading a model
    from harness.checkpoints import resolve_checkpoint

    store = ImageStore(out)
    policy = ckpt if isinstance(ckpt, Policy) else resolve_checkpoint(ckpt)
    sampler = SamplerConfig.for_policy(policy, num_inference_steps=settings.num_inference_steps,
                                       guidance_scale=settings.guidance_scale, eta=settings.eta)
    state = process_state()
    records = []
    for bench in benches:
        bench.check_world(policy.world)
        items = select_prompts(bench, policy.world, settings)
        seeds = [bench.seeds(item, policy.world) for item in items]
        requests = [GenerationRequest(item.prompt, s) for item, ss in zip(items, seeds) for s in ss]
        started = time.monotonic()
        report = generate(policy, requests, sampler, store, batch_size=settings.batch_size, progress=progress)
        generation_s = time.monotonic() - started
        if not state.is_main_process:
            continue
        started = time.monotonic()
        images = load_images(store, report, policy, requests, sampler, batch_size=settings.batch_size)
        perception = bench.perception(policy.world)
        scorer = bench.scorer_id(perception)
        results = score_cached(bench, perception, items, seeds, images, report.keys, store, settings.score_batch,
                               progress)
        scoring_s = time.monotonic() - started
        scores = bench.aggregate(results)
        environment = environment_info()
        record = ResultRecord(
            benchmark=bench.name,
            benchmark_version=bench.version,
            world=policy.world,
            model=policy.name,
            checkpoint_fingerprint=policy.fingerprint,
            scores=scores,
            n_prompts=len(items),
            n_images=len(requests),
            seeds={"protocol": bench.seeds.__doc__.strip().splitlines()[0] if bench.seeds.__doc__ else "",
                   "first": seeds[0][:4], "per_prompt": seeds if len(seeds) <= 8 else "see samples.jsonl"},
            sampler=sampler.to_dict(),
            perception=scorer["perception"],
            options={"limit": settings.limit, "tags": list(settings.tags or []), **scorer.get("options", {})},
            method=method,
            training=training or {},
            wall_time_s={"generation": round(generation_s, 2), "scoring": round(scoring_s, 2)},
            environment=environment,
            created=environment["created"],
        )
        run_key = stable_hash([policy.fingerprint, record.sampler, record.options, bench.version])[:10]
        run_dir = store.run_dir(f"{bench.name}-{_slug(policy.name)}-{run_key}")
        paths = report.paths(store)
        per_item = [paths[i : i + len(ss)] for i, ss in zip(_offsets(seeds), seeds)]
        write_samples(run_dir / "samples.jsonl", items, seeds, results, per_item)
        bench.write_outputs(run_dir, items, results, per_item)
        record.save(run_dir / "result.json")
        log.info("wrote %s", run_dir / "result.json")
        records.append(record)
    return records


def _offsets(seeds: list[list[int]]) -> list[int]:
    offsets, total = [], 0
    for ss in seeds:
        offsets.append(total)
        total += len(ss)
    return offsets


def score_cached(bench: Benchmark, perception: dict[str, object], items: list[PromptItem], seeds: list[list[int]],
                 images: list, keys: list[str], store: ImageStore, batch: int, progress: bool) -> list[SampleResult]:
    """Score every image, reusing verdicts cached under (image key, scorer id, prompt spec)."""
    scorer = stable_hash(bench.scorer_id(perception))
    samples, score_keys = [], []
    position = 0
    for item, ss in zip(items, seeds):
        for k in range(len(ss)):
            samples.append((item, k, images[position]))
            score_keys.append(stable_hash([keys[position], item.metadata]))
            position += 1
    cached = store.cached_scores(score_keys, scorer)
    todo = [i for i, key in enumerate(score_keys) if key not in cached]
    fresh: dict[str, object] = {}
    for start in tqdm(range(0, len(todo), batch), disable=not progress or not todo, desc="score", unit="batch"):
        chunk = todo[start : start + batch]
        for i, result in zip(chunk, bench.score([samples[i] for i in chunk], perception)):
            fresh[score_keys[i]] = asdict(result)
    store.put_scores(fresh, scorer)
    cached.update(fresh)
    return [SampleResult(**cached[key]) for key in score_keys]


def write_samples(path: Path, items: list[PromptItem], seeds: list[list[int]], results: list[SampleResult],
                  paths: list[list[Path]]) -> None:
    """Per-image results as JSON lines: prompt, tag, seed, image path, score and details."""
    lines = []
    position = 0
    for item, ss, ps in zip(items, seeds, paths):
        for k, (seed, p) in enumerate(zip(ss, ps)):
            r = results[position]
            lines.append(json.dumps({"prompt_index": item.index, "image_index": k, "prompt": item.prompt,
                                     "tag": item.tag, "seed": seed, "image": str(p), "score": r.score,
                                     "details": r.details}))
            position += 1
    atomic_write_text(path, "\n".join(lines) + "\n")
