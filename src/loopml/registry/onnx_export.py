"""scikit-learn → ONNX with skl2onnx: one graph input per column, probabilities as a tensor.

Numeric columns become float inputs (ONNX tree ensembles compute in float32, so
probabilities can differ from scikit-learn's in the 7th digit); text and categorical
columns become string inputs. The task and class labels travel in the model's
metadata_props, which the ONNX flavor reads back.
"""

from __future__ import annotations

import json
from typing import Any

from loopml.core.errors import InvalidInputError
from loopml.registry.artifact import wrap
from loopml.registry.flavors.onnx import CLASSES_KEY, TASK_KEY
from loopml.registry.loaded import LoadedModel


def export_onnx(model: Any, X: Any = None, *, target_opset: int | None = None) -> Any:
    """An ``onnx.ModelProto`` computing what the scikit-learn ``model`` computes."""
    loaded = model if isinstance(model, LoadedModel) else wrap(model, X)
    if loaded.flavor.name != "sklearn":
        raise InvalidInputError(
            f"ONNX export is for scikit-learn models; this one is {loaded.flavor.name}"
        )
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.base import is_classifier

    initial_types = []
    for spec in loaded.signature.inputs:
        if spec.type == "any":
            raise InvalidInputError(
                f"column {spec.name!r} has no known type; pass the training data as X= so "
                "the ONNX inputs can be typed"
            )
        text = spec.type in ("string", "category")
        initial_types.append(
            (spec.name, StringTensorType([None, 1]) if text else FloatTensorType([None, 1]))
        )
    native = loaded.native
    options = {id(native): {"zipmap": False}} if is_classifier(native) else None
    try:
        onx = to_onnx(
            native, initial_types=initial_types, options=options, target_opset=target_opset
        )
    except Exception as exc:  # skl2onnx raises many types for unsupported models
        raise InvalidInputError(
            f"skl2onnx cannot convert this {type(native).__name__}: {str(exc)[:300]}. Export "
            "supports what skl2onnx supports; register the scikit-learn model itself instead"
        ) from None
    _set_meta(onx, TASK_KEY, loaded.task)
    if loaded.classes is not None:
        _set_meta(onx, CLASSES_KEY, json.dumps(loaded.classes))
    return onx


def _set_meta(model: Any, key: str, value: str) -> None:
    entry = model.metadata_props.add()
    entry.key = key
    entry.value = value
