"""Autologging of scikit-learn-style estimators (scikit-learn's own, and XGBoost's and
LightGBM's scikit-learn classes, which derive from the same ``BaseEstimator``).

Every ``fit`` defined on a subclass of ``BaseEstimator`` is wrapped, and so is every one
defined by a class created later (``BaseEstimator.__init_subclass__``), so importing
a scikit-learn module after ``lm.autolog()`` is covered without importing them all up
front, which takes seconds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from loopml.api.autolog import data, incremental, patches
from loopml.api.autolog.recording import Recorder, Settings, record_fit

SettingsGetter = Callable[[], Settings | None]


def subclasses(cls: type) -> Iterator[type]:
    seen: set[type] = set()
    todo = [cls]
    while todo:
        sub: type
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                yield sub


def patch(settings: SettingsGetter) -> None:
    from sklearn.base import BaseEstimator

    def patch_class(cls: type) -> None:
        if inspect.isfunction(vars(cls).get("fit")):
            patches.patch_function(cls, "fit", around_fit(settings))
        if inspect.isfunction(vars(cls).get("partial_fit")):
            patches.patch_function(cls, "partial_fit", around_partial_fit(settings))

    for cls in subclasses(BaseEstimator):
        patch_class(cls)

    def init_subclass(cls: type, **kwargs: Any) -> None:
        super(BaseEstimator, cls).__init_subclass__(**kwargs)
        patch_class(cls)

    patches.replace(BaseEstimator, "__init_subclass__", classmethod(init_subclass))


def library_of(estimator: Any) -> str:
    root = type(estimator).__module__.split(".")[0]
    return root if root in ("xgboost", "lightgbm") else "sklearn"


def fit_arguments(
    original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    """``(X, y)``: the first two parameters after ``self``, however they were passed."""
    try:
        sig = inspect.signature(original)
        bound = sig.bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return None, None
    names = [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ][1:3]
    found = [bound.arguments.get(n) for n in names] + [None, None]
    return found[0], found[1]


def around_fit(settings: SettingsGetter) -> Callable[..., Any]:
    def around(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        current = settings()
        if current is None or not args or library_of(args[0]) not in current.libraries:
            return original(*args, **kwargs)
        estimator = args[0]
        incremental.close(estimator)  # a fit from scratch ends its partial_fit stream
        X, y = fit_arguments(original, args, kwargs)
        tags = {
            "autolog.library": library_of(estimator),
            "autolog.estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        }

        def before(rec: Recorder) -> None:
            rec.attempt("log params", lambda: rec.log_params(_params(estimator)))

        def after(rec: Recorder, _: Any) -> None:
            log_fitted(rec, estimator, X, y, kwargs.get("sample_weight"))
            if rec.settings.log_datasets:
                rec.attempt("log the evaluation data", lambda: _eval_sets(rec, estimator, kwargs))

        return record_fit(current, tags, lambda: original(*args, **kwargs), before, after)

    return around


def around_partial_fit(settings: SettingsGetter) -> Callable[..., Any]:
    def around(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        current = settings()
        if current is None or not args or library_of(args[0]) not in current.libraries:
            return original(*args, **kwargs)
        estimator = args[0]
        X, y = fit_arguments(original, args, kwargs)
        tags = {
            "autolog.library": library_of(estimator),
            "autolog.estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            "autolog.method": "partial_fit",
        }
        stream = incremental.stream_for(current, estimator, tags)
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            incremental.fail(estimator, exc)
            raise
        if stream is not None:
            incremental.record_batch(stream, X, y, kwargs.get("sample_weight"))
        return result

    return around


def _params(estimator: Any) -> dict[str, Any]:
    params: dict[str, Any] = estimator.get_params(deep=True)
    return params


def log_fitted(rec: Recorder, estimator: Any, X: Any, y: Any, sample_weight: Any) -> None:
    s = rec.settings
    if s.log_training_metrics and y is not None:
        rec.attempt(
            "log training metrics", lambda: _training_metrics(rec, estimator, X, y, sample_weight)
        )
    if hasattr(estimator, "best_params_"):
        rec.attempt("log the search's best params", lambda: _search_results(rec, estimator))
    rec.attempt("log per-iteration metrics", lambda: _iterations(rec, estimator))
    if s.log_models and hasattr(estimator, "predict"):
        rec.attempt("log the model", lambda: rec.log_model(estimator, data.sample(X)))
    if s.log_datasets and X is not None:
        rec.attempt("log the training data", lambda: rec.log_training_data(X, y))


def _training_metrics(rec: Recorder, estimator: Any, X: Any, y: Any, sample_weight: Any) -> None:
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    if not (is_classifier(estimator) or is_regressor(estimator)):
        return
    kw = {} if sample_weight is None else {"sample_weight": sample_weight}
    rec.log_metric("training_score", estimator.score(X, y, **kw))
    y_true = np.asarray(y)
    y_pred = estimator.predict(X)
    if is_regressor(estimator):
        mse = metrics.mean_squared_error(y_true, y_pred, **kw)
        rec.log_metric("training_mean_squared_error", mse)
        rec.log_metric("training_root_mean_squared_error", float(np.sqrt(mse)))
        rec.log_metric(
            "training_mean_absolute_error", metrics.mean_absolute_error(y_true, y_pred, **kw)
        )
        rec.log_metric("training_r2_score", metrics.r2_score(y_true, y_pred, **kw))
        return
    rec.log_metric("training_accuracy_score", metrics.accuracy_score(y_true, y_pred, **kw))
    for name, fn in (
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1", metrics.f1_score),
    ):
        rec.log_metric(
            f"training_{name}_score",
            fn(y_true, y_pred, average="weighted", zero_division=0, **kw),
        )
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(X)
        labels = getattr(estimator, "classes_", None)
        rec.log_metric("training_log_loss", metrics.log_loss(y_true, proba, labels=labels, **kw))
        if proba.ndim == 2 and proba.shape[1] == 2:
            rec.log_metric("training_roc_auc", metrics.roc_auc_score(y_true, proba[:, 1], **kw))


def _search_results(rec: Recorder, search: Any) -> None:
    rec.log_params({f"best_{k}": v for k, v in search.best_params_.items()})
    if hasattr(search, "best_score_"):
        rec.log_metric("best_cv_score", search.best_score_)


def _iterations(rec: Recorder, estimator: Any) -> None:
    """Per-iteration evaluation results of boosting estimators fitted with an eval set."""
    library = library_of(estimator)
    if library == "xgboost":
        try:
            results = estimator.evals_result()
        except Exception:  # XGBoost raises XGBoostError when fitted without an eval set
            return
        rec.log_series("", results)
        best = getattr(estimator, "best_iteration", None)
        if best is not None:
            rec.log_metric("best_iteration", best)
    elif library == "lightgbm":
        rec.log_series("", getattr(estimator, "evals_result_", None) or {})
        best = getattr(estimator, "best_iteration_", None)
        if best:
            rec.log_metric("best_iteration", best)


def _eval_sets(rec: Recorder, estimator: Any, kwargs: dict[str, Any]) -> None:
    """The boosters' ``eval_set`` pairs, named as their per-iteration metrics are."""
    eval_set = kwargs.get("eval_set") or []
    names = kwargs.get("eval_names") or []
    default = "validation_{}" if library_of(estimator) == "xgboost" else "valid_{}"
    for i, pair in enumerate(eval_set):
        name = names[i] if i < len(names) else default.format(i)
        rec.log_training_data(pair[0], pair[1], role=str(name))
