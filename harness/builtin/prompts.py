"""The builtin world's prompt grammar: scene requests <-> English prompts.

Prompts follow GenEval's phrasing ("a photo of a red circle left of a blue square"); the same grammar, with more
attributes switched on, gives the training captions of the tiny model.
"""

from __future__ import annotations

import random

from harness.builtin.world import (
    COLORS,
    MAX_INSTANCES,
    NUMBERS,
    PLURALS,
    RELATIONS,
    SHAPES,
    SIZES,
    TEXTURES,
    ObjectRequest,
    SceneRequest,
)

PREFIX = "a photo of"


def article(word: str) -> str:
    """GenEval's rule: "an" before a vowel letter."""
    return "an" if word[0] in "aeiou" else "a"


def group_phrase(group: ObjectRequest) -> str:
    """"a small striped red star", "three circles"."""
    words = [w for w in (group.size, group.texture, group.color) if w]
    noun = group.shape if group.count == 1 else PLURALS[group.shape]
    head = " ".join([*words, noun])
    return f"{article(head)} {head}" if group.count == 1 else f"{NUMBERS[group.count]} {head}"


def describe(request: SceneRequest, prefix: bool = True) -> str:
    """The prompt for a scene request; a relation names group 1 first, as GenEval does."""
    phrases = [group_phrase(g) for g in request.groups]
    if request.relation is not None:
        body = f"{phrases[1]} {request.relation[0]} {phrases[0]}"
    elif len(phrases) == 1:
        body = phrases[0]
    else:
        body = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{PREFIX} {body}" if prefix else body


def vocabulary() -> list[str]:
    """Every word the grammar can emit, for the word-level tokenizer."""
    words = {"a", "an", "photo", "of", "and", "solid", ",", *SHAPES, *PLURALS.values(), *COLORS, *TEXTURES, *SIZES}
    words |= set(NUMBERS.values())
    for rel in RELATIONS:
        words |= set(rel.split())
    return sorted(words)


def sample_training_request(rng: random.Random) -> tuple[SceneRequest, str]:
    """A random scene request and a caption for it, covering every tag of GenEval and T2I-CompBench's attributes.

    Attributes the caption leaves out are left unspecified in the request, so the scene draws them at random: the
    model learns that an unmentioned colour means "any colour".
    """

    def attrs(count: int = 1) -> ObjectRequest:
        return ObjectRequest(
            shape=rng.choice(SHAPES),
            count=count,
            color=rng.choice(tuple(COLORS)) if rng.random() < 0.6 else None,
            texture=rng.choice(TEXTURES) if rng.random() < 0.3 else None,
            size=rng.choice(tuple(SIZES)) if rng.random() < 0.3 else None,
        )

    kind = rng.choices(["one", "two", "count", "relation", "groups"], weights=[3, 3, 3, 3, 1])[0]
    if kind == "one":
        request = SceneRequest(groups=(attrs(),))
    elif kind == "count":
        request = SceneRequest(groups=(attrs(rng.randint(2, MAX_INSTANCES)),))
    elif kind in ("two", "relation"):
        a, b = attrs(), attrs()
        while b.shape == a.shape:
            b = attrs()
        relation = (rng.choice(RELATIONS), 0) if kind == "relation" else None
        request = SceneRequest(groups=(a, b), relation=relation)
    else:
        first = attrs(rng.randint(1, 2))
        second = attrs(rng.randint(1, MAX_INSTANCES - first.count))
        while second.shape == first.shape:
            second = attrs(second.count)
        request = SceneRequest(groups=(first, second))
    return request, describe(request, prefix=rng.random() < 0.8)
