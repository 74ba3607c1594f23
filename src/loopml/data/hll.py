"""HyperLogLog registers for mergeable approximate distinct counts.

Register updates run as Polars expressions over 64-bit value hashes (see
``stable_hash``) plus one ``np.bincount``; the registers of two batches merge by
element-wise maximum.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import polars as pl

P = 12
M = 1 << P
_LOW_BITS = 64 - P
_RANK_SLOTS = 64
FILTER_ROWS = 64 * M  # from this many rows on, a pre-filter saves most of the hashing


def code_expr(h: pl.Expr) -> pl.Expr:
    """Per UInt64 value hash: register index * 64 + rank, as one UInt32 code."""
    index = h // (1 << _LOW_BITS)
    # Leading zeros of the low bits, counted within those bits, plus one.
    rank = (h % (1 << _LOW_BITS)).bitwise_leading_zeros().cast(pl.Int64) - (P - 1)
    code = index.cast(pl.Int64) * _RANK_SLOTS + rank
    return code.cast(pl.UInt32)


def min_rank(n: int) -> int:
    """A rank every register almost surely reaches among ``n`` values.

    Each register gets about n/M values and reaches rank r with probability
    1 - (1 - 2**-(r-1))**(n/M); three ranks below log2(n/M) that is 1 - e**-4 per
    register at least, so only ~1/2**(r-1) of the values need to be looked at. The
    caller checks that every register was reached and otherwise recounts in full, so the
    registers are exactly those of the full count either way.
    """
    if n < FILTER_ROWS:
        return 1
    return max(1, int(math.log2(n / M)) - 3)


def rank_at_least(h: pl.Expr, rank: int) -> pl.Expr:
    """Hashes whose rank is at least ``rank`` (their low bits are small enough)."""
    return (h % (1 << _LOW_BITS)) < (1 << (_LOW_BITS + 1 - rank))


def registers_from_codes(codes: np.ndarray) -> np.ndarray:
    seen = np.bincount(codes, minlength=M * _RANK_SLOTS).reshape(M, _RANK_SLOTS) > 0
    # Highest rank seen per register; 0 where the register saw nothing.
    highest = _RANK_SLOTS - 1 - np.argmax(seen[:, ::-1], axis=1)
    return np.where(seen.any(axis=1), highest, 0).astype(np.uint8)


def estimate(registers: np.ndarray) -> float:
    m = float(M)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / float(np.sum(np.power(2.0, -registers.astype(np.float64))))
    zeros = int(np.count_nonzero(registers == 0))
    if raw <= 2.5 * m and zeros:
        return m * math.log(m / zeros)  # linear counting is better for small sets
    return raw


def encode(registers: np.ndarray) -> str:
    return base64.b64encode(registers.astype(np.uint8).tobytes()).decode()


def decode(text: str) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    if data.shape != (M,):
        raise ValueError(f"HyperLogLog registers must be {M} bytes, got {data.size}")
    return data
