"""``ResultRecord``: one benchmark score with everything needed to reproduce and compare it."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from harness.errors import DataError
from harness.store import atomic_write_json

SCHEMA_VERSION = 2  # 2: comparability label (comparable_to_published, comparability_reasons)
READABLE_VERSIONS = (1, 2)
UNKNOWN_COMPARABILITY = "unknown: schema_version 1 record, written before comparability labels existed"
TRACKED_PACKAGES = ("harness", "torch", "diffusers", "transformers", "accelerate", "peft", "open_clip_torch",
                    "numpy", "scipy", "pillow", "spacy")


@dataclass
class ResultRecord:
    """A benchmark result. ``scores`` holds ``overall`` plus one entry per tag/category (0-1 unless noted).

    ``comparable_to_published`` says whether the scores may be set beside the benchmark's published tables: True
    only when the run followed the official protocol in everything that changes a score (perception checkpoints,
    sampler, rule versions), with ``comparability_reasons`` listing each deviation otherwise; None (unknown) for a
    record written before the label existed (schema_version 1).
    """

    benchmark: str
    benchmark_version: str
    world: str
    model: str
    checkpoint_fingerprint: str
    scores: dict[str, float]
    n_prompts: int
    n_images: int
    seeds: dict
    sampler: dict
    perception: dict[str, str]
    options: dict = field(default_factory=dict)
    method: str = "pretrained"
    training: dict = field(default_factory=dict)
    wall_time_s: dict[str, float] = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    created: str = ""
    comparable_to_published: bool | None = None
    comparability_reasons: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> ResultRecord:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"cannot read result record {path}: {err}") from None
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise DataError(f"{path} has schema_version {version}, expected one of {READABLE_VERSIONS}; "
                            "upgrade harness to read it")
        if version == 1:  # written before the comparability label: read as unknown, never as comparable
            data.update(comparable_to_published=None, schema_version=SCHEMA_VERSION,
                        comparability_reasons=[UNKNOWN_COMPARABILITY])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"{path}: unknown result record field(s) {', '.join(unknown)}; not a harness record "
                            "or written by a newer harness")
        return cls(**data)


def environment_info() -> dict:
    """Package versions, git commit, Python and hardware: what a reader needs to rerun the numbers."""
    versions = {}
    for name in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    info: dict = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu: {_cpu_name()}"
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x {os.cpu_count()}"


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None
