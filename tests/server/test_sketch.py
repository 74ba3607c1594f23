"""Server-drawn charts: the geometry stays in the plot area, gaps and lone points show."""

from __future__ import annotations

import math
import re

from loopml.server import sketch

NUMBER = re.compile(r"-?\d+\.\d")


def coordinates(path: str) -> list[tuple[float, float]]:
    values = [float(v) for v in NUMBER.findall(path)]
    return list(zip(values[::2], values[1::2], strict=True))


def test_a_bucketed_history_draws_its_line_and_envelope_inside_the_plot() -> None:
    steps = list(range(0, 1000, 10))
    values = [1 / (1 + s) for s in steps]
    low = [v - 0.01 for v in values]
    high = [v + 0.5 if s == 500 else v + 0.01 for s, v in zip(steps, values, strict=True)]
    drawn = sketch.sketch("loss", [sketch.Series("loss", steps, values, low, high)])
    assert drawn is not None
    (line,) = drawn.lines
    points = coordinates(line.path)
    assert len(points) == len(steps) and line.band is not None
    for x, y in points + coordinates(line.band):
        assert drawn.plot_left <= x <= drawn.plot_right
        assert drawn.plot_top <= y <= drawn.plot_bottom
    # Step order is left to right; the spike in the envelope reaches the top of the plot.
    assert [x for x, _ in points] == sorted(x for x, _ in points)
    assert min(y for _, y in coordinates(line.band)) == drawn.plot_top
    assert drawn.x_ticks[0][1] == "0"
    ys = [y for y, _ in drawn.y_ticks]
    assert len(ys) >= 3 and ys == sorted(ys, reverse=True)


def test_non_finite_values_leave_gaps_and_lone_points_get_dots() -> None:
    values: list[float | None] = [1.0, 2.0, None, 3.0, None, 4.0, 5.0]
    drawn = sketch.sketch("m", [sketch.Series("m", list(range(7)), values)])
    assert drawn is not None
    (line,) = drawn.lines
    assert line.path.count("M") == 2  # two runs of finite points
    assert len(line.dots) == 1  # the 3.0 between two gaps
    assert line.band is None


def test_several_series_share_the_axes_in_distinct_colours() -> None:
    a = sketch.Series("a", [0, 1, 2], [0.0, 1.0, 2.0])
    b = sketch.Series("b", [0, 1, 2], [10.0, 11.0, 12.0])
    drawn = sketch.sketch("auc", [a, b])
    assert drawn is not None and len({line.colour for line in drawn.lines}) == 2
    top_of_b = min(y for _, y in coordinates(drawn.lines[1].path))
    bottom_of_a = max(y for _, y in coordinates(drawn.lines[0].path))
    assert top_of_b == drawn.plot_top and bottom_of_a == drawn.plot_bottom


def test_degenerate_series() -> None:
    assert sketch.sketch("x", [sketch.Series("x", [], [])]) is None
    assert sketch.sketch("x", [sketch.Series("x", [0, 1], [None, None])]) is None
    one = sketch.sketch("x", [sketch.Series("x", [5], [0.5])])
    assert one is not None and one.lines[0].path == "" and len(one.lines[0].dots) == 1
    flat = sketch.sketch("x", [sketch.Series("x", [0, 1, 2], [2.0, 2.0, 2.0])])
    assert flat is not None and all(math.isfinite(y) for y, _ in flat.y_ticks)
    huge = sketch.sketch("x", [sketch.Series("x", [0, 2**62], [-1e300, 1e300])])
    assert huge is not None and len(huge.x_ticks) >= 2
    assert sketch.sketch("x", [sketch.Series("x", [0, 1], [-1.7e308, 1.7e308])]) is None
