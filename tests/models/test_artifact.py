"""Model artifacts load only from verified bytes."""

from __future__ import annotations

from typing import Any

import pytest

from loopml.core.errors import IntegrityError, InvalidInputError, NotFoundError
from loopml.models.artifact import (
    EXAMPLE_FILE,
    METADATA_FILE,
    load_model,
    read_metadata,
    save_model,
)
from loopml.models.registry import Registry
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
