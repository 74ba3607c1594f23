"""lm.autolog() through the fluent API, locally and against a live ``loopml server``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import loopml as lm
from tests.remote.conftest import Target

FEATURES = ["distance", "hour", "sched_dep_time", "temp"]


def test_a_fit_logs_into_the_active_run_locally_or_remotely(api: Target) -> None:
    from loopml.demo.flights import flights_with_weather

    df = flights_with_weather([1]).drop_nulls(FEATURES).head(800).to_pandas()
    X = df[FEATURES].astype("float64")
    X = (X - X.mean()) / X.std()
    y = df["delayed"]
    lm.autolog(libraries=["sklearn"])
    try:
        with lm.start_run("autolog") as run:
            if api.remote:  # the model needs the workspace's stores: a warning, not an error
                with pytest.warns(lm.AutologWarning, match="remote mode"):
                    model = LogisticRegression(C=0.5).fit(X, y)
            else:
                model = LogisticRegression(C=0.5).fit(X, y)
    finally:
        lm.autolog(disable=True)
    got = lm.get_run(run.id)
    assert got.status == "finished"
    assert got.params["C"] == "0.5"
    assert got.metrics["training_score"] == pytest.approx(model.score(X, y))
    assert got.tags["autolog.training_data_digest"].startswith("b3:")
    ws = api.workspace()
    try:
        outputs = dict(ws.lineage.artifacts_of(run.id, "output"))
        inputs = dict(ws.lineage.artifacts_of(run.id, "input"))
    finally:
        ws.close()
    assert ("model" in outputs) is (not api.remote)
    assert ("training_data" in inputs) is (not api.remote)
    assert np.isfinite(got.metrics["training_log_loss"])
