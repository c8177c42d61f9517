"""Recorded human choices: the JSONL formats of ``specs/trainers.md`` and the official D3PO annotator files.

Formats (one JSON object per line; blank lines are skipped):

* pairwise ``{"prompt", "image_w", "image_l", ["seed_w", "seed_l", "source", "tie"]}``: ``image_w`` preferred to
  ``image_l``, or neither when ``"tie": true``;
* best-of-k / ranking ``{"prompt", "images": [...], "ranking": [...]}`` or ``{..., "scores": [...]}``:
  ``ranking[k]`` is the rank of ``images[k]`` (1 = best; equal ranks tie), ``scores[k]`` its score (higher = better;
  RankDPO's ψ); a best-of-k choice is ``scores`` 1 for the chosen image and 0 for the others;
* official D3PO (``scripts/train.py``): a directory of per-annotator ``*.json`` files, each a JSON array with one
  entry per prompt row, each entry a list of k scores (one per image of the row). Files are cut to the shortest and
  averaged element-wise.

Every row becomes all pairs of its images, the higher score winning and equal scores a tie
(:func:`pairs_from_scores`). Image ids are resolved against a recorded round (``trainers/rounds.py``) when training
on it, or as image files relative to the label file when training a reward model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from harness.errors import DataError, json_object_line
from harness.rounds import RoundIndex, is_round_folder, read_round_index
from trainers.base import Preference

LABELS_FILE = "labels.jsonl"
LABELS_DIR = "labels"


@dataclass(frozen=True)
class Comparison:
    """One labelled row: its images (ids as written) and a score per image, higher = preferred."""

    where: str  # "FILE:LINE", for error messages
    prompt: str
    images: tuple[object, ...]
    scores: tuple[float, ...]

    def pairs(self) -> list[tuple[int, int, int]]:
        """(k, l, winner) over every pair of this row's images; see :func:`pairs_from_scores`."""
        return pairs_from_scores(list(range(len(self.images))), list(self.scores))


def pairs_from_scores(rows: list[int], scores: list[float]) -> list[tuple[int, int, int]]:
    """All pairs (rows[a], rows[b], winner) with a < b: winner = +1 when scores[a] > scores[b], -1 when lower,
    0 when equal (a tie)."""
    out = []
    for a, b in combinations(range(len(rows)), 2):
        diff = scores[a] - scores[b]
        out.append((rows[a], rows[b], 1 if diff > 0 else -1 if diff < 0 else 0))
    return out


def read_comparisons(path: Path) -> list[Comparison]:
    """Parse a pairwise / best-of-k / ranking JSONL file; a malformed row is a one-line error naming file:line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read labels ({err}); pass a JSONL file") from None
    out = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            out.append(_parse_row(line, f"{path}:{number}"))
    if not out:
        raise DataError(f"{path}: no label rows; expected JSONL rows {{prompt, image_w, image_l}} or "
                        "{prompt, images, ranking|scores}")
    return out


def _parse_row(line: str, where: str) -> Comparison:
    row = json_object_line(line, where)
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise DataError(f"{where}: missing or empty 'prompt'")
    if "image_w" in row or "image_l" in row:
        if "image_w" not in row or "image_l" not in row:
            raise DataError(f"{where}: a pairwise row needs both 'image_w' and 'image_l'")
        images = (row["image_w"], row["image_l"])
        tie = row.get("tie", False)
        if not isinstance(tie, bool):
            raise DataError(f"{where}: 'tie' must be true or false, got {tie!r}")
        scores = (0.0, 0.0) if tie else (1.0, 0.0)
    elif "images" in row:
        images = row["images"]
        if not isinstance(images, list) or len(images) < 2:
            raise DataError(f"{where}: 'images' must be a list of at least 2 image ids")
        has_ranking, has_scores = "ranking" in row, "scores" in row
        if has_ranking == has_scores:
            raise DataError(f"{where}: give exactly one of 'ranking' (1 = best) or 'scores' (higher = better)")
        values = row["ranking"] if has_ranking else row["scores"]
        key = "ranking" if has_ranking else "scores"
        if not isinstance(values, list) or len(values) != len(images) or not all(_finite(v) for v in values):
            raise DataError(f"{where}: '{key}' must be a list of {len(images)} finite numbers, one per image")
        scores = tuple(-float(v) if has_ranking else float(v) for v in values)
        images = tuple(images)
    else:
        raise DataError(f"{where}: unknown row shape (keys {sorted(row)}); expected {{prompt, image_w, image_l}} or "
                        "{prompt, images, ranking|scores}")
    if not all(isinstance(i, str | int) and not isinstance(i, bool) for i in images):
        raise DataError(f"{where}: image ids must be strings (paths or file names) or row numbers")
    if len(set(images)) != len(images):
        raise DataError(f"{where}: the same image appears twice in one row")
    return Comparison(where, prompt, tuple(images), tuple(scores))


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_annotator_scores(files: list[Path]) -> list[list[float]]:
    """The official D3PO labels: each file is one annotator's JSON array of per-row score lists; the files are cut
    to the shortest and averaged element-wise (``scripts/train.py``)."""
    if not files:
        raise DataError("no annotator *.json files (the official D3PO label directory holds one per annotator)")
    arrays = []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(data, list) or not data:
            raise DataError(f"{path}: expected a non-empty JSON array with one list of scores per prompt row")
        for entry, scores in enumerate(data):
            if not isinstance(scores, list) or not scores or not all(_finite(v) for v in scores):
                raise DataError(f"{path}: entry {entry}: expected a list of finite scores, one per image")
            if len(scores) != len(data[0]):
                raise DataError(f"{path}: entry {entry}: {len(scores)} scores, but entry 0 has {len(data[0])}")
        arrays.append(data)
    widths = {len(a[0]) for a in arrays}
    if len(widths) > 1:
        raise DataError(f"{files[0].parent}: annotator files disagree on images per prompt ({sorted(widths)})")
    n = min(len(a) for a in arrays)
    return [[sum(a[row][k] for a in arrays) / len(arrays) for k in range(len(arrays[0][0]))] for row in range(n)]


@dataclass
class LabelSet:
    """Human labels joined to a recorded round: preferences between the round's rows."""

    round: RoundIndex
    preferences: list[Preference]
    sources: list[Path]

    @property
    def labels_used(self) -> int:
        return len(self.preferences)


