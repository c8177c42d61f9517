"""Blind eye audit of a GenEval gain: does a person looking at the images see what the oracle scored?

    python -m benchmarks.audits.eye_audit sheets --base RUN --trained RUN --out /tmp/audit
    python -m benchmarks.audits.eye_audit closeup --base RUN --trained RUN --id A017 --out /tmp/audit
    python -m benchmarks.audits.eye_audit attach --base RUN --trained RUN --raw RAW.jsonl \
        --labels results/eye-audit/labels.jsonl
    python -m benchmarks.audits.eye_audit report --base RUN --trained RUN --labels results/eye-audit/labels.jsonl \
        --out results/eye-audit

A model trained against the oracle may learn what the oracle rewards rather than what the prompt asks, and the
oracle's agreement with a person (``benchmarks/geneval/eye_labels.py``) was measured on the base model's images only.
So the audit draws a *paired* sample: per GenEval tag, ``PER_TAG`` (prompt, image seed) slots, each slot's image
from the base run AND from the trained run (both runs draw every prompt with the same seeds, so a slot differs only
in the model). Slots are unique (prompt text, seed) pairs: GenEval reseeds per prompt, so a prompt listed twice
gives the same image twice. The draw is ``random.Random(DRAW_SEED)`` over the tag's slots in file order.

Blind sheets: the 2 x 120 images are shuffled with ``random.Random(SHUFFLE_SEED)`` and shown x4 nearest-neighbour
with only an id (``A001``.. in shuffled order) and the prompt: not the model, not the oracle's verdict. A person
labels each id under ``eye_labels.py``'s rules (objects seen, verdict correct / wrong / unsure, note) into a raw
file; ``attach`` joins the raw labels with the draw (run, slot, seed, image fingerprint) into the label file, and
``report`` checks every label's fingerprint against the image in the run folder before using it.

The report: (1) oracle vs eye agreement per model and tag (Wilson interval, misses = eye correct / oracle wrong,
false positives = eye wrong / oracle correct), on sure labels; (2) GenEval accuracy per tag and overall on the same
slots, judged by the eye and by the oracle, for base and trained, with the paired stratified bootstrap of
trained - base (``harness.stats.resample``: slots resampled within tag, the same draws for all four columns;
overall = mean of the six tag means, as GenEval). An ``unsure`` label counts as half a pass in the eye's accuracy;
the report also gives the two ends (every unsure wrong / every unsure correct). (3) How many objects the eye saw,
and how often more objects of an asked shape than asked (GenEval rewards presence for five of six tags; only
counting penalises extras).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks.geneval.eye_labels import VERDICTS, Agreement
from benchmarks.geneval.prompts import TAGS
from benchmarks.geneval.rules import aggregate_tags
from benchmarks.registry import SampleResult
from harness.errors import DataError, HarnessError
from harness.hashing import fingerprint
from harness.stats import Bootstrap, mcnemar_exact, resample

PER_TAG = 20
DRAW_SEED = "eye-audit:1"
SHUFFLE_SEED = "eye-audit:sheets:1"
MODELS = ("base", "trained")
SCALE, CLOSEUP_SCALE = 4, 8
PER_SHEET, COLUMNS = 24, 6


@dataclass(frozen=True)
class Slot:
    """One (prompt, image seed) of the GenEval run, at line ``line`` of both runs' result files."""

    slot: int  # 0..PER_TAG*6-1, in draw order
    line: int
    prompt_index: int
    image_index: int
    seed: int
    tag: str
    prompt: str
    metadata: dict


@dataclass(frozen=True)
class AuditImage:
    """One image on the sheets: ``id`` is all a labeller sees besides the prompt."""

    id: str
    model: str  # "base" or "trained"
    run: str  # run folder name
    slot: Slot
    path: Path
    image_hash: str
    oracle_correct: bool


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path} is missing; pass a GenEval run folder (with samples.jsonl and "
                        "geneval_results.jsonl) from the store's runs/")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_run(run: Path) -> list[dict]:
    """A GenEval run's images, one dict per line of ``samples.jsonl`` joined with the same line of
    ``geneval_results.jsonl`` (the harness writes both in the same order): index, seed, path, verdict, metadata."""
    samples, results = _read_jsonl(run / "samples.jsonl"), _read_jsonl(run / "geneval_results.jsonl")
    if len(samples) != len(results):
        raise DataError(f"{run}: samples.jsonl has {len(samples)} lines but geneval_results.jsonl {len(results)}; "
                        "re-run the evaluation")
    rows = []
    for s, r in zip(samples, results):
        if s["image"] != r["filename"]:
            raise DataError(f"{run}: samples.jsonl and geneval_results.jsonl disagree on {s['image']}; re-run it")
        meta = r["metadata"]
        rows.append({**s, "correct": bool(r["correct"]),
                     "metadata": json.loads(meta) if isinstance(meta, str) else meta})
    return rows


