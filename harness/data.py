"""Benchmark data files (official prompt lists, metadata): found in a data folder or fetched into a cache.

The project never ships copies of benchmark data. A file is looked up, in order, in ``--data-dir`` /
``$HARNESS_DATA_DIR`` (laid out as ``<dir>/<benchmark>/<path>``, the layout of the official repositories' data
folders) and in the cache ``$HARNESS_CACHE/data`` (default ``~/.cache/harness/data``); if it is in neither, it is
downloaded from its official source at a pinned commit into the cache. Wherever it comes from, a file with a pinned
hash (sha256, or the git blob hash the official repository's tree lists) is checked against it before use: a local
copy that was edited, truncated or taken from another commit is refused with a one-line error, not scored.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DataError
from harness.store import atomic_write_bytes


@dataclass(frozen=True)
class DataFile:
    benchmark: str  # folder name under the data dir
    path: str  # path under that folder
    url: str | None  # official source at a pinned commit; None if it cannot be downloaded
    sha256: str | None = None
    git_blob_sha1: str | None = None  # `git hash-object` of the file, as listed in the official repository's tree


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a file's bytes: sha1(b"blob <len>\\0" + data)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness")) / "data"


def data_dirs(data_dir: Path | str | None = None) -> list[Path]:
    dirs = [Path(d) for d in (data_dir, os.environ.get("HARNESS_DATA_DIR")) if d]
    return [*dirs, cache_dir()]


def fetch(file: DataFile, data_dir: Path | str | None = None) -> Path:
    """The local path of ``file``: from a data folder, else the cache, else downloaded (and verified) into it."""
    for root in data_dirs(data_dir):
        candidate = root / file.benchmark / file.path
        if candidate.is_file():
            try:
                data = candidate.read_bytes()
            except OSError as err:
                raise DataError(f"cannot read {candidate}: {err}") from None
            problem = hash_mismatch(file, data)
            if problem:
                raise DataError(f"{candidate}: {problem}; replace it with the official file (at the pinned commit) "
                                "or delete it to download it again")
            return candidate
    target = cache_dir() / file.benchmark / file.path
    where = ", ".join(str(d / file.benchmark / file.path) for d in data_dirs(data_dir))
    if file.url is None:
        raise DataError(f"{file.benchmark} needs {file.path}, found in none of: {where}; put it there "
                        "(or pass --data-dir)")
    try:
        with urllib.request.urlopen(file.url, timeout=60) as response:
            data = response.read()
    except OSError as err:
        raise DataError(f"{file.benchmark} needs {file.path}: not in {where}, and downloading {file.url} failed "
                        f"({err}); copy the file there or pass --data-dir") from None
    problem = hash_mismatch(file, data)
    if problem:
        raise DataError(f"downloaded {file.url}: {problem}; not using it")
    atomic_write_bytes(target, data)
    return target


def hash_mismatch(file: DataFile, data: bytes) -> str | None:
    """What is wrong with ``data`` as ``file`` ("sha256 is X, expected Y"), or None when every pinned hash matches
    (or none is pinned)."""
    if file.sha256 and (actual := hashlib.sha256(data).hexdigest()) != file.sha256:
        return f"sha256 is {actual}, expected {file.sha256}"
    if file.git_blob_sha1 and (actual := git_blob_sha1(data)) != file.git_blob_sha1:
        return f"git blob hash is {actual}, expected {file.git_blob_sha1}"
    return None
