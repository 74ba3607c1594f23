"""scikit-learn estimators and pipelines, stored with joblib.

joblib files are pickles: they run code when loaded. They are only ever loaded from a
workspace artifact whose every byte was verified against the digest recorded at
registration (see :mod:`loopml.models.artifact`), never from a path a caller names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from loopml.core.errors import InvalidInputError
from loopml.models.flavors.base import Description, ModelInput, json_params

FILE = "model.joblib"


class SklearnFlavor:
    name: str = "sklearn"
    packages: tuple[str, ...] = ("scikit-learn", "joblib")

    def handles(self, model: object) -> bool:
        return hasattr(model, "predict") and any(
            c.__module__.startswith("sklearn.") for c in type(model).__mro__
        )

    def save(
        self, model: Any, directory: Path, example: ModelInput | None = None
    ) -> dict[str, Any]:
        import joblib

        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, directory / FILE, compress=3)
        return {"file": FILE, "class": f"{type(model).__module__}.{type(model).__qualname__}"}

    def load(self, directory: Path, info: Mapping[str, Any]) -> Any:
        import joblib

        return joblib.load(directory / str(info["file"]))

    def describe(self, model: Any) -> Description:
        from sklearn.base import is_classifier, is_regressor
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(model)
        except NotFittedError:
            raise InvalidInputError(
                f"the {type(model).__name__} is not fitted; call fit() before saving it"
            ) from None

        if is_classifier(model) and hasattr(model, "classes_"):
            return Description("classification", tuple(model.classes_), _params(model))
        if is_regressor(model):
            return Description("regression", None, _params(model))
        return Description("other", None, _params(model))

    def predict(self, model: Any, data: ModelInput, info: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(model.predict(data.native()))

    def predict_proba(
        self, model: Any, data: ModelInput, info: Mapping[str, Any]
    ) -> np.ndarray | None:
        if not hasattr(model, "predict_proba"):
            return None
        return np.asarray(model.predict_proba(data.native()))


def _params(model: Any) -> dict[str, Any]:
    try:
        return json_params(model.get_params(deep=True))
    except Exception:  # a third-party estimator with a broken get_params: no params shown
        return {}
