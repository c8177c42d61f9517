"""Oracle perception: reads shapes, colours, textures, sizes, counts and positions back from rendered pixels."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import ndimage

from benchmarks.geneval.oracle_report import perception_report
from benchmarks.geneval.rules import relative_position
from harness.builtin.oracle import (
    CLEAN_SMALL_DISTINCT_RAMP,
    CLEAN_SMALL_FIT,
    DISTINCT_RAMP,
    FIT_RAMP,
    MATCH_PAD,
    NOTCH_DEPTH,
    SMALL_FIT_RAMP,
    ObjectReading,
    OracleColorClassifier,
    OracleDetector,
    _drop_inner,
    _inner_share,
    _settle,
    _shape_fits,
    _template_bank,
    color_and_texture,
    confidence,
    distinct_score,
    distinctness,
    grouping_rank,
    instance_seeds,
    match_shape,
    notch_depth,
    read_objects,
    split_rings,
)
from harness.builtin.render import STRIPE_PERIOD, STRIPE_WIDTH, object_masks, render, shape_mask
from harness.builtin.world import (
    BACKGROUND,
    COLORS,
    SHAPES,
    SIZES,
    TEXTURES,
    ObjectRequest,
    Scene,
    SceneObject,
    SceneRequest,
    sample_scene,
    stripe_color,
)
from harness.errors import HarnessError
from harness.perception import ColorClassifier, Detector


def one(shape: str, color: str = "red", texture: str = "solid", size: str = "large", x: int = 13, y: int = 17) -> Scene:
    return Scene((SceneObject(shape, color, texture, size, x, y),))


def geneval_crop(image: Image.Image, box: np.ndarray, mask: np.ndarray) -> Image.Image:
    """What GenEval feeds its colour classifier: the object composited on #999 through its mask, cut to the box."""
    gray = Image.new("RGB", image.size, "#999")
    return Image.composite(image, gray, Image.fromarray(mask)).crop(tuple(float(v) for v in box))


def test_implements_the_perception_protocols() -> None:
    assert isinstance(OracleDetector(), Detector) and isinstance(OracleColorClassifier(), ColorClassifier)
    assert OracleDetector().classes == SHAPES


@pytest.mark.parametrize("texture", TEXTURES)
@pytest.mark.parametrize("size", tuple(SIZES))
@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_is_read_with_its_label_size_and_texture(shape: str, size: str, texture: str) -> None:
    scene = one(shape, color="blue", texture=texture, size=size)
    (det,) = OracleDetector().detect([render(scene)])
    assert det.labels == [shape] and det.scores[0] >= 0.95
    assert det.masks.shape == (1, 48, 48) and det.masks.dtype == bool
    (reading,) = read_objects(render(scene))
    assert (reading.size, reading.texture, reading.color) == (size, texture, "blue")


def test_boxes_are_inclusive_pixel_boxes() -> None:
    scene = one("square", size="small", x=5, y=30)
    (det,) = OracleDetector().detect([render(scene)])
    assert det.boxes[0].tolist() == list(scene.objects[0].box) == [5, 30, 14, 39]


@pytest.mark.parametrize("shape", ["star", "square"])  # the small star is where stripes cover the most area
@pytest.mark.parametrize("texture", TEXTURES)
def test_every_colour_is_named_from_geneval_crops(shape: str, texture: str) -> None:
    names = list(COLORS)
    crops, original = [], []
    for color in names:
        image = render(one(shape, color=color, texture=texture, size="small"))
        (det,) = OracleDetector().detect([image])
        crops.append(geneval_crop(image, det.boxes[0], det.masks[0]))
        original.append(image.crop(tuple(float(v) for v in det.boxes[0])))  # GenEval's bgcolor="original"
        assert read_objects(image)[0].color == color
    classifier = OracleColorClassifier()
    assert classifier.classify(crops, [shape], names) == names
    assert classifier.classify(original, [shape], names) == names


def test_base_colour_wins_even_when_stripes_outnumber_it() -> None:
    names = tuple(COLORS)
    for base, stripe in (("red", "white"), ("white", "black")):
        labels = np.full((12, 10), -1)
        labels[:, 4:7] = names.index(base)  # a thin body crossed by full-width stripe rows: 40 stripe votes to 24
        labels[[4, 5, 10, 11]] = names.index(stripe)
        assert color_and_texture(labels, names)[:2] == (base, "striped")
    labels[[4, 5, 10, 11]] = names.index("white")  # white "stripes" on a white body are just a white object
    assert color_and_texture(labels, names)[:2] == ("white", "solid")


def test_a_striped_object_whose_body_drifts_between_two_tones_is_coherent() -> None:
    """Stripes are the object's own colour too: an orange body drifting to yellow in places, crossed by white
    stripes, is one coherent striped orange object, though its two leading colours cover only 3/4 of it."""
    names = tuple(COLORS)
    labels = np.full((12, 12), names.index("orange"))
    labels[:, ::3] = names.index("yellow")
    labels[[4, 5, 10, 11]] = names.index("white")
    votes = np.sort(np.bincount(labels.ravel()))[::-1]
    assert votes[:2].sum() / votes.sum() < 0.8  # the two leading colours alone: incoherent, as v5 read it
    base, texture, coherence = color_and_texture(labels, names)
    assert (base, texture) == ("orange", "striped") and coherence == 1.0
    labels[[4, 5, 10, 11]] = names.index("blue")  # a third colour that is no stripe still counts against it
    assert color_and_texture(labels, names)[2] < 0.8


