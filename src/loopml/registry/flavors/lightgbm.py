"""LightGBM models in LightGBM's text format (no code, safe to load).

A scikit-learn-API model is stored as its booster plus the class labels; it loads as a
``lightgbm.Booster`` and predicts exactly as the original did.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from loopml.registry.flavors.base import Description, ModelInput, json_params, module_of

FILE = "model.txt"


class LightGBMFlavor:
    name: str = "lightgbm"
    packages: tuple[str, ...] = ("lightgbm",)
    determinism: str = (
        "LightGBM's text model: the same bytes for the same booster and version; training "
        "is only repeatable with deterministic=True and a fixed thread count"
    )

    def handles(self, model: object) -> bool:
        return module_of(model) == "lightgbm" and (
            hasattr(model, "booster_") or hasattr(model, "save_model")
        )

    def save(
        self, model: Any, directory: Path, example: ModelInput | None = None
    ) -> dict[str, Any]:
        import lightgbm

        directory.mkdir(parents=True, exist_ok=True)
        booster = model.booster_ if isinstance(model, lightgbm.LGBMModel) else model
        booster.save_model(str(directory / FILE))
        info: dict[str, Any] = {"file": FILE, "class": type(model).__name__}
        if isinstance(model, lightgbm.LGBMClassifier):
            info["classes"] = [c.item() if hasattr(c, "item") else c for c in model.classes_]
        return info

    def load(self, directory: Path, info: Mapping[str, Any]) -> Any:
        import lightgbm

        return lightgbm.Booster(model_file=str(directory / str(info["file"])))

    def describe(self, model: Any) -> Description:
        import lightgbm

        if isinstance(model, lightgbm.LGBMClassifier):
            return Description("classification", tuple(model.classes_), _params(model))
        if isinstance(model, lightgbm.LGBMRegressor):
            return Description("regression", None, _params(model))
        return Description("other", None, _params(model))

    def predict(self, model: Any, data: ModelInput, info: Mapping[str, Any]) -> np.ndarray:
        import lightgbm

        frame = data.native()
        if isinstance(model, lightgbm.LGBMModel):
            return np.asarray(model.predict(frame))
        classes = info.get("classes")
        if classes is None:
            return np.asarray(model.predict(frame))
        proba = self._booster_proba(model, frame)
        # argmax picks the first class on a tie, as LGBMClassifier.predict does.
        return np.asarray(classes)[np.argmax(proba, axis=1)]

    def predict_proba(
        self, model: Any, data: ModelInput, info: Mapping[str, Any]
    ) -> np.ndarray | None:
        import lightgbm

        if isinstance(model, lightgbm.LGBMModel):
            return np.asarray(model.predict_proba(data.native())) if _is_classifier(model) else None
        if info.get("classes") is None:
            return None
        return self._booster_proba(model, data.native())

    @staticmethod
    def _booster_proba(booster: Any, frame: Any) -> np.ndarray:
        raw = np.asarray(booster.predict(frame))
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw


def _is_classifier(model: Any) -> bool:
    import lightgbm

    return isinstance(model, lightgbm.LGBMClassifier)


def _params(model: Any) -> dict[str, Any]:
    return json_params(model.get_params()) if hasattr(model, "get_params") else {}
