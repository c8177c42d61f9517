"""Reading image files made elsewhere (``harness score`` folders) safely and the same way for checking and scoring.

Every image a folder holds is first checked with :func:`image_problem`: the header is read and its declared size
compared with :data:`MAX_PIXELS` *before* any pixel is decoded (a 20000 x 10000 PNG is a few hundred bytes on
disk and gigabytes in memory: a decompression bomb), then it is decoded and its EXIF orientation parsed. A file
that fails is a counted skip with the reason, never a traceback and never a silent "wrong". :func:`read_rgb`
then reads it as the scorers expect: EXIF orientation applied, high-bit-depth modes rescaled, RGB.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# 8192 x 8192: four times a 2x2 grid of 2048-pixel tiles, far above any benchmark image, and below Pillow's own
# warning threshold (89.5 M pixels), above which Pillow would decode with only a warning.
MAX_PIXELS = 8192 * 8192

# Integer greyscale modes whose values span 16 bits (Pillow opens 16-bit greyscale PNGs as I;16, older versions as
# I); a plain convert("RGB") clips them at 255, so almost every pixel reads as white.
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")

# What Pillow raises on a damaged file or EXIF block (struct.error for a truncated TIFF header inside EXIF).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error)


def image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be scored (one line), or None if :func:`read_rgb` will read it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    return (f"declares {width}x{height} pixels, over the limit of {MAX_PIXELS:,} "
                            "(a decompression bomb?): not decoded")
                img.load()
                _oriented(img)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        return f"too many pixels, not decoded ({err})"
    except _DECODE_ERRORS as err:
        return f"unreadable image ({type(err).__name__}: {err})"
    return None


def read_rgb(path: Path) -> Image.Image:
    """The image as the official evaluators read it: EXIF orientation applied, then RGB (16-bit grey rescaled)."""
    with Image.open(path) as img:
        return to_rgb(_oriented(img))


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, mapping a 16-bit greyscale range 0..65535 onto 0..255 (value / 257, so 65535 -> 255 and 257 -> 1)
    instead of clipping it at 255."""
    if img.mode in _SIXTEEN_BIT:
        grey = np.asarray(img, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def _oriented(img: Image.Image) -> Image.Image:
    """EXIF orientation applied; a damaged EXIF block raises (the orientation, hence the layout, is unknown)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pillow warns on truncated EXIF tags it then skips
        return ImageOps.exif_transpose(img)
