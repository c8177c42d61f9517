"""Oracle perception for the builtin world: reads objects back from *pixels* with classical vision.

It never sees the scene spec, so it scores generated images exactly as it scores renders. One code path,
:func:`read_objects`, finds every object with its shape, colour, texture and size; :class:`OracleDetector` and
:class:`OracleColorClassifier` expose it through the perception protocols that benchmarks score with.

Pipeline: foreground = pixels far from the background grey; 8-connected components (clean renders keep
``world.GAP`` free pixels between objects, so objects never merge); components smaller than ``MIN_AREA`` are noise
and dropped; each component's mask is compared with every shape's template (``render.shape_mask``, cropped to its
silhouette) at the component's scale, with no hole filling beyond gaps a stripe tall (:func:`bridge_rows`), so a ring
keeps its hole; colour and texture come from per-pixel palette votes and the row periodicity of stripe-coloured
pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image
from scipy import ndimage

from harness.builtin.render import STRIPE_PERIOD, STRIPE_WIDTH, shape_mask
from harness.builtin.world import BACKGROUND, COLORS, SHAPES, SIZES, stripe_color
from harness.errors import HarnessError
from harness.perception.base import Detections

VERSION = "1"

_BACKGROUND = np.array(BACKGROUND, dtype=np.float32)
# GenEval composites each object through its mask onto #999999 before classifying the crop's colour.
_CROP_FILL = np.array((153, 153, 153), dtype=np.float32)
# Half the weakest contrast between a palette colour and the background (purple, ~116): a pixel half-way between
# an object and the background, as a blurred edge gives, still counts as the object.
FOREGROUND_DISTANCE = 0.5 * min(float(np.linalg.norm(np.array(c) - _BACKGROUND)) for c in COLORS.values())
# About a quarter of the smallest clean object (a small star, 38 px): anything smaller is speckle.
MIN_AREA = 9
# Sizes are told apart by the box side, halfway between the two sizes the world draws.
SIZE_SPLIT = (SIZES["small"] + SIZES["large"]) / 2
# Score ramps, each (value giving 0, value giving 1); see OracleDetector.
FIT_RAMP = (0.55, 0.95)  # IoU with the best shape template
MARGIN_RAMP = (0.0, 0.1)  # lead of that IoU over the runner-up shape's
COHERENCE_RAMP = (0.5, 0.9)  # share of the two leading palette colours
STRENGTH_RAMP = (0.45, 0.75)  # mean blend weight of the object's pixels (see unmix)

_PALETTE_NAMES: tuple[str, ...] = tuple(COLORS)
_STRIPE_NAME: dict[str, str] = {name: next(k for k, v in COLORS.items() if v == stripe_color(name)) for name in COLORS}
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class ObjectReading:
    """One object read from an image.

    ``box`` is GenEval-compatible and pixel-inclusive: (x1, y1, x2, y2) are the first and last columns and rows the
    object covers, so its side is ``x2 - x1 + 1`` (the convention of ``SceneObject.box``). ``mask`` is full-canvas.
    """

    shape: str
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray
    color: str
    texture: str
    size: str

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


def bridge_rows(mask: np.ndarray) -> np.ndarray:
    """Close vertical gaps of up to ``STRIPE_WIDTH`` rows: the only hole filling the oracle does.

    Blur mixes a black object's white stripes towards the background grey, so they drop out of the foreground and
    cut the object into bands. Bridging short vertical gaps restores it while a ring's hole, taller than a stripe,
    survives; templates are bridged the same way so clean renders still match exactly.
    """
    pad = ((STRIPE_WIDTH, STRIPE_WIDTH), (0, 0))
    closed = ndimage.binary_closing(np.pad(mask, pad), structure=np.ones((STRIPE_WIDTH + 1, 1), dtype=bool))
    return closed[STRIPE_WIDTH:-STRIPE_WIDTH]


@cache
def _template(shape: str, n: int) -> np.ndarray:
    """``shape_mask(shape, n)`` cropped to its silhouette, as a component's tight box crops the rendered object."""
    mask = shape_mask(shape, n)
    if not mask.any():  # a star vanishes below a few pixels
        return mask
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return bridge_rows(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])


def _best_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Highest IoU of two masks over every relative offset that keeps one inside the other's span on each axis."""
    (ha, wa), (hb, wb) = a.shape, b.shape
    total = int(a.sum()) + int(b.sum())
    best = 0
    for dy in range(min(0, ha - hb), max(0, ha - hb) + 1):  # b's top relative to a's top
        for dx in range(min(0, wa - wb), max(0, wa - wb) + 1):
            ya, xa, yb, xb = max(dy, 0), max(dx, 0), max(-dy, 0), max(-dx, 0)
            h, w = min(ha - ya, hb - yb), min(wa - xa, wb - xb)
            best = max(best, int(np.count_nonzero(a[ya : ya + h, xa : xa + w] & b[yb : yb + h, xb : xb + w])))
    return best / (total - best)


