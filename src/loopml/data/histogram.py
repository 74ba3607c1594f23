"""Mergeable fixed-bin histograms.

Bins have a power-of-two width and edges at integer multiples of it. Two such grids
always nest, so merging coarsens the finer one by summing whole bins: nothing is
interpolated, and merging the histograms of two batches gives exactly the histogram of
their union. The width is the smallest power of two that covers the range in at most
``max_bins`` bins (and keeps bin indices exact in float64), which is the same rule
whether a histogram is computed or merged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_BINS = 512
# Indices stay below 2**50, well inside float64's exact integers.
_PRECISION_BITS = 50
_MIN_EXPONENT = -60


def bin_of(x: float, exponent: int) -> int:
    """The index of the bin holding ``x``: floor(x / 2**exponent), exactly.

    Dividing by a power of two is exact except when the quotient underflows: a negative
    subnormal then becomes -0.0, whose floor is 0, while its bin is -1."""
    q = math.ldexp(x, -exponent)
    if q == 0 and x < 0:
        return -1
    return math.floor(q)


def _n_bins(lo: float, hi: float, exponent: int) -> int:
    return bin_of(hi, exponent) - bin_of(lo, exponent) + 1


def choose_exponent(lo: float, hi: float, max_bins: int = MAX_BINS) -> int:
    """The bin width 2**k for finite values in [lo, hi]."""
    biggest = max(abs(lo), abs(hi))
    k_precision = math.frexp(biggest)[1] - _PRECISION_BITS if biggest > 0 else _MIN_EXPONENT
    # A span of a few subnormals divided by max_bins underflows to 0: no log2 of that.
    # Divided before subtracting: hi - lo overflows to infinity for values near the
    # float64 limits.
    per_bin = hi / max_bins - lo / max_bins
    k_range = math.ceil(math.log2(per_bin)) if per_bin > 0 else _MIN_EXPONENT
    k = max(k_range, k_precision, _MIN_EXPONENT)
    while _n_bins(lo, hi, k) > max_bins:
        k += 1
    return k


@dataclass(frozen=True)
class Histogram:
    """Counts of bins ``[(offset+i)*2**exponent, (offset+i+1)*2**exponent)``."""

    exponent: int
    offset: int
    counts: tuple[int, ...]

    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exponent)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def edges(self) -> np.ndarray:
        return (np.arange(len(self.counts) + 1, dtype=np.float64) + self.offset) * self.width

    @classmethod
    def from_indices(cls, exponent: int, offset: int, indices: np.ndarray, n: int) -> Histogram:
        counts = np.bincount(indices, minlength=n) if len(indices) else np.zeros(n, np.int64)
        return cls(exponent, offset, tuple(counts.tolist()))  # Python ints

    def coarsen(self, exponent: int) -> Histogram:
        """The same counts on a grid ``2**(exponent - self.exponent)`` times coarser."""
        if exponent < self.exponent:
            raise ValueError("a histogram can only be coarsened")
        if exponent == self.exponent:
            return self
        shift = exponent - self.exponent
        first = self.offset >> shift  # an arithmetic shift floors, so negative edges align
        last = (self.offset + len(self.counts) - 1) >> shift
        if shift < 62 and -(2**61) < self.offset < 2**61:
            # int64 shifts are arithmetic too: the same bins, without a Python loop.
            idx = (np.arange(len(self.counts), dtype=np.int64) + self.offset) >> shift
            out = np.zeros(last - first + 1, dtype=np.int64)
            np.add.at(out, idx - first, np.asarray(self.counts, dtype=np.int64))
            return Histogram(exponent, first, tuple(out.tolist()))
        # Python ints: offsets reach 2**50 and shifts can exceed 64 bits.
        slow = [0] * (last - first + 1)
        for i, c in enumerate(self.counts):
            slow[((self.offset + i) >> shift) - first] += c
        return Histogram(exponent, first, tuple(slow))

    def dense(self, exponent: int, offset: int, n: int) -> np.ndarray:
        """Counts on a given (coarser or equal) grid, zero-padded to ``n`` bins."""
        h = self.coarsen(exponent)
        out = np.zeros(n, dtype=np.float64)
        start = h.offset - offset
        out[start : start + len(h.counts)] = h.counts
        return out

    def quantiles(self, qs: Sequence[float], lo: float, hi: float) -> list[float]:
        """Quantiles by linear interpolation inside bins, clamped to the observed range."""
        counts = np.asarray(self.counts, dtype=np.float64)
        total = counts.sum()
        if total == 0:
            return [math.nan for _ in qs]
        cum = np.concatenate([[0.0], np.cumsum(counts)])
        edges = self.edges()
        out = np.interp(np.asarray(qs) * total, cum, edges)
        return [float(min(max(v, lo), hi)) for v in out]

    def to_dict(self) -> dict[str, Any]:
        return {"exponent": self.exponent, "offset": self.offset, "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        return cls(int(d["exponent"]), int(d["offset"]), tuple(map(int, d["counts"])))


def common_grid(hists: Sequence[Histogram], max_bins: int = MAX_BINS) -> tuple[int, int, int]:
    """(exponent, offset, n) of the finest grid on which all histograms fit in max_bins."""
    k = max(h.exponent for h in hists)
    while True:
        coarse = [h.coarsen(k) for h in hists]
        first = min(h.offset for h in coarse)
        last = max(h.offset + len(h.counts) - 1 for h in coarse)
        if last - first + 1 <= max_bins:
            return k, first, last - first + 1
        k += 1


def merge(a: Histogram, b: Histogram, max_bins: int = MAX_BINS) -> Histogram:
    k, offset, n = common_grid([a, b], max_bins)
    counts = a.dense(k, offset, n) + b.dense(k, offset, n)
    return _trim(Histogram(k, offset, tuple(counts.astype(np.int64).tolist())))


def _trim(h: Histogram) -> Histogram:
    # Empty bins at either end carry nothing; dropping them keeps merged == computed.
    counts = list(h.counts)
    start = 0
    while start < len(counts) - 1 and counts[start] == 0:
        start += 1
    end = len(counts)
    while end - 1 > start and counts[end - 1] == 0:
        end -= 1
    return Histogram(h.exponent, h.offset + start, tuple(counts[start:end]))