def check_paired(base: list[dict], trained: list[dict]) -> None:
    """Both runs must hold the same prompts with the same seeds, line by line, or a slot would not be paired."""
    key = ("prompt_index", "image_index", "prompt", "tag", "seed")
    if len(base) != len(trained) or any([a[k] for k in key] != [b[k] for k in key] for a, b in zip(base, trained)):
        raise HarnessError("the base and trained runs do not hold the same prompts and seeds in the same order; "
                           "pass two GenEval runs of the same prompt set and protocol")


def draw_slots(rows: list[dict], per_tag: int = PER_TAG, seed: str = DRAW_SEED) -> list[Slot]:
    """``per_tag`` unique (prompt text, seed) slots per tag, drawn without replacement, tags in GenEval's order."""
    rng = random.Random(seed)
    slots: list[Slot] = []
    for tag in TAGS:
        first: dict[tuple[str, int], int] = {}
        for line, row in enumerate(rows):
            if row["tag"] == tag:
                first.setdefault((row["prompt"], row["seed"]), line)
        lines = list(first.values())
        if len(lines) < per_tag:
            raise HarnessError(f"tag {tag} has {len(lines)} distinct (prompt, seed) slots, fewer than {per_tag}; "
                               "lower --per-tag")
        for line in sorted(rng.sample(lines, per_tag)):
            row = rows[line]
            slots.append(Slot(len(slots), line, row["prompt_index"], row["image_index"], row["seed"], tag,
                              row["prompt"], row["metadata"]))
    return slots


