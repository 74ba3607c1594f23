"""A model as a content-addressed tree in the artifact store, and back.

Layout of the tree::

    loopml-model.yaml        flavor, signature, package versions, parameters
    input_example.parquet    the first rows of the training input (when given)
    model/...                the library's own files

Loading copies the tree out of the store, verifying every file against the digests in
its manifest, whose own digest is the one the caller asked for. Only then does the flavor
read it. Pickle-based formats are therefore only ever read from bytes proven to be the
ones that were saved; there is deliberately no function to load a model from a path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from loopml.core import clock
from loopml.core.errors import ConfigError, IntegrityError, InvalidInputError
from loopml.registry import flavors
from loopml.registry.flavors.base import ModelInput
from loopml.registry.loaded import LoadedModel, ModelMetadata
from loopml.registry.signature import (
    ANY,
    ColumnSpec,
    InputFormat,
    Signature,
    check_versions,
    infer_inputs,
    infer_output,
    package_versions,
)
from loopml.registry.table import array_column_names, head
from loopml.store.artifacts import ArtifactStore, Tree

METADATA_FILE = "loopml-model.yaml"
EXAMPLE_FILE = "input_example.parquet"
MODEL_DIR = "model"
EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class SavedModel:
    digest: str
    size: int
    metadata: ModelMetadata


def wrap(model: Any, X: Any = None, *, flavor: str | None = None) -> LoadedModel:
    """An in-memory model behind the uniform interface, with its signature inferred."""
    fl = flavors.get(flavor) if flavor else flavors.detect(model)
    if not fl.handles(model):
        raise InvalidInputError(f"a {type(model).__name__} is not a {fl.name} model")
    description = fl.describe(model)
    if X is not None:
        inputs, input_format = infer_inputs(X)
    else:
        inputs, input_format = _inputs_from_model(model, fl.name)
    provisional = Signature(
        inputs, infer_output(description.task, None, description.classes), input_format
    )
    example = None
    if X is not None:
        example = provisional.prepare(X, what="training data")
    proba = None
    has_proba = False
    predictions = None
    if example is not None and example.num_rows:
        sample = ModelInput(head(example, EXAMPLE_ROWS), provisional)
        predictions = fl.predict(model, sample, {})
        proba = fl.predict_proba(model, sample, {})
        has_proba = proba is not None
    else:
        has_proba = description.task == "classification"
    signature = Signature(
        inputs, infer_output(description.task, predictions, description.classes), input_format
    )
    metadata = ModelMetadata(
        flavor=fl.name,
        flavor_info={},
        signature=signature,
        packages=package_versions(fl.packages),
        params=description.params,
        has_proba=has_proba,
        created_at=clock.now(),
    )
    return LoadedModel(model, fl, metadata, input_example=example)


def _inputs_from_model(model: Any, flavor: str) -> tuple[tuple[ColumnSpec, ...], InputFormat]:
    if flavor == "onnx":
        return _onnx_inputs(model)
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return tuple(ColumnSpec(str(n), ANY) for n in names), "table"
    n = getattr(model, "n_features_in_", None)
    if isinstance(n, int):
        return tuple(ColumnSpec(c, ANY) for c in array_column_names(n)), "array"
    raise InvalidInputError(
        f"cannot tell what input this {type(model).__name__} takes; pass the training data "
        "(or a sample of it) as X= so loopml can infer the model's signature"
    )


_ONNX_TYPES = {1: "float32", 11: "float64", 7: "int64", 6: "int32", 9: "bool", 8: "string"}


def _onnx_inputs(model: Any) -> tuple[tuple[ColumnSpec, ...], InputFormat]:
    graph_inputs = list(model.graph.input)
    if len(graph_inputs) == 1:
        t = graph_inputs[0].type.tensor_type
        dims = [d.dim_value for d in t.shape.dim]
        if len(dims) == 2 and dims[1] > 1:
            col_type = _ONNX_TYPES.get(t.elem_type, ANY)
            names = array_column_names(dims[1])
            return tuple(ColumnSpec(n, col_type) for n in names), "array"
    return (
        tuple(
            ColumnSpec(i.name, _ONNX_TYPES.get(i.type.tensor_type.elem_type, ANY))
            for i in graph_inputs
        ),
        "table",
    )


def save_model(
    store: ArtifactStore, model: Any, X: Any = None, *, flavor: str | None = None
) -> SavedModel:
    """Write ``model`` as a tree; the signature comes from ``X`` (training data or a sample)."""
    loaded = model if isinstance(model, LoadedModel) else wrap(model, X, flavor=flavor)
    fl = loaded.flavor
    with tempfile.TemporaryDirectory(prefix="loopml-model-") as tmp:
        root = Path(tmp)
        example = (
            None
            if loaded.input_example is None
            else ModelInput(loaded.input_example, loaded.signature)
        )
        info = fl.save(loaded.native, root / MODEL_DIR, example)
        if "file" in info:
            member = _member_path(info["file"], MODEL_DIR, what=f"the {fl.name} flavor's file")
            if not (root / member).is_file():
                raise InvalidInputError(
                    f"the {fl.name} flavor saved no file {info['file']!r} in the model folder"
                )
        example_file = None
        if loaded.input_example is not None and loaded.input_example.num_rows:
            pq.write_table(head(loaded.input_example, EXAMPLE_ROWS), root / EXAMPLE_FILE)
            example_file = EXAMPLE_FILE
        m = loaded.metadata
        metadata = ModelMetadata(
            flavor=fl.name,
            flavor_info=info,
            signature=m.signature,
            packages=m.packages,
            params=m.params,
            has_proba=m.has_proba,
            created_at=m.created_at,
            input_example=example_file,
        )
        (root / METADATA_FILE).write_text(manifest_text(metadata))
        tree = store.put_tree(root)
    return SavedModel(tree.digest, tree.size, metadata)


def check_stored(store: ArtifactStore, digest: str, *, what: str | None = None) -> SavedModel:
    """A model tree someone else wrote (a client uploading through the server), checked as
    loading would check it, without loading it: every file present and matching its
    digest, the metadata valid and naming only files of the tree."""
    label = what or digest
    try:
        tree = store.get_tree(digest, what=label)
        for entry in tree.entries:
            store.verify(entry.digest, what=f"{label}/{entry.path}")
        metadata = read_metadata(store, digest, what=label)
        _check_members(metadata, tree, label)
    except IntegrityError as exc:  # the caller's tree, not the store, is at fault
        raise InvalidInputError(f"{exc}; nothing was registered") from None
    flavors.get(metadata.flavor)  # an unknown flavor is refused now, not at the first load
    return SavedModel(tree.digest, tree.size, metadata)


NOT_SERVABLE = "not_servable"


def save_files(
    store: ArtifactStore, files: Mapping[str, bytes], metadata: ModelMetadata
) -> SavedModel:
    """Store a model another tool saved: ``files`` (relative path -> bytes) go under
    ``model/`` beside a manifest of ``metadata``. Nothing is loaded; a file the
    metadata's flavor needs must be among ``files``. A model loopml cannot serve carries
    its reason as ``flavor_info["not_servable"]``, which loading reports."""
    with tempfile.TemporaryDirectory(prefix="loopml-model-") as tmp:
        root = Path(tmp)
        for rel, data in files.items():
            member = root / _member_path(rel, MODEL_DIR, what="a model file")
            try:
                member.parent.mkdir(parents=True, exist_ok=True)
                member.write_bytes(data)
            except OSError:  # a path that is both a file and a folder
                raise InvalidInputError(f"model file {rel!r} clashes with another") from None
        if "file" in metadata.flavor_info:
            needed = _member_path(metadata.flavor_info["file"], MODEL_DIR, what="the model file")
            if not (root / needed).is_file():
                raise InvalidInputError(
                    f"the model has no file {metadata.flavor_info['file']!r} for its "
                    f"{metadata.flavor} flavor"
                )
        (root / METADATA_FILE).write_text(manifest_text(metadata))
        tree = store.put_tree(root)
    return SavedModel(tree.digest, tree.size, metadata)


def manifest_text(metadata: ModelMetadata) -> str:
    """The model's YAML manifest. It is part of the hashed tree, so it holds only what
    the model is: per-save facts (when it was saved) live in the metadata store, and the
    same model saved twice has the same digest."""
    fields = metadata.to_dict()
    fields.pop("created_at", None)
    return yaml.safe_dump(fields, sort_keys=False, allow_unicode=True)


def read_metadata(store: ArtifactStore, digest: str, *, what: str | None = None) -> ModelMetadata:
    """The verified metadata of a model artifact, without loading the model."""
    label = what or digest
    tree = store.get_tree(digest, what=label)
    entry = next((e for e in tree.entries if e.path == METADATA_FILE), None)
    if entry is None:
        raise InvalidInputError(f"{label} is not a model artifact: it has no {METADATA_FILE}")
    raw = store.get_bytes(entry.digest, what=f"{label}/{METADATA_FILE}")
    return ModelMetadata.from_dict(yaml.safe_load(raw), what=label)


def load_model(
    store: ArtifactStore, digest: str, *, what: str | None = None, ref: str | None = None
) -> LoadedModel:
    """Load a model artifact after verifying every byte of it against ``digest``."""
    label = what or digest
    with tempfile.TemporaryDirectory(prefix="loopml-load-") as tmp:
        root = Path(tmp)
        tree = store.get_tree_to(digest, root, what=label)
        if tree.digest != digest:  # get_tree_to verified the manifest; belt and braces
            raise IntegrityError(f"{label}: manifest digest mismatch")
        try:
            raw = yaml.safe_load((root / METADATA_FILE).read_text())
        except FileNotFoundError:
            raise InvalidInputError(
                f"{label} is not a model artifact: it has no {METADATA_FILE}"
            ) from None
        metadata = ModelMetadata.from_dict(raw, what=label)
        _check_members(metadata, tree, label)
        if metadata.flavor_info.get(NOT_SERVABLE):
            raise InvalidInputError(
                f"{label} cannot be loaded or served: {metadata.flavor_info[NOT_SERVABLE]}"
            )
        fl = flavors.get(metadata.flavor)
        check_versions(metadata.packages, fl.packages, what=label)
        try:
            native = fl.load(root / MODEL_DIR, metadata.flavor_info)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"{label} is a {fl.name} model, but {exc.name} is not installed; "
                f"install the extra: pip install 'loopml[{fl.name}]'"
            ) from None
        example = None
        if metadata.input_example:
            example = pq.read_table(root / metadata.input_example)
    return LoadedModel(native, fl, metadata, digest=digest, ref=ref, input_example=example)


def _member_path(value: object, folder: str, *, what: str) -> str:
    """``value`` as a path inside the model tree (under ``folder``), or InvalidInputError.

    Only plain relative paths: an absolute path or a ``..`` would let metadata point a
    loader (a pickle reader) at a file that is not among the tree's verified files.
    """
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what} must be a relative path, not {value!r}")
    path = PurePosixPath(value)
    if path.is_absolute() or "\\" in value or ".." in path.parts or ":" in path.parts[0]:
        raise InvalidInputError(f"{what} must be a relative path inside the model, not {value!r}")
    return str(PurePosixPath(folder, path)) if folder else str(path)


def _check_members(metadata: ModelMetadata, tree: Tree, label: str) -> None:
    """Refuse metadata naming a file that is not one of the tree's verified files."""
    listed = {e.path for e in tree.entries}
    named = [("flavor_info.file", metadata.flavor_info.get("file"), MODEL_DIR)]
    if metadata.input_example is not None:
        named.append(("input_example", metadata.input_example, ""))
    for field_name, value, folder in named:
        if value is None and field_name == "flavor_info.file":
            continue
        try:
            member = _member_path(value, folder, what=f"{label}: {field_name}")
        except InvalidInputError as exc:
            raise IntegrityError(f"{exc}; it is not one of its verified files") from None
        if member not in listed:
            raise IntegrityError(
                f"{label}: {field_name} names {value!r}, which is not one of its verified files"
            )


def example_table(loaded: LoadedModel) -> pa.Table:
    """A sample the model answers, for smoke tests; refused if the model has none."""
    if loaded.input_example is None or loaded.input_example.num_rows == 0:
        raise InvalidInputError(
            f"{loaded} has no input example; register it with X=<training data> so a "
            "smoke test has a sample to send"
        )
    return loaded.input_example
