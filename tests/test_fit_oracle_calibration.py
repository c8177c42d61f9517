"""The calibration experiment's matching of oracle readings to the objects a person named."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.geneval.fit_oracle_calibration import (
    DEMOTED,
    PROMOTED,
    V17_ENDS,
    auc,
    choose_cuts,
    fit_logistic,
    named_readings,
    ramps_score,
    read_with_components,
    reading_features,
    rescore,
    rescore_gain,
)
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


def test_recorded_cut_evidence_holds_every_shapes_fit_and_a_rings_hole() -> None:
    """The richer evidence: the read shape's own IoU is the largest of the eight (a clean render needs no override),
    a ring's cut encloses a hole and its blend weights dip there, a solid circle's do not."""
    scene = Scene((SceneObject("ring", "blue", "solid", "large", 4, 4), SceneObject("circle", "red", "solid",
                                                                                     "large", 26, 24)))
    shape_fits = oracle._shape_fits
    cut: dict[int, dict[str, float]] = {}
    with read_with_components(cut) as components:
        readings = oracle.read_objects(render(scene))
        parts = [components[id(r)] for r in readings]
        evidence = [cut[id(r)] for r in readings]
    assert oracle._shape_fits is shape_fits
    by_shape = {r.shape: (e, p) for r, e, p in zip(readings, evidence, parts)}
    assert set(by_shape) == {"ring", "circle"}
    for shape, (e, p) in by_shape.items():
        fits = {s: e[f"fit_{s}"] for s in oracle.SHAPES}
        assert max(fits, key=fits.get) == shape
        assert fits[shape] == pytest.approx(p[0], abs=1e-6)
        assert e["touches"] == 0.0 and e["split_piece"] == 0.0
    assert by_shape["ring"][0]["hole_area"] > 0 and by_shape["ring"][0]["hole_dip"] > 0.8
    assert by_shape["circle"][0]["hole_area"] == 0 and by_shape["circle"][0]["hole_dip"] < 0.2
    features = reading_features(readings, evidence, parts, [{"class": "ring", "count": 1}])
    ring = features[[r.shape for r in readings].index("ring")]
    assert ring["is_ring"] == 1.0 and ring["margin_ring"] == 0.0 and ring["margin_runner_up"] > 0
    assert ring["rank"] == 0.0 and ring["rank_over_asked"] == 0.0


def test_rescore_moves_only_past_the_cuts_and_its_gain_counts_bands() -> None:
    score = np.array([0.99, 0.99, 0.5, 0.5, 0.1])
    p = np.array([0.01, 0.6, 0.99, 0.2, 0.99])
    named = np.array([False, True, True, False, True])
    np.testing.assert_allclose(rescore(score, p, 0.05, 0.95), [DEMOTED, 0.99, PROMOTED, 0.5, PROMOTED])
    # bands before 2,2,1,1,0 (want 0,2,2,0,2: misses 2+0+1+1+2 = 6), after 0,2,2,1,2 (misses 0+0+0+1+0 = 1)
    assert rescore_gain(score, p, named, 0.05, 0.95) == 5
    assert rescore_gain(score, p, ~named, 0.05, 0.95) == -5
    # demoting below 0.3 also drops the unnamed 0.5 (+1); of the cuts with the best gain, the ones that move least
    assert choose_cuts(lambda low, high: rescore_gain(score, p, named, low, high)) == (0.3, 0.97)
    assert choose_cuts(lambda low, high: rescore_gain(score, p, ~named, low, high)) == (0.0, 1.01)  # nothing moves


def test_auc_is_the_mann_whitney_share_with_ties_half() -> None:
    x = np.array([0.1, 0.4, 0.4, 0.8, 0.9])
    positive = np.array([False, False, True, True, False])
    # pairs (positive, negative): 0.4>0.1, 0.4=0.4 (half), 0.4<0.9, 0.8>0.1, 0.8>0.4, 0.8<0.9 -> 3.5 / 6
    assert auc(x, positive) == pytest.approx(3.5 / 6)


def test_unconstrained_logistic_finds_a_negative_weight() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    named = (x[:, 0] - 2 * x[:, 1] + 0.3 * rng.normal(size=400) > 0).astype(float)
    predict = fit_logistic(x, named, 1e-3, monotone=False)
    assert predict.weights[1] > 0 > predict.weights[2]
    assert ((predict(x) > 0.5) == named.astype(bool)).mean() > 0.9
    assert fit_logistic(x, named, 1e-3).weights[2] >= 0  # the monotone fit may not (its last weight is free)