# A small black diamond from a generated image (eye-label batch 3, "three diamonds"), as match_shape sees it: its
# blend weights x 100 over its box padded by MATCH_PAD, and its hard cut. Blur rounded its tips below half contrast.
_DIAMOND_SOFT = np.array([
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 41, 16, 0, 0, 0, 0, 0],
    [0, 0, 0, 31, 23, 39, 73, 60, 18, 0, 0, 0, 0],
    [0, 0, 0, 31, 27, 96, 99, 91, 50, 0, 0, 0, 0],
    [0, 11, 0, 66, 88, 97, 100, 99, 95, 39, 12, 12, 0],
    [0, 11, 56, 100, 100, 97, 98, 98, 96, 77, 30, 12, 0],
    [0, 40, 89, 100, 95, 94, 98, 98, 96, 99, 93, 22, 0],
    [0, 40, 94, 100, 95, 94, 98, 98, 93, 100, 93, 44, 0],
    [0, 47, 92, 100, 95, 94, 95, 98, 93, 93, 71, 24, 0],
    [26, 29, 41, 81, 95, 94, 95, 100, 93, 56, 20, 0, 0],
    [0, 0, 0, 17, 71, 99, 95, 92, 48, 0, 0, 0, 0],
    [0, 0, 0, 0, 31, 86, 95, 62, 15, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 27, 30, 22, 15, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
], dtype=np.float32) / 100
_DIAMOND_HARD = np.array([
    [0, 0, 0, 0, 1, 0, 0, 0, 0],
    [0, 0, 0, 1, 1, 1, 1, 0, 0],
    [0, 1, 1, 1, 1, 1, 1, 0, 0],
    [1, 1, 1, 1, 1, 1, 1, 1, 0],
    [1, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 1, 1, 1, 1, 1, 1, 1, 0],
    [0, 0, 1, 1, 1, 1, 0, 0, 0],
    [0, 0, 0, 1, 1, 1, 0, 0, 0],
], dtype=bool)


def test_a_small_shape_its_hard_cut_leaves_ambiguous_is_read_from_its_blend_weights() -> None:
    """The hard cut of a blurred 10 px diamond is nearly as round as a circle: soft and hard masks together leave
    diamond and circle within the ambiguous range; the blend weights alone still show the tips, and a person reads
    a diamond at once."""
    padded = np.pad(_DIAMOND_HARD, MATCH_PAD).astype(np.float32)
    fits = _shape_fits(np.stack([_DIAMOND_SOFT, padded]), *_template_bank(*_DIAMOND_HARD.shape))
    best, runner_up = np.sort(fits)[::-1][:2]
    assert distinctness(float(best), float(runner_up)) < DISTINCT_RAMP[1]  # v5's reading: not clear
    shape, fit, distinct = match_shape(_DIAMOND_HARD, _DIAMOND_SOFT)
    assert shape == "diamond" and fit == best and distinct >= DISTINCT_RAMP[1]
    # The same outline at a large object's size is not re-read: there the hard cut's pixel grid is fine enough.
    large_hard = np.kron(_DIAMOND_HARD, np.ones((2, 2), dtype=bool))
    large_soft = np.pad(np.kron(_DIAMOND_SOFT[MATCH_PAD:-MATCH_PAD, MATCH_PAD:-MATCH_PAD], np.ones((2, 2))),
                        MATCH_PAD).astype(np.float32)
    large_fits = _shape_fits(np.stack([large_soft, np.pad(large_hard, MATCH_PAD).astype(np.float32)]),
                             *_template_bank(*large_hard.shape))
    top, second = np.sort(large_fits)[::-1][:2]
    assert match_shape(large_hard, large_soft)[2] == distinctness(float(top), float(second))

