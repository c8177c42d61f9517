"""``ResultRecord``: one benchmark score with everything needed to reproduce and compare it."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from harness.errors import DataError
from harness.store import atomic_write_json

SCHEMA_VERSION = 1
TRACKED_PACKAGES = ("harness", "torch", "diffusers", "transformers", "accelerate", "peft", "open_clip_torch",
                    "numpy", "scipy", "pillow")


@dataclass
class ResultRecord:
    """A benchmark result. ``scores`` holds ``overall`` plus one entry per tag/category (0-1 unless noted)."""

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
    schema_version: int = SCHEMA_VERSION

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> ResultRecord:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"cannot read result record {path}: {err}") from None
        if data.get("schema_version") != SCHEMA_VERSION:
            raise DataError(f"{path} has schema_version {data.get('schema_version')}, expected {SCHEMA_VERSION}")
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
