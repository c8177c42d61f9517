"""The oracle's template matching: the pruned, product-based fit search gives v5's fits bit for bit, and its on-disk
template cache reads templates back bit for bit, while a file that is corrupt, tampered with or written for other
parameters is rebuilt, never trusted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from harness.builtin import oracle
from harness.builtin.oracle import (
    MATCH_PAD,
    _bridge_soft,
    _coverage,
    _load_table,
    _read_table,
    _shape_fits,
    _template_bank,
    _template_sizes,
    bridge_rows,
)
from harness.builtin.world import SHAPES


def _v5_fits(alpha: np.ndarray, templates: np.ndarray, template_sums: np.ndarray, smallest: tuple[int, int],
             hidden: np.ndarray | None) -> np.ndarray:
    """Oracle v5's search, written out plainly: every template's IoU at every offset as one [P*Q, C, K] minimum
    summed over its last axis, 256 templates at a time, then the best per shape."""
    th, tw = templates.shape[-2:]
    height, width = alpha.shape[-2:]
    alpha = np.pad(alpha, ((0, 0), (0, th - 1), (0, tw - 1)))
    rows, cols = max(height - smallest[0] + 1, 1), max(width - smallest[1] + 1, 1)
    windows = np.lib.stride_tricks.sliding_window_view(alpha, (th, tw), axis=(-2, -1))[:, :rows, :cols]
    visible = None
    if hidden is not None:
        seen = np.pad(~hidden, ((0, th - 1), (0, tw - 1)), constant_values=True).astype(np.float32)
        visible = np.lib.stride_tricks.sliding_window_view(seen, (th, tw))[:rows, :cols].reshape(-1, th * tw)
    total = alpha.sum((-2, -1))
    best = np.zeros(templates.shape[:2], dtype=np.float32)
    for m in range(alpha.shape[0]):
        flat = windows[m].reshape(-1, th * tw)
        for start in range(0, templates.shape[1], 256):
            chunk = templates[m, start : start + 256].reshape(-1, th * tw)
            inter = np.minimum(flat[:, None, :], chunk[None, :, :]).sum(-1)
            sums = template_sums[m, start : start + 256][None, :] if visible is None else visible @ chunk.T
            union = total[m] + sums - inter
            best[m, start : start + 256] = (inter / np.maximum(union, 1e-6)).max(0)
    return best.max(0).reshape(-1, len(SHAPES)).max(0)


@pytest.mark.parametrize("case", range(8))
def test_fits_are_v5s_bit_for_bit(case: int) -> None:
    """Soft masks of arbitrary floats: a shape's own half-pixel template with noise, so the soft fit is the one that
    wins and pruning has to keep it; half blurred, noisy hard masks; half partly hidden by a neighbour."""
    rng = np.random.default_rng(case)
    index = case % len(SHAPES)
    size = (int(rng.integers(20, 34)), int(rng.integers(20, 34)), case % 2, case // 2 % 2)
    template = _coverage(*size)[0][index]
    reach = case % 2 * 3
    pad = MATCH_PAD + reach
    hard = bridge_rows((template >= 0.5) ^ (rng.random(template.shape) < 0.08))
    noise = rng.normal(0, 0.03, template.shape) if case < 4 else ndimage.gaussian_filter(template, 0.5) - template
    soft = _bridge_soft(np.pad(np.clip(template + noise, 0, 1), pad).astype(np.float32))
    hidden = (rng.random(soft.shape) < 0.1) if reach else None
    padded = np.pad(hard, pad).astype(np.float32)
    bank, sums, smallest = _template_bank(*hard.shape)
    alpha = np.stack([soft, padded])
    ours, theirs = _shape_fits(alpha, bank, sums, smallest, hidden), _v5_fits(alpha, bank, sums, smallest, hidden)
    assert ours.tobytes() == theirs.tobytes()
    if hidden is None:  # the soft fit wins (hidden pixels can lift a hard fit above 1, beyond any soft one)
        assert theirs[index] > _v5_fits(alpha[1:], bank[1:], sums[1:], smallest, hidden)[index]
    # A hard mask as the soft one too (a ring read at its tight cut) takes the exact product for both.
    binary = np.stack([padded, padded])
    assert _shape_fits(binary, bank, sums, smallest, hidden).tobytes() == _v5_fits(
        binary, bank, sums, smallest, hidden).tobytes()


SIZES = _template_sizes(8, 7)[:12]  # a whole side (the renderer's own masks), half-pixel sizes and offsets


def _same_as_computed(entries: dict) -> bool:
    return sorted(entries) == sorted(SIZES) and all(
        all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(entries[size], _coverage(*size)))
        for size in SIZES
    )


def test_templates_are_stored_and_read_back_bit_for_bit(tmp_path: Path) -> None:
    path = tmp_path / "templates.npz"
    assert _same_as_computed(_load_table(path, "key", SIZES)) and path.exists()
    entries = _read_table(path, "key", SIZES)
    assert entries is not None and _same_as_computed(entries)
    assert not list(tmp_path.glob("*.tmp"))  # written through a temp file that was renamed


def _tamper(path: Path, **changes: np.ndarray) -> None:
    with np.load(path) as stored:
        payload = {name: stored[name] for name in stored.files}
    payload.update(changes)
    with path.open("wb") as handle:
        np.savez(handle, **payload)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped pixel", "other key", "other sizes"])
def test_a_damaged_or_stale_file_is_rebuilt_not_trusted(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "templates.npz"
    _load_table(path, "key", SIZES)
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "flipped pixel":
        with np.load(path) as stored:
            hard = stored["hard"].copy()
        hard[np.flatnonzero(hard)[0]] = 0  # the digest no longer matches the contents
        _tamper(path, hard=hard)
    elif damage == "other key":
        _tamper(path, key=np.array("another oracle version"))
    else:
        _tamper(path, sizes=np.array(SIZES[:-1], dtype=np.int16))
    assert _read_table(path, "key", SIZES) is None
    assert _same_as_computed(_load_table(path, "key", SIZES))
    assert _read_table(path, "key", SIZES) is not None  # and the rebuilt file is trusted again


def test_a_file_whose_templates_disagree_with_the_renderer_is_not_trusted(tmp_path: Path) -> None:
    """A consistent file (digest recomputed) whose whole-side masks are not the renderer's: stale code, same key."""
    path = tmp_path / "templates.npz"
    _load_table(path, "key", SIZES)
    with np.load(path) as stored:
        sizes, soft, hard = stored["sizes"], stored["soft"], 1 - stored["hard"]
    _tamper(path, hard=hard, digest=np.array(oracle._payload_digest(sizes, soft, hard, "key")))
    assert _read_table(path, "key", SIZES) is None


def test_the_cache_lives_under_harness_cache_and_its_name_carries_the_version(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    assert oracle._cache_root() == tmp_path / "oracle"
    assert len(oracle._table_key()) == 16
