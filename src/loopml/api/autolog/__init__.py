"""``lm.autolog()``: every ``fit`` of scikit-learn, XGBoost, LightGBM and PyTorch Lightning
logs itself.

lm.autolog()
model = RandomForestClassifier().fit(X, y)   # a run with params, metrics, the model
lm.autolog(disable=True)                     # every patch removed, originals restored

A fit records its params, training metrics (a score for scikit-learn estimators, each
iteration's evaluation results for boosters), the fitted model as a loopml model artifact
with its signature, and the training data's digest as an input in the lineage graph.
Inside ``with lm.start_run(...)`` it logs into that run, otherwise into a run of its own.
A fit nested in another (a grid search's clones, a pipeline's steps) is not logged apart.
Autologging never breaks a fit: what it cannot record is reported as an
:class:`AutologWarning`.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence

from loopml.api.autolog import patches
from loopml.api.autolog.recording import AutologWarning as AutologWarning
from loopml.api.autolog.recording import Settings
from loopml.core.errors import InvalidInputError
from loopml.tracking.tracker import DEFAULT_EXPERIMENT
from loopml.tracking.validation import check_name

LIBRARIES = ("sklearn", "xgboost", "lightgbm", "lightning")
# What pip installs each from, and the modules any of which provide it.
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "lightning": "lightning"}
_MODULES = {"lightning": ("lightning", "pytorch_lightning")}

_settings: Settings | None = None
_lock = threading.Lock()


def _current() -> Settings | None:
    return _settings


def autolog(
    *,
    disable: bool = False,
    libraries: Sequence[str] | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    log_models: bool = True,
    log_datasets: bool = True,
    log_training_metrics: bool = True,
) -> list[str]:
    """Turn autologging on (again, with these settings) or, with ``disable=True``, off.

    ``libraries`` limits it to some of ``sklearn``, ``xgboost``, ``lightgbm`` and
    ``lightning`` (PyTorch Lightning: ``lightning.pytorch`` or ``pytorch_lightning``); by default
    every one that is installed. ``experiment`` is where fits outside a run are recorded.
    Returns the libraries now autologged.
    """
    global _settings
    for flag, value in (
        ("disable", disable),
        ("log_models", log_models),
        ("log_datasets", log_datasets),
        ("log_training_metrics", log_training_metrics),
    ):
        if not isinstance(value, bool):
            raise InvalidInputError(f"autolog: {flag}= takes True or False, not {value!r:.60}")
    chosen = _choose(libraries)
    check_name(experiment, "experiment")
    with _lock:
        patches.undo_all()
        _settings = None
        if disable:
            return []
        settings = Settings(
            experiment, log_models, log_datasets, log_training_metrics, tuple(chosen)
        )
        try:
            for library in chosen:
                _PATCHERS[library]()
        except BaseException:
            patches.undo_all()
            raise
        _settings = settings
        return chosen


def _installed(library: str) -> bool:
    return any(importlib.util.find_spec(m) is not None for m in _MODULES.get(library, (library,)))


def _choose(libraries: Sequence[str] | None) -> list[str]:
    if libraries is None:
        return [name for name in LIBRARIES if _installed(name)]
    if isinstance(libraries, str) or not all(isinstance(x, str) for x in libraries):
        raise InvalidInputError(
            f"autolog: libraries= takes a list of names from {', '.join(LIBRARIES)}"
        )
    unknown = sorted(set(libraries) - set(LIBRARIES))
    if unknown:
        raise InvalidInputError(
            f"autolog does not know {', '.join(map(repr, unknown))}; it covers "
            f"{', '.join(LIBRARIES)}"
        )
    missing = [name for name in libraries if not _installed(name)]
    if missing:
        raise InvalidInputError(
            f"autolog: {', '.join(missing)} is not installed "
            f"(pip install {' '.join(_DISTRIBUTIONS.get(m, m) for m in missing)})"
        )
    return [name for name in LIBRARIES if name in libraries]


def _patch_sklearn() -> None:
    from loopml.api.autolog import sklearn

    sklearn.patch(_current)


def _patch_xgboost() -> None:
    from loopml.api.autolog import boosting

    boosting.patch_xgboost(_current)
    _patch_sklearn_classes("xgboost")


def _patch_lightgbm() -> None:
    from loopml.api.autolog import boosting

    boosting.patch_lightgbm(_current)
    _patch_sklearn_classes("lightgbm")


def _patch_sklearn_classes(library: str) -> None:
    """The library's scikit-learn classes, when scikit-learn itself is not autologged."""
    import importlib

    from sklearn.base import BaseEstimator

    from loopml.api.autolog import sklearn

    importlib.import_module(f"{library}.sklearn")
    if isinstance(BaseEstimator.__dict__.get("__init_subclass__"), classmethod) and any(
        p.owner is BaseEstimator for p in patches.active()
    ):
        return  # scikit-learn is patched: its hook and walk cover these classes
    for cls in sklearn.subclasses(BaseEstimator):
        if cls.__module__.split(".")[0] == library and "fit" in vars(cls):
            patches.patch_function(cls, "fit", sklearn.around_fit(_current))


def _patch_lightning() -> None:
    from loopml.api.autolog import lightning

    lightning.patch(_current)


_PATCHERS = {
    "sklearn": _patch_sklearn,
    "xgboost": _patch_xgboost,
    "lightgbm": _patch_lightgbm,
    "lightning": _patch_lightning,
}
