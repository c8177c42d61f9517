"""The builtin world: scene sampling honours requests, renders are exact, prompts and tokens round-trip."""

from __future__ import annotations

import random

import numpy as np
import pytest

from harness.builtin.model import build_tokenizer
from harness.builtin.prompts import describe, sample_training_request, vocabulary
from harness.builtin.render import object_masks, render, shape_mask
from harness.builtin.world import (
    BACKGROUND,
    COLORS,
    SHAPES,
    SIZES,
    ObjectRequest,
    SceneRequest,
    relation_holds,
    sample_scene,
    stripe_color,
)


def test_requests_are_honoured() -> None:
    rng = random.Random(0)
    for _ in range(300):
        request, _ = sample_training_request(rng)
        scene = sample_scene(request, rng)
        assert len(scene.objects) == sum(g.count for g in request.groups)
        position = 0
        for group in request.groups:
            for obj in scene.objects[position : position + group.count]:
                assert obj.shape == group.shape
                assert group.color in (None, obj.color)
                assert group.texture in (None, obj.texture)
                assert group.size in (None, obj.size)
                assert obj.x >= 0 and obj.x + obj.side <= scene.canvas
            position += group.count
        if request.relation is not None:
            first, second = scene.objects
            assert relation_holds(second, first, request.relation[0])


def test_render_is_exact_palette_and_objects_do_not_touch() -> None:
    rng = random.Random(1)
    for _ in range(100):
        scene = sample_scene(sample_training_request(rng)[0], rng)
        pixels = np.asarray(render(scene))
        masks = object_masks(scene)
        union = np.zeros(pixels.shape[:2], bool)
        for obj, mask in zip(scene.objects, masks):
            assert not (union & mask).any()
            union |= mask
            allowed = {COLORS[obj.color], stripe_color(obj.color)}
            colours = {tuple(p) for p in pixels[mask]}
            assert colours <= allowed
            assert (COLORS[obj.color] in colours) and ((len(colours) == 2) == (obj.texture == "striped"))
        assert (pixels[~union] == BACKGROUND).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("side", sorted(SIZES.values()))
def test_shape_masks_fill_their_box_and_are_distinct(shape: str, side: int) -> None:
    mask = shape_mask(shape, side)
    assert mask.shape == (side, side)
    # Thin tips (triangle apex, star points) may vanish in the area-averaged downsampling: one pixel each side.
    assert mask.any(axis=0).sum() >= side - 2 and mask.any(axis=1).sum() >= side - 2
    for other in SHAPES:
        if other != shape:
            assert (mask != shape_mask(other, side)).sum() >= 4, (shape, other)


def test_describe_follows_geneval_phrasing() -> None:
    two = SceneRequest((ObjectRequest("ring", color="blue"), ObjectRequest("star", color="red")), ("left of", 0))
    assert describe(two) == "a photo of a red star left of a blue ring"
    count = SceneRequest((ObjectRequest("cross", count=3),))
    assert describe(count, prefix=False) == "three crosses"
    detailed = SceneRequest((ObjectRequest("heart", size="small", texture="striped", color="orange"),))
    assert describe(detailed) == "a photo of a small striped orange heart"


def test_tokenizer_covers_every_generated_prompt() -> None:
    tokenizer = build_tokenizer()
    unk = tokenizer.unk_token_id
    rng = random.Random(2)
    for _ in range(500):
        ids = tokenizer(sample_training_request(rng)[1])["input_ids"]
        assert unk not in ids and ids[0] == tokenizer.bos_token_id
    assert tokenizer("")["input_ids"] == [tokenizer.bos_token_id]
    assert tokenizer("a purple unicorn")["input_ids"][-1] == unk
    assert len(set(vocabulary())) == len(vocabulary())
