"""The benchmark's 10-step pipeline as plain functions (no loopml, no Prefect import).

Ten small steps in a chain with one fan-in, each doing a little real work on a list of
2,000 numbers, so the timings are dominated by what an orchestrator adds per step.
"""

from __future__ import annotations

N = 2_000
STEPS = 10
# How many step bodies actually ran: a cached re-run must leave this unchanged.
CALLS = [0]


def source(n: int) -> list[float]:
    CALLS[0] += 1
    return [float(i % 97) for i in range(n)]


def scale(values: list[float], factor: float) -> list[float]:
    CALLS[0] += 1
    return [v * factor for v in values]


def shift(values: list[float], by: float) -> list[float]:
    CALLS[0] += 1
    return [v + by for v in values]


def clip(values: list[float], high: float) -> list[float]:
    CALLS[0] += 1
    return [min(v, high) for v in values]


def square(values: list[float]) -> list[float]:
    CALLS[0] += 1
    return [v * v for v in values]


def normalise(values: list[float]) -> list[float]:
    CALLS[0] += 1
    top = max(values) or 1.0
    return [v / top for v in values]


def combine(a: list[float], b: list[float]) -> list[float]:
    CALLS[0] += 1
    return [x + y for x, y in zip(a, b, strict=True)]


def stats(values: list[float]) -> dict[str, float]:
    CALLS[0] += 1
    n = len(values)
    mean = sum(values) / n
    return {"n": float(n), "mean": mean, "max": max(values), "min": min(values)}


def plain(n: int = N) -> dict[str, float]:
    """The pipeline as direct calls: the floor any orchestrator is measured against."""
    s = source(n)  # 1
    a = scale(s, 2.0)  # 2
    b = shift(a, 1.0)  # 3
    c = clip(b, 150.0)  # 4
    d = square(c)  # 5
    e = normalise(d)  # 6
    f = scale(s, 0.5)  # 7
    g = shift(f, -1.0)  # 8
    h = combine(e, g)  # 9
    return stats(h)  # 10
