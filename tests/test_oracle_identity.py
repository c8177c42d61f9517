"""The oracle's readings stay bit for bit those of VERSION 8 (speed-ups must not change a score: scores are cached
by VERSION). tests/data/oracle_v8_readings.json holds VERSION 8's readings, made with the code of commit fd85dba,
of 40 eye-label images (batch 4, labels 200-239: one generation batch of GENERATION_BATCH, so they regenerate
pixel for pixel)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from benchmarks.geneval.eye_labels import BATCH_FILES, load_labels, regenerate
from harness.builtin.oracle import VERSION, read_objects

EXPECTED = Path(__file__).parent / "data" / "oracle_v8_readings.json"


def test_readings_equal_version_8_bit_for_bit() -> None:
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    start, stop = expected["labels"]
    labels = load_labels(BATCH_FILES[expected["batch"] - 1])[start:stop]
    assert VERSION == "8"
    for label, image, want in zip(labels, regenerate(labels), expected["images"], strict=True):
        assert (label.prompt, label.seed) == (want["prompt"], want["seed"])
        got = [{"shape": r.shape, "score": r.score.hex(), "box": list(r.box), "color": r.color, "texture": r.texture,
                "size": r.size, "mask": hashlib.sha256(np.packbits(r.mask).tobytes()).hexdigest()[:16]}
               for r in read_objects(image)]
        assert got == want["readings"], (label.prompt, label.seed)