# A large fat green cross from a generated image (eye-label batch 10 index 46, "a cross and a square"), as match_shape
# sees it: its blend weights x 100 over its 16 x 16 box padded by MATCH_PAD, and its hard cut. Its short, rounded arms
# fit a diamond (0.871) better than a cross (0.859), but its corners notch 0.107 of its side into its hull.
_FAT_CROSS_SOFT = np.array([
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 14, 75, 88, 79, 71, 89, 80, 42, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 14, 96, 100, 99, 95, 100, 96, 42, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 29, 14, 88, 100, 99, 95, 100, 96, 42, 25, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 29, 45, 88, 100, 100, 95, 100, 96, 47, 25, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 12, 45, 66, 88, 100, 100, 100, 100, 100, 79, 29, 0, 14, 0, 0, 0],
    [0, 0, 24, 52, 75, 78, 81, 88, 100, 100, 96, 99, 100, 79, 68, 48, 29, 48, 17, 0],
    [0, 0, 40, 82, 100, 89, 98, 95, 95, 93, 92, 98, 100, 94, 68, 63, 62, 63, 26, 0],
    [0, 0, 53, 90, 100, 89, 98, 95, 95, 93, 92, 98, 100, 96, 100, 92, 94, 88, 26, 0],
    [0, 0, 54, 100, 100, 99, 100, 96, 95, 93, 92, 98, 100, 96, 100, 92, 100, 100, 26, 0],
    [0, 0, 29, 89, 100, 100, 99, 99, 98, 100, 98, 100, 100, 100, 100, 100, 100, 84, 26, 0],
    [0, 0, 19, 65, 96, 94, 99, 95, 98, 100, 100, 100, 99, 91, 86, 96, 92, 44, 0, 0],
    [0, 0, 19, 48, 57, 73, 84, 92, 100, 100, 98, 100, 99, 72, 54, 54, 47, 20, 0, 0],
    [0, 0, 14, 14, 17, 35, 69, 92, 100, 100, 98, 100, 99, 62, 0, 21, 14, 0, 0, 0],
    [0, 0, 0, 0, 17, 31, 69, 92, 100, 100, 98, 100, 100, 61, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 31, 69, 92, 100, 100, 100, 100, 99, 42, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 31, 72, 100, 100, 100, 100, 100, 79, 41, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 21, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
], dtype=np.float32) / 100
_FAT_CROSS_HARD = np.array([
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
    [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
], dtype=bool)


def test_a_large_notched_diamond_reading_alone_is_a_cross() -> None:
    """v13: the notched-corner cross (v11's notch_depth) holds at any size where the object touches no other one
    (``alone``); touching, the seam may notch a plain diamond, so the reading stays as the fits give it."""
    assert notch_depth(_FAT_CROSS_SOFT) >= NOTCH_DEPTH
    shape, _, distinct = match_shape(_FAT_CROSS_HARD, _FAT_CROSS_SOFT, unstriped=True, alone=True)
    assert shape == "cross" and distinct >= DISTINCT_RAMP[1]
    assert match_shape(_FAT_CROSS_HARD, _FAT_CROSS_SOFT, unstriped=True)[0] == "diamond"
    assert match_shape(_FAT_CROSS_HARD, _FAT_CROSS_SOFT, alone=True)[0] == "diamond"  # striped: left as it is


def test_a_grouping_with_more_clear_objects_ranks_first() -> None:
    """v13: one clear ring outranks its pixels read as two unclear pieces whose scores sum higher (eye-label batch
    10 index 146: a brown ring with a red arc, 0.997 whole, 0.76 + 0.74 apart); with as many clear objects, the
    higher sum ranks first, so two clear objects still outrank one."""
    def reading(shape: str, score: float) -> ObjectReading:
        return ObjectReading(shape, score, (0.0, 0.0, 9.0, 9.0), np.zeros((48, 48), dtype=bool), "brown", "solid",
                             "small")

    whole, apart = [reading("ring", 0.997)], [reading("ring", 0.76), reading("star", 0.74)]
    assert grouping_rank(whole) == (1, 0.997) and grouping_rank(whole) > grouping_rank(apart)
    assert grouping_rank([reading("ring", 0.95), reading("star", 0.93)]) > grouping_rank(whole)
    assert grouping_rank([reading("ring", 0.997), reading("star", 0.5)]) > grouping_rank(whole)


def test_a_reading_inside_a_touching_clear_objects_box_is_part_of_it() -> None:
    """v16: the world draws each object in a box of its own, so a reading whose box lies at least INNER_SHARE inside a
    larger, touching clear object's box of another colour is a part of it (eye-label batch 15 index 119: a green
    square's dark corner shade read as a black square); one that sticks out, beside an unclear blob or of the same
    colour stays."""
    def reading(color: str, score: float, box: tuple[int, int, int, int]) -> ObjectReading:
        mask = np.zeros((48, 48), dtype=bool)
        mask[box[1] : box[3] + 1, box[0] : box[2] + 1] = True
        return ObjectReading("square", score, tuple(map(float, box)), mask, color, "solid", "small")

    assert _inner_share((0.0, 0.0, 9.0, 9.0), (5.0, 0.0, 20.0, 9.0)) == 0.5  # 5 of 10 columns, every row
    assert _inner_share((0.0, 0.0, 9.0, 9.0), (20.0, 0.0, 29.0, 9.0)) == 0.0
    square = reading("green", 0.997, (10, 10, 25, 25))
    shade = reading("black", 0.997, (20, 20, 25, 25))  # its pixels overlap the square's: they touch
    assert _drop_inner([square, shade]) == [square]
    beside = reading("black", 0.997, (20, 20, 29, 29))  # 36 of its 100 box pixels inside
    assert _drop_inner([square, beside]) == [square, beside]
    blob = reading("green", 0.5, (10, 10, 25, 25))
    assert _drop_inner([blob, shade]) == [blob, shade]
    same = reading("green", 0.997, (20, 20, 25, 25))
    assert _drop_inner([square, same]) == [square, same]
    apart = reading("black", 0.997, (20, 20, 25, 25))
    hollow = ObjectReading("ring", 0.997, square.box, square.mask & ~ndimage.binary_dilation(apart.mask, iterations=2),
                           "green", "solid", "large")
    assert _drop_inner([hollow, apart]) == [hollow, apart]  # inside the box but not touching: kept


def test_unknown_colour_name_is_a_user_error() -> None:
    with pytest.raises(HarnessError, match="no colour"):
        OracleColorClassifier().classify([render(one("circle"))], ["circle"], ["red", "teal"])


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_counts_pass_geneval_counting_threshold(count: int) -> None:
    rng = random.Random(f"count:{count}")
    for _ in range(5):
        scene = sample_scene(SceneRequest((ObjectRequest(rng.choice(SHAPES), count=count),)), rng)
        (det,) = OracleDetector().detect([render(scene)])
        assert int((det.scores > 0.9).sum()) == len(det) == count


@pytest.mark.parametrize("seed", range(3))
def test_pure_noise_gives_no_detection_above_geneval_threshold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    uniform = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    around_grey = np.clip(np.array(BACKGROUND) + rng.normal(0, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
    for pixels in (uniform, around_grey):
        (det,) = OracleDetector().detect([Image.fromarray(pixels)])
        assert not (det.scores > 0.3).any(), list(zip(det.labels, det.scores))


def test_blank_canvas_gives_empty_detections() -> None:
    (det,) = OracleDetector().detect([render(Scene(()))])
    assert len(det) == 0 and det.masks.shape == (0, 48, 48)


@pytest.mark.parametrize("color", [*COLORS, "off-palette"])
def test_a_canvas_filled_with_one_colour_is_not_a_square(color: str) -> None:
    """A flat frame of colour (edge to edge, or inside a one-pixel grey border) is no object of the world: a reward
    hack for every "a photo of a (red) square" prompt if it were."""
    rgb = COLORS.get(color, (90, 200, 170))
    bordered = np.zeros((48, 48, 3), dtype=np.uint8)
    bordered[:] = BACKGROUND
    bordered[1:-1, 1:-1] = rgb
    for image in (Image.new("RGB", (48, 48), rgb), Image.fromarray(bordered)):
        (det,) = OracleDetector().detect([image])
        assert not (det.scores > 0.3).any(), list(zip(det.labels, det.scores))


@pytest.mark.parametrize("sigma", [10, 20, 60])
def test_noise_fields_give_no_detection_above_geneval_threshold(sigma: int) -> None:
    rng = np.random.default_rng(sigma)
    for _ in range(5):
        pixels = np.clip(np.array(BACKGROUND) + rng.normal(0, sigma, (48, 48, 3)), 0, 255).astype(np.uint8)
        (det,) = OracleDetector().detect([Image.fromarray(pixels)])
        assert not (det.scores > 0.3).any(), list(zip(det.labels, det.scores))


def _supersampled(scene: Scene, dx: int = 0, dy: int = 0, k: int = 4) -> Image.Image:
    """The scene drawn at k times the resolution, moved by (dx, dy) / k pixels, and area-averaged back: an
    anti-aliased render with a sub-pixel shift."""
    big = np.empty((48 * k, 48 * k, 3), dtype=np.float32)
    big[:] = BACKGROUND
    for obj in scene.objects:
        region = big[obj.y * k + dy : (obj.y + obj.side) * k + dy, obj.x * k + dx : (obj.x + obj.side) * k + dx]
        mask = shape_mask(obj.shape, obj.side * k)
        region[mask] = COLORS[obj.color]
        if obj.texture == "striped":
            rows = (np.arange(obj.side * k) // k) % STRIPE_PERIOD >= STRIPE_PERIOD - STRIPE_WIDTH
            region[mask & rows[:, None]] = stripe_color(obj.color)
    return Image.fromarray(big.reshape(48, k, 48, k, 3).mean((1, 3)).round().astype(np.uint8))


def _wavy(image: Image.Image) -> Image.Image:
    """Rows moved right by one pixel in runs of three or four: every left and right outline wobbles by a pixel."""
    pixels = np.asarray(image).copy()
    for row in range(pixels.shape[0]):
        pixels[row] = np.roll(pixels[row], int(np.sin(row * 2 * np.pi / 7) > 0), axis=0)
    return Image.fromarray(pixels)


PERTURBATIONS = {  # name: (make the image, least counting accuracy; oracle v2 reaches 0.95-1.0, wavy ~0.9)
    "anti-aliased": (lambda scene: _supersampled(scene), 0.95),
    "shift 1/4 px": (lambda scene: _supersampled(scene, dx=1), 0.95),
    "shift 1/2 px diagonal": (lambda scene: _supersampled(scene, dx=2, dy=2), 0.9),
    "blur 0.5 px": (lambda scene: render(scene).filter(ImageFilter.GaussianBlur(0.5)), 0.95),
    "wavy outline 1 px": (lambda scene: _wavy(render(scene)), 0.8),
}


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_counting_survives_one_pixel_of_change(name: str) -> None:
    """Counting (scores > GenEval's 0.9, right shape) on clean scenes changed by one pixel or less, as a generator
    draws them; before oracle v2 these fell to between 10 % and 77 %."""
    make, least = PERTURBATIONS[name]
    rng = random.Random(0)
    hits = 0
    scenes = 32
    for i in range(scenes):
        shape, count = SHAPES[i % len(SHAPES)], rng.randint(1, 4)
        scene = sample_scene(SceneRequest((ObjectRequest(shape, count=count),)), rng)
        (det,) = OracleDetector().detect([make(scene)])
        confident = [label for label, score in zip(det.labels, det.scores) if score > 0.9]
        hits += confident == [shape] * count
    assert hits / scenes >= least, (name, hits / scenes)


@pytest.mark.parametrize("size", tuple(SIZES))
def test_a_star_without_its_one_pixel_tips_is_still_a_star(size: str) -> None:
    scene = one("star", size=size)
    pixels = np.asarray(render(scene)).copy()
    mask = np.any(pixels != BACKGROUND, axis=-1)
    neighbours = ndimage.convolve(mask.astype(int), np.ones((3, 3), dtype=int), mode="constant") - 1
    tips = mask & (neighbours <= 2)  # the lone pixels at the end of each point
    assert tips.any()
    pixels[tips] = BACKGROUND
    (reading,) = read_objects(Image.fromarray(pixels))
    assert reading.shape == "star" and reading.score > 0.9, reading


def test_smeared_shapes_score_lower_than_clean_ones() -> None:
    """A 4 px motion smear keeps the shape (a person still sees a smeared star) but never a clean render's score; a
    1.5 px blur washes a small star or triangle into a round blob that is not confidently its shape any more."""
    for shape in ("star", "heart", "triangle"):
        clean = render(one(shape, size="small"))
        pixels = np.asarray(clean, dtype=np.float32)
        motion = Image.fromarray((sum(np.roll(pixels, k, axis=1) for k in range(4)) / 4).astype(np.uint8))
        clean_score = read_objects(clean)[0].score
        assert clean_score >= 0.95
        assert read_objects(motion)[0].score < clean_score
    for shape in ("star", "triangle"):
        (blurred,) = read_objects(render(one(shape, size="small")).filter(ImageFilter.GaussianBlur(1.5)))
        assert blurred.shape != shape or blurred.score < 0.9, blurred


def test_broken_blobs_match_nothing() -> None:
    broken = np.asarray(render(one("circle", x=10, y=10))).copy()
    broken[:, 17:19] = BACKGROUND
    assert [r.score < 0.3 for r in read_objects(Image.fromarray(broken))] == [True, True]


def _pair(shape: str, size: str, dx: int, dy: int, color: str = "red") -> Image.Image:
    """Two objects of one shape and colour, the second ``dx`` px right of and ``dy`` px below the first: they
    overlap by ``side - dx`` columns, one 8-connected blob of one colour."""
    scene = Scene((SceneObject(shape, color, "solid", size, 5, 10), SceneObject(shape, color, "solid", size, 5 + dx,
                                                                                10 + dy)))
    image = render(scene)
    foreground = np.any(np.asarray(image) != BACKGROUND, axis=-1)
    assert ndimage.label(foreground, structure=np.ones((3, 3)))[1] == 1  # one blob
    return image


# Two squares side by side make a rectangle with a one-pixel step: no neck, and a person sees one block too. Two
# large hearts 12 px apart overlap lobe into lobe, a wide heart-shaped blob without a neck; on the 10 px grid of
# small objects, round ones overlapping by 2 px narrow only to 0.9 of their radius, above NECK_SHARE.
_TOUCHING = [(shape, size, dx, dy) for shape in SHAPES if shape != "square"
             for size, dx, dy in [("large", 14, 0), ("large", 13, 1), ("large", 12, 0), ("small", 7, 0)]
             if (shape, dx) != ("heart", 12) and not (size == "small" and shape in ("circle", "ring", "heart"))]


@pytest.mark.parametrize(("shape", "size", "dx", "dy"), _TOUCHING)
def test_touching_objects_of_one_colour_are_read_as_two(shape: str, size: str, dx: int, dy: int) -> None:
    """Generated objects of one colour often touch or overlap by a few pixels; a person counts two, and oracle v4
    read the blob as one misfit (or nothing, when wider than any object)."""
    readings = [r for r in read_objects(_pair(shape, size, dx, dy)) if r.score > 0.3]
    assert [r.shape for r in readings] == [shape, shape] and min(r.score for r in readings) > 0.9, readings
    # Boxes are the visible parts: the cut through the overlap moves the covered edge by up to half the overlap.
    assert sorted(r.box[0] for r in readings) == pytest.approx([5, 5 + dx], abs=(SIZES[size] - dx + 1) / 2 + 1)


@pytest.mark.parametrize("shape", SHAPES)
def test_one_object_is_never_split(shape: str) -> None:
    """A single object, clean, squat or tall, blurred, or with a tinted ring hole, has one seed and reads as one."""
    images = [render(one(shape, size=size, x=14, y=12)) for size in SIZES]
    images += [render(one(shape, x=14, y=12)).filter(ImageFilter.GaussianBlur(0.8))]
    images += [_stretched(shape, w, h) for w, h in [(16, 12), (12, 16), (18, 14)]]
    for image in images:
        foreground = np.sqrt(((np.asarray(image, dtype=np.float32) - BACKGROUND) ** 2).sum(-1)) > 60
        assert len(instance_seeds(foreground)) == 1
        readings = [r for r in read_objects(image) if r.score > 0.3]
        assert [r.shape for r in readings] == [shape], readings


def test_circles_overlapping_by_half_are_not_read_as_two() -> None:
    """Two large circles overlapping by 10 of their 16 px make one oval blob without a neck: no two circles (a person
    sees an oval rather than two clear circles); at 5 px of overlap the blob narrows and reads as two."""
    assert len(instance_seeds(np.any(np.asarray(_pair("circle", "large", 6, 0)) != BACKGROUND, axis=-1))) == 1
    assert len([r for r in read_objects(_pair("circle", "large", 6, 0)) if r.score > 0.3]) <= 1
    assert len(instance_seeds(np.any(np.asarray(_pair("circle", "large", 11, 0)) != BACKGROUND, axis=-1))) == 2


@pytest.mark.parametrize("side", [5, 6])
def test_a_speck_with_a_neat_outline_is_not_an_object(side: int) -> None:
    """A 5 or 6 px square fits a square template exactly, but it is about half the smallest object the world draws
    and a person sees a speck (oracle v4 read such specks, in noise too, as confident squares and diamonds)."""
    pixels = np.empty((48, 48, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    pixels[20 : 20 + side, 20 : 20 + side] = COLORS["red"]
    assert read_objects(Image.fromarray(pixels)) == []


@pytest.mark.parametrize("seed", range(3))
def test_a_lumpy_blob_is_not_split_into_objects(seed: int) -> None:
    """Smoothed noise cut at a level: lumpy blobs of one colour with several necks (several seeds). Their pieces
    are no clear shapes, so the split is refused and no reading reaches GenEval's detection threshold."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((30, 30)), 1.5)
    blob = field > np.quantile(field, 0.4)
    assert len(instance_seeds(blob)) >= 2
    pixels = np.empty((48, 48, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    pixels[9:39, 9:39][blob] = COLORS["red"]
    assert all(r.score < 0.3 for r in read_objects(Image.fromarray(pixels)))


@pytest.mark.parametrize("relation", ["left of", "right of", "above", "below"])
def test_position_from_detected_boxes(relation: str) -> None:
    rng = random.Random(relation)
    request = SceneRequest((ObjectRequest("circle"), ObjectRequest("square")), relation=(relation, 0))
    scene = sample_scene(request, rng)
    (det,) = OracleDetector().detect([render(scene)])
    square, circle = det.of_class("square").boxes[0], det.of_class("circle").boxes[0]
    assert relation in relative_position(square, circle)


def test_perception_report_is_near_perfect_on_clean_renders() -> None:
    report = perception_report(n=200, seed=7)
    assert report.min_clean_accuracy() >= 0.99, report.format_table()
    assert all(line.total for name, line in report.clean.items() if not name.startswith("position/"))
    data = report.to_dict()
    assert set(data["clean"]) == set(report.clean) and len(data["perturbed"]) == 2
    assert "shape/ring" in report.format_table()


def _stretched(shape: str, width: int, height: int, color: str = "blue", x: int = 12, y: int = 14) -> Image.Image:
    """One object drawn into a ``width`` x ``height`` box (the renderer's silhouette resampled), as a generator draws
    a shape a little squat or tall."""
    silhouette = Image.fromarray(shape_mask(shape, 64).astype(np.uint8) * 255)
    mask = np.asarray(silhouette.resize((width, height), Image.Resampling.BOX)) >= 128
    pixels = np.empty((48, 48, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    pixels[y : y + height, x : x + width][mask] = COLORS[color]
    return Image.fromarray(pixels)


# A small diamond squashed to 8 px loses its one-pixel tips (a round blob to the eye as well), so it is not a case.
_STRETCHES = [(shape, w, h) for shape in SHAPES for w, h in [(16, 12), (12, 16), (10, 8), (8, 10)]
              if not (shape == "diamond" and min(w, h) < 10)]


@pytest.mark.parametrize(("shape", "width", "height"), _STRETCHES)
def test_a_shape_drawn_a_little_squat_or_tall_is_still_its_shape(shape: str, width: int, height: int) -> None:
    """Generated objects are often a pixel or three taller than wide or the reverse (a 16 x 12 square, a 16 x 19
    ring, a 7 x 9 star); oracle v2 compared only square boxes and scored them below GenEval's thresholds."""
    readings = read_objects(_stretched(shape, width, height))
    assert [r.shape for r in readings] == [shape] and readings[0].score > 0.9, readings


def test_a_rectangle_twice_as_wide_as_tall_is_not_a_square() -> None:
    readings = read_objects(_stretched("square", 16, 8))
    assert not any(r.shape == "square" and r.score > 0.3 for r in readings), readings


def test_a_two_tone_object_touching_another_is_read_as_two_objects() -> None:
    """A dark heart (brown above, black below, one object to a person) touching a green heart: the component has
    three colour parts, and the brown and black ones must be read together (oracle v2 read them apart, as two
    broken hearts, or all three as one blob)."""
    scene = Scene((SceneObject("heart", "green", "solid", "large", 10, 4),
                   SceneObject("heart", "brown", "solid", "large", 10, 19)))
    pixels = np.asarray(render(scene)).copy()
    lower = np.zeros((48, 48), dtype=bool)
    lower[27:35] = True
    dark = object_masks(scene)[1] & lower
    pixels[dark] = COLORS["black"]
    foreground = np.any(pixels != BACKGROUND, axis=-1)
    assert ndimage.label(foreground, structure=np.ones((3, 3)))[1] == 1  # one component: the hearts touch
    readings = [r for r in read_objects(Image.fromarray(pixels)) if r.score > 0.3]
    assert [r.shape for r in readings] == ["heart", "heart"] and min(r.score for r in readings) > 0.9, readings
    alone = np.asarray(render(Scene(scene.objects[1:]))).copy()
    alone[dark] = COLORS["black"]
    assert [(r.shape, r.score > 0.9) for r in read_objects(Image.fromarray(alone))] == [("heart", True)]



def _lump_between_hearts(with_blue: bool) -> Image.Image:
    """A black heart whose left lobe a black lump of radius 3 touches, and (``with_blue``) a blue heart the lump
    touches on its other side: one component, whose black part is the heart and the lump with a neck between."""
    objects = (SceneObject("heart", "blue", "solid", "large", 2, 14),) if with_blue else ()
    pixels = np.asarray(render(Scene((*objects, SceneObject("heart", "black", "solid", "large", 24, 14))))).copy()
    rows, cols = np.mgrid[:48, :48]
    pixels[(rows - 18) ** 2 + (cols - 20) ** 2 <= 9] = COLORS["black"]
    return Image.fromarray(pixels)


def test_a_lump_beside_a_clear_object_of_another_colour_does_not_hide_a_clear_object() -> None:
    """Batch 4 of the eye labels: a blue heart with a dark lobe touching a black heart. The black part is the black
    heart and the lobe; its neck split leaves a clear heart and a lump that is no shape, and oracle v7 refused the
    split, so the black heart was not read. The lump borders the clear blue heart, so v8 takes it for a shade of
    that heart and keeps the black one; with no clear object beside it the lump still keeps the blob unread."""
    image = _lump_between_hearts(with_blue=True)
    foreground = np.any(np.asarray(image) != BACKGROUND, axis=-1)
    assert ndimage.label(foreground, structure=np.ones((3, 3)))[1] == 1  # one component
    readings = [r for r in read_objects(image) if r.score > 0.3]
    assert sorted((r.shape, r.color) for r in readings) == [("heart", "black"), ("heart", "blue")], readings
    assert min(r.score for r in readings) > 0.9
    black = next(r for r in readings if r.color == "black")
    assert black.box[0] >= 23  # the black heart alone (it starts at column 24), not the lump
    assert [r for r in read_objects(_lump_between_hearts(with_blue=False)) if r.score > 0.3] == []


def _tinted_hole(weight: float, size: str = "small", shape: str = "ring") -> Image.Image:
    """``shape`` drawn in pink with a ring's hole filled with pink blended into the background at ``weight``: at
    0.55, the half-filled hole generated rings often show (a person still sees the dimmer centre as the hole)."""
    scene = one(shape, "pink", size=size)
    pixels = np.asarray(render(scene)).astype(np.float32)
    (ring,) = object_masks(one("ring", "pink", size=size))
    hole = ndimage.binary_fill_holes(ring) & ~ring
    pixels[hole] = np.array(BACKGROUND) + weight * (np.array(COLORS["pink"]) - np.array(BACKGROUND))
    return Image.fromarray(pixels.round().astype(np.uint8))


@pytest.mark.parametrize("size", tuple(SIZES))
def test_a_ring_whose_hole_is_half_filled_with_a_tint_is_still_a_ring(size: str, monkeypatch) -> None:
    image = _tinted_hole(0.55, size)
    (reading,) = read_objects(image)
    assert reading.shape == "ring" and reading.score > 0.9, reading
    # Without the second, tighter cut the tinted hole is body and the ring reads as a circle (oracle v3's miss).
    monkeypatch.setattr("harness.builtin.oracle.HOLE_CUT", 1.01)
    assert read_objects(image)[0].shape == "circle"


@pytest.mark.parametrize("size", tuple(SIZES))
def test_a_circle_whose_centre_is_only_a_little_dimmer_stays_a_circle(size: str) -> None:
    (reading,) = read_objects(_tinted_hole(0.8, size, shape="circle"))
    assert reading.shape == "circle" and reading.score > 0.9, reading


@pytest.mark.parametrize("blur", [0.0, 0.8])
@pytest.mark.parametrize(("size", "dy"), [("large", 10), ("small", 6)])
def test_rings_merged_into_one_silhouette_are_read_by_their_holes(size: str, dy: int, blur: float) -> None:
    """Two rings of one colour overlapping by a third of their side, one above the other: the filled silhouette
    does not narrow between them, so no neck splits it, but it keeps both holes and a person counts two rings.
    Oracle v8 read the large pair as nothing (taller than any object) and the small one as a circle at 0.58."""
    image = _pair("ring", size, 0, dy)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    foreground = np.sqrt(((np.asarray(image, dtype=np.float32) - BACKGROUND) ** 2).sum(-1)) > 60
    assert len(instance_seeds(foreground)) == 1 and len(split_rings(foreground)) == 2
    readings = [r for r in read_objects(image) if r.score > 0.3]
    assert [r.shape for r in readings] == ["ring", "ring"] and min(r.score for r in readings) > 0.9, readings
    # Boxes are the visible parts: the cut through the overlap moves the covered edge by up to half the overlap.
    assert sorted(r.box[1] for r in readings) == pytest.approx([10, 10 + dy], abs=(SIZES[size] - dy + 1) / 2 + 1)


@pytest.mark.parametrize("size", tuple(SIZES))
def test_a_ring_whose_hole_a_bar_cuts_in_two_stays_one_ring(size: str) -> None:
    """Two holes are two rings only where each piece around a hole reads as a clear ring: the halves of one ring
    crossed by a bar are none, so it stays one ring."""
    side = SIZES[size]
    pixels = np.asarray(render(one("ring", size=size, x=14, y=12))).copy()
    pixels[12 : 12 + side, 14 + side // 2] = COLORS["red"]
    foreground = np.any(pixels != BACKGROUND, axis=-1)
    assert len(split_rings(foreground)) == 2
    readings = [r for r in read_objects(Image.fromarray(pixels)) if r.score > 0.3]
    assert [r.shape for r in readings] == ["ring"], readings


# Batch 6's pink ring (eye labels, index 229) cut at half its contrast: drawn taller than wide with a narrow,
# off-centre hole.
_OVAL_RING = """
...####....
.########..
.########..
####..####.
###...####.
###...####.
###...#####
####..####.
#####.####.
.####.####.
.####.####.
.#########.
..########.
...#####...
"""


def _painted(mask: np.ndarray, color: str = "pink") -> Image.Image:
    pixels = np.empty((48, 48, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    pixels[10 : 10 + mask.shape[0], 12 : 12 + mask.shape[1]][mask] = COLORS[color]
    return Image.fromarray(pixels)


def _oval_ring(side: int, width: int) -> np.ndarray:
    """The renderer's ring of ``side`` squeezed to ``width`` columns (box-averaged, cut at half)."""
    ring = Image.fromarray(shape_mask("ring", side).astype(np.uint8) * 255)
    return np.asarray(ring.resize((width, side), Image.Resampling.BOX)) >= 128


@pytest.mark.parametrize(("mask", "needs_square"), [
    (np.array([[c == "#" for c in row] for row in _OVAL_RING.split()]), True),
    (_oval_ring(SIZES["large"], 9), True),
    (_oval_ring(SIZES["small"], 6), False),
], ids=["batch6-229", "large-16x9", "small-10x6"])
def test_an_oval_ring_is_read_as_a_ring(mask: np.ndarray, needs_square: bool, monkeypatch) -> None:
    """Only a ring has a hole, so a holed object with a box that is not square is also read scaled square (v10):
    batch 6's tall pink ring and a renderer's ring squeezed beyond the templates' stretch read as rings. Without
    the squared view (oracle v9) they read as a circle or a diamond, below 0.85; since v17 the small squeezed ring
    reads as a ring unsquared too, its ring fit being full on the small objects' ramp (SMALL_FIT_RAMP)."""
    (reading,) = read_objects(_painted(mask))
    assert reading.shape == "ring" and reading.score > 0.99, reading
    monkeypatch.setattr("harness.builtin.oracle._squared", lambda solid: solid)
    (before,) = read_objects(_painted(mask))
    assert (before.shape != "ring" or before.score < 0.85) == needs_square, before


def test_a_small_object_reaches_full_fit_sooner() -> None:
    """v17: a small object's blurred edge is a larger share of its area, so its fit ramps to 1 by SMALL_FIT_RAMP's
    0.76 rather than FIT_RAMP's 0.80; the zero is shared, so a ragged small blob scores no higher."""
    assert SMALL_FIT_RAMP[0] == FIT_RAMP[0] and SMALL_FIT_RAMP[1] < FIT_RAMP[1]
    clear = dict(distinct=2.0, coherence=1.0, strength=1.0)
    # fit 0.78: (0.78 - 0.68) / 0.12 = 0.833 for a large object, full for a small one (times the tie break)
    assert confidence(0.78, **clear) == pytest.approx(0.1 / 0.12 * (1 - 0.02 * 0.22))
    assert confidence(0.78, **clear, small=True) == pytest.approx(1 - 0.02 * 0.22)
    # halfway up the small ramp, 0.72: (0.72 - 0.68) / 0.08 = 0.5
    assert confidence(0.72, **clear, small=True) == pytest.approx(0.5 * (1 - 0.02 * 0.28))
    for fit in (0.5, 0.68):
        assert confidence(fit, **clear, small=True) == confidence(fit, **clear) == 0.0
    assert confidence(0.85, **clear, small=True) == confidence(0.85, **clear)


def test_a_clean_small_object_reaches_full_distinctness_sooner() -> None:
    """v18: a small object fitting its shape at least CLEAN_SMALL_FIT scores its distinctness on the higher of
    DISTINCT_RAMP (1.0, 1.2) and CLEAN_SMALL_DISTINCT_RAMP (1.03, 1.14); a ragged one (fit below it) and a large one
    keep DISTINCT_RAMP, and no score falls. Hand-computed cases."""
    assert (CLEAN_SMALL_FIT, CLEAN_SMALL_DISTINCT_RAMP, DISTINCT_RAMP) == (0.9, (1.03, 1.14), (1.0, 1.2))
    # batch 18 index 145's small red circle: fit 0.93, d 1.162 -> full on the clean ramp, 0.81 on DISTINCT_RAMP
    assert distinct_score(1.162, 0.93, small=True) == 1.0
    assert distinct_score(1.162, 0.93) == pytest.approx(0.81)
    assert distinct_score(1.162, 0.89, small=True) == pytest.approx(0.81)
    # d 1.10: (1.10 - 1.03) / 0.11 = 0.636 against (1.10 - 1.0) / 0.2 = 0.5
    assert distinct_score(1.10, 0.95, small=True) == pytest.approx(0.07 / 0.11)
    # below d 1.0667 DISTINCT_RAMP is the higher: the 0.3 point stays at d 1.06, and a tie still scores 0
    assert distinct_score(1.06, 0.95, small=True) == pytest.approx(0.3)
    assert distinct_score(1.0, 0.95, small=True) == 0.0
    for d in np.linspace(0.95, 1.3, 36):
        assert distinct_score(d, 0.95, small=True) >= distinct_score(d, 0.95)
    # it enters confidence only for a settled small score
    clear = dict(coherence=1.0, strength=1.0)
    assert confidence(0.93, 1.162, **clear, small=True) == pytest.approx(1 - 0.02 * 0.07)
    assert confidence(0.93, 1.162, **clear) == pytest.approx(0.81 * (1 - 0.02 * 0.07))


def test_the_settled_score_is_reported_only_after_the_objects_are_settled() -> None:
    """v17: cuts, groupings and splits are decided on FIT_RAMP scores (ObjectReading.score while reading); the
    reading that comes out carries its settled score (a small object's on SMALL_FIT_RAMP) instead."""
    mask = np.zeros((48, 48), dtype=bool)
    mask[10:18, 10:18] = True
    while_reading = ObjectReading("triangle", 0.86, (10.0, 10.0, 17.0, 17.0), mask, "purple", "striped", "small",
                                  settled_score=0.996)
    settled = _settle(while_reading)
    assert settled.score == 0.996
    assert (settled.shape, settled.box, settled.size) == ("triangle", while_reading.box, "small")
    plain = ObjectReading("circle", 0.5, (10.0, 10.0, 17.0, 17.0), mask, "red", "solid", "large")
    assert _settle(plain) is plain