@cache
def _scales(shape: str, h: int, w: int) -> tuple[int, ...]:
    """Template sides worth trying for an h x w box: those whose tight box is within a pixel of it (or the nearest).

    A template's tight box can be up to two pixels smaller than its side (a star's tips vanish at some sizes).
    """
    side = max(h, w)
    gap = {
        n: max(abs(_template(shape, n).shape[0] - h), abs(_template(shape, n).shape[1] - w))
        for n in range(max(side - 1, 1), side + 3)
    }
    return tuple(n for n, g in gap.items() if g <= max(min(gap.values()), 1))


def match_shape(mask: np.ndarray) -> tuple[str, float, float]:
    """(best shape, its IoU, the runner-up shape's IoU) for a row-bridged mask cropped to its tight box.

    Each shape is tried at the template sides whose tight box fits the mask's to a pixel, so a clean render
    matches its own template exactly (IoU 1) and a shape grown or shrunk by a pixel still finds its scale.
    """
    ious = sorted(
        ((max(_best_iou(mask, _template(s, n)) for n in _scales(s, *mask.shape)), s) for s in SHAPES), reverse=True
    )
    return ious[0][1], ious[0][0], ious[1][0]


def _ramp(x: float, ramp: tuple[float, float]) -> float:
    zero, full = ramp
    return float(min(max((x - zero) / (full - zero), 0.0), 1.0))


