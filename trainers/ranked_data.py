"""Synthetic ranked preference data (RankDPO's Syn-Pic recipe, ``specs/trainers.md``): k images per prompt from one
or several generators, every image scored by n reward sources, aggregated per prompt into ψ and a ranking.

ψ is the averaged pairwise win probability (RankDPO, Algorithm 1): for each reward model m and each ordered pair
(i, j), i ≠ j, image i wins when R_m(x_i) > R_m(x_j) (a tie is a win for neither), and

    ψ_i = #wins_i / (n · (k − 1))  ∈ [0, 1];     ranking = images by ψ descending (equal ψ keep generation order).

A dataset is a folder::

    ranked.parquet   one row per prompt: prompt, tag, metadata (JSON), images (paths relative to the folder),
                     image_keys, generators (index into the provenance per image), seeds, scores [n][k], psi,
                     ranking (image indices, best first); provenance in the file's metadata (key ``harness``)
    build.json       provenance (generators: ckpt, fingerprint, sampler; rewards: spec, scorer id, version),
                     cost (images generated and cached, scores computed and cached, wall time) and skipped rows
    store/           a :class:`harness.store.ImageStore`: content-keyed images and the per-image score cache

The build is resumable: images are generated through :func:`harness.generation.generate` (what the store holds is
not regenerated) and scores are cached per image and reward version in the store after every chunk, so a killed
build re-run neither regenerates nor rescores. The Parquet file is written last, atomically.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.registry import PromptItem
from harness.errors import DataError, HarnessError
from harness.hashing import stable_hash
from harness.store import ImageStore, atomic_write_bytes, atomic_write_json

DATASET_FILE = "ranked.parquet"
BUILD_FILE = "build.json"
STORE_DIR = "store"
METADATA_KEY = b"harness"
SEED_STRIDE = 1_000_000  # seeds of build seed s are s * SEED_STRIDE + prompt * k + slot


def psi_from_scores(scores: np.ndarray) -> np.ndarray:
    """ψ [k] from the scores [n, k] of n reward models for one prompt's k images (see the module docstring)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"need scores of shape [n_models, k >= 2], got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    n, k = scores.shape
    wins = (scores[:, :, None] > scores[:, None, :]).sum(axis=(0, 2))
    return wins / (n * (k - 1))


def ranking_from_psi(psi: Sequence[float]) -> list[int]:
    """Image indices by ψ descending; equal ψ keep their index order."""
    return [int(i) for i in np.argsort(-np.asarray(psi, dtype=float), kind="stable")]


# --- reward sources ---------------------------------------------------------------------------------------------


@dataclass
class RewardSource:
    """One reward model: ``score(images, items)`` gives one float per image (higher is better).

    ``version`` identifies what decides the scores (the feedback's scorer id); the score cache is keyed by it, so a
    changed reward is rescored and an unchanged one never is.
    """

    spec: str
    scorer_id: dict
    score: Callable[[list[Image.Image], list[PromptItem]], np.ndarray]

    @property
    def version(self) -> str:
        return stable_hash({"spec": self.spec, "scorer": self.scorer_id}, length=16)


def feedback_reward(spec: str, world: str) -> RewardSource:
    """A scalar source of :mod:`trainers.feedback` (``objective:NAME``, ``reward:NAME|PATH``, ...) as a reward."""
    from trainers.feedback import parse_feedback

    feedback = parse_feedback(spec, world)

    def score(images: list[Image.Image], items: list[PromptItem]) -> np.ndarray:
        batch = feedback.evaluate(images, items, list(range(len(images))))
        if batch.rewards is None:
            raise HarnessError(f"--rewards {spec}: gives preferences only; ranked data needs scalar rewards")
        return np.asarray(batch.rewards, dtype=float)

    return RewardSource(spec, feedback.scorer_id(), score)


# --- generators -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generator:
    """A checkpoint under one sampler setting (``sampler``: SamplerConfig overrides; empty = the model's defaults)."""

    ckpt: str
    sampler: dict = field(default_factory=dict, hash=False)


