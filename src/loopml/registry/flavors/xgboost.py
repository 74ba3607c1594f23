"""XGBoost models (scikit-learn API classes and raw Boosters) in XGBoost's own UBJSON
format, which holds no code and is safe to load."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from loopml.core.errors import IntegrityError
from loopml.registry.flavors.base import Description, ModelInput, json_params, module_of

FILE = "model.ubj"


class XGBoostFlavor:
    name: str = "xgboost"
    packages: tuple[str, ...] = ("xgboost",)
    determinism: str = (
        "XGBoost's own model file: the same bytes for the same booster and version; "
        "multi-threaded 'hist' training on another thread count may give other trees"
    )

    def handles(self, model: object) -> bool:
        return module_of(model) == "xgboost" and hasattr(model, "save_model")

    def save(
        self, model: Any, directory: Path, example: ModelInput | None = None
    ) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        model.save_model(str(directory / FILE))
        return {"file": FILE, "class": type(model).__name__}

    def load(self, directory: Path, info: Mapping[str, Any]) -> Any:
        import xgboost

        cls = getattr(xgboost, str(info["class"]), None)
        if not isinstance(cls, type) or not issubclass(cls, xgboost.XGBModel | xgboost.Booster):
            raise IntegrityError(f"model metadata names an unknown XGBoost class {info['class']!r}")
        model = cls()
        model.load_model(str(directory / str(info["file"])))
        return model

    def describe(self, model: Any) -> Description:
        import xgboost

        if isinstance(model, xgboost.Booster):
            return Description("other", None, {})
        params = json_params(model.get_params())
        if isinstance(model, xgboost.XGBClassifier):
            return Description("classification", tuple(model.classes_), params)
        if isinstance(model, xgboost.XGBRegressor):
            return Description("regression", None, params)
        return Description("other", None, params)

    def predict(self, model: Any, data: ModelInput, info: Mapping[str, Any]) -> np.ndarray:
        import xgboost

        frame = data.native()
        if isinstance(model, xgboost.Booster):
            return np.asarray(model.predict(xgboost.DMatrix(frame, enable_categorical=True)))
        return np.asarray(model.predict(frame))

    def predict_proba(
        self, model: Any, data: ModelInput, info: Mapping[str, Any]
    ) -> np.ndarray | None:
        if not hasattr(model, "predict_proba"):
            return None
        return np.asarray(model.predict_proba(data.native()))
