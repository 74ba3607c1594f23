"""The model outputs monitoring profiles and joins labels against.

A binary classifier's ``score`` is the probability of its second class (the positive one,
in the model's class order); a multi-class one's is the probability of the class it
predicted (its confidence). Regressors have only their prediction.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import polars as pl


def frame_bytes(df: pl.DataFrame) -> bytes:
    """The monitor's own blobs: Arrow IPC, uncompressed (written and read at memory speed)."""
    sink = io.BytesIO()
    df.write_ipc(sink, compression="uncompressed")
    return sink.getvalue()


def proba_matrix(df: pl.DataFrame) -> np.ndarray | None:
    """The ``proba`` list column as a rows x classes array, or None where it is absent."""
    if "proba" not in df.columns or df.height == 0 or df["proba"].null_count() == df.height:
        return None
    col = df["proba"]
    if col.null_count():
        return None
    lengths = col.list.len()
    width = int(lengths[0])
    if width == 0 or (lengths != width).any():
        return None
    flat = col.explode().cast(pl.Float64).to_numpy()
    return np.asarray(flat, dtype=np.float64).reshape(df.height, width)


def score_of(proba: np.ndarray | None) -> np.ndarray | None:
    if proba is None:
        return None
    if proba.shape[1] == 2:
        return proba[:, 1]
    return proba.max(axis=1)


def output_table(df: pl.DataFrame, classes: list[Any] | None = None) -> pl.DataFrame:
    """prediction (and score) of each row, the columns an output profile is made of."""
    cols: dict[str, Any] = {"prediction": df["prediction"]}
    score = score_of(proba_matrix(df))
    if score is not None:
        cols["score"] = score
    return pl.DataFrame(cols)
