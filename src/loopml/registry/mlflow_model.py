"""An MLflow model folder (``MLmodel`` + the library's files) as a loopml model tree.

Nothing here loads the model: a pickle runs code when it is read, and the server must not
run code a client uploaded. The MLmodel file says which library saved the model, which
file holds it and what input it takes (its signature); that is enough to write loopml's
manifest around the very same files. The model is first loaded by whoever serves it, from
bytes verified against the registered digest, as every loopml model is.

A flavor loopml cannot serve (or a model without a signature) is still stored, with its
reason in the manifest, so listing it works and loading it says why it cannot be served.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.registry.artifact import NOT_SERVABLE, SavedModel, save_files, save_model, wrap
from loopml.registry.loaded import LoadedModel, ModelMetadata
from loopml.registry.signature import ANY, ColumnSpec, InputFormat, OutputSpec, Signature
from loopml.registry.table import array_column_names
from loopml.store.artifacts import ArtifactStore

# The version tag that keeps an MLflow model's source URI (MLflow's ``source`` field), set by
# the server's MLflow registry and by ``loopml import mlflow`` alike.
SOURCE_TAG = "mlflow.loopml.source"

MLMODEL = "MLmodel"
SAFE_FORMATS = ("skops", "onnx")
# The estimator types MLflow itself trusts when it reads its LightGBM and XGBoost skops files.
SKOPS_TRUSTED = frozenset(
    {
        "collections.OrderedDict",
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.sklearn.LGBMRanker",
    }
)
NOT_SERVABLE_TAG = "loopml.not_servable"
MAX_COLUMNS = 100_000

# MLflow's column types (mlflow.types.DataType) as loopml's.
_COLUMN_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "string",
    "datetime": "datetime",
}
_TENSOR_TYPES = {
    "float64": "float64",
    "float32": "float32",
    "int64": "int64",
    "int32": "int32",
    "bool": "bool",
}


@dataclass(frozen=True)
class Conversion:
    """The loopml manifest for an MLflow model; ``reason`` is set when it cannot be served.

    ``safe_file`` names a model file in a format that reading cannot make run code: skops
    (MLflow 3's default for scikit-learn and LightGBM estimators; it loads only types it
    trusts) or ONNX (a protobuf). The server reads those and registers the model itself,
    so its task, classes and probabilities are known."""

    metadata: ModelMetadata
    flavor: str
    reason: str | None
    safe_file: str | None = None
    has_signature: bool = True


def _skops(data: bytes) -> Any:
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(data=data))
    # Only the server's own list widens skops' defaults: an MLmodel's skops_trusted_types
    # is the uploader's word, and trusting a type lets the file construct it.
    refused = sorted(untrusted - SKOPS_TRUSTED)
    if refused:
        return (
            "its skops file holds types skops does not trust by default "
            f"({', '.join(refused[:5])}); register it with lm.models.register instead"
        )
    return sio.load(io.BytesIO(data), trusted=sorted(untrusted))


def parse_mlmodel(raw: bytes) -> dict[str, Any]:
    try:
        found = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"the model's MLmodel file is not valid YAML: {exc}") from None
    if not isinstance(found, dict) or not isinstance(found.get("flavors"), dict):
        raise InvalidInputError("the model's MLmodel file has no 'flavors' section")
    return found


def convert(mlmodel: Mapping[str, Any], files: set[str]) -> Conversion:
    """loopml's manifest for the model folder holding ``files`` (paths relative to it)."""
    flavors: Mapping[str, Any] = mlmodel["flavors"]
    python = _text(_get(flavors, "python_function", "python_version"))
    plan = _plan(flavors, files)
    flavor, info, packages, reason = plan
    signature, why_not = _signature(mlmodel.get("signature"))
    safe = info.get("format") in SAFE_FORMATS and reason is None
    safe_file = info["file"] if safe else None
    if reason is None and why_not is not None and safe_file is None:
        reason = why_not
    versions = {"python": python} if python else {}
    versions.update(packages)
    if reason is not None:
        info = {**info, NOT_SERVABLE: reason}
    metadata = ModelMetadata(
        flavor=flavor,
        flavor_info=info,
        signature=signature,
        packages=versions,
        params={},
        has_proba=False,
        created_at=clock.now(),
    )
    return Conversion(metadata, flavor, reason, safe_file, why_not is None)


