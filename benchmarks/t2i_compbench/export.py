"""T2I-CompBench's on-disk protocol: image names and the ``vqa_result.json`` files its evaluators write.

The official scripts find everything by file name: all images of a category sit in ``<outpath>/samples/`` as
``{prompt}_{k:06}.png``, ``k`` a running index over the category (prompt i, image n -> k = 10 i + n when generated
in file order into an empty folder); the prompt is recovered as ``name.split('_')[0]`` and images are ordered by
``k``. Each evaluator writes ``[{"question_id": k, "answer": score}, ...]`` under its own folder of ``<outpath>``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from harness.errors import DataError
from harness.store import atomic_write_text

# Where each evaluator writes its vqa_result.json, relative to --outpath.
RESULT_PATHS = {
    "attribute": "annotation_blip/vqa_result.json",  # BLIPvqa_eval/BLIP_vqa.py
    "spatial": "labels/annotation_obj_detection_2d/vqa_result.json",  # UniDet_eval/2D_spatial_eval.py
    "numeracy": "annotation_num/vqa_result.json",  # UniDet_eval/numeracy_eval.py
    "3d_spatial": "labels/annotation_obj_detection_3d/vqa_result.json",  # UniDet_eval/3D_spatial_eval.py
    "clip": "annotation_clip/vqa_result.json",  # CLIPScore_eval/CLIP_similarity.py
    "complex": "annotation_3_in_1/vqa_result.json",  # 3_in_1_eval/3_in_1.py
}


def sample_name(prompt: str, k: int) -> str:
    """``f"{prompt}_{k:06}.png"``; a prompt holding "_" or "/" cannot be named so and is an error."""
    if "_" in prompt or "/" in prompt:
        raise DataError(f"prompt {prompt!r} contains '_' or '/', which T2I-CompBench's file naming cannot carry")
    return f"{prompt}_{k:06}.png"


def export_samples(samples_dir: Path, prompts: Sequence[tuple[str, Sequence[Path]]]) -> list[Path]:
    """Lay out each prompt's images in order as ``samples_dir/{prompt}_{k:06}.png`` (k counting from 0 over all of
    them), as hard links to the given files where the file system allows, else as copies; returns the new paths."""
    samples_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for prompt, paths in prompts:
        for source in paths:
            target = samples_dir / sample_name(prompt, len(written))
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
            written.append(target)
    return written


def write_vqa_result(path: Path, answers: Sequence[float | str]) -> None:
    """``[{"question_id": k, "answer": answers[k]}, ...]`` in the evaluators' JSON format."""
    atomic_write_text(path, json.dumps([{"question_id": k, "answer": a} for k, a in enumerate(answers)]))