SAMPLER_KEYS = {"steps": ("num_inference_steps", int), "guidance": ("guidance_scale", float), "eta": ("eta", float),
                "scheduler": ("scheduler", str), "height": ("height", int), "width": ("width", int)}


def parse_sampler(text: str) -> dict:
    """``steps=10,guidance=2.0`` -> SamplerConfig overrides; ``""`` -> none."""
    overrides: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in SAMPLER_KEYS:
            raise HarnessError(f"--sampler {text!r}: expected KEY=VALUE with KEY one of {', '.join(SAMPLER_KEYS)}")
        name, kind = SAMPLER_KEYS[key.strip()]
        try:
            overrides[name] = kind(value.strip())
        except ValueError:
            raise HarnessError(f"--sampler {text!r}: {key} must be {kind.__name__}, got {value!r}") from None
    return overrides


# --- the build --------------------------------------------------------------------------------------------------


@dataclass
class BuildSummary:
    out: Path
    rows: int
    skipped: dict[str, int]
    images_generated: int
    images_cached: int
    scores_computed: int
    scores_cached: int
    wall_s: float

    def line(self) -> str:
        skipped = ", ".join(f"{v} {k}" for k, v in self.skipped.items()) or "none"
        return (f"{self.rows} prompts -> {self.out / DATASET_FILE}; images {self.images_generated} generated, "
                f"{self.images_cached} cached; scores {self.scores_computed} computed, {self.scores_cached} cached; "
                f"skipped: {skipped}; {self.wall_s:.1f} s")


def image_seed(seed: int, prompt: int, slot: int, k: int) -> int:
    return seed * SEED_STRIDE + prompt * k + slot


def build_ranked(generators: list[Generator], items: list[PromptItem], k: int, rewards: list[RewardSource],
                 out: Path, seed: int = 0, batch_size: int = 32, score_chunk: int = 64, progress: bool = True,
                 load_policy: Callable[[str], object] | None = None) -> BuildSummary:
    """Build (or finish) the ranked dataset in ``out``; see the module docstring.

    Slot j of each prompt comes from generator j mod G (G = len(generators)), so with k = G every generator draws
    one image per prompt, as in Syn-Pic. ``load_policy`` resolves a ``--ckpt`` (default
    :func:`harness.checkpoints.resolve_checkpoint`).
    """
    from harness.generation import GenerationRequest, generate
    from harness.sampling import SamplerConfig

    if k < 2:
        raise HarnessError(f"--k {k}: a ranking needs at least 2 images per prompt")
    if not generators or not rewards:
        raise HarnessError("need at least one --ckpt and one reward source (--rewards)")
    if not items:
        raise HarnessError("no prompts to build from")
    if k < len(generators):
        raise HarnessError(f"--k {k} is smaller than the {len(generators)} generators (--ckpt x --sampler), so some "
                           "would draw no image; raise --k or drop generators")
    if load_policy is None:
        from harness.checkpoints import resolve_checkpoint as load_policy
    out = Path(out)
    store = ImageStore(out / STORE_DIR)
    ledger = _CostLedger(out / BUILD_FILE)
    keys = [[""] * k for _ in items]
    provenance_generators = []
    world = None
    for g, generator in enumerate(generators):
        slots = [j for j in range(k) if j % len(generators) == g]
        policy = load_policy(generator.ckpt)
        world = world or policy.world
        if policy.world != world:
            raise HarnessError(f"--ckpt {generator.ckpt} draws the {policy.world!r} world but the first generator the "
                               f"{world!r} world; one dataset holds one world")
        sampler = SamplerConfig.for_policy(policy, **generator.sampler)
        places = [(p, j) for p in range(len(items)) for j in slots]
        requests = [GenerationRequest(items[p].prompt, image_seed(seed, p, j, k)) for p, j in places]
        # A few batches per call, so the cost ledger is current when a build is killed.
        step = 4 * batch_size
        for start in range(0, len(requests), step):
            report = generate(policy, requests[start:start + step], sampler, store, batch_size=batch_size,
                              progress=progress)
            ledger.add(images_generated=report.generated, images_cached=report.cached)
            for (p, j), key in zip(places[start:start + step], report.keys):
                keys[p][j] = key
        provenance_generators.append({"ckpt": generator.ckpt, "fingerprint": policy.fingerprint,
                                      "sampler": sampler.to_dict(), "slots": slots})
        del policy
    scores = np.full((len(items), len(rewards), k), np.nan)
    for m, reward in enumerate(rewards):
        _score_all(store, reward, keys, items, score_chunk, ledger)
        found = store.cached_scores([key for row in keys for key in row], _scorer_key(reward))
        for p, row in enumerate(keys):
            scores[p, m] = [_as_float(found.get(key)) for key in row]
    rows, skipped = _rows(items, keys, scores, seed, k, len(generators), store, out)
    provenance = {
        "generators": provenance_generators,
        "rewards": [{"spec": r.spec, "scorer_id": r.scorer_id, "version": r.version} for r in rewards],
        "k": k, "seed": seed, "prompts": len(items),
    }
    _write_parquet(out / DATASET_FILE, rows, provenance)
    ledger.save(**provenance, rows=len(rows), skipped=dict(skipped), status="complete")
    run = ledger.run
    return BuildSummary(out, len(rows), dict(skipped), run["images_generated"], run["images_cached"],
                        run["scores_computed"], run["scores_cached"], ledger.wall())


