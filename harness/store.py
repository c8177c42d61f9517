"""The on-disk store: content-addressed images, a score cache, run folders, all written atomically.

Layout under the store root (``--out``, default ``./harness-runs``)::

    images/ab/abcdef....png     one image per content key (checkpoint fingerprint, prompt, seed, sampler config)
    index.sqlite                image metadata and cached per-image scores
    runs/<run name>/            one folder per evaluation: result record, per-sample results

A file is written to a temporary name and renamed, so an interrupted run leaves either the whole file or none;
the next run regenerates only what is missing. A cached image that no longer decodes is deleted and regenerated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

from PIL import Image

from harness.errors import HarnessError
from harness.hashing import stable_hash

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    key TEXT PRIMARY KEY, checkpoint TEXT, prompt TEXT, seed INTEGER, sampler TEXT, created REAL
);
CREATE TABLE IF NOT EXISTS scores (
    image_key TEXT, scorer TEXT, value TEXT, PRIMARY KEY (image_key, scorer)
);
"""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``folder``; on success it replaces ``folder`` by a rename, on any error
    it is removed, so readers see the old folder or the whole new one, never a half-written one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: object) -> None:
    """Strict JSON: a NaN or infinite float (a score over nothing) is written as null, as JSON has no NaN."""
    atomic_write_text(path, json.dumps(_finite(obj), indent=2, default=str, allow_nan=False) + "\n")


def _finite(obj: object) -> object:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(value) for value in obj]
    return obj


def image_key(fingerprint: str, prompt: str, seed: int, sampler: dict) -> str:
    """Content key of one generated image: everything that determines its pixels."""
    return stable_hash({"checkpoint": fingerprint, "prompt": prompt, "seed": int(seed), "sampler": sampler})


class ImageStore:
    """Content-addressed images and cached scores under one root folder (safe for several processes)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._local = threading.local()  # rows waiting for the end of a ``batch`` block, per thread
        try:
            (self.root / "images").mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise HarnessError(f"output folder {self.root} is not writable ({err.strerror}); pass --out DIR") from None
        with self._db() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.root / "index.sqlite", timeout=120)
        try:
            with db:
                yield db
        finally:
            db.close()

    def path(self, key: str) -> Path:
        return self.root / "images" / key[:2] / f"{key}.png"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str) -> Image.Image | None:
        """The image for ``key``, or None if it is missing or corrupt (a corrupt file is removed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with Image.open(path) as img:
                img.load()
                return img.convert("RGB")
        except (OSError, SyntaxError, ValueError) as err:
            log.warning("cached image %s is corrupt (%s); it will be regenerated", path, err)
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, image: Image.Image, checkpoint: str, prompt: str, seed: int, sampler: dict) -> Path:
        """Write ``image`` (atomically) and its index row; inside :meth:`batch` the row waits for the batch's end."""
        path = self.path(key)
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
        row = (key, checkpoint, prompt, int(seed), json.dumps(sampler, sort_keys=True))
        pending = getattr(self._local, "rows", None)
        if pending is None:
            self._insert_images([row])
        else:
            pending.append(row)
        return path

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Index rows of the images put in this block (by this thread) go in one SQLite transaction at its end.

        A commit syncs the database file, which costs more than a small PNG: one per batch instead of one per
        image. The rows are committed on any exit, an interruption included, because each describes a PNG already
        written whole (and reused by the next run): files are whole, and a batch's rows are all there or none.
        """
        self._local.rows = []
        try:
            yield
        finally:
            rows, self._local.rows = self._local.rows, None
            if rows:
                self._insert_images(rows)

    def _insert_images(self, rows: list[tuple]) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, strftime('%s','now'))", rows)

    def cached_scores(self, keys: list[str], scorer: str) -> dict[str, object]:
        """Scores already computed by ``scorer`` (a key naming the scoring code, its options and backends)."""
        found: dict[str, object] = {}
        with self._db() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT image_key, value FROM scores WHERE scorer = ? AND image_key IN ({marks})", [scorer, *chunk]
                )
                found.update((k, json.loads(v)) for k, v in rows)
        return found

    def put_scores(self, scores: dict[str, object], scorer: str) -> None:
        with self._db() as db:
            db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?)",
                [(k, scorer, json.dumps(v, default=str)) for k, v in scores.items()],
            )

    def run_dir(self, name: str) -> Path:
        path = self.root / "runs" / name
        path.mkdir(parents=True, exist_ok=True)
        return path
