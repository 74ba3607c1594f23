"""Model artifacts load only from verified bytes."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopml.core.errors import IntegrityError, InvalidInputError, NotFoundError
from loopml.registry.artifact import (
    EXAMPLE_FILE,
    METADATA_FILE,
    load_model,
    read_metadata,
    save_model,
)
from loopml.registry.model_registry import Registry
from loopml.store.artifacts import TreeEntry
from loopml.store.workspace import Workspace
from tests.models.conftest import Flights


def _corrupt(workspace: Workspace, digest: str) -> None:
    path = workspace.artifacts.path_of(digest)
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(bytes([data[0] ^ 0x01]) + data[1:])


def test_tree_layout(workspace: Workspace, flights: Flights, hgb_model: Any) -> None:
    saved = save_model(workspace.artifacts, hgb_model, flights.X)
    paths = {e.path for e in workspace.artifacts.get_tree(saved.digest).entries}
    assert paths == {METADATA_FILE, EXAMPLE_FILE, "model/model.joblib"}
    assert read_metadata(workspace.artifacts, saved.digest).flavor == "sklearn"


def test_tampered_pickle_is_never_unpickled(
    registry: Registry, workspace: Workspace, flights: Flights, hgb_model: Any
) -> None:
    mv = registry.register("delay", hgb_model, flights.X)
    tree = workspace.artifacts.get_tree(mv.digest)
    pickle_entry = next(e for e in tree.entries if e.path.endswith(".joblib"))
    _corrupt(workspace, pickle_entry.digest)
    with pytest.raises(IntegrityError, match=r"delay:1/model/model\.joblib is corrupted"):
        registry.load("delay:1")


def test_tampered_manifest_is_refused(
    registry: Registry, workspace: Workspace, flights: Flights, hgb_model: Any
) -> None:
    mv = registry.register("delay", hgb_model, flights.X)
    _corrupt(workspace, mv.digest)
    with pytest.raises(IntegrityError, match="corrupted"):
        registry.load("delay")


def test_missing_or_foreign_artifacts(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError):
        load_model(workspace.artifacts, "b3:" + "0" * 64)
    blob = workspace.artifacts.put_bytes(b"not a tree")
    with pytest.raises(InvalidInputError, match="not a tree"):
        load_model(workspace.artifacts, blob.digest)
    empty = workspace.artifacts.put_manifest([])
    with pytest.raises(InvalidInputError, match="not a model artifact"):
        load_model(workspace.artifacts, empty.digest)


class _Marker:
    """Unpickling this touches a file: proof that a pickle outside the model was read."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Path.touch, (self.path,))  # type: ignore[return-value]


def _rewritten(workspace: Workspace, digest: str, edit: Any) -> str:
    """A model tree whose manifest is genuine but whose metadata ``edit`` rewrote: what an
    attacker with write access to registration (not to stored bytes) can produce."""
    store = workspace.artifacts
    entries = []
    for e in store.get_tree(digest).entries:
        if e.path == METADATA_FILE:
            meta = yaml.safe_load(store.get_bytes(e.digest))
            edit(meta)
            blob = store.put_bytes(yaml.safe_dump(meta).encode())
            e = TreeEntry(e.path, blob.digest, blob.size)
        entries.append(e)
    return store.put_manifest(entries).digest


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("file", "{outside}"),
        ("file", "../../../{name}"),
        ("file", "../" + EXAMPLE_FILE),
        ("file", "not-in-the-manifest.joblib"),
        ("input_example", "{outside}"),
        ("input_example", "model/../../x.parquet"),
    ],
)
def test_manifest_paths_outside_the_verified_files_are_refused(
    workspace: Workspace, flights: Flights, weak_model: Any, tmp_path: Path, field: str, value: str
) -> None:
    outside = tmp_path / "evil.joblib"
    marker = tmp_path / "unpickled"
    outside.write_bytes(pickle.dumps(_Marker(str(marker))))
    path = value.format(outside=outside, name=outside.name)
    saved = save_model(workspace.artifacts, weak_model, flights.train.select("distance"))

    def edit(meta: dict[str, Any]) -> None:
        if field == "file":
            meta["flavor_info"]["file"] = path
        else:
            meta["input_example"] = path

    digest = _rewritten(workspace, saved.digest, edit)
    with pytest.raises(IntegrityError, match="not one of its verified files"):
        load_model(workspace.artifacts, digest, what="m:1")
    assert not marker.exists()


def test_registration_refuses_a_flavor_file_outside_the_model(
    workspace: Workspace, flights: Flights, weak_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.registry import flavors

    flavor = flavors.get("sklearn")
    real_save = flavor.save

    def save(model: Any, directory: Path, example: Any) -> dict[str, Any]:
        info = real_save(model, directory, example)
        return {**info, "file": str(directory / info["file"])}  # absolute

    monkeypatch.setattr(flavor, "save", save)
    with pytest.raises(InvalidInputError, match="relative path"):
        save_model(workspace.artifacts, weak_model, flights.train.select("distance"))