def read_safely(data: bytes, conversion: Conversion) -> LoadedModel | str:
    """The model in ``conversion.safe_file``'s bytes behind its loopml flavor, or why not."""
    fmt = conversion.metadata.flavor_info.get("format")
    try:
        if fmt == "onnx":
            import onnx

            # The graph declares its inputs, more exactly than MLflow's signature does.
            return wrap(onnx.load_model_from_string(data), None, flavor="onnx")
        native = _skops(data)
        if isinstance(native, str):
            return native
        loaded = wrap(native, None)
    except ModuleNotFoundError as exc:
        return f"reading it needs {exc.name}, which the server lacks; install loopml[mlflow]"
    # A file that does not decode is the uploader's problem, whatever the library raises
    # (protobuf, zip, skops and estimator errors share no base class): it is stored
    # unservable with the reason, never a server error.
    except Exception as exc:
        return f"its {fmt} file cannot be read: {type(exc).__name__}: {str(exc)[:300]}"
    m = loaded.metadata
    signature = m.signature
    if conversion.has_signature:
        mlflow_sig = conversion.metadata.signature
        output = m.signature.output
        if mlflow_sig.output.type != ANY:
            output = OutputSpec(output.task, mlflow_sig.output.type, output.classes)
        signature = Signature(mlflow_sig.inputs, output, mlflow_sig.input_format)
    metadata = ModelMetadata(
        flavor=m.flavor,
        flavor_info=m.flavor_info,
        signature=signature,
        packages=m.packages,
        params=m.params,
        has_proba=m.has_proba,
        created_at=m.created_at,
    )
    return LoadedModel(native, loaded.flavor, metadata)


def _plan(
    flavors: Mapping[str, Any], files: set[str]
) -> tuple[str, dict[str, Any], dict[str, str], str | None]:
    """(loopml flavor, flavor_info, package versions, reason it cannot be served)."""
    names = sorted(k for k in flavors if k != "python_function")
    if "sklearn" in flavors:
        conf = flavors["sklearn"]
        fmt = _text(_get(flavors, "sklearn", "serialization_format")) or "pickle"
        file = _text(_get(flavors, "sklearn", "pickled_model"))
        versions = _version("scikit-learn", conf, "sklearn_version")
        if fmt == "skops":
            return _with_file("sklearn", file, files, versions, {"format": "skops"})
        if fmt not in ("cloudpickle", "pickle"):
            return _unservable(
                "sklearn", versions, f"its {fmt} serialization is not one loopml reads"
            )
        return _with_file("sklearn", file, files, versions, {"class": "mlflow.sklearn"})
    if "xgboost" in flavors:
        conf = flavors["xgboost"]
        file = _text(_get(flavors, "xgboost", "data"))
        cls = (_text(_get(flavors, "xgboost", "model_class")) or "").rpartition(".")[2]
        versions = _version("xgboost", conf, "xgb_version")
        if cls not in ("XGBClassifier", "XGBRegressor", "XGBRanker", "Booster"):
            return _unservable(
                "xgboost", versions, f"its model class {cls!r} is not one loopml loads"
            )
        return _with_file("xgboost", file, files, versions, {"class": cls})
    if "lightgbm" in flavors:
        conf = flavors["lightgbm"]
        file = _text(_get(flavors, "lightgbm", "data"))
        versions = _version("lightgbm", conf, "lgb_version")
        if file.endswith(".skops"):
            return _with_file("sklearn", file, files, versions, {"format": "skops"})
        if file.endswith(".pkl"):
            # MLflow pickles LightGBM's scikit-learn estimators; they predict like any other.
            return _with_file("sklearn", file, files, versions, {"class": "mlflow.lightgbm"})
        return _with_file("lightgbm", file, files, versions, {"class": "Booster"})
    if "onnx" in flavors:
        file = _text(_get(flavors, "onnx", "data"))
        versions = _version("onnx", flavors["onnx"], "onnx_version")
        return _with_file("onnx", file, files, versions, {"format": "onnx"})
    if "pytorch" in flavors:
        versions = _version("torch", flavors["pytorch"], "pytorch_version")
        return _unservable(
            "pytorch",
            versions,
            "MLflow's pytorch flavor pickles the whole module with torch.save, and loopml "
            "serves torch.export programs; register it with lm.models.register(model, X) or "
            "log it as ONNX",
        )
    what = ", ".join(names) or "python_function only"
    return _unservable(
        names[0] if names else "pyfunc",
        {},
        f"it is an MLflow model of flavor {what}; loopml serves sklearn, xgboost, lightgbm, "
        "onnx and pytorch models",
    )


