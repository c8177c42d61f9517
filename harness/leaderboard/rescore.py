"""Bring published records to the current judge: ``harness leaderboard rescore``.

A record is *stale* when the installed code would judge its images otherwise than the record says they were judged:
its benchmark version, a perception backend's version (``perception``: ``detector: oracle@3`` while the oracle is
at 5) or a scorer option (one added to or removed from the benchmark's options) differs from what the installed
benchmark, configured with the record's own options, reports.

Rescoring re-runs the record's evaluation exactly (:func:`harness.api.evaluate`): the same checkpoint, whose
fingerprint must still be the record's, the same prompt selection (limit, tags, subsample), seeds, sampler and batch
size, against image stores (the ``--out`` of ``harness eval``). A store keys images by checkpoint fingerprint,
prompt, seed and sampler, so images already there are judged again, never sampled again; when the stores hold every
image of a record, the checkpoint itself is not needed (an evaluation whose images are all cached loads no weights),
so a record can be rescored on a machine that has the images but not the run.

The rescored record keeps what describes the run (model and fingerprint, method, ``training`` with its curve,
generation time, how its images were first generated, ``created``, notes) and takes from the new evaluation what
the judge decides: scores, per-image verdicts, perception and scorer options, comparability, intervals and hashes,
scoring time and environment, with ``environment.rescored`` saying what it was scored with before. The record and
its samples file are written as a pair (:func:`harness.leaderboard.write_record`) and the stale pair is removed; its
file name changes with its scorer hash. ``harness leaderboard build`` then regenerates the tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from fnmatch import fnmatch
from pathlib import Path

from harness.api import (
    BUILTIN_DIR,
    BUILTIN_PREFIX,
    EvalSettings,
    builtin_header,
    evaluate,
    resolve_lazily,
    select_prompts,
)
from harness.compare import Evaluated, load_evaluated, record_bench
from harness.errors import CheckpointError, HarnessError
from harness.leaderboard import RESULTS, write_record
from harness.numerics import Numerics
from harness.policy import LazyPolicy, Policy, PolicyHeader
from harness.records import RUN_OPTIONS, ResultRecord, prompt_set_hash, seed_hash
from harness.sampling import SamplerConfig
from harness.store import ImageStore, image_key

# Options that choose prompts rather than a verdict (``harness.api.score_job`` writes them beside the scorer's own).
SELECTION_OPTIONS = (*RUN_OPTIONS, "sample", "sample_seed")
SAMPLER_SETTINGS = ("num_inference_steps", "guidance_scale", "eta", "scheduler")  # EvalSettings = SamplerConfig names
NOT_FOUND_FIX = "rescore on the machine that has the run, or pass --store with its images"


@dataclass
class Rescored:
    """What rescoring did (or, in a dry run, would do) to one record; :meth:`line` is the CLI's line for it.

    ``status``: ``up to date``, ``stale`` (dry run), ``rescored`` or ``refused`` (``message`` says why and the fix).
    ``changes``: what the current judge does differently (``detector oracle@3 -> oracle@5``).
    """

    name: str
    status: str
    changes: list[str] = field(default_factory=list)
    message: str = ""
    images: int = 0  # images the evaluation needs
    stored: int = 0  # of those, already in the best store
    store: Path | None = None
    generated: int = 0  # sampled by the rescore (0 when the store had them all)
    old_score: float | None = None
    new_score: float | None = None
    path: Path | None = None  # the rescored record

    def line(self) -> str:
        if self.status == "up to date":
            return f"{self.name}: up to date"
        changed = ", ".join(self.changes)
        if self.status == "refused":
            return f"{self.name}: refused{f' ({changed})' if changed else ''}: {self.message}"
        if self.status == "stale":
            return f"{self.name}: stale ({changed}); {self.message}"
        return (f"{self.name}: overall {_number(self.old_score)} -> {_number(self.new_score)} ({changed}); "
                f"{self.generated} images regenerated, {self.images - self.generated} from {self.store}")


def _number(value: float | None) -> str:
    return "null" if value is None or math.isnan(value) else f"{value:.4f}"


@dataclass
class _Judge:
    """The installed benchmark configured with a record's options, its prompt selection and current scorer id."""

    settings: EvalSettings
    sampler: dict  # what harness.api.evaluate passes to SamplerConfig.for_policy: the benchmark's, then the record's
    requests: list[tuple[str, int]]  # (prompt, seed) per image, in evaluation order
    draws: tuple[str, str]  # prompt-set and seed hashes of that selection (harness.records.prompt_set_hash, seed_hash)
    version: str
    perception: dict[str, str]
    options: dict


