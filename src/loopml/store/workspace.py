"""A workspace: one metadata store plus one artifact store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from loopml.core.errors import StoreError
from loopml.store.artifacts import ArtifactStore
from loopml.store.lineage import Lineage
from loopml.store.metadata import migrate
from loopml.store.metadata.engine import WRITE, make_engine
from loopml.store.metadata.nowait import NoWait


@dataclass(frozen=True)
class StoreCheck:
    name: str
    url: str
    ok: bool
    detail: str


class Workspace:
    """Opened from two URLs; migrates the metadata database on first use."""

    def __init__(
        self,
        db_url: str,
        artifacts_url: str,
        *,
        storage_options: dict[str, Any] | None = None,
        auto_migrate: bool = True,
        actor: str | None = None,
    ) -> None:
        """``actor``: who the writes made through this workspace are recorded as made by,
        where a write names no one itself (the entry point that opens it knows)."""
        self.db_url = db_url
        self.actor = actor
        self.artifacts_url = artifacts_url
        self.engine: Engine = make_engine(db_url)
        # Same pool; transactions opened through it take SQLite's write lock up front.
        self.write_engine: Engine = self.engine.execution_options(**{WRITE: True})
        # The few statements a server's event loop may run itself (see nowait.py).
        self.nowait = NoWait(self.engine)
        if auto_migrate:
            self.migrate()
        self.artifacts = ArtifactStore(artifacts_url, **(storage_options or {}))
        self.lineage = Lineage(self.engine, self.write_engine)

    def __repr__(self) -> str:
        return f"Workspace(db={self.safe_db_url!r}, artifacts={self.artifacts_url!r})"

    @property
    def safe_db_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        try:
            migrate.upgrade(self.engine)
        except OperationalError as exc:
            raise StoreError(
                f"cannot open the metadata database {self.safe_db_url}: {exc.orig}"
            ) from None

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return migrate.current_revision(conn)

    def check(self) -> list[StoreCheck]:
        """Write and read both stores; report rather than raise."""
        results = []
        try:
            with self.write_engine.begin() as conn:
                conn.execute(text("CREATE TEMPORARY TABLE loopml_probe (x INTEGER)"))
                conn.execute(text("INSERT INTO loopml_probe VALUES (1)"))
                value = conn.execute(text("SELECT x FROM loopml_probe")).scalar_one()
                conn.execute(text("DROP TABLE loopml_probe"))
            ok = value == 1
            detail = f"schema revision {self.schema_revision()}, read/write ok"
        except SQLAlchemyError as exc:
            ok, detail = False, str(exc).splitlines()[0]
        results.append(StoreCheck("metadata", self.safe_db_url, ok, detail))
        try:
            self.artifacts.check_writable()
            results.append(StoreCheck("artifacts", self.artifacts_url, True, "read/write ok"))
        except StoreError as exc:
            results.append(StoreCheck("artifacts", self.artifacts_url, False, str(exc)))
        return results

    def close(self) -> None:
        self.nowait.close()
        if self.engine.dialect.name == "sqlite":
            # SQLite's advice for every connection that wrote: let the planner gather the
            # statistics it found missing (bounded by analysis_limit, so it stays cheap).
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA analysis_limit=1000")
                    conn.exec_driver_sql("PRAGMA optimize")
            except SQLAlchemyError:
                pass  # an optimisation hint must never turn a clean close into an error
        self.engine.dispose()