def join_comparisons(comparisons: list[Comparison], index: RoundIndex) -> list[Preference]:
    """Resolve image ids to the round's rows; an id not in the round, a prompt that is not the image's, or images of
    different prompts in one row is a one-line error naming file:line."""
    prefs = []
    for comp in comparisons:
        rows = []
        for image_id in comp.images:
            row = index.row_of(image_id)
            if row is None:
                raise DataError(f"{comp.where}: image {image_id!r} is not in the round {index.folder}")
            rows.append(row)
        prompts = {index.items[r].prompt for r in rows}
        if comp.prompt not in prompts:
            known = comp.prompt in {item.prompt for item in index.items}
            raise DataError(f"{comp.where}: prompt {comp.prompt!r} " + (
                "does not match its images' prompt" if known else f"is not a prompt of the round {index.folder}"))
        if len({index.groups[r] for r in rows}) > 1 or len(prompts) > 1:
            raise DataError(f"{comp.where}: the images of one row belong to different prompts of the round")
        prefs.extend(Preference(rows[k], rows[m], w) for k, m, w in comp.pairs())
    return prefs


def join_annotator_scores(files: list[Path], index: RoundIndex) -> list[Preference]:
    """Official per-annotator score arrays against a round: entry n scores the images of the round's n-th prompt
    group, in row order; the higher mean wins, equal means tie."""
    scores = read_annotator_scores(files)
    where = ", ".join(p.name for p in files)
    group_order = list(dict.fromkeys(index.groups))
    if len(scores) > len(group_order):
        raise DataError(f"{where}: {len(scores)} scored prompt rows, but the round {index.folder} has only "
                        f"{len(group_order)} prompts")
    prefs = []
    for n, row_scores in enumerate(scores):
        rows = [r for r, g in enumerate(index.groups) if g == group_order[n]]
        if len(rows) != len(row_scores):
            raise DataError(f"{where}: entry {n} has {len(row_scores)} scores, but prompt {n} of the round has "
                            f"{len(rows)} images")
        prefs.extend(Preference(i, j, w) for i, j, w in pairs_from_scores(rows, row_scores))
    return prefs


def read_labels(path: Path, round_dir: Path | None = None) -> LabelSet:
    """Labels and the round they label.

    ``path`` is a round folder holding ``labels.jsonl`` or a ``labels/`` directory (JSONL files and/or official
    annotator ``*.json`` arrays), a label JSONL file whose round is its folder, or, with ``round_dir``, a label file
    or annotator directory kept apart from the round (the official layout keeps them apart).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; pass a label JSONL file, a round folder or an annotator directory")
    if round_dir is None:
        is_round = path.is_dir() and is_round_folder(path)
        round_dir = path if is_round else path.parent
        if is_round:
            path = path / LABELS_FILE if (path / LABELS_FILE).is_file() else path / LABELS_DIR
            if not path.exists():
                raise DataError(f"{round_dir} holds no {LABELS_FILE} or {LABELS_DIR}/; put the labels there or pass "
                                "labels:FILE?round=DIR")
    index = read_round_index(round_dir)
    sources = [path] if path.is_file() else sorted([*path.glob("*.jsonl"), *path.glob("*.json")])
    if not sources:
        raise DataError(f"{path}: no *.jsonl label files or *.json annotator files")
    prefs: list[Preference] = []
    for source in sources:
        if source.suffix != ".json":
            prefs.extend(join_comparisons(read_comparisons(source), index))
    annotators = [p for p in sources if p.suffix == ".json"]
    if annotators:
        prefs.extend(join_annotator_scores(annotators, index))
    return LabelSet(index, prefs, sources)
