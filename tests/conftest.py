"""Shared fixtures. Servers (PostgreSQL, S3) live in tests/servers.py and start on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.store.workspace import Workspace

pytest_plugins = ["tests.servers"]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh embedded workspace: SQLite file + local artifact folder in a temp dir."""
    ws = Workspace(f"sqlite:///{tmp_path / 'loopml.db'}", str(tmp_path / "artifacts"))
    yield ws
    ws.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    """The same test against each metadata backend: SQLite and a real PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'loopml.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    ws = Workspace(url, str(tmp_path / "artifacts"))
    yield ws
    ws.close()


@pytest.fixture
def loopml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the fluent API and the CLI at a fresh workspace via LOOPML_HOME."""
    home = tmp_path / "home"
    for var in ("LOOPML_DB", "LOOPML_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home
