"""Content hashes: the keys of the image and score caches and the fingerprints of checkpoints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import BinaryIO

WHOLE_FILE_LIMIT = 32 << 20  # files up to this size are hashed whole
TENSOR_SAMPLE = 4096  # bytes hashed from the start of every tensor in a large .safetensors file
SPREAD_SAMPLES, SPREAD_SAMPLE = 64, 64 << 10  # other large files: 64 evenly spaced 64 KB reads


def stable_hash(obj: object, length: int = 32) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace), truncated to ``length`` hex digits."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def fingerprint(path: Path, suffixes: tuple[str, ...] | None = None) -> str:
    """Content hash of a file or folder, fast on multi-GB checkpoints.

    Files up to 32 MB (configs, tokenizers, LoRA adapters, the builtin model) are hashed whole. A larger
    ``.safetensors`` is hashed by its size, its header (every tensor's name, dtype, shape and offset) and the first
    4 KB of every tensor: a few MB for SD 1.5's 3.4 GB UNet, well under a second, and any tensor that a fine-tune or
    a merged LoRA changes is seen, since those change a tensor densely. Other large files (``.bin``, ``.ckpt``) are
    hashed by size and 64 evenly spaced 64 KB reads. A tensor edited in a few scattered entries only could go unseen;
    that is the price of not reading gigabytes on every run. Hidden files (``.cache/`` left by ``hf download
    --local-dir``) hold timestamps and are skipped; ``suffixes`` keeps only files with those endings.
    """
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        relative = file.relative_to(path) if path.is_dir() else Path()  # a lone file's name is not content
        if any(part.startswith(".") for part in relative.parts) or (suffixes and file.suffix not in suffixes):
            continue
        size = file.stat().st_size
        digest.update(f"{relative.as_posix()}\0{size}\0".encode())
        with open(file, "rb") as handle:
            for offset, length in _sampled_regions(handle, size, file.suffix):
                handle.seek(offset)
                digest.update(handle.read(length))
    return digest.hexdigest()[:32]


def _sampled_regions(handle: BinaryIO, size: int, suffix: str) -> list[tuple[int, int]]:
    """(offset, length) of the bytes that :func:`fingerprint` hashes."""
    if size <= WHOLE_FILE_LIMIT:
        return [(0, size)]
    if suffix == ".safetensors":
        data_start = 8 + int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(data_start - 8))
        tensors = [entry["data_offsets"] for name, entry in header.items() if name != "__metadata__"]
        return [(0, data_start)] + [(data_start + begin, min(TENSOR_SAMPLE, end - begin)) for begin, end in tensors]
    return [(i * (size - SPREAD_SAMPLE) // (SPREAD_SAMPLES - 1), SPREAD_SAMPLE) for i in range(SPREAD_SAMPLES)]