class _CostLedger:
    """This run's and all runs' cost (images generated, scores computed, wall time), rewritten to ``build.json``
    after every unit of work, so the cost of a killed build is not lost when it is finished later."""

    TOTALS = ("images_generated", "scores_computed", "wall_s")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.info = _read_build(path.parent)
        self.previous = self.info.get("total_cost", {})
        self.run: Counter = Counter()
        self.start = time.perf_counter()

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def add(self, **counts: int) -> None:
        self.run.update(counts)
        self.save(status="incomplete")

    def save(self, **info: object) -> None:
        self.info.update(info)
        run = {**self.run, "wall_s": round(self.wall(), 3)}
        self.info["last_run_cost"] = run
        self.info["total_cost"] = {key: round(self.previous.get(key, 0) + run.get(key, 0), 3) for key in self.TOTALS}
        atomic_write_json(self.path, self.info)


def build_ranked_dataset(ckpts: list[str], prompts: str, k: int, rewards: list[str], out: Path,
                         samplers: list[str] | None = None, n_prompts: int | None = None, seed: int = 0,
                         batch_size: int = 32, progress: bool = True) -> BuildSummary:
    """``harness data build-ranked``: generators = every ``--ckpt`` under every ``--sampler`` setting; the world
    (which prompt sets and objectives apply) is the first checkpoint's."""
    from harness.checkpoints import resolve_checkpoint
    from trainers.prompts import resolve_training_prompts

    if not ckpts:
        raise HarnessError("pass at least one --ckpt")
    generators = [Generator(ckpt, parse_sampler(s)) for ckpt in ckpts for s in (samplers or [""])]
    loaded: dict[str, object] = {ckpts[0]: resolve_checkpoint(ckpts[0])}
    world = getattr(loaded[ckpts[0]], "world", "real")
    items = resolve_training_prompts(prompts, world, n=n_prompts, seed=seed)
    sources = [feedback_reward(spec, world) for spec in rewards]

    def load(ckpt: str) -> object:
        return loaded.pop(ckpt, None) or resolve_checkpoint(ckpt)

    return build_ranked(generators, items, k, sources, out, seed=seed, batch_size=batch_size, progress=progress,
                        load_policy=load)


