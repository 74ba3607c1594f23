"""An MLflow model folder (``MLmodel`` + the library's files) as a model object loopml serves.

MLflow writes one ``MLmodel`` YAML file per model naming its flavors. loopml serves
scikit-learn, XGBoost, LightGBM, ONNX and PyTorch; a model with one of those flavors is
loaded with that library, with MLflow's saved input example as sample input so loopml can
infer the signature. Anything else (a custom ``python_function``, a transformers model)
raises :class:`NotServable` with the reason, and the importer keeps it as a record.

scikit-learn and PyTorch models are pickles, which run code when loaded: importing a store
trusts its files as much as ``mlflow.pyfunc.load_model`` on them would.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

SERVED_FLAVORS = ("sklearn", "xgboost", "lightgbm", "onnx", "pytorch")


class NotServable(Exception):
    """This MLflow model cannot become a servable loopml version; the message says why."""


@dataclass(frozen=True)
class MlflowModel:
    flavor: str
    model: Any
    example: Any  # a pandas DataFrame or NumPy array, or None
    flavors: tuple[str, ...]


def read_mlmodel(folder: Path) -> dict[str, Any]:
    path = folder / "MLmodel"
    if not path.is_file():
        raise NotServable("its folder has no MLmodel file")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise NotServable(f"its MLmodel file cannot be read: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("flavors"), dict):
        raise NotServable("its MLmodel file names no flavors")
    return spec


def flavors_of(folder: Path) -> tuple[str, ...]:
    try:
        return tuple(read_mlmodel(folder)["flavors"])
    except NotServable:
        return ()


def load(folder: Path) -> MlflowModel:
    spec = read_mlmodel(folder)
    flavors = spec["flavors"]
    names = tuple(str(f) for f in flavors)
    flavor = next((f for f in SERVED_FLAVORS if f in flavors), None)
    if flavor is None:
        raise NotServable(
            f"its flavors ({', '.join(names)}) include none loopml serves "
            f"({', '.join(SERVED_FLAVORS)})"
        )
    info = flavors[flavor] if isinstance(flavors[flavor], dict) else {}
    try:
        model = _LOADERS[flavor](folder, info)
    except NotServable:
        raise
    except ImportError as exc:
        raise NotServable(f"loading its {flavor} model needs {exc.name or exc}") from None
    except Exception as exc:  # a broken or foreign file: the reason, not a traceback
        raise NotServable(
            f"loading its {flavor} model failed: {type(exc).__name__}: {exc}"
        ) from None
    return MlflowModel(flavor, model, _example(folder, spec), names)


def _file(folder: Path, name: object) -> Path:
    """``name`` inside ``folder``; the MLmodel file may not point outside it."""
    if not isinstance(name, str) or not name:
        raise NotServable("its MLmodel file names no model file")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise NotServable(f"its MLmodel file points outside the model folder ({name!r})")
    path = folder.joinpath(*rel.parts)
    if not path.exists():
        raise NotServable(f"its model file {name!r} is missing")
    return path


def _unpickle(path: Path) -> Any:
    with path.open("rb") as f:
        return pickle.load(f)  # trusted as mlflow.pyfunc.load_model would: see above


def _sklearn(folder: Path, info: dict[str, Any]) -> Any:
    path = _file(folder, info.get("pickled_model"))
    fmt = info.get("serialization_format", "cloudpickle")
    if fmt in ("cloudpickle", "pickle"):
        return _unpickle(path)
    if fmt == "skops":
        import skops.io

        trusted = info.get("skops_trusted_types") or skops.io.get_untrusted_types(file=path)
        return skops.io.load(path, trusted=trusted)
    raise NotServable(f"its scikit-learn model is in {fmt!r} format, which loopml does not read")


def _xgboost(folder: Path, info: dict[str, Any]) -> Any:
    import xgboost

    path = _file(folder, info.get("data"))
    cls_name = str(info.get("model_class", "xgboost.core.Booster")).rsplit(".", 1)[-1]
    cls = getattr(xgboost, cls_name, None)
    if not isinstance(cls, type) or not issubclass(cls, xgboost.XGBModel | xgboost.Booster):
        raise NotServable(f"its MLmodel names an unknown XGBoost class {cls_name!r}")
    model = cls()
    model.load_model(str(path))
    return model


def _lightgbm(folder: Path, info: dict[str, Any]) -> Any:
    import lightgbm

    path = _file(folder, info.get("data"))
    if str(info.get("model_class", "")).endswith("Booster"):
        return lightgbm.Booster(model_file=str(path))
    return _unpickle(path)


def _onnx(folder: Path, info: dict[str, Any]) -> Any:
    import onnx

    return onnx.load(str(_file(folder, info.get("data"))))


def _pytorch(folder: Path, info: dict[str, Any]) -> Any:
    import torch

    data = _file(folder, info.get("model_data", "data"))
    path = data / "model.pth" if data.is_dir() else data
    if not path.is_file():
        raise NotServable("its PyTorch model has no model.pth (a state dict needs its code)")
    return torch.load(str(path), weights_only=False)  # see the module docstring


_LOADERS = {
    "sklearn": _sklearn,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
    "onnx": _onnx,
    "pytorch": _pytorch,
}


def _example(folder: Path, spec: dict[str, Any]) -> Any:
    """MLflow's saved input example, as the model takes it; None when there is none."""
    info = spec.get("saved_input_example_info")
    if not isinstance(info, dict):
        return None
    try:
        raw = json.loads(_file(folder, info.get("artifact_path")).read_text(encoding="utf-8"))
    except (NotServable, OSError, ValueError):
        return None
    kind = info.get("type")
    if kind == "dataframe" and isinstance(raw, dict) and "columns" in raw and "data" in raw:
        import pandas as pd

        return pd.DataFrame(raw["data"], columns=raw["columns"])
    if kind == "ndarray":
        import numpy as np

        return np.asarray(raw["inputs"] if isinstance(raw, dict) and "inputs" in raw else raw)
    return None
