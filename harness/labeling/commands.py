"""The logic behind ``harness label serve | export | close | status`` (the typer layer in harness/cli.py is thin)."""

from __future__ import annotations

from pathlib import Path

from harness.errors import DataError
from harness.labeling.app import target_folder
from harness.labeling.export import export_round, open_store
from harness.labeling.progress import round_status
from harness.labeling.rounds import DB_FILE, is_round_folder, latest_round, read_label_round


def resolve_round(target: Path) -> Path:
    """A round folder, or the newest round of a training run folder."""
    target = target_folder(Path(target))
    if is_round_folder(target):
        return target
    folder = latest_round(target)
    if folder is None:
        raise DataError(f"{target} has no sampled round yet (rounds/ is empty); start `harness train --feedback human`")
    return folder


def export_command(target: Path, out: Path | None, annotators: int) -> str:
    folder = resolve_round(target)
    summary = export_round(folder, out, annotators=annotators)
    where = Path(out) if out is not None else folder / "export"
    return (f"exported {summary['judgments']} judgments by {len(summary['annotators'])} annotator(s) on "
            f"{summary['labelled']}/{summary['prompts']} prompts to {where} (pairs.jsonl, best_of_k.jsonl, "
            f"rankings.jsonl, flags.jsonl, d3po/, agreement.json); train on them with "
            f"--feedback 'labels:{where / 'pairs.jsonl'}?round={folder}'")


def close_command(target: Path, by: str) -> str:
    folder = resolve_round(target)
    label_round = read_label_round(folder)
    open_store(label_round).close_round(by)
    return f"closed {folder}: a waiting training run goes on with the labels saved so far"


def status_command(target: Path, annotators: int) -> str:
    folder = resolve_round(target)
    label_round = read_label_round(folder)
    if not (folder / DB_FILE).is_file():
        return f"{folder}: 0/{len(label_round.groups)} prompts labelled (no labels yet)"
    store = open_store(label_round)
    status = round_status(label_round, store.judgments(), annotators, store.closed() is not None)
    who = sorted({j.annotator for j in store.judgments()})
    return (f"{folder}: {status.labelled}/{status.prompts} prompts labelled by >= {annotators} annotator(s), "
            f"{status.judgments} judgments by {', '.join(who) or 'nobody'}" + (", closed" if status.closed else ""))
