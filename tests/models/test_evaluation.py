"""Evaluation metrics agree with scikit-learn computed directly; results are artifacts."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from loopml.core.errors import InvalidInputError
from loopml.demo.flights import NUMERIC_FEATURES, TARGET
from loopml.registry.artifact import wrap
from loopml.registry.evaluation import (
    EvaluationResult,
    evaluate,
    load_evaluation,
    save_evaluation,
)
from loopml.store.workspace import Workspace
from tests.models.conftest import Flights, to_features


def test_classification_metrics_slices_and_calibration(flights: Flights, hgb_model: Any) -> None:
    model = wrap(hgb_model, flights.X)
    result = evaluate(model, flights.eval, TARGET, slice_by="origin")
    y = flights.eval[TARGET].to_numpy()
    proba = hgb_model.predict_proba(to_features(flights.eval))[:, 1]
    assert result.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, proba))
    assert result.n_rows == flights.eval.height and result.labels == [0, 1]
    assert result.confusion_matrix == confusion_matrix(y, proba > 0.5).tolist()
    origins = {s.value: s for s in result.slices["origin"]}
    assert set(origins) == {"EWR", "JFK", "LGA"}
    jfk = flights.eval["origin"].to_numpy() == "JFK"
    assert origins["JFK"].n == int(jfk.sum())
    assert origins["JFK"].metrics["roc_auc"] == pytest.approx(roc_auc_score(y[jfk], proba[jfk]))
    bins = result.calibration or []
    assert sum(b.count for b in bins) == result.n_rows
    assert 0 <= result.metrics["calibration_error"] < 0.2
    names = result.run_metrics()
    assert "eval/roc_auc" in names and "eval/slice/origin/JFK/roc_auc" in names


def test_regression_metrics(flights: Flights) -> None:
    from sklearn.linear_model import Ridge

    X = flights.train.select("distance", "hour").to_pandas()
    model = wrap(Ridge().fit(X, flights.train["arr_delay"]), X)
    result = evaluate(model, flights.eval, "arr_delay")
    assert set(result.metrics) == {"mae", "rmse", "r2", "median_absolute_error"}
    assert result.metrics["rmse"] >= result.metrics["mae"] > 0
    assert result.confusion_matrix is None


def test_stored_as_artifact_with_lineage(
    workspace: Workspace, flights: Flights, hgb_model: Any
) -> None:
    result = evaluate(wrap(hgb_model, flights.X), flights.eval, TARGET, slice_by=["origin"])
    stored, artifact_id = save_evaluation(workspace, result)
    assert stored.digest is not None
    again = load_evaluation(workspace.artifacts, stored.digest)
    assert again.metrics == result.metrics and again.slices == result.slices
    assert again.calibration == result.calibration and again.labels == result.labels
    assert workspace.lineage.get_artifact(artifact_id).kind == "evaluation"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "other/1"}, "evaluation format: "),
        ({"task": "ranking"}, "evaluation task: "),
        ({"n_rows": "many"}, "evaluation n_rows: "),
        ({"metrics": {"auc": "high"}}, "evaluation metrics.auc: "),
        ({"surprise": 1}, "evaluation surprise: unknown key 'surprise'"),
        ({"slices": {"origin": [{"value": "JFK", "n": -1, "metrics": {}}]}}, "slices.origin.0.n"),
    ],
)
def test_a_damaged_evaluation_record_is_refused_naming_the_field(
    workspace: Workspace, change: dict[str, Any], message: str
) -> None:
    good = {"format": "loopml.evaluation/1", "task": "classification", "target": "late"}
    good |= {"n_rows": 3, "metrics": {"auc": 0.7}}
    assert EvaluationResult.from_dict(good).metrics == {"auc": 0.7}
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        EvaluationResult.from_dict(good | change)


def test_bad_evaluation_input(flights: Flights, hgb_model: Any) -> None:
    model = wrap(hgb_model, flights.X)
    with pytest.raises(InvalidInputError, match="no target column 'late'"):
        evaluate(model, flights.eval, "late")
    with pytest.raises(InvalidInputError, match="cannot slice by 'nope'"):
        evaluate(model, flights.eval, TARGET, slice_by="nope")
    with pytest.raises(InvalidInputError, match="distinct values"):
        evaluate(model, flights.eval, TARGET, slice_by="sched_dep_time")
    with pytest.raises(InvalidInputError, match="no rows"):
        evaluate(model, flights.eval.head(0), TARGET)
    X = flights.train.select(NUMERIC_FEATURES).to_numpy()
    assert np.isnan(X).any()  # sanity: real data has gaps the models must cope with
