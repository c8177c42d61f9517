"""The oracle's fast paths give what the code they replace gives, bit for bit (``tests/test_oracle_identity.py`` checks
whole readings; these check each replacement on its own, on inputs the readings may never meet)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from harness.builtin.oracle import (
    BOUND_MARGIN,
    _bounded_iou,
    _fill_holes,
    _intersection_limits,
    _product,
    _ring_holes,
    _upper_decile,
)


def test_upper_decile_is_numpys_quantile_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for i in range(3000):
        n = int(rng.integers(1, 400))
        if i % 3 == 0:
            values = rng.random(n, dtype=np.float32) * 400
        elif i % 3 == 1:  # contrasts: square roots of integer sums of squares
            values = np.sqrt(rng.integers(0, 200_000, n).astype(np.float32))
        else:  # many ties
            values = rng.choice(np.float32([1.5, 2.25, 100.125, 3e-3]), n)
        want, got = np.quantile(values, 0.9), _upper_decile(values)
        assert type(got) is type(want) and got.tobytes() == want.tobytes(), (n, want, got)


def test_holes_skip_the_labelling_only_where_there_are_none() -> None:
    rng = np.random.default_rng(1)
    ring = np.pad(np.ones((6, 6), dtype=bool), 2)
    ring[4:6, 4:6] = False
    masks = [ring, np.pad(np.ones((5, 5), dtype=bool), 1), np.zeros((4, 4), dtype=bool)]
    for share in (0.4, 0.6, 0.8) * 200:  # random masks, sparse to dense
        masks.append(rng.random((int(rng.integers(1, 14)), int(rng.integers(1, 14)))) < share)
    for mask in masks:
        assert np.array_equal(_fill_holes(mask), ndimage.binary_fill_holes(mask))
        holes, big = _ring_holes(mask)
        filled = ndimage.binary_fill_holes(mask) & ~mask
        assert np.array_equal(holes != 0, filled)
        assert len(big) == sum(int((holes == k).sum()) >= 4 for k in range(1, int(holes.max()) + 1))


def test_products_are_exact_for_masks_against_templates() -> None:
    rng = np.random.default_rng(2)
    rows = (rng.random((40, 300)) < 0.5).astype(np.float32)
    plane = rng.integers(0, 17, (500, 300)).astype(np.float32) / 16
    assert np.array_equal(_product(rows, plane), rows @ plane.T)


def test_pairs_pruned_by_their_limits_are_bounded_by_the_fit() -> None:
    rng = np.random.default_rng(3)
    total = np.float32(150.25)
    sums = (rng.random((30, 200)) * 300).astype(np.float32)
    inter = (rng.random((30, 200)) * 200).astype(np.float32)
    fits = rng.random(200).astype(np.float32)
    pruned = ~(inter > _intersection_limits(total, sums, fits))
    assert pruned.any() and (~pruned).any()
    # A pair is pruned exactly where its bound stays at or below its fit (up to float64 rounding, far inside the
    # bound's margins): the bound is the one the pruning used to take.
    bound = _bounded_iou(inter, total, sums)
    assert (bound[pruned] <= fits[None, :].repeat(30, 0)[pruned] * (1 + 1e-9)).all()
    assert (bound[~pruned] >= fits[None, :].repeat(30, 0)[~pruned] * (1 - 1e-9)).all()
    assert BOUND_MARGIN > 0
