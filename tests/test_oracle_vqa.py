"""The builtin world's oracle VQA: its grammar, its probability rules, and its answers on rendered scenes."""

from __future__ import annotations

import numpy as np
import pytest

from harness.builtin.oracle import ObjectReading
from harness.builtin.oracle_vqa import OracleVQA, answer, exactly
from harness.builtin.render import render
from harness.builtin.world import Scene, SceneObject
from harness.errors import HarnessError
from harness.perception.base import VQA

# A large striped red circle on the left, a small solid blue star on the right, three green hearts below.
SCENE = Scene((
    SceneObject("circle", "red", "striped", "large", 2, 2),
    SceneObject("star", "blue", "solid", "small", 34, 4),
    SceneObject("heart", "green", "solid", "small", 2, 34),
    SceneObject("heart", "green", "solid", "small", 18, 34),
))
TRUE = [
    "a large striped red circle?", "a blue star?", "a small star?", "two hearts?", "two green hearts?",
    "is there a red circle?", "are there two hearts?", "one circle?",
    "is the red circle left of the blue star?", "is the circle on the left of the star?",
    "is the star right of the circle?", "is the star above the heart?", "is the heart below the circle?",
    "is the circle striped?", "is the star small?", "is the circle large and red?", "Are the hearts green?",
]
FALSE = [
    "a red star?", "a striped star?", "a small circle?", "is there a square?", "are there three hearts?",
    "one heart?", "is the blue star left of the red circle?", "is the circle below the heart?",
    "is the star striped?", "is the circle small?", "is the circle large and blue?", "is the square red?",
    "is the star on the bottom of the circle?",
]


@pytest.fixture(scope="module")
def answers() -> dict[str, float]:
    questions = TRUE + FALSE
    image = render(SCENE)
    return dict(zip(questions, OracleVQA().yes_probability([image] * len(questions), questions)))


@pytest.mark.parametrize("question", TRUE)
def test_true_statements_score_high(answers: dict[str, float], question: str) -> None:
    assert answers[question] >= 0.95


@pytest.mark.parametrize("question", FALSE)
def test_false_statements_score_low(answers: dict[str, float], question: str) -> None:
    assert answers[question] <= 0.05


def test_is_a_vqa_backend() -> None:
    assert isinstance(OracleVQA(), VQA)


def reading(shape: str, score: float, x: float = 0.0, color: str = "red") -> ObjectReading:
    return ObjectReading(shape, score, (x, 0.0, x + 9, 9.0), np.zeros((1, 1), bool), color, "solid", "large")


def test_probability_rules_by_hand() -> None:
    two = [reading("circle", 0.5), reading("circle", 0.5, x=20)]
    assert answer("a circle?", two) == pytest.approx(0.75)  # 1 - 0.5 * 0.5
    assert answer("one circle?", two) == pytest.approx(0.5)  # 0.5 * 0.5 + 0.5 * 0.5
    assert answer("two circles?", two) == pytest.approx(0.25)
    assert answer("three circles?", two) == 0.0
    assert answer("a star?", two) == 0.0
    # relation: max over distinct pairs of s_a s_b, holding when the centre offset points that way
    pair = [reading("circle", 0.9), reading("star", 0.8, x=30), reading("star", 0.6, x=-30)]
    assert answer("is the circle left of the star?", pair) == pytest.approx(0.72)
    assert answer("is the circle right of the star?", pair) == pytest.approx(0.54)
    assert answer("is the circle red?", pair) == pytest.approx(0.9)
    assert answer("is the circle blue?", pair) == 0.0
    # exactly two of three: 0.2 (1 - 0.5) 1 + (1 - 0.2) 0.5 1 + 0.2 0.5 (1 - 1)
    assert exactly([0.2, 0.5, 1.0], 2) == pytest.approx(0.5)


@pytest.mark.parametrize("question", ["", "what colour is the star?", "a red?", "is the star happy?",
                                      "is there the star?", "a star left of a circle?"])
def test_questions_outside_the_grammar_are_errors(question: str) -> None:
    with pytest.raises(HarnessError, match="oracle VQA cannot read"):
        answer(question, [reading("star", 1.0)])
