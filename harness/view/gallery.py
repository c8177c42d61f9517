"""What the viewer shows: evaluations (run folders and published records) with their per-image verdicts, and the
image file behind each verdict where one exists on this machine.

A run folder (``harness eval``'s ``STORE/runs/<name>/``) lists every image's path in ``samples.jsonl``. A published
record (``results/records/<id>.json``) keeps its per-image verdicts but no images (they are not committed); its
images are found in an image store (``harness-runs/`` or any ``--out`` of ``harness eval``) under their content key
``image_key(checkpoint fingerprint, prompt, seed, sampler)``, the key every generated image is stored under, so an
image is shown beside a published verdict only when it is exactly the image that verdict was given to. A verdict
whose image is on no store given is shown without one, saying so.

Only the files named here can ever be served: the server looks an image up by (evaluation id, prompt index, image
index), never by a path taken from a request.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.compare import Evaluated, load_evaluated
from harness.errors import HarnessError
from harness.leaderboard.render import method_name, short_model
from harness.store import image_key

LEADERBOARD_FILES = ("leaderboard.html",)
DETAILS_CHARS = 600  # per-image details beyond the reason are shown as a tooltip, cut to this length


def verdict(score: float | None) -> str:
    """``pass`` at full marks (score >= 1), ``fail`` below, ``excluded`` for an image the benchmark left out (null
    score). For GenEval a verdict is 0 or 1, so this is its own pass/fail; for DPG-Bench an image fails when any of
    its questions is answered no; T2I-CompBench's continuous scores are nearly always below 1, so there "failing
    only" keeps nearly every image and the score itself is the thing to read."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return "excluded"
    return "pass" if score >= 1.0 else "fail"


@dataclass
class Source:
    """One evaluation on the page: a run folder or a published record, with the files of its images."""

    id: str
    kind: str  # "run" or "record"
    evaluated: Evaluated
    images: dict[tuple[int, int], Path] = field(default_factory=dict)  # (prompt index, image index) -> file

    @property
    def rows(self) -> list[dict]:
        return self.evaluated.rows or []

    def summary(self) -> dict:
        r = self.evaluated.record
        label = f"{method_name(r.method)} · {short_model(r.model, r.checkpoint_fingerprint)} · {self.kind}"
        return {"id": self.id, "kind": self.kind, "label": label,
                "benchmark": r.benchmark, "version": r.benchmark_version, "world": r.world, "model": r.model,
                "method": r.method, "fingerprint": r.checkpoint_fingerprint[:8], "source": str(self.evaluated.source),
                "scores": {k: (None if v is None or math.isnan(v) else v) for k, v in r.scores.items()},
                "n_images": len(self.rows), "with_images": len(self.images)}


@dataclass
class Gallery:
    """Every evaluation the viewer serves, and the leaderboard files it may serve beside them."""

    sources: list[Source]
    results: Path | None = None
    plots: dict[str, Path] = field(default_factory=dict)  # plots/<name>.svg the leaderboard page shows

    def source(self, source_id: str) -> Source | None:
        return next((s for s in self.sources if s.id == source_id), None)

    def image(self, source_id: str, prompt_index: int, image_index: int) -> Path | None:
        """The image file of one verdict, or None: the only way a file reaches the server."""
        source = self.source(source_id)
        return None if source is None else source.images.get((prompt_index, image_index))

    def leaderboard(self) -> Path | None:
        path = None if self.results is None else self.results / "leaderboard.html"
        return path if path is not None and path.is_file() else None

    def to_json(self) -> dict:
        """The page's data: the evaluations, and per prompt (benchmark, prompt index, text) each evaluation's
        images in image order with seed, score, verdict, reason, details and image URL (null: no image here)."""
        prompts: dict[tuple[str, int, str], dict] = {}
        for source in self.sources:
            bench = source.evaluated.record.benchmark
            for row in source.rows:
                key = (bench, int(row["prompt_index"]), str(row["prompt"]))
                entry = prompts.setdefault(key, {"benchmark": bench, "prompt_index": key[1], "prompt": key[2],
                                                 "tag": row.get("tag", ""), "cells": {}})
                details = dict(row.get("details") or {})
                reason = str(details.pop("reason", "") or "")
                text = json.dumps(details, sort_keys=True, default=str)
                position = (key[1], int(row["image_index"]))
                entry["cells"].setdefault(source.id, []).append({
                    "image_index": position[1], "seed": row.get("seed"), "score": row.get("score"),
                    "verdict": verdict(row.get("score")), "reason": reason,
                    "details": text if len(text) <= DETAILS_CHARS else text[:DETAILS_CHARS] + "…",
                    "url": f"img/{source.id}/{position[0]}/{position[1]}" if position in source.images else None})
        ordered = [prompts[k] for k in sorted(prompts)]
        for entry in ordered:
            for cells in entry["cells"].values():
                cells.sort(key=lambda c: c["image_index"])
        return {"sources": [s.summary() for s in self.sources], "prompts": ordered,
                "leaderboard": self.leaderboard() is not None}


