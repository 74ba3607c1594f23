"""ONNX models, run with onnxruntime.

Inputs are fed by name when the graph has one input per signature column (what
:mod:`loopml.registry.onnx_export` produces), or as a single matrix when it has one input.
``loopml.task`` / ``loopml.classes`` in the model's metadata_props say what it predicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import InvalidInputError
from loopml.registry.flavors.base import Description, ModelInput, module_of

FILE = "model.onnx"
TASK_KEY = "loopml.task"
CLASSES_KEY = "loopml.classes"

_NUMPY_OF = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxFlavor:
    name: str = "onnx"
    packages: tuple[str, ...] = ("onnx", "onnxruntime")
    # producer_name/producer_version name the converter that made the graph, so the same
    # model converted by another converter version has other bytes.
    determinism: str = (
        "protobuf written deterministically; producer fields and node names come from the "
        "converter, so another converter version gives other bytes"
    )

    def handles(self, model: object) -> bool:
        return module_of(model) == "onnx" and type(model).__name__ == "ModelProto"

    def save(
        self, model: Any, directory: Path, example: ModelInput | None = None
    ) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / FILE).write_bytes(model.SerializeToString(deterministic=True))
        return {"file": FILE}

    def load(self, directory: Path, info: Mapping[str, Any]) -> Any:
        return _session((directory / str(info["file"])).read_bytes())

    def describe(self, model: Any) -> Description:
        meta = {p.key: p.value for p in model.metadata_props}
        task = meta.get(TASK_KEY, "other")
        if task not in ("classification", "regression", "other"):
            task = "other"
        classes = meta.get(CLASSES_KEY)
        return Description(
            task,
            None if classes is None else tuple(json.loads(classes)),
            {"producer": f"{model.producer_name} {model.producer_version}".strip()},
        )

    def predict(self, model: Any, data: ModelInput, info: Mapping[str, Any]) -> np.ndarray:
        session = _as_session(model)
        label, _ = _output_names(session)
        (out,) = session.run([label], _feed(session, data))
        arr = np.asarray(out)
        return arr.ravel() if arr.ndim == 2 and arr.shape[1] == 1 else arr

    def predict_proba(
        self, model: Any, data: ModelInput, info: Mapping[str, Any]
    ) -> np.ndarray | None:
        session = _as_session(model)
        _, proba = _output_names(session)
        if proba is None:
            return None
        (out,) = session.run([proba], _feed(session, data))
        if isinstance(out, list):  # a ZipMap output: one {class: probability} per row
            keys = list(out[0]) if out else []
            return np.array([[row[k] for k in keys] for row in out], dtype=np.float64)
        return np.asarray(out)


def _session(serialized: bytes) -> Any:
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise InvalidInputError(f"onnxruntime cannot load this ONNX model: {exc}") from None


def _as_session(model: Any) -> Any:
    return _session(model.SerializeToString()) if hasattr(model, "SerializeToString") else model


def _output_names(session: Any) -> tuple[str, str | None]:
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    if "label" in names and "probabilities" in names:
        return "label", "probabilities"
    proba = next((o.name for o in outputs[1:] if "prob" in o.name.lower()), None)
    return names[0], proba


def _column(data: ModelInput, name: str, dtype: Any) -> np.ndarray:
    col = data.table.column(name)
    if dtype is np.object_:
        if pa.types.is_dictionary(col.type):
            col = pc.cast(col, pa.string())
        # Missing categories become the empty string, which encoders treat as unknown.
        return np.asarray(pc.fill_null(pc.cast(col, pa.string()), "").to_numpy(), dtype=object)
    if col.null_count and np.dtype(dtype).kind in "biu":
        raise InvalidInputError(
            f"column {name!r} has missing values; this ONNX model takes {np.dtype(dtype)} "
            "there, which cannot hold them"
        )
    return np.asarray(col.to_numpy(), dtype=dtype)


def _feed(session: Any, data: ModelInput) -> dict[str, np.ndarray]:
    inputs = session.get_inputs()
    columns = set(data.signature.columns)
    feed: dict[str, np.ndarray] = {}
    if all(i.name in columns for i in inputs):
        for i in inputs:
            arr = _column(data, i.name, _NUMPY_OF.get(i.type, np.float32))
            feed[i.name] = arr.reshape(-1, 1) if len(i.shape) == 2 else arr
        return feed
    if len(inputs) == 1:
        i = inputs[0]
        dtype = _NUMPY_OF.get(i.type, np.float32)
        feed[i.name] = np.column_stack(
            [_column(data, name, dtype) for name in data.signature.columns]
        )
        return feed
    raise InvalidInputError(
        f"the ONNX model's inputs {[i.name for i in inputs]} are neither one per input "
        f"column nor a single matrix; its signature has columns {data.signature.columns}"
    )