class _StoreView(ImageStore):
    """An image store read without writing: :meth:`ImageStore.has` and ``path`` only (no folders, no index)."""

    def __init__(self, root: Path) -> None:
        self.root = root


def rescore(results: Path | str = RESULTS, stores: Sequence[Path | str] = (), dry_run: bool = False,
            only: str | None = None, replicates: int | None = None, progress: bool = False,
            report: Callable[[Rescored], None] | None = None) -> list[Rescored]:
    """Rescore every stale record of ``results/records`` (those whose name matches the glob ``only``) against the
    image ``stores``; ``dry_run``: say what is stale, whether its checkpoint is on this machine and how many of its
    images the stores hold, and write nothing. ``report`` is called with each record's outcome as it is known.

    Raises a one-line :class:`HarnessError` before anything is written when a store or the records folder is
    missing or a selected record is invalid. A record that cannot be rescored (checkpoint missing with images
    missing, a changed checkpoint fingerprint, a sampler that no longer resolves to the record's) is ``refused``
    and left as it is; the others are still rescored.
    """
    views = [_open_store(Path(s)) for s in stores]
    if not views:
        raise HarnessError("no image store given: pass --store PATH, the --out folder of `harness eval` that holds "
                           "the records' images")
    folder = Path(results) / "records"
    if not folder.is_dir():
        raise HarnessError(f"{folder} not found: pass --results, the folder that holds records/")
    paths = sorted(p for p in folder.glob("*.json") if only is None or fnmatch(p.stem, only) or fnmatch(p.name, only))
    if only is not None and not paths:
        raise HarnessError(f"no record in {folder} matches --only {only!r}")
    board = [_load(path) for path in paths]  # every selected record is valid before any is rewritten
    judges: dict[str, _Judge] = {}
    outcomes = []
    for evaluated in board:
        outcome = _rescore_one(evaluated, views, judges, Path(results), dry_run, replicates, progress)
        if report is not None:
            report(outcome)
        outcomes.append(outcome)
    return outcomes


def _open_store(path: Path) -> _StoreView:
    if not (path / "index.sqlite").is_file() or not (path / "images").is_dir():
        raise HarnessError(f"image store {path} not found (no index.sqlite and images/ there): pass --store, the "
                           "--out folder of the `harness eval` runs that made the records")
    return _StoreView(path)


def _load(path: Path) -> Evaluated:
    try:
        evaluated = load_evaluated(path)
    except HarnessError as err:
        raise HarnessError(f"{err}; nothing was rescored: repair or re-publish that record (or leave it out with "
                           "--only)") from None
    if evaluated.rows is None:
        raise HarnessError(f"{path}: no samples file {evaluated.record.samples.get('file')!r} beside it; nothing was "
                           "rescored: re-publish that record with `harness leaderboard publish`")
    return evaluated


def _judge(record: ResultRecord, judges: dict[str, _Judge]) -> _Judge:
    """What the installed code would judge ``record``'s run with: the benchmark configured with the record's rule
    options, its prompt selection and scorer id (loaded once per benchmark, world and options), and the settings
    that repeat the run (sampler, batch size)."""
    key = json.dumps([record.benchmark, record.world, record.options], sort_keys=True, default=str)
    if key not in judges:
        bench = record_bench(record)
        bench.check_world(record.world)
        rules = {k: str(v) for k, v in _scorer_options(record).items() if k in _option_fields(bench)}
        chosen = record.options
        settings = EvalSettings(limit=chosen.get("limit"), tags=tuple(chosen.get("tags") or ()) or None,
                                sample=chosen.get("sample"), sample_seed=chosen.get("sample_seed", 0), options=rules)
        items = select_prompts(bench.prompts(record.world), bench, settings)  # also tells T2I-CompBench its parser
        seeds = [bench.seeds(item, record.world) for item in items]
        requests = [(item.prompt, seed) for item, ss in zip(items, seeds) for seed in ss]
        rows = [{"prompt_index": item.index, "prompt": item.prompt, "tag": item.tag, "image_index": k, "seed": seed}
                for item, ss in zip(items, seeds) for k, seed in enumerate(ss)]
        scorer = bench.scorer_id(bench.perception(record.world))
        judges[key] = _Judge(settings, bench.generation_defaults(record.world), requests,
                             (prompt_set_hash(rows), seed_hash(rows)), bench.version, scorer["perception"],
                             _plain(scorer.get("options", {})))
    shared = judges[key]
    overrides = {k: record.sampler.get(k) for k in SAMPLER_SETTINGS if record.sampler.get(k) is not None}
    return replace(shared, settings=replace(shared.settings, batch_size=_batch_size(record), **overrides),
                   sampler={**shared.sampler, **overrides})