def _scorer_key(reward: RewardSource) -> str:
    return f"ranked-reward:{reward.version}"


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _score_all(store: ImageStore, reward: RewardSource, keys: list[list[str]], items: list[PromptItem],
               chunk: int, ledger: _CostLedger) -> None:
    """Score every image not yet scored by ``reward``, caching (and counting) after each chunk."""
    scorer = _scorer_key(reward)
    flat = [(p, key) for p, row in enumerate(keys) for key in row]
    have = store.cached_scores([key for _, key in flat], scorer)
    ledger.add(scores_cached=len(have))
    todo = [(p, key) for p, key in flat if key not in have]
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        images = []
        for _, key in part:
            image = store.load(key)
            if image is None:
                raise DataError(f"{store.path(key)}: image missing or corrupt; re-run the build to regenerate it")
            images.append(image)
        values = np.asarray(reward.score(images, [items[p] for p, _ in part]), dtype=float)
        if values.shape != (len(part),):
            raise HarnessError(f"reward {reward.spec} returned {values.shape} values for {len(part)} images")
        store.put_scores({key: float(v) for (_, key), v in zip(part, values)}, scorer)
        ledger.add(scores_computed=len(part))


def _rows(items: list[PromptItem], keys: list[list[str]], scores: np.ndarray, seed: int, k: int, n_generators: int,
          store: ImageStore, out: Path) -> tuple[list[dict], Counter]:
    rows, skipped = [], Counter()
    for p, item in enumerate(items):
        if not np.isfinite(scores[p]).all():
            skipped["nan_score"] += 1
            continue
        psi = psi_from_scores(scores[p])
        rows.append({
            "prompt": item.prompt, "tag": item.tag, "metadata": json.dumps(item.metadata, sort_keys=True),
            "images": [str(store.path(key).relative_to(out)) for key in keys[p]], "image_keys": keys[p],
            "generators": [j % n_generators for j in range(k)], "seeds": [image_seed(seed, p, j, k) for j in range(k)],
            "scores": scores[p].tolist(), "psi": psi.tolist(), "ranking": ranking_from_psi(psi),
        })
    return rows, skipped


def _write_parquet(path: Path, rows: list[dict], provenance: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows) if rows else pa.table({"prompt": pa.array([], pa.string())})
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(provenance, sort_keys=True).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _read_build(out: Path) -> dict:
    try:
        return json.loads((out / BUILD_FILE).read_text())
    except (OSError, ValueError):
        return {}


# --- reading ------------------------------------------------------------------------------------------------------


@dataclass
class RankedRow:
    """One prompt's list: image files, ψ per image and the ranking (image indices, best first)."""

    prompt: str
    images: list[Path]
    psi: np.ndarray
    ranking: list[int]


@dataclass
class RankedDataset:
    rows: list[RankedRow]
    skipped: Counter
    provenance: dict
    source: Path

    def skipped_line(self) -> str:
        return ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items())) or "none"


REQUIRED_COLUMNS = ("prompt", "images", "psi", "ranking")


