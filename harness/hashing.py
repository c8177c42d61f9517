"""Content hashes: the keys of the image and score caches and the fingerprints of checkpoints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def stable_hash(obj: object, length: int = 32) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace), truncated to ``length`` hex digits."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def hash_path(path: Path, length: int = 32) -> str:
    """sha256 over a file, or over every file in a folder (relative names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:length]