def _option_fields(bench: object) -> set[str]:
    """The benchmark's ``--option`` rule fields (a record's options also hold derived entries, e.g. T2I-CompBench's
    ``text_parser``, that no run can set)."""
    options = getattr(bench, "options", None)
    return {f.name for f in fields(options)} if is_dataclass(options) else set()


def _batch_size(record: ResultRecord) -> int | None:
    """The batch size the images were sampled with, so that an image sampled again is bit-identical (a network's
    numerics depend on its batch); None (automatic) when the record does not name one."""
    setting = (record.environment.get("generation") or {}).get("batch_size_setting")
    return setting if isinstance(setting, int) and not isinstance(setting, bool) else None


def _scorer_options(record: ResultRecord) -> dict:
    return _plain({k: v for k, v in record.options.items() if k not in SELECTION_OPTIONS})


def _plain(value: object) -> dict:
    """JSON's view of ``value`` (tuples as lists), so a record read back compares equal with what code reports."""
    return json.loads(json.dumps(value, default=str))


def changes(record: ResultRecord, judge: _Judge) -> list[str]:
    """What the current judge does differently from the one ``record`` was scored with (empty: up to date)."""
    out = []
    if record.benchmark_version != judge.version:
        out.append(f"{record.benchmark} v{record.benchmark_version} -> v{judge.version}")
    for role in sorted(set(record.perception) | set(judge.perception)):
        old, new = record.perception.get(role), judge.perception.get(role)
        if old != new:
            out.append(f"{role} {old or 'none'} -> {new or 'none'}")
    old_options = _scorer_options(record)
    for key in sorted(set(old_options) | set(judge.options)):
        if old_options.get(key, "unset") != judge.options.get(key, "unset"):
            out.append(f"option {key} {old_options.get(key, 'unset')} -> {judge.options.get(key, 'unset')}")
    return out


def _rescore_one(evaluated: Evaluated, views: list[_StoreView], judges: dict[str, _Judge], results: Path,
                 dry_run: bool, replicates: int | None, progress: bool) -> Rescored:
    record, name = evaluated.record, evaluated.source.stem
    old_score = record.scores.get("overall")
    if record.model.startswith("folder:") or not record.sampler:
        return Rescored(name, "refused", [], "scored from an image folder (`harness score`), which no "
                        "store holds: score the folder again and publish the run")
    try:
        judge = _judge(record, judges)
    except HarnessError as err:
        return Rescored(name, "refused", [], f"the current judge cannot be set up: {err}")
    changed = changes(record, judge)
    if not changed:
        return Rescored(name, "up to date")
    if record.world != "builtin" and record.perception != judge.perception:
        return Rescored(name, "refused", changed, "a real-world backend's name holds its model, which `--option` "
                        "may have chosen and records do not keep: re-run `harness eval` with the record's options "
                        "and publish that run")
    if record.benchmark_version == judge.version and judge.draws != (record.prompt_set_hash, record.seed_hash):
        return Rescored(name, "refused", changed, "the prompts or seeds the benchmark now draws differ from the "
                        "record's, though its version did not change: re-evaluate the checkpoint and publish it as a "
                        "new record")
    keys = [image_key(record.checkpoint_fingerprint, prompt, seed, record.sampler) for prompt, seed in judge.requests]
    counts = [sum(map(view.has, keys)) for view in views]
    best = max(range(len(views)), key=lambda i: (counts[i], -i))
    outcome = Rescored(name, "stale", changed, images=len(keys), stored=counts[best], store=views[best].root,
                       old_score=old_score)
    here = _checkpoint_here(record.model)
    if dry_run:
        outcome.message = f"checkpoint {_describe_checkpoint(record, here)}; {counts[best]}/{len(keys)} images in " \
                          f"{views[best].root}"
        return outcome
    try:
        policy = _policy(record, here, complete=counts[best] == len(keys), stored=counts[best], total=len(keys))
        sampler = SamplerConfig.for_policy(policy, **judge.sampler)
        resolved = {**sampler.to_dict(), **policy.numerics_key}
        if resolved != record.sampler:
            raise HarnessError(f"the sampler now resolves to {resolved}, the record's is {record.sampler}: "
                               "re-evaluate the checkpoint and publish it as a new record")
        (fresh,) = evaluate(policy, [record.benchmark], out=views[best].root, settings=judge.settings,
                            method=record.method, training=record.training, progress=progress)
        run = _run_folder(views[best].root, fresh)
    except HarnessError as err:
        outcome.status, outcome.message = "refused", str(err)
        return outcome
    generation = fresh.environment.pop("generation", {})
    rescored = replace(
        fresh, model=record.model, method=record.method, training=record.training, created=record.created,
        wall_time_s={**record.wall_time_s, "scoring": fresh.wall_time_s.get("scoring")},
        environment={**fresh.environment, **({"generation": record.environment["generation"]}
                                             if "generation" in record.environment else {}),
                     "rescored": {"benchmark_version": record.benchmark_version, "perception": record.perception,
                                  "scorer_hash": record.scorer_hash, "scores": record.scores,
                                  "generation": generation}},
        notes=[n for n in record.notes if not n.startswith("migrated from")])
    assert run.rows is not None
    outcome.path = write_record(rescored, run.rows, results, record_bench(rescored).aggregate, replicates=replicates,
                                replaces=evaluated.source)
    outcome.status, outcome.new_score = "rescored", rescored.scores.get("overall")
    outcome.generated = int(generation.get("generated", 0))
    return outcome


