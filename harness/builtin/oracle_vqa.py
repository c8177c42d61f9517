"""Oracle VQA for the builtin world: answers a small question grammar from :func:`read_objects` readings.

It plays BLIP-VQA's part in the builtin versions of T2I-CompBench (noun-phrase questions) and DPG-Bench (yes/no
questions). Questions are lower-cased and stripped of ``.!"()*#:;~`` and a final "?" first. The grammar::

    question := np                                   "a small striped red circle?"   (T2I-CompBench's form)
              | "is there" np | "are there" np        "is there a red circle?", "are there three stars?"
              | ("is" | "are") def relation def       "is the red circle left of the blue star?"
              | ("is" | "are") def attribute+         "is the star striped?", "is the circle large and red?"
    np       := [quantity] attribute* shape           quantity: a | an | one | two | three | four
    def      := "the" attribute* shape
    attribute := a size, texture or colour word of the world ("and" may join predicate attributes)
    shape    := a shape, singular or plural
    relation := left of | right of | above | below
              | on the left of | on the right of | on the top of | on the bottom of

Answers are probabilities of "yes" that treat each read object as present with probability equal to its
detection score s (``OracleDetector``'s score: 1 for a clean render) and independent of the others:

* np without a number, or with a/an: P(at least one match) = 1 - prod (1 - s) over matching objects;
* np with one..four: P(exactly that many match) (Poisson-binomial over the matching objects);
* relation: max over pairs of distinct objects (a matches the first, b the second) of s_a s_b [a relation b],
  the relation holding when the centre offset's unit vector points its way by more than 0.5
  (``world.relation_holds``);
* attributes: max over objects matching ``def`` of s [the object has every attribute].

An object matches a phrase when its shape, and each attribute the phrase names, are what the oracle read. A
question outside the grammar raises HarnessError naming it, rather than being answered "no".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from harness.builtin.oracle import VERSION, ObjectReading, read_objects
from harness.builtin.world import COLORS, NUMBERS, PLURALS, SHAPES, SIZES, TEXTURES, relation_holds
from harness.errors import HarnessError

_SINGULAR = {**{s: s for s in SHAPES}, **{p: s for s, p in PLURALS.items()}}
_ATTRIBUTES = {**{c: "color" for c in COLORS}, **{t: "texture" for t in TEXTURES}, **{z: "size" for z in SIZES}}
_QUANTITIES = {"a": None, "an": None, **{word: n for n, word in NUMBERS.items()}}
# Relation phrases, longest first so "on the left of" is not read as "left of" with a stray "on the".
_RELATIONS = {"on the left of": "left of", "on the right of": "right of", "on the top of": "above",
              "on the bottom of": "below", "left of": "left of", "right of": "right of", "above": "above",
              "below": "below"}
_PUNCTUATION = re.compile(r"[.!\"()*#:;~?]")


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: a shape, the attributes it names (kind -> word) and a count (None: at least one)."""

    shape: str
    attributes: tuple[tuple[str, str], ...] = ()
    count: int | None = None

    def matches(self, obj: ObjectReading) -> bool:
        return obj.shape == self.shape and all(getattr(obj, kind) == word for kind, word in self.attributes)


def parse_phrase(words: list[str], question: str, definite: bool = False) -> Phrase:
    """``[quantity | the] attribute* shape`` -> Phrase; anything else is an error naming the question."""
    count = None
    if words and definite and words[0] == "the":
        words = words[1:]
    elif words and not definite and words[0] in _QUANTITIES:
        count, words = _QUANTITIES[words[0]], words[1:]
    if not words or words[-1] not in _SINGULAR or any(w not in _ATTRIBUTES for w in words[:-1]):
        raise HarnessError(f"the oracle VQA cannot read {question!r}: expected "
                           f"{'the' if definite else '[a|one..four]'} [size|texture|colour ...] shape")
    return Phrase(_SINGULAR[words[-1]], tuple((_ATTRIBUTES[w], w) for w in words[:-1]), count)


def exactly(scores: list[float], n: int) -> float:
    """P(exactly n of independent events with these probabilities happen), by dynamic programming."""
    dist = np.zeros(len(scores) + 1)
    dist[0] = 1.0
    for s in scores:
        dist[1:] = dist[1:] * (1 - s) + dist[:-1] * s
        dist[0] *= 1 - s
    return float(dist[n]) if n < len(dist) else 0.0


def answer(question: str, objects: list[ObjectReading]) -> float:
    """The yes-probability of ``question`` about an image whose objects are ``objects`` (see the module doc)."""
    words = _PUNCTUATION.sub("", question.lower()).split()
    if words[:2] in (["is", "there"], ["are", "there"]):
        return _noun_phrase(parse_phrase(words[2:], question), objects)
    if words[:1] in (["is"], ["are"]):
        text = " ".join(words[1:])
        for phrase, relation in _RELATIONS.items():
            head, sep, tail = text.partition(f" {phrase} ")
            if sep:
                a = parse_phrase(head.split(), question, definite=True)
                b = parse_phrase(tail.split(), question, definite=True)
                return max((x.score * y.score for x in objects for y in objects
                            if x is not y and a.matches(x) and b.matches(y) and relation_holds(x, y, relation)),
                           default=0.0)
        split = next((i for i in range(len(words) - 1, 0, -1) if words[i] in _SINGULAR), None)
        if split is None or split == len(words) - 1:
            raise HarnessError(f"the oracle VQA cannot read {question!r}: expected 'is the ... shape attribute+?' "
                               "or 'is the ... shape <relation> the ... shape?'")
        subject = parse_phrase(words[1 : split + 1], question, definite=True)
        predicate = [w for w in words[split + 1 :] if w != "and"]
        wanted = parse_phrase(["the", *predicate, words[split]], question, definite=True)
        return max((o.score for o in objects if subject.matches(o) and wanted.matches(o)), default=0.0)
    return _noun_phrase(parse_phrase(words, question), objects)


def _noun_phrase(phrase: Phrase, objects: list[ObjectReading]) -> float:
    scores = [o.score for o in objects if phrase.matches(o)]
    if phrase.count is None:
        return 1.0 - float(np.prod([1.0 - s for s in scores]))
    return exactly(scores, phrase.count)


class OracleVQA:
    """:class:`~harness.perception.base.VQA` of the builtin world, over :func:`read_objects`."""

    name = "oracle-vqa"
    version = f"{VERSION}.1"

    def yes_probability(self, images: list[Image.Image], questions: list[str]) -> list[float]:
        readings: dict[int, list[ObjectReading]] = {}  # one reading per distinct image, however many questions
        out = []
        for image, question in zip(images, questions):
            if id(image) not in readings:
                readings[id(image)] = read_objects(image)
            out.append(answer(question, readings[id(image)]))
        return out