def audit_images(base_run: Path, trained_run: Path, per_tag: int = PER_TAG) -> list[AuditImage]:
    """The audited images in sheet order (shuffled), with ids ``A001``... in that order."""
    runs = {"base": read_run(base_run), "trained": read_run(trained_run)}
    check_paired(runs["base"], runs["trained"])
    slots = draw_slots(runs["base"], per_tag)
    pairs = [(model, slot) for slot in slots for model in MODELS]
    random.Random(SHUFFLE_SEED).shuffle(pairs)
    folders = {"base": base_run, "trained": trained_run}
    images = []
    for k, (model, slot) in enumerate(pairs, 1):
        row = runs[model][slot.line]
        path = Path(row["image"])
        if not path.is_file():
            raise DataError(f"image {path} of {folders[model].name} is missing; regenerate the run")
        images.append(AuditImage(f"A{k:03d}", model, folders[model].name, slot, path, fingerprint(path),
                                 row["correct"]))
    return images


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def write_sheets(images: Sequence[AuditImage], out: Path) -> list[Path]:
    """Blind contact sheets: each image x4 nearest-neighbour in a dark frame, its id and prompt beneath."""
    out.mkdir(parents=True, exist_ok=True)
    side = 48 * SCALE
    cell_w, cell_h, pad = side + 12, side + 44, 6
    font = _font(13)
    paths = []
    for start in range(0, len(images), PER_SHEET):
        chunk = images[start : start + PER_SHEET]
        rows = (len(chunk) + COLUMNS - 1) // COLUMNS
        sheet = Image.new("RGB", (COLUMNS * cell_w, rows * cell_h), (40, 40, 40))
        draw = ImageDraw.Draw(sheet)
        for k, image in enumerate(chunk):
            x, y = (k % COLUMNS) * cell_w + pad, (k // COLUMNS) * cell_h + pad
            pixels = Image.open(image.path).convert("RGB")
            sheet.paste(pixels.resize((pixels.width * SCALE, pixels.height * SCALE), Image.NEAREST), (x, y))
            text = image.slot.prompt.removeprefix("a photo of ")
            draw.text((x, y + side + 2), f"{image.id}  {text[:30]}", fill=(255, 255, 255), font=font)
            draw.text((x, y + side + 18), text[30:60], fill=(255, 255, 255), font=font)
        path = out / f"sheet{start // PER_SHEET + 1:02d}.png"
        sheet.save(path)
        paths.append(path)
    (out / "blind.jsonl").write_text("".join(json.dumps({"id": i.id, "prompt": i.slot.prompt, "tag": i.slot.tag})
                                             + "\n" for i in images), encoding="utf-8")
    return paths


def write_closeup(image: AuditImage, out: Path, scale: int = CLOSEUP_SCALE) -> Path:
    """One image x``scale`` nearest-neighbour, named by its id only."""
    out.mkdir(parents=True, exist_ok=True)
    pixels = Image.open(image.path).convert("RGB")
    path = out / f"{image.id}_x{scale}.png"
    pixels.resize((pixels.width * scale, pixels.height * scale), Image.NEAREST).save(path)
    return path


LABEL_FIELDS = ("id", "model", "run", "slot", "tag", "prompt", "prompt_index", "image_index", "seed", "image_hash",
                "objects", "verdict", "note")


def attach(images: Sequence[AuditImage], raw: list[dict]) -> list[dict]:
    """Raw labels (id, objects, verdict, note) joined with what the draw knows of each id, in id order."""
    by_id = {i.id: i for i in images}
    seen = {entry.get("id") for entry in raw}
    unknown, missing = sorted(seen - set(by_id), key=str), sorted(set(by_id) - seen)
    if unknown or missing or len(raw) != len(seen):
        raise DataError(f"raw labels must name each drawn id once: unknown {unknown[:5]}, missing {missing[:5]}, "
                        f"{len(raw) - len(seen)} repeated")
    labels = []
    for entry in sorted(raw, key=lambda e: e["id"]):
        if entry.get("verdict") not in VERDICTS:
            raise DataError(f"label {entry['id']}: verdict must be one of {VERDICTS}")
        image = by_id[entry["id"]]
        s = image.slot
        labels.append({"id": image.id, "model": image.model, "run": image.run, "slot": s.slot, "tag": s.tag,
                       "prompt": s.prompt, "prompt_index": s.prompt_index, "image_index": s.image_index,
                       "seed": s.seed, "image_hash": image.image_hash, "objects": entry.get("objects", []),
                       "verdict": entry["verdict"], "note": entry.get("note", "")})
    return labels


def load_labels(path: Path) -> list[dict]:
    """The label file, checked for the fields the report reads."""
    labels = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not valid JSON ({err.msg}); each line is one label object") from None
        missing = [f for f in LABEL_FIELDS if f not in entry]
        if missing:
            raise DataError(f"{path}:{number}: missing fields {missing}; write labels with the attach command")
        if entry["verdict"] not in VERDICTS or entry["model"] not in MODELS or entry["tag"] not in TAGS:
            raise DataError(f"{path}:{number}: verdict must be one of {VERDICTS}, model one of {MODELS}, tag a "
                            "GenEval tag")
        labels.append(entry)
    return labels


@dataclass(frozen=True)
class Judged:
    """One audited image as the report needs it: the eye's label and the oracle's verdict."""

    slot: int
    tag: str
    model: str
    verdict: str  # the eye's
    oracle_correct: bool
    objects: tuple[dict, ...]
    metadata: dict


def join(labels: list[dict], images: Sequence[AuditImage]) -> list[Judged]:
    """Labels matched to the drawn images by id; a label whose image changed since labelling is refused."""
    by_id = {i.id: i for i in images}
    if sorted(by_id) != sorted(label["id"] for label in labels):
        raise DataError("the labels do not cover exactly the drawn images; label every id of the sheets once")
    judged = []
    for label in labels:
        image = by_id[label["id"]]
        if (label["image_hash"], label["model"], label["slot"]) != (image.image_hash, image.model, image.slot.slot):
            raise DataError(f"label {label['id']} was made on another image ({label['image_hash']}, {label['model']})"
                            f" than the run holds now ({image.image_hash}, {image.model}); the labels no longer apply")
        judged.append(Judged(image.slot.slot, image.slot.tag, image.model, label["verdict"], image.oracle_correct,
                             tuple(label["objects"]), image.slot.metadata))
    return judged


def eye_score(verdict: str) -> float:
    """A verdict as a GenEval score: correct 1, wrong 0, unsure 0.5 (its expected value if either is as likely)."""
    return {"correct": 1.0, "wrong": 0.0, "unsure": 0.5}[verdict]


def eye_aggregate(results: list[SampleResult]) -> dict[str, float]:
    """GenEval's aggregation (per-tag mean, overall = mean of tag means) with an unsure label as half a pass.

    The mean is linear, so this is the midpoint of GenEval's aggregate with every unsure wrong (score >= 1 passes)
    and with every unsure correct (score > 0 passes); both ends go through the official ``aggregate_tags``.
    """
    tags = [r.tag for r in results]
    low = aggregate_tags(tags, [r.score >= 1.0 for r in results])
    high = aggregate_tags(tags, [r.score > 0.0 for r in results])
    return {k: (low[k] + high[k]) / 2 for k in low}


def oracle_aggregate(results: list[SampleResult]) -> dict[str, float]:
    """GenEval's own aggregation of the oracle's pass/fail verdicts."""
    return aggregate_tags([r.tag for r in results], [r.score == 1.0 for r in results])


def _results(judged: list[Judged], model: str, score: str) -> list[SampleResult]:
    """One SampleResult per slot (the slot is the bootstrap's unit, so it plays the prompt)."""
    chosen = sorted((j for j in judged if j.model == model), key=lambda j: j.slot)
    return [SampleResult(j.slot, 0, j.tag, eye_score(j.verdict) if score == "eye" else float(j.oracle_correct))
            for j in chosen]


def agreement_table(judged: list[Judged]) -> dict[str, dict[str, dict]]:
    """Oracle vs eye per model and tag (plus "all") on the sure labels, with the unsure count left out."""
    table: dict[str, dict[str, dict]] = {}
    for model in MODELS:
        cells = {tag: Agreement() for tag in (*TAGS, "all")}
        unsure = dict.fromkeys((*TAGS, "all"), 0)
        for j in judged:
            if j.model != model:
                continue
            for tag in (j.tag, "all"):
                if j.verdict == "unsure":
                    unsure[tag] += 1
                else:
                    cells[tag].add(j.verdict == "correct", j.oracle_correct)
        table[model] = {tag: {"n": c.n, "agreement": c.agreement, "wilson": list(c.wilson()), "kappa": c.kappa,
                              "both_correct": c.both_correct, "both_wrong": c.both_wrong, "misses": c.misses,
                              "false_positives": c.false_positives, "unsure": unsure[tag]}
                        for tag, c in cells.items()}
    return table


def _asked(metadata: dict) -> dict[str, int]:
    return {req["class"]: req["count"] for req in metadata.get("include", [])}


def object_counts(judged: list[Judged]) -> dict[str, dict[str, dict]]:
    """Per model and tag: mean objects the eye saw (blobs included) and the share of images with more objects of an
    asked shape than the prompt asks for."""
    table: dict[str, dict[str, dict]] = {}
    for model in MODELS:
        table[model] = {}
        for tag in (*TAGS, "all"):
            group = [j for j in judged if j.model == model and tag in (j.tag, "all")]
            extra = [any(sum(o.get("shape") == cls for o in j.objects) > n for cls, n in _asked(j.metadata).items())
                     for j in group]
            table[model][tag] = {"images": len(group),
                                 "mean_objects": float(np.mean([len(j.objects) for j in group])) if group else None,
                                 "more_than_asked": float(np.mean(extra)) if group else None}
    return table


def _interval(values: np.ndarray, like: Bootstrap) -> list[float]:
    return list(Bootstrap({}, {"v": values}, like.replicates, like.seed, like.confidence).interval("v"))


def _eye_unsure_wrong(results: list[SampleResult]) -> dict[str, float]:
    return aggregate_tags([r.tag for r in results], [r.score >= 1.0 for r in results])


def _eye_unsure_correct(results: list[SampleResult]) -> dict[str, float]:
    return aggregate_tags([r.tag for r in results], [r.score > 0.0 for r in results])


# Each judge: which verdicts it reads and how it aggregates them. The two ends bound what the unsure labels allow.
JUDGES = {"eye": ("eye", eye_aggregate), "eye_unsure_wrong": ("eye", _eye_unsure_wrong),
          "eye_unsure_correct": ("eye", _eye_unsure_correct), "oracle": ("oracle", oracle_aggregate)}


def compare(judged: list[Judged], replicates: int = 1000, seed: int = 0) -> dict:
    """Accuracy by eye and by oracle for both models on the same slots, with paired bootstrap intervals of the
    deltas (trained - base) and of the gap between the eye's and the oracle's delta.

    All judges and both models go through one ``resample`` call, so every replicate draws the same slots for each:
    a delta's interval is that of (trained - base) per replicate, the gap's that of (eye delta - oracle delta).
    """
    keys = [(judge, model) for judge in JUDGES for model in MODELS]
    sets = [_results(judged, model, JUDGES[judge][0]) for judge, model in keys]
    boots = dict(zip(keys, resample([JUDGES[judge][1] for judge, _ in keys], sets, replicates, seed)))
    ref = boots[keys[0]]
    out: dict = {"accuracy": {}, "delta": {}, "bootstrap": ref.settings | {"unit": "slot"}}
    for (judge, model), b in boots.items():
        out["accuracy"][f"{judge}:{model}"] = {k: {"point": b.point[k], "interval": list(b.interval(k))}
                                               for k in b.point}
    draws = {judge: {k: boots[(judge, "trained")].draws[k] - boots[(judge, "base")].draws[k] for k in ref.point}
             for judge in JUDGES}
    for judge in JUDGES:
        out["delta"][judge] = {k: {"point": boots[(judge, "trained")].point[k] - boots[(judge, "base")].point[k],
                                   "interval": _interval(draws[judge][k], ref)} for k in ref.point}
    out["delta"]["eye_minus_oracle"] = {
        k: {"point": out["delta"]["eye"][k]["point"] - out["delta"]["oracle"][k]["point"],
            "interval": _interval(draws["eye"][k] - draws["oracle"][k], ref)} for k in ref.point}
    mcnemar = {}
    for judge in ("eye", "oracle"):
        base, trained = (sets[keys.index((judge, model))] for model in MODELS)
        sure = [(b.score, t.score) for b, t in zip(base, trained) if 0.5 not in (b.score, t.score)]
        base_only, trained_only, p = mcnemar_exact([b == 1 for b, _ in sure], [t == 1 for _, t in sure])
        mcnemar[judge] = {"pairs": len(sure), "base_only": base_only, "trained_only": trained_only, "p": p}
    out["mcnemar"] = mcnemar
    return out


def full_run_scores(run: Path) -> dict[str, float]:
    """The oracle's GenEval scores over every image of a run, for context beside the sample's."""
    rows = read_run(run)
    return aggregate_tags([r["tag"] for r in rows], [r["correct"] for r in rows])


def build_report(labels: list[dict], images: Sequence[AuditImage], base_run: Path, trained_run: Path,
                 replicates: int = 1000) -> dict:
    judged = join(labels, images)
    verdicts = {m: {v: sum(1 for j in judged if j.model == m and j.verdict == v) for v in VERDICTS} for m in MODELS}
    return {
        "runs": {"base": base_run.name, "trained": trained_run.name},
        "draw": {"per_tag": len(images) // (2 * len(TAGS)), "draw_seed": DRAW_SEED, "shuffle_seed": SHUFFLE_SEED,
                 "images": len(images)},
        "verdicts": verdicts,
        "agreement": agreement_table(judged),
        "objects": object_counts(judged),
        **compare(judged, replicates),
        "full_run_oracle": {"base": full_run_scores(base_run), "trained": full_run_scores(trained_run)},
    }


def _pct(x: float | None) -> str:
    return "  n/a" if x is None or x != x else f"{100 * x:5.1f}"


def _signed(x: float) -> str:
    """Percentage points with a sign; a rounded -0.0 prints as +0.0."""
    return f"{round(100 * x, 1) + 0.0:+.1f}"


def format_report(report: dict) -> str:
    """The report's tables as Markdown."""
    cols = ("overall", *TAGS)
    acc, delta = report["accuracy"], report["delta"]
    lines = ["### Accuracy on the audited slots (%; eye: unsure = half a pass)", "",
             "| judge:model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key in acc:
        lines.append(f"| {key} | " + " | ".join(_pct(acc[key][c]["point"]) for c in cols) + " |")
    lines += ["", "### Trained - base on the same slots (points, paired bootstrap 95% interval)", "",
              "| delta | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key in delta:
        cells = [f"{_signed(delta[key][c]['point'])} [{_signed(delta[key][c]['interval'][0])}, "
                 f"{_signed(delta[key][c]['interval'][1])}]" for c in cols]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "McNemar (sure pairs only): " + "; ".join(
        f"{k}: {v['pairs']} pairs, base-only {v['base_only']}, trained-only {v['trained_only']}, p = {v['p']:.3f}"
        for k, v in report["mcnemar"].items())]
    for model in MODELS:
        lines += ["", f"### Oracle vs eye on {model} images (sure labels)", "",
                  "| tag | n | agree | 95% Wilson | kappa | misses | FP | unsure |", "|---" * 8 + "|"]
        for tag, c in report["agreement"][model].items():
            kappa = "n/a" if c["kappa"] != c["kappa"] else f"{c['kappa']:.2f}"
            lines.append(f"| {tag} | {c['n']} | {c['agreement']:.3f} | [{c['wilson'][0]:.3f}, {c['wilson'][1]:.3f}]"
                         f" | {kappa} | {c['misses']} | {c['false_positives']} | {c['unsure']} |")
    lines += ["", "### Objects the eye saw", "",
              "| tag | base: mean objects | trained: mean objects | base: more than asked | "
              "trained: more than asked |", "|---" * 5 + "|"]
    obj = report["objects"]
    for tag in (*TAGS, "all"):
        b, t = obj["base"][tag], obj["trained"][tag]
        lines.append(f"| {tag} | {b['mean_objects']:.2f} | {t['mean_objects']:.2f} | {_pct(b['more_than_asked'])} "
                     f"| {_pct(t['more_than_asked'])} |")
    full = report["full_run_oracle"]
    lines += ["", "Oracle on every image of the runs (context): " + "; ".join(
        f"{m} overall {100 * full[m]['overall']:.1f}" for m in MODELS)]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audits.eye_audit", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("sheets", "closeup", "attach", "report"):
        p = sub.add_parser(name)
        p.add_argument("--base", type=Path, required=True, help="the base model's GenEval run folder")
        p.add_argument("--trained", type=Path, required=True, help="the trained model's GenEval run folder")
        p.add_argument("--per-tag", type=int, default=PER_TAG)
        if name in ("sheets", "closeup", "report"):
            p.add_argument("--out", type=Path, required=True)
        if name == "closeup":
            p.add_argument("--id", nargs="+", required=True)
        if name == "attach":
            p.add_argument("--raw", type=Path, required=True, help="JSON lines: id, objects, verdict, note")
        if name in ("attach", "report"):
            p.add_argument("--labels", type=Path, required=True)
        if name == "report":
            p.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates")
            p.add_argument("--notes", type=Path, help="Markdown put at the top of report.md: how the labels were made, "
                           "what the tables show")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    images = audit_images(args.base, args.trained, args.per_tag)
    if args.command == "sheets":
        for path in write_sheets(images, args.out):
            print(path)
    elif args.command == "closeup":
        by_id = {i.id: i for i in images}
        for name in args.id:
            if name not in by_id:
                raise HarnessError(f"no image {name} in the draw; ids run from A001 to A{len(images):03d}")
            print(write_closeup(by_id[name], args.out))
    elif args.command == "attach":
        labels = attach(images, _read_jsonl(args.raw))
        args.labels.parent.mkdir(parents=True, exist_ok=True)
        args.labels.write_text("".join(json.dumps(label) + "\n" for label in labels), encoding="utf-8")
        print(f"{len(labels)} labels -> {args.labels}")
    else:
        report = build_report(load_labels(args.labels), images, args.base, args.trained, args.replicates)
        report["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        report["command"] = "python -m benchmarks.audits.eye_audit " + " ".join(sys.argv[1:] if argv is None
                                                                                 else argv)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        table = format_report(report)
        notes = args.notes.read_text(encoding="utf-8").strip() + "\n\n" if args.notes else ""
        header = (f"# Eye audit of a GenEval gain\n\nCreated {report['created']} by\n\n    {report['command']}\n\n"
                  f"Base run `{report['runs']['base']}`, trained run `{report['runs']['trained']}`; "
                  f"{report['draw']['images']} images ({report['draw']['per_tag']} slots per tag, each from both "
                  f"runs), labels {args.labels}; verdicts {report['verdicts']}.\n\n")
        (args.out / "report.md").write_text(header + notes + table + "\n", encoding="utf-8")
        print(table)


if __name__ == "__main__":
    try:
        main()
    except HarnessError as err:
        sys.exit(f"error: {err}")
