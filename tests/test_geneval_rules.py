"""GenEval's rules against hand-computed cases (see each comment for the arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.geneval.rules import Detected, aggregate_tags, compute_iou, filter_class, judge, relative_position

NO_MASK = np.zeros((1, 1), bool)


def det(box: tuple[float, float, float, float], score: float = 0.99) -> Detected:
    return Detected(box, score, NO_MASK)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # off = (5,5) - (35,5) = (-30, 0); margin 0.1 (10+10) = 2 -> rev (-28, 0); dx = -28/30 = -0.93
        ((0, 0, 10, 10), (30, 0, 40, 10), {"left of"}),
        # off = (-1, -1) is inside the margin (2, 2) on both axes -> rev = 0 -> no relation at all
        ((0, 0, 10, 10), (1, 1, 11, 11), set()),
        # off = (-20, -20), rev = (-18, -18), |off| = 28.28 -> dx = dy = -0.64: both left and above
        ((0, 0, 10, 10), (20, 20, 30, 30), {"left of", "above"}),
        # zero-size boxes: rev = off = (-3, 4), |off| = 5 -> dx = -0.6 (left), dy = 0.8 (below)
        ((0, 4, 0, 4), (3, 0, 3, 0), {"left of", "below"}),
        # off = (-8, -30), rev = (-6, -28), |off| = 31.05 -> dx = -0.19 (no), dy = -0.90 (above)
        ((0, 0, 10, 10), (8, 30, 18, 40), {"above"}),
        # the margin shrinks dx below 0.5: off = (-10, 10), rev = (-8, 8)/14.14 = (-0.57, 0.57); with margin 0.3
        # rev = (-4, 4)/14.14 = (-0.28, 0.28) -> nothing
        ((0, 10, 10, 20), (10, 0, 20, 10), {"left of", "below"}),
    ],
)
def test_relative_position(a: tuple, b: tuple, expected: set[str]) -> None:
    assert relative_position(a, b) == expected


def test_relative_position_margin_option() -> None:
    assert relative_position((0, 10, 10, 20), (10, 0, 20, 10), margin=0.3) == set()


def test_compute_iou_uses_inclusive_pixels() -> None:
    # areas 11*11 = 121 each; intersection x 5..10, y 0..10 -> 6*11 = 66; IoU = 66 / (242 - 66) = 0.375
    assert compute_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(66 / 176)
    assert compute_iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0


def test_filter_class_threshold_is_strict_and_sorted() -> None:
    boxes = np.array([[0, 0, 5, 5], [10, 10, 15, 15], [20, 20, 25, 25], [30, 30, 35, 35]], float)
    scores = np.array([0.3, 0.95, 0.5, 0.9])
    masks = np.zeros((4, 2, 2), bool)
    kept = filter_class(boxes, scores, masks, threshold=0.3, max_objects=16, max_overlap=1.0)
    assert [k.score for k in kept] == [0.95, 0.9, 0.5]  # 0.3 is not > 0.3
    assert len(filter_class(boxes, scores, masks, 0.9, 16, 1.0)) == 1  # counting threshold: only 0.95
    assert len(filter_class(boxes, scores, masks, 0.3, 2, 1.0)) == 2


def test_filter_class_nms_only_when_enabled() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7])
    masks = np.zeros((3, 2, 2), bool)
    assert len(filter_class(boxes, scores, masks, 0.3, 16, 1.0)) == 3
    # IoU of the first two = 110 / 132 = 0.83 >= 0.5 -> the second is suppressed
    assert [k.score for k in filter_class(boxes, scores, masks, 0.3, 16, 0.5)] == [0.9, 0.7]


def never_called(cls: str, objs: list[Detected]) -> list[str]:
    raise AssertionError("colour must not be classified without a colour clause")


COUNT_TWO = {"tag": "counting", "include": [{"class": "star", "count": 2}], "exclude": [{"class": "star", "count": 3}]}


def test_counting_is_exactly_n() -> None:
    two = {"star": [det((0, 0, 5, 5)), det((10, 0, 15, 5))]}
    assert judge(two, COUNT_TWO, never_called) == (True, [])
    three = {"star": [*two["star"], det((20, 0, 25, 5))]}
    assert judge(three, COUNT_TWO, never_called) == (False, ["expected star<3, found 3"])
    one = {"star": two["star"][:1]}
    assert judge(one, COUNT_TWO, never_called) == (False, ["expected star>=2, found 1"])


def test_colour_is_checked_on_the_top_count_objects_only() -> None:
    metadata = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}]}
    # The most confident circle is blue; a red one exists but ranks second, so the image fails.
    detected = {"circle": [det((0, 0, 5, 5), 0.99), det((20, 0, 25, 5), 0.8)]}
    seen: list[int] = []

    def color_of(cls: str, objs: list[Detected]) -> list[str]:
        seen.append(len(objs))
        return ["blue", "red"][: len(objs)]

    correct, reasons = judge(detected, metadata, color_of)
    assert (correct, seen) == (False, [1])
    assert reasons == ["expected red circle>=1, found 0 red; and 1 blue"]


def test_position_requires_every_pair_and_a_matched_target() -> None:
    metadata = {"tag": "position",
                "include": [{"class": "ring", "count": 1}, {"class": "star", "count": 1, "position": ["left of", 0]}]}
    ring, star_left, star_right = det((30, 0, 40, 10)), det((0, 0, 10, 10)), det((60, 0, 70, 10))
    assert judge({"ring": [ring], "star": [star_left]}, metadata, never_called) == (True, [])
    assert judge({"ring": [ring], "star": [star_right]}, metadata, never_called) == (
        False, ["expected star left of target, found right of target"])
    assert judge({"star": [star_left]}, metadata, never_called) == (
        False, ["expected ring>=1, found 0", "no target for star to be left of"])


def test_aggregate_is_mean_of_tag_accuracies() -> None:
    # tag a: 2/4 = 0.5, tag b: 1/1 = 1.0 -> overall 0.75 (the image mean would be 3/5 = 0.6)
    scores = aggregate_tags(["a", "a", "a", "a", "b"], [True, False, True, False, True])
    assert scores == {"overall": 0.75, "a": 0.5, "b": 1.0}