def unmix(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of an [N, 3] array, the palette colour whose blend with the background comes nearest, and
    the blend weight in [0, 1] (1 = pure palette colour).

    Plain nearest-colour voting calls a blurred red edge, half red and half grey, brown; seen as a blend it is red
    at weight 0.5. The palette's colours stay > 65 RGB units from every other colour's blend line, so noise does
    not confuse them.
    """
    direction = palette - _BACKGROUND
    offset = pixels - _BACKGROUND
    weight = np.clip(offset @ direction.T / (direction**2).sum(1), 0.0, 1.0)
    residual = ((offset[:, None, :] - weight[..., None] * direction) ** 2).sum(-1)
    index = residual.argmin(1)
    return index, weight[np.arange(len(index)), index]


def _is_striped(labels: np.ndarray, stripe: int) -> bool:
    """Whether pixels labelled ``stripe`` fill the stripe rows of some phase and stay out of the rows between.

    Stripes are ``STRIPE_WIDTH`` rows out of every ``STRIPE_PERIOD``; the phase is searched because a component's
    box need not start where the renderer's stripe pattern does.
    """
    counts = (labels >= 0).sum(1)
    rows = np.flatnonzero(counts)
    share = (labels[rows] == stripe).sum(1) / counts[rows]
    for phase in range(STRIPE_PERIOD):
        on = (rows + phase) % STRIPE_PERIOD < STRIPE_WIDTH
        if on.any() and (~on).any() and share[on].mean() >= 0.5 and share[~on].mean() <= 0.2:
            return True
    return False


def color_and_texture(labels: np.ndarray, names: tuple[str, ...]) -> tuple[str, str, float]:
    """(base colour, texture, coherence) from a grid of palette indices into ``names`` (-1 = not the object).

    Stripes cover at most 37% of a clean object (a small star), but on a generated image wide stripe rows over a
    thin body can outnumber the base colour, so each of the two leading colours is tried as the base and the first
    whose stripe colour (white, or black on white) is row-periodic wins; otherwise the object is solid in the
    leading colour. Coherence, the share of the two leading colours, is near 1 for any painted object and low for
    noise.
    """
    votes = np.bincount(labels[labels >= 0], minlength=len(names))
    order = np.argsort(-votes, kind="stable")
    total = max(int(votes.sum()), 1)
    coherence = float(votes[order[:2]].sum()) / total
    for base in order[:2]:
        stripe = _STRIPE_NAME[names[base]]
        if votes[base] and stripe in names and _is_striped(labels, names.index(stripe)):
            return names[base], "striped", coherence
    return names[order[0]], "solid", coherence


def _palette(names: tuple[str, ...]) -> np.ndarray:
    unknown = [n for n in names if n not in COLORS]
    if unknown:
        raise HarnessError(f"the builtin world has no colour {unknown}; use some of {list(COLORS)}")
    return np.array([COLORS[n] for n in names], dtype=np.float32)


_FULL_PALETTE = _palette(_PALETTE_NAMES)


def read_objects(image: Image.Image) -> list[ObjectReading]:
    """Every object in ``image``, highest score first (see :class:`OracleDetector` for the score)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    contrast = np.sqrt(((pixels - _BACKGROUND) ** 2).sum(-1))
    foreground = contrast > FOREGROUND_DISTANCE
    components, _ = ndimage.label(foreground, structure=_EIGHT_CONNECTED)
    labels = np.full(foreground.shape, -1, dtype=np.int64)
    weights = np.zeros(foreground.shape, dtype=np.float32)
    labels[foreground], weights[foreground] = unmix(pixels[foreground], _FULL_PALETTE)
    readings = []
    for index, window in enumerate(ndimage.find_objects(components), start=1):
        own = components[window] == index
        if own.sum() < MIN_AREA:
            continue
        # Cut each object at half its own contrast: a blurred black edge (contrast 260) is far above the global
        # threshold, which is set for the faintest colour, and would grow the mask by a pixel all round.
        own &= contrast[window] > max(FOREGROUND_DISTANCE, 0.5 * float(np.quantile(contrast[window][own], 0.9)))
        rows, cols = np.flatnonzero(own.any(1)), np.flatnonzero(own.any(0))
        window = (
            slice(window[0].start + rows[0], window[0].start + rows[-1] + 1),
            slice(window[1].start + cols[0], window[1].start + cols[-1] + 1),
        )
        own = own[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        if own.sum() < MIN_AREA:
            continue
        solid = bridge_rows(own)
        shape, iou, runner_up = match_shape(solid)
        color, texture, coherence = color_and_texture(np.where(own, labels[window], -1), _PALETTE_NAMES)
        score = (
            _ramp(iou, FIT_RAMP)
            * _ramp(iou - runner_up, MARGIN_RAMP)
            * _ramp(coherence, COHERENCE_RAMP)
            * _ramp(float(weights[window][own].mean()), STRENGTH_RAMP)
        )
        mask = np.zeros(foreground.shape, dtype=bool)
        mask[window] = solid
        rows, cols = window
        box = (float(cols.start), float(rows.start), float(cols.stop - 1), float(rows.stop - 1))
        size = "large" if max(solid.shape) >= SIZE_SPLIT else "small"
        readings.append(ObjectReading(shape, score, box, mask, color, texture, size))
    readings.sort(key=lambda r: -r.score)
    return readings


class OracleDetector:
    """``Detector`` over the builtin shapes, backed by :func:`read_objects`.

    Boxes are pixel-inclusive (x1, y1, x2, y2), as GenEval's ``compute_iou`` assumes. The score is the product of
    four linear ramps, each clipped to [0, 1] (the ``*_RAMP`` constants give the values mapped to 0 and 1):

    * fit: IoU with the best shape template, 0 at 0.55, 1 from 0.95;
    * distinctiveness: that IoU's lead over the runner-up shape, 1 from 0.1 (clean shapes lead by >= 0.1 at
      sides >= 7; below that, templates coincide and a speckle would match them all);
    * coherence: the share of the two leading palette colours (base and stripe), 0 at 0.5, 1 from 0.9, so noise
      blobs that happen to have a plausible outline score 0;
    * strength: the mean blend weight of the object's pixels against the background (:func:`unmix`), 0 at 0.45,
      1 from 0.75. Soft edges (anti-aliasing, a blur of ~0.6 px) keep most of it; a shape washed out by heavy blur,
      whose half-contrast mask turns convex and would match a circle or diamond, and a faint, greyish object lose
      it. Hue does not matter: an off-palette but saturated colour still blends at weight ~0.9.

    A clean render scores 1. A shape off its template by a few pixels falls below GenEval's counting threshold
    0.9 (fit < 0.91 IoU); a blob as far from its best template as one clean shape is from another (IoU ~0.8) scores
    about 0.6; merged or broken blobs and noise score below 0.3.
    """

    name = "oracle"
    version = VERSION
    classes = SHAPES

    def detect(self, images: list[Image.Image]) -> list[Detections]:
        out = []
        for image in images:
            readings = read_objects(image)
            if not readings:
                out.append(Detections.empty(image.height, image.width))
                continue
            out.append(
                Detections(
                    boxes=np.array([r.box for r in readings], dtype=np.float32),
                    scores=np.array([r.score for r in readings], dtype=np.float32),
                    labels=[r.shape for r in readings],
                    masks=np.stack([r.mask for r in readings]),
                )
            )
        return out


class OracleColorClassifier:
    """``ColorClassifier`` for GenEval-style crops: object pixels on #999999, cut to the box.

    Pixels near the #999999 fill or the background grey are ignored; the rest vote for their colour among
    ``colors`` (:func:`unmix`), and a striped object still gets its base colour (:func:`color_and_texture`).
    ``class_names`` only matters to CLIP's prompts and is unused here.
    """

    name = "oracle"
    version = VERSION

    def classify(self, crops: list[Image.Image], class_names: list[str], colors: list[str]) -> list[str]:
        names = tuple(colors)
        palette = _palette(names)
        out = []
        for crop in crops:
            pixels = np.asarray(crop.convert("RGB"), dtype=np.float32)
            grey = np.minimum(((pixels - _CROP_FILL) ** 2).sum(-1), ((pixels - _BACKGROUND) ** 2).sum(-1))
            labels = unmix(pixels.reshape(-1, 3), palette)[0].reshape(pixels.shape[:2])
            object_pixels = grey > FOREGROUND_DISTANCE**2
            if object_pixels.any():  # a grey object has nothing else to vote with
                labels[~object_pixels] = -1
            out.append(color_and_texture(labels, names)[0])
        return out
