"""What a round folder shows a person: its prompts, and for each prompt the k images sampled for it.

The rows come from :func:`harness.rounds.read_round_index`, the reader the trainers use too, so both layouts (ours
and the official D3PO one) are read the same way on both sides; this module only groups them by prompt. Only the
images and prompts are read; trajectories stay with the trainers.

A training run folder (``harness train --feedback human``) keeps its rounds in ``rounds/r00001``, ``rounds/r00002``,
...; :func:`latest_round` finds the newest, so one page can follow a run from round to round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import DataError
from harness.hashing import stable_hash
from harness.rounds import is_round_folder, read_round_index

__all__ = ["DB_FILE", "EXPORT_DIR", "Group", "LabelRound", "is_round_folder", "latest_round", "read_label_round",
           "round_folder"]

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
    """The prompts and images of a round folder (ours or the official D3PO layout, read by
    :func:`harness.rounds.read_round_index`), grouped by prompt; one-line errors otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; pass a round folder (images/ and round.json or prompt.json) or "
                        "a training run folder with rounds/")
    index = read_round_index(folder)
    by_group: dict[int, list[int]] = {}
    for row, group in enumerate(index.groups):
        by_group.setdefault(group, []).append(row)
    groups = []
    for n, (group, rows) in enumerate(by_group.items()):
        prompts = {index.items[r].prompt for r in rows}
        if len(prompts) != 1:
            raise DataError(f"{folder}: group {group} mixes prompts {sorted(prompts)}")
        if len(rows) < 2:
            raise DataError(f"{folder}: prompt {prompts.pop()!r} has {len(rows)} image; a person compares at least 2 "
                            "images per prompt")
        groups.append(Group(n, prompts.pop(), tuple(rows), tuple(index.relative(r) for r in rows)))
    return LabelRound(folder, groups, index.layout)