def _checkpoint_here(model: str) -> bool:
    """Whether the record's checkpoint is on this machine: a builtin model, a local path, a ``BASE+ADAPTER`` whose
    adapter is here; a hub id counts as here (its resolution from the local cache says otherwise)."""
    if model.startswith(BUILTIN_PREFIX):
        return (BUILTIN_DIR / model.removeprefix(BUILTIN_PREFIX) / "model_index.json").is_file()
    path = Path(model).expanduser()
    if path.exists():
        return True
    if "+" in model:
        return Path(model.rsplit("+", 1)[1]).expanduser().exists()
    return not model.startswith(("/", "~", ".")) and model.count("/") == 1


def _describe_checkpoint(record: ResultRecord, here: bool) -> str:
    if not here:
        return f"{record.model} not on this machine"
    header = builtin_header(record.model)  # builtin-model folders: the fingerprint costs a hash, not a load
    if header is None:
        return f"{record.model} on this machine (its fingerprint is checked when rescoring)"
    if header.fingerprint != record.checkpoint_fingerprint:
        return f"{record.model} on this machine but CHANGED (fingerprint {header.fingerprint}, record " \
               f"{record.checkpoint_fingerprint}): it would be refused"
    return f"{record.model} on this machine (fingerprint matches)"


def _policy(record: ResultRecord, here: bool, complete: bool, stored: int, total: int) -> Policy:
    """The policy to evaluate: the checkpoint itself when it is here (its fingerprint must be the record's), else,
    when the store holds every image, a header that names the images by the record's fingerprint and refuses to
    load."""
    if not here:
        if not complete:
            raise HarnessError(f"checkpoint {record.model} not found and the stores hold {stored} of its {total} "
                               f"images: {NOT_FOUND_FIX}")
        sampler = record.sampler

        def missing() -> Policy:
            raise CheckpointError(f"checkpoint {record.model} not found and an image must be sampled again: "
                                  f"{NOT_FOUND_FIX}")

        return LazyPolicy(PolicyHeader(record.model, record.world, record.checkpoint_fingerprint, sampler["height"],
                                       sampler["width"]), missing, _numerics(record).key())
    try:
        # placed as the record's images were made (a CPU in float32 unless its sampler names other numerics), so
        # the stored images are found and any missing one is sampled alike
        policy = resolve_lazily(record.model, _numerics(record))
    except CheckpointError as err:
        raise HarnessError(f"{err} ({NOT_FOUND_FIX})") from None
    if policy.fingerprint != record.checkpoint_fingerprint:
        raise HarnessError(f"{record.model} now has fingerprint {policy.fingerprint}, the record was made with "
                           f"{record.checkpoint_fingerprint}: it is another model; evaluate and publish it as a new "
                           "record instead of rescoring this one")
    return policy


def _numerics(record: ResultRecord) -> Numerics:
    entry = record.sampler.get("numerics")
    return Numerics.from_key(entry if isinstance(entry, dict) else None)


def _run_folder(store: Path, fresh: ResultRecord) -> Evaluated:
    """The run folder :func:`harness.api.evaluate` just wrote for ``fresh``, found by its samples file's sha256."""
    for result in sorted((store / "runs").glob(f"{fresh.benchmark}-*/result.json")):
        try:
            data = json.loads(result.read_text())
        except (OSError, ValueError):
            continue
        if data.get("created") == fresh.created and (data.get("samples") or {}).get("sha256") == \
                fresh.samples.get("sha256"):
            run = load_evaluated(result.parent)
            if run.rows is not None:
                return run
    raise HarnessError(f"the evaluation's run folder was not found under {store / 'runs'}; was the store changed "
                       "during the rescore? run it again")