def expand(path: Path) -> list[tuple[str, Path]]:
    """A command-line argument as (kind, path) evaluations: a run folder, a record file, or an image store (its
    ``runs/*``). One-line error for anything else."""
    path = Path(path)
    if path.is_dir() and (path / "result.json").is_file():
        return [("run", path)]
    if path.is_dir() and (path / "runs").is_dir():
        runs = sorted(p for p in (path / "runs").iterdir() if (p / "result.json").is_file())
        if not runs:
            raise HarnessError(f"{path}/runs holds no run folder with result.json; run `harness eval --out {path}`")
        return [("run", p) for p in runs]
    if path.is_file() and path.suffix == ".json":
        return [("record", path)]
    raise HarnessError(f"{path} is neither a run folder (result.json + samples.jsonl), a record file "
                       "(results/records/<id>.json) nor an image store (runs/); pass one of those")


def store_root(run_dir: Path) -> Path | None:
    """The image store a run folder belongs to (``STORE/runs/<name>``), if it is one."""
    root = run_dir.parent.parent
    return root if (root / "images").is_dir() else None


def _unique(wanted: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", wanted).strip("_.") or "run"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def _find_images(evaluated: Evaluated, stores: list[Path], listed: bool) -> dict[tuple[int, int], Path]:
    """Each row's image: the path ``samples.jsonl`` lists (run folders), else the file under its content key in one
    of ``stores``. Only existing ``.png`` files are kept."""
    record, found = evaluated.record, {}
    for row in evaluated.rows or []:
        candidates = []
        if listed and row.get("image"):
            candidates.append(Path(row["image"]))
        if record.sampler and row.get("seed") is not None:
            key = image_key(record.checkpoint_fingerprint, row["prompt"], int(row["seed"]), record.sampler)
            candidates += [store / "images" / key[:2] / f"{key}.png" for store in stores]
        for candidate in candidates:
            if candidate.suffix == ".png" and candidate.is_file():
                found[(int(row["prompt_index"]), int(row["image_index"]))] = candidate.resolve()
                break
    return found


def load_gallery(paths: list[Path | str] | tuple[Path | str, ...] = (), results: Path | str | None = None,
                 stores: list[Path | str] | tuple[Path | str, ...] = ()) -> Gallery:
    """Read the evaluations to show: ``paths`` (run folders, record files, image stores), every record of
    ``results/records`` when ``results`` is given (and its leaderboard page), with images looked up in ``stores``
    plus the stores the run folders belong to."""
    entries = [entry for path in paths for entry in expand(Path(path))]
    results = None if results is None else Path(results)
    if results is not None:
        if not (results / "records").is_dir():
            raise HarnessError(f"{results} has no records/ folder; pass the results folder of `harness leaderboard "
                               "build` (default: results)")
        entries += [("record", p) for p in sorted((results / "records").glob("*.json"))]
    if not entries:
        raise HarnessError("nothing to view: pass run folders (STORE/runs/<name>), record files or --results DIR")
    roots = [Path(s) for s in stores]
    for missing in (s for s in roots if not (s / "images").is_dir()):
        raise HarnessError(f"{missing} is not an image store (no images/ folder); pass the --out of `harness eval`")
    roots += [r for kind, p in entries if kind == "run" and (r := store_root(p)) is not None and r not in roots]
    taken: set[str] = set()
    sources, seen = [], set()
    for kind, path in entries:
        evaluated = load_evaluated(path)
        if evaluated.source.resolve() in seen:
            continue
        seen.add(evaluated.source.resolve())
        if evaluated.rows is None:
            raise HarnessError(f"{path}: no per-image results (samples) beside the record; the viewer needs them")
        name = path.name if kind == "run" else path.stem
        sources.append(Source(_unique(name, taken), kind, evaluated, _find_images(evaluated, roots, kind == "run")))
    plots = {}
    if results is not None and (results / "plots").is_dir():
        plots = {p.name: p.resolve() for p in sorted((results / "plots").glob("*.svg"))}
    return Gallery(sources, results, plots)
