"""Dependency-free SVG charts for the leaderboard: written by hand so the bytes depend only on the numbers (no
plotting library version, font cache or timestamp), which lets ``harness leaderboard check`` compare them exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
          "#64b5cd")


def _n(x: float) -> str:
    return f"{x:.1f}"


def _frame(width: int, height: int, title: str, body: list[str]) -> str:
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>']
    return "\n".join([*head, *body, "</svg>"]) + "\n"


def _y_axis(x0: float, y0: float, h: float, top: float, right: float, body: list[str], label: str,
            bottom: float = 0.0) -> None:
    """Six ticks from ``bottom`` to ``top`` with light grid lines to ``right``, and the rotated axis label."""
    for i in range(6):
        value = bottom + (top - bottom) * i / 5
        y = y0 - h * i / 5
        body.append(f'<line x1="{_n(x0 - 4)}" y1="{_n(y)}" x2="{_n(x0)}" y2="{_n(y)}" stroke="black"/>')
        body.append(f'<text x="{_n(x0 - 6)}" y="{_n(y + 4)}" text-anchor="end">{value:g}</text>')
        if i:
            body.append(f'<line x1="{_n(x0)}" y1="{_n(y)}" x2="{_n(right)}" y2="{_n(y)}" stroke="#eee"/>')
    body.append(f'<line x1="{_n(x0)}" y1="{_n(y0)}" x2="{_n(x0)}" y2="{_n(y0 - h)}" stroke="black"/>')
    body.append(f'<text x="14" y="{_n(y0 - h / 2)}" transform="rotate(-90 14 {_n(y0 - h / 2)})" '
                f'text-anchor="middle">{escape(label)}</text>')


def bar_chart(title: str, groups: list[str], series: list[tuple[str, list[float | None], list[tuple]]],
              top: float, y_label: str) -> str:
    """Grouped bars: one group per score key, one bar per series (a leaderboard row), each with its interval as an
    error bar. ``series`` = [(name, values, intervals)] with intervals [(low, high)] (None: no interval)."""
    n_series = max(1, len(series))
    bar = max(4.0, min(18.0, 120.0 / n_series))
    group_w = max(bar * n_series + 14, 6.5 * max(map(len, groups), default=0) + 12)  # labels must not overlap
    x0, y0, h = 60.0, 250.0, 200.0
    width = int(max(x0 + group_w * len(groups) + 20, 7 * len(title) + 40,
                    x0 + 16 + 6.5 * max((len(name) for name, _, _ in series), default=0) + 20))
    legend_h = 16 * len(series)
    height = int(y0 + 60 + legend_h)
    body: list[str] = []
    _y_axis(x0, y0, h, top, width - 10, body, y_label)
    for g, group in enumerate(groups):
        gx = x0 + 8 + g * group_w
        body.append(f'<text x="{_n(gx + bar * n_series / 2)}" y="{_n(y0 + 14)}" text-anchor="middle">'
                    f'{escape(group)}</text>')
        for s, (_, values, intervals) in enumerate(series):
            value = values[g]
            if value is None or math.isnan(value):
                continue
            x = gx + s * bar
            y = y0 - h * min(value, top) / top
            body.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(bar - 1)}" height="{_n(y0 - y)}" '
                        f'fill="{COLORS[s % len(COLORS)]}"/>')
            interval = intervals[g]
            if interval and None not in interval:
                lo, hi = (y0 - h * min(v, top) / top for v in interval)
                cx = x + (bar - 1) / 2
                body.append(f'<line x1="{_n(cx)}" y1="{_n(lo)}" x2="{_n(cx)}" y2="{_n(hi)}" stroke="black"/>')
                for yy in (lo, hi):
                    body.append(f'<line x1="{_n(cx - 2)}" y1="{_n(yy)}" x2="{_n(cx + 2)}" y2="{_n(yy)}" '
                                'stroke="black"/>')
    _legend([name for name, _, _ in series], x0, y0 + 34, body)
    return _frame(width, height, title, body)


def scatter(title: str, points: list[tuple[str, float, float, tuple | None]], top: float, y_label: str,
            x_label: str) -> str:
    """Score against cost: ``points`` = [(label, x, y, (low, high) or None)], x from 0 to the largest cost."""
    x0, y0, h, w = 60.0, 250.0, 200.0, 420.0
    right = max([p[1] for p in points] + [1.0]) * 1.1
    body: list[str] = []
    _y_axis(x0, y0, h, top, x0 + w, body, y_label)
    _x_axis(x0, y0, w, right, body, x_label)
    for i, (_, cost, score, interval) in enumerate(points):
        x = x0 + w * cost / right
        y = y0 - h * min(score, top) / top
        color = COLORS[i % len(COLORS)]
        if interval and None not in interval:
            lo, hi = (y0 - h * min(v, top) / top for v in interval)
            body.append(f'<line x1="{_n(x)}" y1="{_n(lo)}" x2="{_n(x)}" y2="{_n(hi)}" stroke="{color}"/>')
        body.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="4" fill="{color}"/>')
    _legend([p[0] for p in points], x0, y0 + 48, body)
    return _frame(int(max(x0 + w + 20, 7 * len(title) + 40)), int(y0 + 70 + 16 * len(points)), title, body)


def _x_axis(x0: float, y0: float, w: float, right: float, body: list[str], label: str) -> None:
    """The axis line, five ticks from 0 to ``right`` and (when given) the axis label below them."""
    body.append(f'<line x1="{_n(x0)}" y1="{_n(y0)}" x2="{_n(x0 + w)}" y2="{_n(y0)}" stroke="black"/>')
    for i in range(5):
        value = right * i / 4
        x = x0 + w * i / 4
        body.append(f'<text x="{_n(x)}" y="{_n(y0 + 14)}" text-anchor="middle">{value:.3g}</text>')
    if label:
        body.append(f'<text x="{_n(x0 + w / 2)}" y="{_n(y0 + 30)}" text-anchor="middle">{escape(label)}</text>')


DASHES = ("", "6 3", "2 2", "8 3 2 3", "1 4")  # stroke-dasharray per style: solid, dashed, dotted, dash-dot, sparse


@dataclass
class Line:
    """One polyline: ``ys[i]`` at ``xs[i]``; points whose y is None are left out (the line joins its neighbours)."""

    xs: list[float]
    ys: list[float | None]
    color: str
    dash: str = ""


@dataclass
class Panel:
    """One chart of a stack: its y label and range, and its lines."""

    y_label: str
    bottom: float
    top: float
    lines: list[Line]


def line_panels(title: str, panels: list[Panel], right: float, x_label: str,
                legend: list[tuple[str, str, str]]) -> str:
    """Panels stacked over one x axis from 0 to ``right`` (each panel draws its ticks, the last one the x label),
    each line a single ``<path>``, and one legend of ``(name, color, dash)`` below them."""
    x0, w, h, gap = 60.0, 520.0, 150.0, 40.0
    right = right if right > 0 else 1.0
    body: list[str] = []
    y0 = 30.0 + h
    for p, panel in enumerate(panels):
        span = (panel.top - panel.bottom) or 1.0
        _y_axis(x0, y0, h, panel.top, x0 + w, body, panel.y_label, panel.bottom)
        _x_axis(x0, y0, w, right, body, x_label if p == len(panels) - 1 else "")
        for line in panel.lines:
            points = [(x0 + w * min(x, right) / right, y0 - h * (min(max(y, panel.bottom), panel.top) - panel.bottom)
                       / span) for x, y in zip(line.xs, line.ys) if y is not None and math.isfinite(y)]
            if not points:
                continue
            d = " ".join(f"{'M' if i == 0 else 'L'}{_n(x)},{_n(y)}" for i, (x, y) in enumerate(points))
            dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
            body.append(f'<path d="{d}" fill="none" stroke="{line.color}" stroke-width="1.5"{dash}/>')
        y0 += h + gap
    legend_y = y0 - h - gap + 48  # below the last panel's x label
    for i, (name, color, dash) in enumerate(legend):
        yy = legend_y + 16 * i
        style = f' stroke-dasharray="{dash}"' if dash else ""
        body.append(f'<line x1="{_n(x0)}" y1="{_n(yy - 4)}" x2="{_n(x0 + 24)}" y2="{_n(yy - 4)}" stroke="{color}" '
                    f'stroke-width="2"{style}/>')
        body.append(f'<text x="{_n(x0 + 30)}" y="{_n(yy)}">{escape(name)}</text>')
    width = int(max(x0 + w + 20, 7 * len(title) + 40,
                    x0 + 30 + 6.5 * max((len(name) for name, _, _ in legend), default=0) + 20))
    return _frame(width, int(legend_y + 16 * len(legend) + 10), title, body)


def _legend(names: list[str], x: float, y: float, body: list[str]) -> None:
    for i, name in enumerate(names):
        yy = y + 16 * i
        body.append(f'<rect x="{_n(x)}" y="{_n(yy - 9)}" width="10" height="10" fill="{COLORS[i % len(COLORS)]}"/>')
        body.append(f'<text x="{_n(x + 16)}" y="{_n(yy)}">{escape(name)}</text>')


@dataclass
class Estimate:
    """One row of a forest plot: a mean with its interval, and the values it is the mean of."""

    label: str
    mean: float
    low: float
    high: float
    values: list[float]


def _nice_ticks(lo: float, hi: float) -> list[float]:
    """Ticks at multiples of 1, 2 or 5 x 10^k inside [lo, hi], at most six of them."""
    raw = (hi - lo) / 5
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    first = math.ceil(lo / step)
    return [round(k * step, 12) for k in range(first, math.floor(hi / step) + 1)]


def forest(title: str, rows: list[Estimate], x_label: str) -> str:
    """A forest plot: one row per estimate, its label on the left, the interval as a line with the mean as a dot and
    each value as a small tick; a dashed vertical line at 0 (a Δ's "no change")."""
    label_w = 6.5 * max((len(r.label) for r in rows), default=0) + 16
    x0, w, row_h, y_top = label_w, 360.0, 22.0, 40.0
    numbers = [v for r in rows for v in (r.low, r.high, *r.values) if math.isfinite(v)] + [0.0]
    lo, hi = min(numbers), max(numbers)
    pad = (hi - lo) * 0.05 or 0.01
    lo, hi = lo - pad, hi + pad

    def x_of(value: float) -> float:
        return x0 + w * (value - lo) / (hi - lo)

    body: list[str] = []
    y_end = y_top + row_h * len(rows)
    body.append(f'<line x1="{_n(x_of(0.0))}" y1="{_n(y_top - 6)}" x2="{_n(x_of(0.0))}" y2="{_n(y_end)}" '
                'stroke="#888" stroke-dasharray="4 3"/>')
    for i, row in enumerate(rows):
        y = y_top + row_h * i + row_h / 2
        color = COLORS[i % len(COLORS)]
        body.append(f'<text x="{_n(x0 - 8)}" y="{_n(y + 4)}" text-anchor="end">{escape(row.label)}</text>')
        body.append(f'<line x1="{_n(x_of(row.low))}" y1="{_n(y)}" x2="{_n(x_of(row.high))}" y2="{_n(y)}" '
                    f'stroke="{color}" stroke-width="2"/>')
        for value in row.values:
            body.append(f'<line x1="{_n(x_of(value))}" y1="{_n(y - 5)}" x2="{_n(x_of(value))}" y2="{_n(y + 5)}" '
                        f'stroke="{color}"/>')
        body.append(f'<circle cx="{_n(x_of(row.mean))}" cy="{_n(y)}" r="4" fill="{color}"/>')
    body.append(f'<line x1="{_n(x0)}" y1="{_n(y_end)}" x2="{_n(x0 + w)}" y2="{_n(y_end)}" stroke="black"/>')
    for value in _nice_ticks(lo, hi):
        body.append(f'<line x1="{_n(x_of(value))}" y1="{_n(y_end)}" x2="{_n(x_of(value))}" y2="{_n(y_end + 4)}" '
                    'stroke="black"/>')
        body.append(f'<text x="{_n(x_of(value))}" y="{_n(y_end + 16)}" text-anchor="middle">{value:+g}</text>')
    body.append(f'<text x="{_n(x0 + w / 2)}" y="{_n(y_end + 32)}" text-anchor="middle">{escape(x_label)}</text>')
    return _frame(int(max(x0 + w + 20, 7 * len(title) + 40)), int(y_end + 42), title, body)