def _with_file(
    flavor: str, file: str, files: set[str], versions: dict[str, str], info: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, str], str | None]:
    if not file or file not in files:
        return _unservable(
            flavor, versions, f"its MLmodel names the file {file!r}, which was not uploaded"
        )
    return flavor, {"file": file, **info}, versions, None


def _unservable(
    flavor: str, versions: dict[str, str], reason: str
) -> tuple[str, dict[str, Any], dict[str, str], str | None]:
    # The name marks it as MLflow's, so no loopml flavor is ever picked up for it.
    return f"mlflow.{flavor}"[:40], {}, versions, reason


def _signature(found: Any) -> tuple[Signature, str | None]:
    """loopml's signature from MLmodel's; without inputs, the reason it cannot be served."""
    output = OutputSpec("other", ANY)
    empty = Signature((), output)
    if not isinstance(found, Mapping) or not found.get("inputs"):
        return empty, (
            "it was logged without a signature; log it with input_example= or signature= "
            "so its input columns are known"
        )
    try:
        inputs = json.loads(found["inputs"]) if isinstance(found["inputs"], str) else None
        outputs = json.loads(found["outputs"]) if isinstance(found.get("outputs"), str) else []
    except ValueError:
        inputs = None
    if not isinstance(inputs, list) or not inputs:
        return empty, "its signature's inputs are not a list of columns"
    out_type = ANY
    if isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], dict):
        out_type = _COLUMN_TYPES.get(str(outputs[0].get("type")), ANY)
    output = OutputSpec("other", out_type)
    if len(inputs) == 1 and isinstance(inputs[0], dict) and inputs[0].get("type") == "tensor":
        return _tensor(inputs[0], output)
    columns: list[ColumnSpec] = []
    for i, col in enumerate(inputs[:MAX_COLUMNS]):
        if not isinstance(col, dict) or not isinstance(col.get("name"), str):
            return empty, f"its signature's input {i} is not a named column"
        kind = _COLUMN_TYPES.get(str(col.get("type")))
        if kind is None:
            return empty, f"its input column {col['name']!r} is of MLflow type {col.get('type')!r}"
        columns.append(ColumnSpec(col["name"], kind, nullable=not col.get("required", True)))
    fmt: InputFormat = "table"
    return Signature(tuple(columns), output, fmt), None


def _tensor(spec: Mapping[str, Any], output: OutputSpec) -> tuple[Signature, str | None]:
    tensor = spec.get("tensor-spec")
    shape = tensor.get("shape") if isinstance(tensor, Mapping) else None
    dtype = _TENSOR_TYPES.get(str(tensor.get("dtype"))) if isinstance(tensor, Mapping) else None
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not isinstance(shape[1], int)
        or not 0 < shape[1] <= MAX_COLUMNS
        or dtype is None
    ):
        return Signature((), output), (
            f"its input is a tensor of shape {shape!r} and type {dtype!r}; loopml serves "
            "2-d numeric arrays (rows x features)"
        )
    columns = tuple(ColumnSpec(n, dtype, nullable=False) for n in array_column_names(shape[1]))
    return Signature(columns, output, "array"), None


def _get(flavors: Mapping[str, Any], flavor: str, key: str) -> Any:
    conf = flavors.get(flavor)
    return conf.get(key) if isinstance(conf, Mapping) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _version(package: str, conf: Any, key: str) -> dict[str, str]:
    value = conf.get(key) if isinstance(conf, Mapping) else None
    return {package: value} if isinstance(value, str) and value else {}


def store_model(
    store: ArtifactStore, mlmodel: Mapping[str, Any], contents: Mapping[str, bytes]
) -> tuple[SavedModel, str | None]:
    """An MLflow model folder (``contents``: relative path -> bytes, its MLmodel parsed as
    ``mlmodel``) stored as a loopml model tree; the reason it cannot be served, if any."""
    converted = convert(mlmodel, set(contents))
    if converted.safe_file is None:
        return save_files(store, contents, converted.metadata), converted.reason
    loaded = read_safely(contents[converted.safe_file], converted)
    if isinstance(loaded, str):
        info = {**converted.metadata.flavor_info, NOT_SERVABLE: loaded}
        return save_files(store, contents, replace(converted.metadata, flavor_info=info)), loaded
    return save_model(store, loaded), None
