"""Autologging of the native training functions ``xgboost.train``, ``xgboost.cv`` and
``lightgbm.train``.

Per-iteration results come from the libraries' own recorders: the ``evals_result`` dict
XGBoost fills (one is passed in when the caller gave none) and LightGBM's
``record_evaluation`` callback (added beside the caller's callbacks).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from loopml.api.autolog import data, patches
from loopml.api.autolog.recording import Recorder, Settings, record_fit

SettingsGetter = Callable[[], Settings | None]


def patch_xgboost(settings: SettingsGetter) -> None:
    import xgboost

    patches.patch_function(xgboost, "train", _xgboost_around(settings))
    patches.patch_function(xgboost, "cv", _xgboost_cv_around(settings))


def patch_lightgbm(settings: SettingsGetter) -> None:
    import lightgbm

    patches.patch_function(lightgbm, "train", _lightgbm_around(settings))


def _bind(original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return inspect.signature(original).bind(*args, **kwargs)
    except TypeError:
        return None  # the call itself is wrong: let the library say so


def _xgboost_around(settings: SettingsGetter) -> Callable[..., Any]:
    def around(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        current = settings()
        bound = _bind(original, args, kwargs)
        if current is None or bound is None:
            return original(*args, **kwargs)
        arguments = bound.arguments
        if arguments.get("evals_result") is None:
            arguments["evals_result"] = {}
        results = arguments["evals_result"]
        dtrain = arguments.get("dtrain")

        def before(rec: Recorder) -> None:
            params = dict(arguments.get("params") or {})
            params["num_boost_round"] = arguments.get("num_boost_round", 10)
            if arguments.get("early_stopping_rounds") is not None:
                params["early_stopping_rounds"] = arguments["early_stopping_rounds"]
            rec.attempt("log params", lambda: rec.log_params(params))

        def after(rec: Recorder, booster: Any) -> None:
            rec.attempt("log per-iteration metrics", lambda: rec.log_series("", results))
            best = booster.attr("best_iteration")
            if best is not None:
                rec.attempt(
                    "log the best iteration", lambda: rec.log_metric("best_iteration", best)
                )
            X, y, sample = _dmatrix_data(dtrain)
            s = rec.settings
            if s.log_models:
                rec.attempt("log the model", lambda: rec.log_model(booster, sample))
            if s.log_datasets and X is not None:
                rec.attempt("log the training data", lambda: rec.log_training_data(X, y))
            if s.log_datasets:
                for dmatrix, name in arguments.get("evals") or ():
                    rec.attempt(
                        f"log the evaluation data {name!r}", _log_dmatrix(rec, dmatrix, name)
                    )

        tags = {"autolog.library": "xgboost", "autolog.estimator": "xgboost.Booster"}
        return record_fit(
            current, tags, lambda: original(*bound.args, **bound.kwargs), before, after
        )

    return around


_CV_SETTINGS = (
    "num_boost_round",
    "nfold",
    "stratified",
    "early_stopping_rounds",
    "seed",
    "shuffle",
)


def _xgboost_cv_around(settings: SettingsGetter) -> Callable[..., Any]:
    """Cross-validation: the params, and each round's mean and standard deviation across
    the folds for every train and test metric (``test-logloss-mean`` at step 0, 1, ...).
    No model: ``xgboost.cv`` keeps none."""

    def around(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        current = settings()
        bound = _bind(original, args, kwargs)
        if current is None or bound is None:
            return original(*args, **kwargs)
        arguments = bound.arguments
        signature = inspect.signature(original)

        def before(rec: Recorder) -> None:
            raw = arguments.get("params") or {}
            # XGBoost also takes the params as a list of pairs (a metric may repeat).
            params = dict(raw) if isinstance(raw, dict) else _pairs(raw)
            for name in _CV_SETTINGS:
                value = arguments.get(name, signature.parameters[name].default)
                if value is not None:
                    params[name] = value
            if arguments.get("metrics"):
                params["metrics"] = list(arguments["metrics"])
            rec.attempt("log params", lambda: rec.log_params(params))

        def after(rec: Recorder, history: Any) -> None:
            stops_early = arguments.get("early_stopping_rounds") is not None
            rec.attempt("log per-round metrics", lambda: _cv_history(rec, history, stops_early))
            X, y, _ = _dmatrix_data(arguments.get("dtrain"))
            if rec.settings.log_datasets and X is not None:
                rec.attempt("log the training data", lambda: rec.log_training_data(X, y))

        tags = {"autolog.library": "xgboost", "autolog.estimator": "xgboost.cv"}
        return record_fit(
            current, tags, lambda: original(*bound.args, **bound.kwargs), before, after
        )

    return around


def _pairs(raw: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in raw:
        params[key] = value if key not in params else f"{params[key]},{value}"
    return params


def _cv_history(rec: Recorder, history: Any, stops_early: bool) -> None:
    """``{column: [round 0, round 1, ...]}`` from the DataFrame or the dict ``cv`` returns;
    with early stopping, XGBoost cuts the history after the best round."""
    columns = history.to_dict("list") if hasattr(history, "to_dict") else dict(history)
    for key, values in columns.items():
        for step, value in enumerate(values):
            rec.log_metric(str(key), value, step=step)
    rounds = max((len(v) for v in columns.values()), default=0)
    if stops_early and rounds:
        rec.log_metric("best_iteration", rounds - 1)


def _log_dmatrix(rec: Recorder, dmatrix: Any, name: str) -> Callable[[], None]:
    def log() -> None:
        X, y, _ = _dmatrix_data(dmatrix)
        if X is not None:
            rec.log_training_data(X, y, role=str(name))

    return log


def _dmatrix_data(dtrain: Any) -> tuple[Any, Any, Any]:
    """The DMatrix's features (sparse, for the digest), labels, and a sample of its first
    rows (a DataFrame when it has feature names, for the signature)."""
    if dtrain is None or not hasattr(dtrain, "get_data"):
        return None, None, None
    csr = dtrain.get_data()
    head = np.asarray(csr[: data.SAMPLE_ROWS].todense())
    names = dtrain.feature_names
    sample: Any = head
    if names:
        import pandas as pd

        sample = pd.DataFrame(head, columns=list(names))
    label = dtrain.get_label()
    return csr, (label if label is not None and len(label) else None), sample


def _lightgbm_around(settings: SettingsGetter) -> Callable[..., Any]:
    def around(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        current = settings()
        bound = _bind(original, args, kwargs)
        if current is None or bound is None:
            return original(*args, **kwargs)
        import lightgbm

        arguments = bound.arguments
        results: dict[str, Any] = {}
        arguments["callbacks"] = [
            *(arguments.get("callbacks") or []),
            lightgbm.record_evaluation(results),
        ]
        train_set = arguments.get("train_set")
        # The raw data must be read now: LightGBM frees it once the Dataset is built.
        X = getattr(train_set, "data", None)
        y = getattr(train_set, "label", None)
        if isinstance(X, str):  # a file LightGBM reads itself; nothing to digest here
            X = None
        valid_names = list(arguments.get("valid_names") or [])
        valid = []
        for i, valid_set in enumerate(arguments.get("valid_sets") or []):
            raw = getattr(valid_set, "data", None)
            if valid_set is train_set or raw is None or isinstance(raw, str):
                continue  # the training data itself (LightGBM calls it "training"), or a file
            name = valid_names[i] if i < len(valid_names) else f"valid_{i}"
            valid.append((str(name), raw, getattr(valid_set, "label", None)))

        def before(rec: Recorder) -> None:
            params = dict(arguments.get("params") or {})
            params.setdefault("num_boost_round", arguments.get("num_boost_round", 100))
            rec.attempt("log params", lambda: rec.log_params(params))

        def after(rec: Recorder, booster: Any) -> None:
            rec.attempt("log per-iteration metrics", lambda: rec.log_series("", results))
            if getattr(booster, "best_iteration", 0):
                rec.attempt(
                    "log the best iteration",
                    lambda: rec.log_metric("best_iteration", booster.best_iteration),
                )
            s = rec.settings
            if s.log_models:
                rec.attempt("log the model", lambda: rec.log_model(booster, data.sample(X)))
            if s.log_datasets and X is not None:
                rec.attempt("log the training data", lambda: rec.log_training_data(X, y))
            if s.log_datasets:
                for name, vX, vy in valid:
                    rec.attempt(
                        f"log the evaluation data {name!r}",
                        functools.partial(rec.log_training_data, vX, vy, role=name),
                    )

        tags = {"autolog.library": "lightgbm", "autolog.estimator": "lightgbm.Booster"}
        return record_fit(
            current, tags, lambda: original(*bound.args, **bound.kwargs), before, after
        )

    return around
