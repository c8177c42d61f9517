"""Draw builtin scenes to RGB pixels, without anti-aliasing so every pixel is an exact palette colour."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from harness.builtin.world import BACKGROUND, COLORS, Scene, stripe_color

STRIPE_PERIOD = 6  # rows: 4 of the object's colour, then 2 of the stripe colour
STRIPE_WIDTH = 2


SUPERSAMPLE = 8


def _polygon(points: list[tuple[float, float]], n: int) -> np.ndarray:
    img = Image.new("L", (n, n), 0)
    ImageDraw.Draw(img).polygon([(x * n, y * n) for x, y in points], fill=1)
    return np.asarray(img, dtype=bool)


def _star_points(k: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    pts = []
    for i in range(2 * k):
        r = 0.5 if i % 2 == 0 else 0.5 * inner
        a = -math.pi / 2 + i * math.pi / k
        pts.append((0.5 + r * math.cos(a), 0.5 + r * math.sin(a)))
    return pts


def _silhouette(shape: str, n: int) -> np.ndarray:
    """High-resolution silhouette of ``shape`` in an n x n grid (coordinates u, v in [-1, 1])."""
    v, u = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1
    if shape == "circle":
        return u**2 + v**2 <= 1
    if shape == "square":
        return np.ones((n, n), dtype=bool)
    if shape == "triangle":
        return _polygon([(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)], n)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    if shape == "star":
        return _polygon(_star_points(), n)
    if shape == "cross":
        return (np.abs(u) <= 1 / 3) | (np.abs(v) <= 1 / 3)
    if shape == "heart":
        x, y = u * 1.25, -v * 1.25 + 0.2  # implicit heart (x^2 + y^2 - 1)^3 <= x^2 y^3, lobes up
        return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
    if shape == "ring":
        r2 = u**2 + v**2
        return (r2 <= 1) & (r2 >= 0.45**2)
    raise ValueError(f"unknown builtin shape {shape!r}")


@lru_cache(maxsize=256)
def shape_mask(shape: str, n: int) -> np.ndarray:
    """Boolean n x n mask of ``shape`` filling its box: supersampled, cropped to the silhouette, area-averaged."""
    hi = _silhouette(shape, n * SUPERSAMPLE)
    rows, cols = np.flatnonzero(hi.any(1)), np.flatnonzero(hi.any(0))
    hi = hi[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    img = Image.fromarray(hi.astype(np.uint8) * 255).resize((n, n), Image.Resampling.BOX)
    mask = np.asarray(img) >= 128
    mask.setflags(write=False)
    return mask


def object_masks(scene: Scene) -> list[np.ndarray]:
    """Full-canvas boolean mask of each object, in scene order."""
    masks = []
    for obj in scene.objects:
        full = np.zeros((scene.canvas, scene.canvas), dtype=bool)
        full[obj.y : obj.y + obj.side, obj.x : obj.x + obj.side] = shape_mask(obj.shape, obj.side)
        masks.append(full)
    return masks


def render(scene: Scene) -> Image.Image:
    """The scene as a ``canvas x canvas`` RGB image."""
    pixels = np.empty((scene.canvas, scene.canvas, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    for obj, mask in zip(scene.objects, object_masks(scene)):
        pixels[mask] = COLORS[obj.color]
        if obj.texture == "striped":
            rows = (np.arange(scene.canvas) - obj.y) % STRIPE_PERIOD >= STRIPE_PERIOD - STRIPE_WIDTH
            pixels[mask & rows[:, None]] = stripe_color(obj.color)
    return Image.fromarray(pixels, "RGB")
