"""The calibration experiment's matching of oracle readings to the objects a person named."""

from __future__ import annotations

import numpy as np

from benchmarks.geneval.fit_oracle_calibration import V17_ENDS, named_readings, ramps_score, read_with_components
from harness.builtin import oracle
from harness.builtin.render import render
from harness.builtin.world import Scene, SceneObject


def _reading(shape: str, color: str, score: float) -> oracle.ObjectReading:
    return oracle.ObjectReading(shape, score, (0.0, 0.0, 9.0, 9.0), np.zeros((48, 48), dtype=bool), color, "solid",
                                "small")


def test_one_eye_object_names_the_higher_scored_of_two_readings() -> None:
    readings = [_reading("ring", "blue", 0.4), _reading("ring", "blue", 0.95), _reading("star", "red", 1.0)]
    objects = ({"shape": "ring", "color": "blue"}, {"shape": "blob", "color": "red"})
    assert named_readings(objects, readings) == [False, True, False]


def test_two_eye_objects_of_one_shape_and_colour_name_two_readings_and_two_tones_match_either() -> None:
    readings = [_reading("circle", "green", 0.7), _reading("circle", "green", 0.99), _reading("heart", "black", 0.9)]
    objects = ({"shape": "circle", "color": "green"}, {"shape": "circle", "color": "green"},
               {"shape": "heart", "color": "green/black"})
    assert named_readings(objects, readings) == [True, True, True]


def test_ramps_score_at_v17_end_points_is_the_oracles_confidence() -> None:
    """v17's score; v18 differs only for a small object fitting at least CLEAN_SMALL_FIT, whose distinctness it
    scores no lower (oracle.distinct_score)."""
    rng = np.random.default_rng(0)
    parts = np.column_stack([rng.uniform(0.6, 1.0, 200), rng.uniform(0.9, 1.5, 200), rng.uniform(0.4, 1.0, 200),
                             rng.uniform(0.3, 0.8, 200)])
    small = rng.random(200) < 0.5
    expected = np.array([oracle.confidence(*p, bool(s)) for p, s in zip(parts, small)])
    v17 = ramps_score(V17_ENDS, parts, small)
    clean_small = small & (parts[:, 0] >= oracle.CLEAN_SMALL_FIT)
    np.testing.assert_allclose(v17[~clean_small], expected[~clean_small], atol=1e-12)
    assert (expected[clean_small] >= v17[clean_small] - 1e-12).all()


def test_recorded_components_give_each_readings_own_score_and_the_oracle_is_restored() -> None:
    scene = Scene((SceneObject("ring", "blue", "solid", "small", 5, 6), SceneObject("star", "red", "striped", "large",
                                                                                       24, 20)))
    confidence = oracle.confidence
    with read_with_components() as components:
        readings = oracle.read_objects(render(scene))
        parts = [components[id(r)] for r in readings]
    assert oracle.confidence is confidence
    assert len(readings) == 2
    for reading, part in zip(readings, parts):
        assert oracle.confidence(*part, reading.size == "small") == reading.score
