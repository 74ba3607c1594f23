"""The model libraries loopml can save, load and predict with."""

from __future__ import annotations

from loopml.core.errors import InvalidInputError
from loopml.registry.flavors.base import Description as Description
from loopml.registry.flavors.base import Flavor as Flavor
from loopml.registry.flavors.base import ModelInput as ModelInput
from loopml.registry.flavors.lightgbm import LightGBMFlavor
from loopml.registry.flavors.onnx import OnnxFlavor
from loopml.registry.flavors.sklearn import SklearnFlavor
from loopml.registry.flavors.torch import TorchFlavor
from loopml.registry.flavors.xgboost import XGBoostFlavor

# Most specific first: XGBoost and LightGBM classes also subclass scikit-learn's.
FLAVORS: tuple[Flavor, ...] = (
    OnnxFlavor(),
    XGBoostFlavor(),
    LightGBMFlavor(),
    TorchFlavor(),
    SklearnFlavor(),
)


def names() -> list[str]:
    return [f.name for f in FLAVORS]


def get(name: str) -> Flavor:
    for flavor in FLAVORS:
        if flavor.name == name:
            return flavor
    raise InvalidInputError(f"unknown model flavor {name!r}; known flavors: {', '.join(names())}")


def detect(model: object) -> Flavor:
    for flavor in FLAVORS:
        if flavor.handles(model):
            return flavor
    raise InvalidInputError(
        f"cannot save a {type(model).__module__}.{type(model).__qualname__}: it is not a "
        f"model of a supported library ({', '.join(names())}). Fit a model from one of them, "
        "or export yours to ONNX"
    )
