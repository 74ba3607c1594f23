"""Managing registered models as MLflow's registry does: create empty, update, rename,
delete versions, aliases and models; on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from typing import Any

import pytest

from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.registry.model_registry import Registry
from loopml.store.workspace import Workspace
from tests.models.conftest import Flights


@pytest.fixture
def workspace(any_workspace: Workspace) -> Workspace:
    return any_workspace


def test_create_update_and_rename(registry: Registry, flights: Flights, weak_model: Any) -> None:
    X = flights.train.select("distance").to_pandas()
    created = registry.create_model("m", description="first", tags={"team": "ops"})
    assert (created.description, created.tags, created.latest_version) == (
        "first",
        {"team": "ops"},
        None,
    )
    with pytest.raises(ConflictError):
        registry.create_model("m")
    with pytest.raises(InvalidInputError):
        registry.create_model("bad name/..")
    registry.register("m", weak_model, X)
    registry.move_alias("m", "champion", 1, action="promote", reason="", expected_from=None)
    updated = registry.update_model(
        "m", description="second", tags={"k": "v"}, remove_tags=["team"]
    )
    assert (updated.description, updated.tags) == ("second", {"k": "v"})
    registry.create_model("other")
    with pytest.raises(ConflictError):
        registry.rename_model("m", "other")
    renamed = registry.rename_model("m", "m2")
    assert renamed.aliases == {"champion": 1} and renamed.latest_version == 1
    assert registry.resolve("m2@champion").version == 1
    with pytest.raises(NotFoundError):
        registry.get_model("m")
    tagged = registry.update_version("m2", 1, tags={"a": "1", "b": "2"})
    assert registry.remove_version_tags("m2", 1, ["a", "absent"]).tags == {"b": "2"} != tagged.tags


def test_deleting_versions_aliases_and_models(
    registry: Registry, flights: Flights, weak_model: Any
) -> None:
    X = flights.train.select("distance").to_pandas()
    for _ in range(2):
        registry.register("m", weak_model, X)
    registry.move_alias("m", "champion", 1, action="promote", reason="", expected_from=None)
    registry.move_alias("m", "challenger", 2, action="promote", reason="", expected_from=None)
    registry.delete_alias("m", "challenger")
    with pytest.raises(NotFoundError):
        registry.delete_alias("m", "challenger")
    assert registry.aliases("m") == {"champion": 1}
    assert registry.register("m", weak_model, X).version == 3
    registry.delete_version("m", 3)
    # A deleted number is never given again, even the newest one.
    assert registry.register("m", weak_model, X).version == 4
    registry.delete_version("m", 4)
    registry.delete_version("m", 1)  # takes its alias with it, recorded in the history
    assert registry.aliases("m") == {}
    assert [v.version for v in registry.versions("m")] == [2]
    unset = [(e.alias, e.from_version) for e in registry.history("m") if e.action == "unset_alias"]
    assert unset == [("challenger", 2), ("champion", 1)]
    with pytest.raises(NotFoundError):
        registry.delete_version("m", 1)
    registry.delete_model("m")
    with pytest.raises(NotFoundError):
        registry.get_model("m")
    with pytest.raises(NotFoundError):
        registry.delete_model("m")
    # The name is free again, and numbering starts over for the new model.
    assert registry.register("m", weak_model, X).version == 1
