"""Engines for the metadata store, tuned per backend.

SQLite runs in WAL mode with a busy timeout so several processes can share one workspace.
Write transactions start with ``BEGIN IMMEDIATE``: a deferred transaction that later needs
the write lock fails at once instead of waiting, which would lose metric batches.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from loopml.core.errors import ConfigError, StoreError

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
            return _translate_store_errors(_sqlite_engine(parsed))
        if backend == "postgresql":
            return _translate_store_errors(
                create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
            )
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"the driver for {parsed.drivername!r} is not installed ({exc}); "
            "for PostgreSQL run: pip install 'loopml[postgres]'"
        ) from None
    raise ConfigError(
        f"unsupported metadata database {backend!r}; use sqlite:///path or postgresql://..."
    )


CACHE_KIB = 64 * 1024

# SQLite's words for a file that is damaged or not a database at all.
_SQLITE_CORRUPT = ("malformed", "not a database", "file is encrypted")
# ... and for a file it cannot open or write.
_SQLITE_UNUSABLE = ("unable to open database file", "disk i/o error", "disk is full", "readonly")


def _translate_store_errors(engine: Engine) -> Engine:
    """Turn "the store is broken or gone" driver errors into one ``StoreError`` here, once.

    Every command and request goes through an engine, so a corrupted SQLite file or a
    PostgreSQL server that cannot be reached is reported the same way everywhere, with what
    to do, instead of as the driver's traceback. Other database errors pass through
    unchanged (callers retry or report those themselves).
    """
    where = engine.url.render_as_string(hide_password=True)
    database = engine.url.database or ""

    @event.listens_for(engine, "handle_error")
    def _on_error(ctx: Any) -> None:
        original = ctx.original_exception
        message = str(original).lower()
        if engine.dialect.name == "sqlite":
            if isinstance(original, sqlite3.DatabaseError) and any(
                m in message for m in _SQLITE_CORRUPT
            ):
                raise StoreError(
                    f"the metadata database {database} is corrupted ({original}). Restore it "
                    "from a backup, or move it aside (loopml then starts an empty "
                    "workspace there); the artifact store is not affected"
                ) from None
            if isinstance(original, sqlite3.OperationalError) and any(
                m in message for m in _SQLITE_UNUSABLE
            ):
                raise StoreError(
                    f"cannot use the metadata database {database}: {original}. Check that "
                    "its folder exists and is writable and that the disk has room"
                ) from None
            return
        if ctx.is_disconnect or _is_connect_failure(original):
            first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
            raise StoreError(
                f"cannot reach the metadata database {where}: {first_line}. Check that the "
                "server is running and the URL (LOOPML_DB or loopml.toml) is right"
            ) from None

    return engine


def _is_connect_failure(exc: BaseException) -> bool:
    # psycopg raises OperationalError for refused connections, unknown hosts and failed
    # authentication; it is the driver's "cannot talk to the server" class.
    return type(exc).__name__ == "OperationalError" and type(exc).__module__.startswith("psycopg")


def configure_sqlite(dbapi_conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """What every connection to a workspace's SQLite file is set to, whoever opens it."""
    # Take transaction control from the driver so BEGIN can be chosen per transaction.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # Searches probe the run tables at random; keeping more pages than the 2 MB default
    # saves a read() system call per probe once a workspace holds thousands of runs.
    # The cache is a ceiling, filled only by pages actually read.
    cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cur.close()


def _sqlite_engine(url: Any) -> Engine:
    if url.database and url.database != ":memory:":
        folder = os.path.dirname(os.path.abspath(url.database))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder {folder} for the metadata database: "
                f"{exc.strerror or exc}"
            ) from None
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        configure_sqlite(dbapi_conn, BUSY_TIMEOUT_MS)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
