"""Engines for the metadata store, tuned per backend.

SQLite runs in WAL mode with a busy timeout so several processes can share one workspace.
Write transactions start with ``BEGIN IMMEDIATE``: a deferred transaction that later needs
the write lock fails at once instead of waiting, which would lose metric batches.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from loopml.core.errors import ConfigError

BUSY_TIMEOUT_MS = 60_000
WRITE = "loopml_write"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"{url!r} is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the supported driver; plain "postgresql://" would pick psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed)
        if backend == "postgresql":
            return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"the driver for {parsed.drivername!r} is not installed ({exc}); "
            "for PostgreSQL run: pip install 'loopml[postgres]'"
        ) from None
    raise ConfigError(
        f"unsupported metadata database {backend!r}; use sqlite:///path or postgresql://..."
    )


CACHE_KIB = 64 * 1024


def _sqlite_engine(url: Any) -> Engine:
    if url.database and url.database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN can be chosen below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # Searches probe the run tables at random; keeping more pages than the 2 MB default
        # saves a read() system call per probe once a workspace holds thousands of runs.
        # The cache is a ceiling, filled only by pages actually read.
        cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
