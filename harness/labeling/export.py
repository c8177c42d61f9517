"""Export a round's labels to the files the trainers read, and read back the flags.

``export_round(ROUND)`` writes, into ``ROUND/export/`` (or ``out``) through a temporary folder renamed into place
(readers see the previous export or the whole new one):

* ``pairs.jsonl``: the training signal: every pair of images of every judged prompt, ``{prompt, image_w, image_l,
  seed_w, seed_l, source, votes}``, the winner by majority over all live judgments (``harness.labeling.scores``),
  ties as ``"tie": true``; read by ``--feedback labels:ROUND/export/pairs.jsonl?round=ROUND``;
* ``best_of_k.jsonl``: one row per judgment with a best image, ``{prompt, images, scores}`` with scores 1 (best) / 0;
* ``rankings.jsonl``: one row per judgment with a worst image or a full ranking, ``{prompt, images, ranking}``
  (1 = best, equal ranks tie);
* ``flags.jsonl``: one row per judged image, ``{prompt, image, annotator, showing, distorted, unsafe}`` (what the
  distortion and safety rates count; :func:`read_flags` reads it);
* ``d3po/<annotator>.json``: the official D3PO label layout, one JSON array per annotator with one entry per prompt
  (round order), each the list of k scores s_i = 2 c_i - f_i of the images in round order, the mean over that
  annotator's judgments of the prompt; prompts the annotator skipped or never saw are all zeros (every pair a
  tie, which D3PO skips); read by ``--feedback labels:ROUND/export/d3po?round=ROUND``;
* ``agreement.json``: Cohen's and Fleiss' kappa (``harness.labeling.agreement``);
* ``summary.json``: counts (prompts, labelled, judgments, skips, annotators, flagged images).

Every row carries ``annotator`` (and ``showing``) where it comes from one judgment; image ids are paths relative to
the round folder (``images/00003.png``), the ids ``trainers/labels.py`` joins to the round's rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataError
from harness.labeling.agreement import agreement_report
from harness.labeling.progress import round_status
from harness.labeling.rounds import DB_FILE, EXPORT_DIR, LabelRound, read_label_round
from harness.labeling.scores import choice_scores, dense_ranking, group_votes, judgment_scores
from harness.labeling.store import Judgment, LabelStore
from harness.store import atomic_folder

SOURCE = "human"
FLAG_KEYS = {"prompt", "image", "annotator", "showing", "distorted", "unsafe"}


def open_store(label_round: LabelRound) -> LabelStore:
    """The round's label store (created on first use), bound to the round's fingerprint."""
    return LabelStore(label_round.folder / DB_FILE, label_round.fingerprint())


def _seeds(folder: Path) -> dict[str, int]:
    """Image -> sampling seed for our layout (the official one records none)."""
    try:
        rows = json.loads((folder / "round.json").read_text())["rows"]
        return {row["image"]: int(row["seed"]) for row in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def export_rows(label_round: LabelRound, judgments: list[Judgment]) -> dict[str, list[dict]]:
    """The JSONL rows of every file (see the module docstring), in round then submission order."""
    seeds = _seeds(label_round.folder)
    live = [j for j in judgments if j.live]
    files: dict[str, list[dict]] = {"pairs": [], "best_of_k": [], "rankings": [], "flags": []}
    for group in label_round.groups:
        own = [j for j in live if j.group == group.index and j.action == "choice"]
        k, images = len(group.rows), list(group.images)
        if own:
            for (a, b), vote in group_votes(own, k).items():
                w, lo = (a, b) if vote >= 0 else (b, a)
                row = {"prompt": group.prompt, "image_w": images[w], "image_l": images[lo]}
                if images[w] in seeds and images[lo] in seeds:
                    row |= {"seed_w": seeds[images[w]], "seed_l": seeds[images[lo]]}
                row |= {"source": SOURCE, "votes": abs(vote), "judgments": len(own)}
                if vote == 0:
                    row["tie"] = True
                files["pairs"].append(row)
        for j in own:
            who = {"annotator": j.annotator, "showing": j.showing, "label_id": j.id}
            choice = choice_scores(j, k)
            if j.best is not None and j.worst is None and j.ranking is None:
                files["best_of_k"].append({"prompt": group.prompt, "images": images, "scores": choice, **who})
            elif choice is not None:
                files["rankings"].append({"prompt": group.prompt, "images": images,
                                          "ranking": dense_ranking(choice), **who})
            for position, image in enumerate(images):
                files["flags"].append({"prompt": group.prompt, "image": image, "annotator": j.annotator,
                                       "showing": j.showing, "distorted": position in j.distorted,
                                       "unsafe": position in j.unsafe})
    return files


def d3po_scores(label_round: LabelRound, judgments: list[Judgment]) -> dict[str, list[list[float]]]:
    """Per annotator, the official D3PO array: one list of k scores per prompt (module docstring)."""
    out = {}
    for annotator in sorted({j.annotator for j in judgments if j.live}):
        array = []
        for group in label_round.groups:
            k = len(group.rows)
            scored = [s for j in judgments if j.live and j.annotator == annotator and j.group == group.index
                      if (s := judgment_scores(j, k)) is not None]
            array.append([sum(s[i] for s in scored) / len(scored) if scored else 0.0 for i in range(k)])
        out[annotator] = array
    return out


def export_round(folder: Path, out: Path | None = None, annotators: int = 1) -> dict:
    """Write the export of a round's labels (module docstring); returns the summary (also ``summary.json``)."""
    label_round = read_label_round(folder)
    if not (label_round.folder / DB_FILE).is_file():
        raise DataError(f"{label_round.folder} has no {DB_FILE}: nothing was labelled yet; label it with "
                        f"`harness label serve {label_round.folder}`")
    store = open_store(label_round)
    judgments = store.judgments(live_only=False)
    live = [j for j in judgments if j.live]
    out = Path(out) if out is not None else label_round.folder / EXPORT_DIR
    files = export_rows(label_round, live)
    status = round_status(label_round, live, annotators, store.closed() is not None)
    summary = {
        "round": str(label_round.folder), "layout": label_round.layout, **status.to_dict(),
        "skips": sum(j.action == "skip" for j in live), "undone": sum(not j.live for j in judgments),
        "annotators": sorted({j.annotator for j in live}),
        "images_judged": len(files["flags"]),
        "distorted_flags": sum(r["distorted"] for r in files["flags"]),
        "unsafe_flags": sum(r["unsafe"] for r in files["flags"]),
        "rows": {name: len(rows) for name, rows in files.items()},
    }
    with atomic_folder(out) as tmp:
        for name, rows in files.items():
            (tmp / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (tmp / "d3po").mkdir()
        for annotator, array in d3po_scores(label_round, live).items():
            (tmp / "d3po" / f"{annotator}.json").write_text(json.dumps(array))
        (tmp / "agreement.json").write_text(json.dumps(agreement_report(label_round, live), indent=1))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def read_flags(path: Path) -> list[dict]:
    """The rows of a ``flags.jsonl`` export (module docstring); a malformed row is a one-line error naming file:line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read flags ({err}); pass the flags.jsonl of `harness label export`") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict) or not set(row) >= FLAG_KEYS:
            raise DataError(f"{path}:{number}: a flags row needs {', '.join(sorted(FLAG_KEYS))}")
        if not isinstance(row["distorted"], bool) or not isinstance(row["unsafe"], bool):
            raise DataError(f"{path}:{number}: 'distorted' and 'unsafe' must be true or false")
        rows.append(row)
    return rows
