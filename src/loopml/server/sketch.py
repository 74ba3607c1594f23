"""Line charts drawn on the server as inline SVG, so a page shows its metric histories in
its first paint. Plotly, loaded after the page, replaces each with an interactive chart.

Series arrive already bucketed (``Tracker.metric_history(max_points=...)``); a sketch is
at most a few thousand coordinates however long the history.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 34, 30
# Plotly's default colours, so a sketch and the chart that replaces it agree.
COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692")

Scale = Callable[[float], float]


@dataclass(frozen=True)
class Series:
    label: str
    steps: Sequence[int]
    values: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    path: str
    dots: list[tuple[float, float]]
    band: str | None


@dataclass(frozen=True)
class Sketch:
    title: str
    width: int
    height: int
    lines: list[Line]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _label(v: float) -> str:
    return f"{v:.4g}"


def sketch(title: str, series: Sequence[Series]) -> Sketch | None:
    """The SVG geometry of ``series`` on shared axes; None when no point is finite."""
    xs = [float(s) for one in series for s in one.steps]
    ys = [
        float(v)  # type: ignore[arg-type]
        for one in series
        for column in (one.values, one.low or (), one.high or ())
        for v in column
        if _finite(v)
    ]
    if not xs or not ys:
        return None
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if not math.isfinite(y1 - y0):
        return None  # a range beyond float64: only Plotly, once loaded, draws this one
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    lines = []
    for i, one in enumerate(series):
        path, dots = _path(one.steps, one.values, px, py)
        lines.append(Line(one.label, COLOURS[i % len(COLOURS)], path, dots, _band(one, px, py)))
    x_ticks = [(px(x), _label(x)) for x in _ticks(x0, x1, whole=True)]
    y_ticks = [(py(y), _label(y)) for y in _ticks(y0, y1, whole=False)]
    return Sketch(title, WIDTH, HEIGHT, lines, x_ticks, y_ticks, left, right, top, bottom)


def _ticks(lo: float, hi: float, *, whole: bool) -> list[float]:
    """Three to five round values between ``lo`` and ``hi``."""
    raw = (hi - lo) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(1.0, round(step))
    first = math.ceil(lo / step) * step
    count = int((hi - first) // step) + 1
    return [first + k * step for k in range(count)]


def _path(
    steps: Sequence[int], values: Sequence[float | None], px: Scale, py: Scale
) -> tuple[str, list[tuple[float, float]]]:
    """The line through the finite points, and the points with no finite neighbour (a
    line through one point draws nothing, so those get a dot)."""
    segments: list[list[tuple[float, float]]] = [[]]
    for s, v in zip(steps, values, strict=True):
        if v is None or not math.isfinite(v):
            segments.append([])  # a gap where the value was not finite
            continue
        segments[-1].append((px(s), py(v)))
    path = "".join(
        "M" + "L".join(f"{x:.1f} {y:.1f}" for x, y in seg) for seg in segments if len(seg) > 1
    )
    return path, [seg[0] for seg in segments if len(seg) == 1]


def _band(one: Series, px: Scale, py: Scale) -> str | None:
    """The min-max envelope of bucketed points, as one closed outline."""
    if one.low is None or one.high is None:
        return None
    points = [
        (s, float(lo), float(hi))
        for s, lo, hi in zip(one.steps, one.low, one.high, strict=True)
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)
    ]
    if len(points) < 2:
        return None
    upper = [f"{px(s):.1f} {py(hi):.1f}" for s, _, hi in points]
    lower = [f"{px(s):.1f} {py(lo):.1f}" for s, lo, _ in reversed(points)]
    return "M" + "L".join(upper + lower) + "Z"
