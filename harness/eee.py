"""Export of result records to the Every Eval Ever (EEE) schema v0.3.0 (``harness export --format eee``).

EEE (evaleval/every_eval_ever) is the emerging cross-framework record of evaluation results; it has no text-to-image
adapter, so this maps a harness record as follows:

* one aggregate file ``data/<benchmark>/<developer>/<model>/<uuid>.json`` per record, with one
  ``evaluation_results`` entry per score key (overall and each tag/category), each carrying its bootstrap
  ``uncertainty`` (standard error, 95% interval, number of prompts, number of replicates);
* the per-image verdicts as ``<uuid>_samples.jsonl`` beside it (instance level: the prompt as ``input.raw``, the
  image's content and seed as ``output.raw``, the verdict as ``evaluation``); ``is_correct`` is the pass verdict
  for pass/fail benchmarks and "every question or rule satisfied" (score at the maximum) for continuous ones;
  images excluded from scoring (DPG-Bench's official quirk) are left out and counted in ``additional_details``;
* the uuid is derived from the record (uuid5), and timestamps come from the record, so exporting twice gives the
  same bytes.

Both files are checked against ``harness/schemas/eee_eval.schema.json`` and ``eee_instance.schema.json`` (written from
the schema's documented fields) before they are written.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from datetime import datetime
from pathlib import Path

from harness import __version__
from harness.compare import Evaluated, load_evaluated
from harness.errors import DataError
from harness.schemas import load_schema, validate
from harness.store import atomic_write_text

EEE_VERSION = "0.3.0"
INSTANCE_VERSION = f"instance_level_eval_{EEE_VERSION}"
SOURCES = {  # official prompt sources, for source_data (real world); the builtin world's prompts are the harness's
    "geneval": "https://github.com/djghosh13/geneval",
    "t2i-compbench": "https://github.com/Karine-Huang/T2I-CompBench",
    "dpg-bench": "https://github.com/TencentQQGYLab/ELLA",
}
DESCRIPTIONS = {
    "geneval": "GenEval: share of images whose detected objects satisfy the prompt; overall = mean of task accuracies",
    "t2i-compbench": "T2I-CompBench: per-category compositional score; overall = mean of the categories",
    "dpg-bench": "DPG-Bench: share of DSG questions answered yes by VQA, per prompt, x100; overall = mean over prompts",
}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-60:] or "model"


def _strings(mapping: dict) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in sorted(mapping.items())}


def eee_documents(evaluated: Evaluated) -> tuple[str, dict, list[dict]]:
    """(relative path of the aggregate file, the aggregate document, the instance rows) for one record."""
    r = evaluated.record
    ident = str(uuid.uuid5(uuid.NAMESPACE_URL, f"harness:{evaluated.source.stem}:{r.samples.get('sha256', '')}"))
    developer = r.model.split("/")[0] if "/" in r.model and not r.model.startswith(("/", ".")) else "harness"
    model_id = f"{developer}/{_slug(r.model)}" if r.method == "pretrained" else \
        f"{developer}/{_slug(r.model)}+{r.method}"
    created = datetime.fromisoformat(r.created) if r.created else None
    retrieved = str(int(created.timestamp())) if created else "0"
    top = 100.0 if r.benchmark == "dpg-bench" else 1.0
    if r.world == "real" and r.benchmark in SOURCES:
        source = {"dataset_name": r.benchmark, "source_type": "url", "url": [SOURCES[r.benchmark]],
                  "additional_details": {"prompt_set_hash": r.prompt_set_hash, "n_prompts": str(r.n_prompts)}}
    else:
        source = {"dataset_name": f"{r.benchmark} ({r.world} world)", "source_type": "other",
                  "source_id": r.prompt_set_hash or "unknown", "source_version": r.benchmark_version}
    results = []
    for key, score in r.scores.items():
        if score is None or math.isnan(score):
            continue
        uncertainty: dict = {"num_samples": r.n_prompts}
        se = r.standard_errors.get(key)
        interval = r.intervals.get(key)
        method = r.bootstrap.get("method", "bootstrap")
        if se is not None:
            uncertainty["standard_error"] = {"value": se, "method": "bootstrap"}
        if interval and None not in interval:
            uncertainty["confidence_interval"] = {"lower": interval[0], "upper": interval[1],
                                                  "confidence_level": r.bootstrap.get("confidence", 0.95),
                                                  "method": f"{method}, stratified by tag"}
        if r.bootstrap.get("replicates"):
            uncertainty["num_bootstrap_samples"] = r.bootstrap["replicates"]
        results.append({
            "evaluation_result_id": f"{r.benchmark}.{key}",
            "evaluation_name": r.benchmark if key == "overall" else f"{r.benchmark}/{key}",
            "source_data": source,
            "evaluation_timestamp": r.created,
            "metric_config": {
                "evaluation_description": DESCRIPTIONS.get(r.benchmark, r.benchmark),
                "metric_id": f"{r.benchmark}.{key}", "metric_name": key, "metric_kind": "accuracy"
                if r.benchmark == "geneval" else "score", "metric_unit": "points" if top == 100 else "proportion",
                "lower_is_better": False, "score_type": "continuous", "min_score": 0.0, "max_score": top,
                "additional_details": _strings({f"perception.{role}": name for role, name in r.perception.items()}
                                               | {"benchmark_version": r.benchmark_version,
                                                  "comparable_to_published": r.comparable_to_published,
                                                  "comparability_reasons": r.comparability_reasons}),
            },
            "score_details": {"score": score, "uncertainty": uncertainty},
            "generation_config": {"generation_args": {"execution_command": _command(r)},
                                  "additional_details": _strings({**r.sampler, "seeds": r.seeds,
                                                                  "seed_hash": r.seed_hash})},
        })
    if not results:
        raise DataError(f"{evaluated.source}: no finite score to export")
    folder = f"data/{_slug(r.benchmark)}/{_slug(developer)}/{_slug(model_id.split('/', 1)[1])}"
    evaluation_id = f"{r.benchmark}/{model_id}/{retrieved}"
    rows, excluded = _instances(evaluated, evaluation_id, model_id)
    samples_name = f"{ident}_samples.jsonl"
    aggregate = {
        "schema_version": EEE_VERSION,
        "evaluation_id": evaluation_id,
        "retrieved_timestamp": retrieved,
        "evaluation_timestamp": r.created,
        "source_metadata": {"source_name": "harness", "source_type": "evaluation_run",
                            "source_organization_name": "harness",
                            "evaluator_relationship": "third_party" if r.method == "pretrained" else "first_party",
                            "additional_details": {"record": evaluated.source.name}},
        "eval_library": {"name": "harness", "version": str(r.environment.get("packages", {}).get("harness",
                                                                                                  __version__)),
                         "additional_details": _strings({"git_commit": r.environment.get("git_commit"),
                                                         "record_schema_version": r.schema_version})},
        "model_info": {"name": r.model, "id": model_id, "developer": developer, "inference_platform": "local",
                       "additional_details": _strings({"checkpoint_fingerprint": r.checkpoint_fingerprint,
                                                       "method": r.method, "world": r.world,
                                                       "training": {k: v for k, v in r.training.items()
                                                                    if k in ("feedback", "seed", "cost", "in_reward",
                                                                             "rounds")}})},
        "evaluation_results": results,
        "detailed_evaluation_results": {
            "format": "jsonl", "file_path": samples_name, "hash_algorithm": "sha256",
            "checksum": hashlib.sha256(_jsonl(rows).encode()).hexdigest(), "total_rows": len(rows),
            "additional_details": {"excluded_images": str(excluded)}},
    }
    return f"{folder}/{ident}.json", aggregate, rows


def _command(r: object) -> str:
    ckpt = getattr(r, "model", "")
    return f"harness eval --ckpt {ckpt} --bench {getattr(r, 'benchmark', '')}"


def _instances(evaluated: Evaluated, evaluation_id: str, model_id: str) -> tuple[list[dict], int]:
    r = evaluated.record
    rows, excluded = [], 0
    for row in sorted(evaluated.rows or [], key=lambda x: (x["prompt_index"], x["image_index"])):
        if row["score"] is None:
            excluded += 1
            continue
        score = float(row["score"])
        reason = (row.get("details") or {}).get("reason")
        rows.append({
            "schema_version": INSTANCE_VERSION,
            "evaluation_id": evaluation_id,
            "model_id": model_id,
            "evaluation_name": r.benchmark,
            "evaluation_result_id": f"{r.benchmark}.overall",
            "sample_id": f"{row['prompt_index']}-{row['image_index']}",
            "sample_hash": hashlib.sha256(row["prompt"].encode()).hexdigest(),
            "interaction_type": "single_turn",
            "input": {"raw": row["prompt"], "reference": [row["tag"]]},
            "output": {"raw": [f"image {row['prompt_index']}/{row['image_index']}, seed {row['seed']}"]},
            "messages": None,
            "answer_attribution": [{"turn_idx": 0, "source": "output.raw", "extracted_value": f"{score:g}",
                                    "extraction_method": f"{r.benchmark} scorer: " + ", ".join(
                                        f"{k}={v}" for k, v in sorted(r.perception.items())), "is_terminal": True}],
            "evaluation": {"score": score, "is_correct": score >= 1.0},  # per-image scores are 0-1
            "metadata": {"tag": row["tag"], "seed": str(row["seed"]),
                         **({"reason": reason} if isinstance(reason, str) and reason else {})},
        })
    return rows, excluded


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, sort_keys=True, allow_nan=False) + "\n" for row in rows)


def eee_errors(aggregate: dict, rows: list[dict]) -> list[str]:
    """Violations of the EEE v0.3.0 checks (the schema files plus its conditional rules) by an export."""
    errors = validate(aggregate, load_schema("eee_eval"))
    for i, result in enumerate(aggregate.get("evaluation_results", [])):
        config = result.get("metric_config", {})
        if config.get("score_type") == "continuous" and not {"min_score", "max_score"} <= set(config):
            errors.append(f"$.evaluation_results[{i}].metric_config: continuous scores need min_score and max_score")
    schema = load_schema("eee_instance")
    ids = {r.get("evaluation_result_id") for r in aggregate.get("evaluation_results", [])}
    for i, row in enumerate(rows):
        errors += [f"samples[{i}]{e[1:]}" for e in validate(row, schema)]
        if row.get("evaluation_id") != aggregate.get("evaluation_id"):
            errors.append(f"samples[{i}]: evaluation_id does not match the aggregate file's")
        if row.get("evaluation_result_id") not in ids:
            errors.append(f"samples[{i}]: evaluation_result_id names no aggregate result")
    detail = aggregate.get("detailed_evaluation_results", {})
    if detail and detail.get("total_rows") != len(rows):
        errors.append("$.detailed_evaluation_results.total_rows does not match the samples file")
    return errors


def export_eee(records: list[Path | str], out: Path | str) -> list[Path]:
    """Write the EEE files for each record (run folder or published record); returns the aggregate files."""
    written = []
    for source in records:
        evaluated = load_evaluated(source)
        relative, aggregate, rows = eee_documents(evaluated)
        errors = eee_errors(aggregate, rows)
        if errors:
            raise DataError(f"{source}: the EEE export would be invalid: {'; '.join(errors[:3])}")
        path = Path(out) / relative
        atomic_write_text(path.with_name(aggregate["detailed_evaluation_results"]["file_path"]), _jsonl(rows))
        atomic_write_text(path, json.dumps(aggregate, indent=2, sort_keys=True, allow_nan=False) + "\n")
        written.append(path)
    return written
