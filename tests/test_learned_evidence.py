"""The learned-evidence experiment's pieces: crops of oracle readings, the Wilson interval, a tiny fit."""

from __future__ import annotations

import random

import numpy as np

from benchmarks.geneval import learned_evidence as le
from harness.builtin.oracle import read_objects
from harness.builtin.prompts import sample_training_request
from harness.builtin.render import render
from harness.builtin.world import sample_scene


def test_crops_centre_the_reading() -> None:
    rng = random.Random("learned-evidence-test")
    request, _ = sample_training_request(rng)
    image = render(sample_scene(request, rng))
    readings = read_objects(image)
    crops = le.crops(image, readings)
    assert crops.shape == (len(readings), le.CHANNELS, le.CROP, le.CROP)
    for crop in crops:
        own = crop[3]
        centre = own[le.CROP // 3: 2 * le.CROP // 3, le.CROP // 3: 2 * le.CROP // 3]
        assert own.max() > 0.5 and centre.mean() > own.mean() * 0.9  # the reading's mask sits in the window


def test_wilson() -> None:
    low, high = le.wilson(294, 313)
    assert abs(low - 0.907) < 1e-3 and abs(high - 0.961) < 1e-3


def test_fit_predict_runs() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5))
    crop = rng.random((64, le.CHANNELS, le.CROP, le.CROP)).astype(np.float32)
    y = x[:, 0] > 0
    for variant in ("feat", "crop", "both", "logistic"):
        out, predictor = le.fit_predict(variant, x, crop, y, x[:8], crop[:8], snapshots=(1,))
        assert out[1].shape == (8,) and predictor(x[:3], crop[:3]).shape == (3,)
