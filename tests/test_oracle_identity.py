"""The oracle's readings stay bit for bit those of VERSION 18: a speed-up must not change a score, since scores are
cached by VERSION. The expected readings were made with VERSION 8's code as of commit fd85dba and checked again with
VERSION 9's (its ring split, ``split_rings``, changes none of these readings), VERSION 10's (its oval ring view,
``_squared``, changes one: batch 4 label 221's white ring, 0.710 -> 0.9975, is now read ahead of the diamond; the scene
file is unchanged) and VERSION 11's (its notched-corner cross, ``notch_depth``, rewritten from v11's own readings: the
scene file is unchanged; in the image file six readings of five images change, each a small solid blue, green or black
object the v10 oracle read as a diamond: labels 211 and 228, blue objects the eye names crosses, now crosses at 0.997
and 0.998 (v10: diamonds at 0.998 and 0.11); label 214, a green one the eye calls between cross and diamond, a cross at
0.999 (v10: a diamond at 0.28); label 233, a black one the eye calls a ragged blob, a cross at 0 (v10: a diamond at
0.27); label 209, a small black and a small blue object the eye calls between cross and diamond, crosses at 0.997 and
0.996 (v10: diamonds at 0.998 and 0.996)), VERSION 12's (its notched-corner cross also for 13-pixel boxes,
``NOTCH_MAX_SIDE``, and its notched large star, ``STAR_NOTCH_DEPTH``; rewritten from v12's own readings: both files are
unchanged, none of these readings moves) and VERSION 13's (its notched cross at any size where the object touches no
other, and its colour groupings ranked by clear objects first, ``_read_component``; renamed from v12's after v13 read
every one of these readings as v12 did: both files are unchanged) and VERSION 14's (its notched cross also for an
ambiguous large circle reading of an object alone, ``match_shape``; renamed from v13's after v14 read every one of
these readings as v13 did: both files are unchanged) and VERSION 15's (its looser neck for a one-colour blob too
large to be one object, and its speck pieces dropped from a neck split, ``split_instances`` and ``_read_part``;
renamed from v14's after v15 read every one of these readings as v14 did: both files are unchanged) and VERSION 16's
(its readings lying inside a touching clear object's box of another colour dropped as parts of it, ``_drop_inner``;
rewritten from v16's own readings: the scene file is unchanged; in the image file one reading is gone, label 231's
white band across a green cross, read as a white ring at 0, whose box lies wholly inside the cross's) and VERSION 17's
(a small object's fit ramped over ``SMALL_FIT_RAMP`` once the objects are settled, ``_settle``; rewritten from v17's own
readings: the scene file is unchanged; in the image file two small readings rise, both far below GenEval's thresholds:
label 202's white star 0.033 -> 0.049 and label 215's black cross 0.041 -> 0.062) and VERSION 18's (a clean small
object's distinctness scored on the higher of ``DISTINCT_RAMP`` and ``CLEAN_SMALL_DISTINCT_RAMP``, ``distinct_score``;
renamed from v17's after v18 read every one of these readings as v17 did: both files are unchanged):
tests/data/oracle_v18_scene_readings.json for the first 40 held-out scenes of the perception report (seed 12345:
clean, noisy and blurred renders), tests/data/oracle_v18_readings.json for 40 eye-label images (batch 4, labels
200-239: one generation batch of GENERATION_BATCH, so they regenerate pixel for pixel). Both are ``_readings`` of
those images, written with ``json.dumps(..., indent=1)``."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.geneval.eye_labels import BATCH_FILES, load_labels, regenerate
from harness.builtin.oracle import VERSION, read_objects
from harness.builtin.perception_report import _perturbations
from harness.builtin.prompts import sample_training_request
from harness.builtin.render import render
from harness.builtin.world import sample_scene

DATA = Path(__file__).parent / "data"


def _readings(image: Image.Image) -> list[dict]:
    """What the JSON files store of each reading: every field exactly (the score as float.hex), the mask hashed."""
    return [{"shape": r.shape, "score": r.score.hex(), "box": list(r.box), "color": r.color, "texture": r.texture,
             "size": r.size, "mask": hashlib.sha256(np.packbits(r.mask).tobytes()).hexdigest()[:16]}
            for r in read_objects(image)]


def test_scene_readings_equal_version_18_bit_for_bit() -> None:
    expected = json.loads((DATA / "oracle_v18_scene_readings.json").read_text(encoding="utf-8"))
    rng, noise_rng = random.Random(f"heldout:{expected['seed']}"), np.random.default_rng(expected["seed"])
    assert VERSION == "18"
    for want in expected["scenes"]:
        request, _ = sample_training_request(rng)
        image = render(sample_scene(request, rng))
        variants = {"clean": image, **_perturbations(image, noise_rng)}
        assert list(variants) == list(want)
        for name, variant in variants.items():
            assert _readings(variant) == want[name], name


@pytest.mark.slow
def test_eye_label_readings_equal_version_18_bit_for_bit() -> None:
    """~30 s: regenerating the 40 images dominates."""
    expected = json.loads((DATA / "oracle_v18_readings.json").read_text(encoding="utf-8"))
    start, stop = expected["labels"]
    labels = load_labels(BATCH_FILES[expected["batch"] - 1])[start:stop]
    for label, image, want in zip(labels, regenerate(labels), expected["images"], strict=True):
        assert (label.prompt, label.seed) == (want["prompt"], want["seed"])
        assert _readings(image) == want["readings"], (label.prompt, label.seed)
