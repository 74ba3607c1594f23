"""Train the demo's delay model: gradient-boosted trees on flights + weather."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from loopml.demo.flights import CATEGORICAL_FEATURES, FEATURES, TARGET

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_iter": 100,
    "max_leaf_nodes": 31,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "random_state": 0,
}


@dataclass
class TrainedModel:
    model: Any
    train_scores: np.ndarray
    validation_scores: np.ndarray


def to_pandas_features(df: pl.DataFrame) -> Any:
    """Feature frame for scikit-learn: categoricals as pandas ``category``."""
    pdf = df.select(FEATURES).to_pandas()
    for col in CATEGORICAL_FEATURES:
        pdf[col] = pdf[col].astype("category")
    return pdf


def train_delay_model(df: pl.DataFrame, **params: Any) -> TrainedModel:
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Early stopping on the loss, which the booster keeps up to date as it goes; scoring
    # ROC AUC instead re-ranks both samples at every iteration, half of each fit's time.
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", scoring="loss", **{**DEFAULT_PARAMS, **params}
    )
    model.fit(to_pandas_features(df), df[TARGET].to_numpy())
    return TrainedModel(model, np.asarray(model.train_score_), np.asarray(model.validation_score_))


def auc(model: Any, df: pl.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    proba = model.predict_proba(to_pandas_features(df))[:, 1]
    return float(roc_auc_score(df[TARGET].to_numpy(), proba))
