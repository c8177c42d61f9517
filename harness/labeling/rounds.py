"""What a round folder shows a person: its prompts, and for each prompt the k images sampled for it.

Two layouts are read (the same two as ``trainers/rounds.py``, which ``harness`` may not import): ours
(``round.json`` with one row per image: ``image``, ``prompt``, ``group``) and the official D3PO one (``prompt.json``,
a list of prompts by row, and ``images/NNNNN.png`` with NNNNN = k * row + j). Only the images and prompts are read;
trajectories stay with the trainers.

A training run folder (``harness train --feedback human``) keeps its rounds in ``rounds/r00001``, ``rounds/r00002``,
...; :func:`latest_round` finds the newest, so one page can follow a run from round to round.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DataError
from harness.hashing import stable_hash

ROUNDS_DIR = "rounds"  # inside a training run folder
ROUND_PREFIX = "r"  # rounds/r00001 is round 1
DB_FILE = "labels.sqlite"  # the label store, inside the round folder
EXPORT_DIR = "export"  # the default export folder, inside the round folder


def round_folder(run_dir: Path, round_number: int) -> Path:
    """The folder of round ``round_number`` (1-based) of a training run."""
    return Path(run_dir) / ROUNDS_DIR / f"{ROUND_PREFIX}{round_number:05d}"


def latest_round(run_dir: Path) -> Path | None:
    """The newest complete round folder of a training run (folders are renamed into place whole), or None."""
    folders = [p for p in (Path(run_dir) / ROUNDS_DIR).glob(f"{ROUND_PREFIX}[0-9]*")
               if p.is_dir() and p.name[len(ROUND_PREFIX):].isdigit()]
    return max(folders, key=lambda p: int(p.name[len(ROUND_PREFIX):]), default=None)


def is_round_folder(folder: Path) -> bool:
    return (folder / "round.json").is_file() or (folder / "prompt.json").is_file()


@dataclass(frozen=True)
class Group:
    """One prompt of the round and its images (row numbers and paths relative to the round folder)."""

    index: int  # position among the round's prompts, 0-based
    prompt: str
    rows: tuple[int, ...]
    images: tuple[str, ...]  # e.g. "images/00003.png"


@dataclass
class LabelRound:
    """A round as the labeling page sees it."""

    folder: Path
    groups: list[Group]
    layout: str  # "harness" | "d3po"

    @property
    def n_images(self) -> int:
        return sum(len(g.rows) for g in self.groups)

    def fingerprint(self) -> str:
        """A hash of the prompts and image names: the store refuses labels of another round."""
        return stable_hash([[g.prompt, list(g.images)] for g in self.groups], 16)

    def group_of_image(self, image: str) -> tuple[Group, int] | None:
        """The group holding ``image`` (a path relative to the round, as the page sends it) and its position."""
        for group in self.groups:
            if image in group.images:
                return group, group.images.index(image)
        return None

    def image_path(self, name: str) -> Path | None:
        """The file of an image of this round, looked up by its exact relative name; anything else (``..``, an
        absolute path, an encoded traversal, a file of the folder that is not a round image) is None."""
        for group in self.groups:
            if name in group.images:
                return self.folder / name
        return None


def read_label_round(folder: Path) -> LabelRound:
    """The prompts and images of a round folder (ours or the official D3PO layout); one-line errors otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; pass a round folder (images/ and round.json or prompt.json) or "
                        "a training run folder with rounds/")
    if (folder / "round.json").is_file():
        return _ours(folder)
    if (folder / "prompt.json").is_file():
        return _official(folder)
    raise DataError(f"{folder} holds neither round.json nor prompt.json; it is not a sampled round")


def _ours(folder: Path) -> LabelRound:
    path = folder / "round.json"
    try:
        rows = json.loads(path.read_text())["rows"]
        entries = [(str(row["image"]), str(row["prompt"]), int(row["group"])) for row in rows]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: malformed round file ({type(err).__name__}: {err}); re-save the round") from None
    by_group: dict[int, list[int]] = {}
    for row, (_, _, group) in enumerate(entries):
        by_group.setdefault(group, []).append(row)
    groups = []
    for n, rows_of in enumerate(by_group.values()):
        prompts = {entries[r][1] for r in rows_of}
        if len(prompts) != 1:
            raise DataError(f"{path}: group {entries[rows_of[0]][2]} mixes prompts {sorted(prompts)}")
        groups.append(Group(n, prompts.pop(), tuple(rows_of), tuple(entries[r][0] for r in rows_of)))
    _check_images(folder, groups)
    return LabelRound(folder, groups, "harness")


def _official(folder: Path) -> LabelRound:
    path = folder / "prompt.json"
    try:
        prompts = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg}); expected a list of prompts") from None
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise DataError(f"{path}: expected a non-empty JSON list of prompt strings (one per prompt row)")
    pngs = sorted((p for p in (folder / "images").glob("*.png") if p.stem.isdigit()), key=lambda p: int(p.stem))
    if not pngs or [int(p.stem) for p in pngs] != list(range(len(pngs))) or len(pngs) % len(prompts):
        raise DataError(f"{folder}/images: expected NNNNN.png numbered 0..k*{len(prompts)}-1 (k images for each of "
                        f"the {len(prompts)} prompts), found {len(pngs)} numbered files")
    k = len(pngs) // len(prompts)
    groups = [Group(n, prompt, tuple(range(n * k, (n + 1) * k)),
                    tuple(f"images/{p.name}" for p in pngs[n * k:(n + 1) * k])) for n, prompt in enumerate(prompts)]
    return LabelRound(folder, groups, "d3po")


def _check_images(folder: Path, groups: list[Group]) -> None:
    for group in groups:
        if len(group.rows) < 2:
            raise DataError(f"{folder}: prompt {group.prompt!r} has {len(group.rows)} image; a person compares at "
                            "least 2 images per prompt")
        for name in group.images:
            if Path(name).is_absolute() or ".." in Path(name).parts or not (folder / name).is_file():
                raise DataError(f"{folder}: image {name!r} listed in round.json is missing or outside the round")
