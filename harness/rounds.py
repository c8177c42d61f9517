"""Round folders: what one sampling pass produced, read by row without loading tensors.

One reader serves both sides of a round: the labeling page (``harness/labeling/rounds.py``, which groups the rows
by prompt for a person) and the trainers (``trainers/rounds.py``, which writes rounds and loads their
trajectories; ``harness`` may not import it, so the reader lives here). Two layouts are read:

* ours (``save_round``): ``images/NNNNN.png`` (5-digit row r), ``prompt.json`` (the prompts by group) and
  ``round.json`` (``format`` "harness-round"; per row: ``image``, ``prompt``, ``group``, ``seed``, ``item`` = the
  prompt item with its tag and metadata; the sampler config);
* the official D3PO one (``scripts/sample.py``): ``prompt.json`` (a list of prompts by row) and
  ``images/NNNNN.png`` with NNNNN = k * row + j; no seeds (rows get :data:`UNKNOWN_SEED`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.registry import PromptItem
from harness.errors import DataError

FORMAT = "harness-round"
VERSION = 1
ROUND_FILE = "round.json"
PROMPT_FILE = "prompt.json"
# The official layout records no seeds; rows get this marker instead of a made-up seed.
UNKNOWN_SEED = -1


def is_round_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a round of either layout (it may still be malformed)."""
    return (Path(folder) / ROUND_FILE).is_file() or (Path(folder) / PROMPT_FILE).is_file()


@dataclass
class RoundIndex:
    """What a round folder holds without loading its tensors: one entry per row, in trajectory order."""

    folder: Path
    items: list[PromptItem]
    groups: list[int]
    seeds: list[int]
    images: list[Path]  # absolute paths
    layout: str  # "harness" | "d3po"
    _by_name: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {}
        for row, path in enumerate(self.images):
            self._by_name[path.name] = row
            self._by_name[self.relative(row)] = row
            self._by_name[str(path)] = row

    @property
    def prompts(self) -> list[str]:
        return [item.prompt for item in self.items]

    def relative(self, row: int) -> str:
        """Row ``row``'s image as a path inside the round (``images/00003.png``)."""
        return self.images[row].relative_to(self.folder).as_posix()

    def row_of(self, image_id: object) -> int | None:
        """The row an image id names: its row number, its file name (``00003.png``) or its path inside the round
        (``images/00003.png``); None when no image of the round matches."""
        if isinstance(image_id, bool):
            return None
        if isinstance(image_id, int):
            return image_id if 0 <= image_id < len(self.images) else None
        if not isinstance(image_id, str):
            return None
        return self._by_name.get(image_id, self._by_name.get(Path(image_id).as_posix()))


def read_round_index(folder: Path) -> RoundIndex:
    """The rows of a round folder (ours or the official D3PO layout) without loading tensors; one-line errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a round folder; pass a folder with images/ and {ROUND_FILE} (ours) or "
                        f"{PROMPT_FILE} (the official D3PO layout)")
    if (folder / ROUND_FILE).is_file():
        return _read_our_index(folder)
    if (folder / PROMPT_FILE).is_file():
        return _read_official_index(folder)
    raise DataError(f"{folder} holds neither {ROUND_FILE} nor {PROMPT_FILE}; it is not a recorded round")


def _read_our_index(folder: Path) -> RoundIndex:
    path = folder / ROUND_FILE
    try:
        meta = json.loads(path.read_text())
        if meta.get("format") != FORMAT:
            raise DataError(f"{path}: not a harness round file (format {meta.get('format')!r})")
        rows = meta["rows"]
        items = [PromptItem(**row["item"]) for row in rows]
        groups = [int(row["group"]) for row in rows]
        seeds = [int(row["seed"]) for row in rows]
        names = [str(row["image"]) for row in rows]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(f"{path}: malformed round file ({type(err).__name__}: {err}); re-save the round") from None
    # A name that leaves the folder would let a round file point the labeling page (or a trainer) at any file.
    outside = [name for name in names if Path(name).is_absolute() or ".." in Path(name).parts]
    if outside:
        raise DataError(f"{path}: image {outside[0]!r} is outside the round; image names are relative to the round")
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: {len(missing)} image(s) listed in {ROUND_FILE} are missing, e.g. {missing[0]}")
    return RoundIndex(folder, items, groups, seeds, [folder / name for name in names], "harness")


def _read_official_index(folder: Path) -> RoundIndex:
    path = folder / PROMPT_FILE
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
    rows = range(len(pngs))
    items = [PromptItem(r // k, prompts[r // k], "d3po", {"prompt": prompts[r // k]}) for r in rows]
    return RoundIndex(folder, items, [r // k for r in rows], [UNKNOWN_SEED] * len(pngs), pngs, "d3po")