def load_dataset(path: Path | str) -> RankedDataset:
    """A ranked dataset folder (or its ``ranked.parquet``), or a ``.jsonl`` file (image paths relative to it) of
    Pick-a-Pic-style pairs ``{prompt, image_w, image_l}`` (two-image lists with ψ = (1, 0)) or of lists
    ``{prompt, images, scores}`` / ``{prompt, images, ranking}`` (``specs/trainers.md``, data formats).

    Bad rows are skipped and counted by reason (``missing_image``, ``one_image``, ``bad_ranking`` (not a permutation
    of the images), ``ranking_contradicts_psi``, ``nan_score``, ``bad_psi``, ``bad_scores`` (not [n][k])); a
    dataset with no usable row, or a file that is not a dataset, is a one-line :class:`DataError`.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        dataset = _load_jsonl(path)
    else:
        file = path / DATASET_FILE if path.is_dir() else path
        if not file.is_file():
            raise DataError(f"{path}: no {DATASET_FILE}; build one with `harness data build-ranked` or pass a "
                            "pairs .jsonl file")
        dataset = _load_parquet(file)
    if not dataset.rows:
        raise DataError(f"{path}: no usable rows (skipped: {dataset.skipped_line()}); rebuild the dataset")
    return dataset


def _load_parquet(file: Path) -> RankedDataset:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except (OSError, ValueError) as error:
        raise DataError(f"{file}: not a readable Parquet file ({str(error).splitlines()[0][:200]}); "
                        "rebuild it with `harness data build-ranked`") from error
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{file}: missing column(s) {', '.join(missing)}; rebuild it with `harness data build-ranked`")
    meta = (table.schema.metadata or {}).get(METADATA_KEY)
    provenance = json.loads(meta) if meta else {}
    rows, skipped = [], Counter()
    for entry in table.to_pylist():
        row, problem = _check_row(entry["prompt"], entry["images"], entry["psi"], entry["ranking"],
                                  entry.get("scores"), file.parent)
        if problem:
            skipped[problem] += 1
        else:
            rows.append(row)
    return RankedDataset(rows, skipped, provenance, file)


def _check_row(prompt: object, images: object, psi: object, ranking: object, scores: object, root: Path
               ) -> tuple[RankedRow | None, str | None]:
    """The row, or the reason it cannot be trained on."""
    if not isinstance(prompt, str) or not isinstance(images, list):
        return None, "bad_row"
    if len(images) < 2:
        return None, "one_image"
    psi_values = np.asarray(psi if psi is not None else [], dtype=float)
    if psi_values.shape != (len(images),):
        return None, "bad_psi"
    if scores is not None:
        try:
            score_values = np.asarray(scores, dtype=float)
        except (TypeError, ValueError):  # ragged: reward models scored different numbers of images
            return None, "bad_scores"
        if score_values.ndim != 2 or score_values.shape[1] != len(images):
            return None, "bad_scores"
        if not np.isfinite(score_values).all():
            return None, "nan_score"
    if not np.isfinite(psi_values).all():
        return None, "nan_score"
    if not isinstance(ranking, list) or sorted(ranking) != list(range(len(images))):
        return None, "bad_ranking"
    if any(psi_values[a] < psi_values[b] for a, b in itertools.pairwise(ranking)):
        return None, "ranking_contradicts_psi"  # an image ranked above one with a higher ψ: which one is right?
    paths = [root / str(image) for image in images]
    if not all(p.is_file() for p in paths):
        return None, "missing_image"
    return RankedRow(prompt, paths, psi_values, [int(i) for i in ranking]), None


def _load_jsonl(file: Path) -> RankedDataset:
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    rows, skipped = [], Counter()
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            prompt, images, psi, ranking = _jsonl_list(entry)
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{file}:{number}: expected a JSON object with prompt and image_w, image_l, or with "
                            "prompt, images and ranking or scores") from None
        row, problem = _check_row(prompt, images, psi, ranking, None, file.parent)
        if problem:
            skipped[problem] += 1
        else:
            rows.append(row)
    return RankedDataset(rows, skipped, {"jsonl": str(file)}, file)


def _jsonl_list(entry: dict) -> tuple[object, list, list | None, list | None]:
    """(prompt, images, ψ, ranking) of a pair row, or of a list row with per-image ``scores`` (one reward model: ψ
    as :func:`psi_from_scores`) or a ``ranking`` (a strict order: ψ_i = (k − position_i) / (k − 1))."""
    if "image_w" in entry:
        return entry["prompt"], [entry["image_w"], entry["image_l"]], [1.0, 0.0], [0, 1]
    images = list(entry["images"])
    if entry.get("scores") is not None:
        scores = np.asarray(entry["scores"], dtype=float)
        if scores.shape != (len(images),) or len(images) < 2 or not np.isfinite(scores).all():
            return entry["prompt"], images, [math.nan] * len(images), list(range(len(images)))
        psi = psi_from_scores(scores[None, :])
        return entry["prompt"], images, psi.tolist(), ranking_from_psi(psi)
    ranking = list(entry["ranking"])
    k = len(ranking)
    if k < 2 or sorted(ranking) != list(range(len(images))):
        return entry["prompt"], images, [0.0] * len(images), ranking
    psi = [0.0] * k
    for position, image in enumerate(ranking):
        psi[image] = (k - 1 - position) / (k - 1)
    return entry["prompt"], images, psi, ranking
