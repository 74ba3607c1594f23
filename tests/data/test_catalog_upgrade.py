"""Datasets written before 0013 (tags as a list, no version description) read back."""

from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

import loopml as lm
from loopml.data.catalog import Catalog
from loopml.store.metadata import migrate
from loopml.store.metadata.engine import make_engine
from loopml.store.workspace import Workspace


def test_upgrade_turns_tag_lists_into_mappings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    cfg = migrate._config()
    previous = ScriptDirectory.from_config(cfg).get_revision("0013").down_revision
    assert isinstance(previous, str)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, previous)
        conn.commit()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO datasets (name, description, owner, tags, column_descriptions, "
                "created_at, updated_at) "
                "VALUES ('old', 'd', NULL, '[\"faa\", \"raw\"]', '{}', 0, 0)"
            )
        )
    engine.dispose()
    ws = Workspace(url, str(tmp_path / "a"))  # migrates to head on open
    try:
        cat = Catalog(ws)
        assert cat.info("old").tags == {"faa": "", "raw": ""}
        v1 = cat.add("old", pl.DataFrame({"a": [1]}), description="first")
        assert v1.description == "first" and cat.info("old").tags == {"faa": "", "raw": ""}
    finally:
        ws.close()


def test_dataset_version_is_a_class_users_can_check(loopml_home: Path) -> None:
    ds = lm.datasets.add("flights", pl.DataFrame({"a": [1, 2]}), tags={"team": "ops"})
    assert isinstance(ds, lm.DatasetVersion) and isinstance(ds, lm.datasets.DatasetVersion)
    assert lm.datasets.get("flights:1") == ds and lm.datasets.info("flights").tags == {
        "team": "ops"
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert lm.datasets.add("flights", pl.DataFrame({"a": [1, 2]}), description="x") == ds
    assert [w.category for w in caught] == [lm.datasets.ContentAlreadyStoredWarning]
    assert lm.datasets.catalog().versions("flights") == [ds]
