"""A few SQLAlchemy Core statements run on SQLite without waiting, for a server's event loop.

The team server answers MLflow's ``log-metric`` once per logged point, thousands of times a
run, one request after another. Through SQLAlchemy's engine on a worker thread, one such
request cost about 0.5 ms of Python around 0.05 ms of SQLite's own work, plus two thread
hand-offs (docs/benchmarks-tracking-client.md). Run on the event loop itself, a
transaction must never wait for SQLite's write lock: another process may hold it for
seconds, and every other request would wait with it.

So ``NoWait`` keeps one connection of its own with a busy timeout of 0 and runs statements
built with SQLAlchemy Core on it: each is compiled once with the engine's own dialect (the
same SQL the engine would send) and its bind and result types are applied as the engine
applies them. When SQLite would make it wait (the write lock is taken, the connection is
in use by another thread) or reports any error, the transaction is rolled back and
``WouldWait`` is raised: the caller then does the same work the ordinary way, on a worker
thread, where waiting is allowed and errors are reported as everywhere else.

For a database other than a SQLite file there is nothing to gain (each statement is a
network round trip) and every use raises ``WouldWait``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.sql.elements import ClauseElement

from loopml.store.metadata.engine import configure_sqlite

MAX_CACHED = 256
Params = Mapping[str, Any] | list[dict[str, Any]] | None


class WouldWait(Exception):
    """The work needs to wait (or to report an error) and should be done the ordinary way."""


@dataclass(frozen=True)
class _Compiled:
    statement: ClauseElement  # held so that its id() is not reused while cached
    sql: str
    construct: Callable[[Mapping[str, Any]], dict[str, Any]]
    given: bool  # every bound value comes from the caller's parameters
    order: tuple[str, ...]
    binders: tuple[Callable[[Any], Any] | None, ...]
    row: Any  # a namedtuple class, or None for a statement that returns no rows
    readers: tuple[Callable[[Any], Any] | None, ...]

    def bind(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        # Values the statement holds itself (a literal in a WHERE) come from SQLAlchemy's
        # construct_params; when the caller gives every value, a lookup is enough.
        values = params if self.given else self.construct(params)
        return tuple(
            values[name] if binder is None else binder(values[name])
            for name, binder in zip(self.order, self.binders, strict=True)
        )


class Result:
    """The few parts of SQLAlchemy's ``Result`` that the shared code paths use."""

    def __init__(self, cursor: sqlite3.Cursor, compiled: _Compiled) -> None:
        self._cursor = cursor
        self._compiled = compiled

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def first(self) -> Any:
        raw = self._cursor.fetchone()
        self._cursor.close()
        if raw is None:
            return None
        readers = self._compiled.readers
        values = [raw[i] if r is None else r(raw[i]) for i, r in enumerate(readers)]
        return self._compiled.row(*values)

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]


class Connection:
    """A transaction on the no-wait connection; ``execute`` as SQLAlchemy's ``Connection``."""

    def __init__(self, owner: NoWait, conn: sqlite3.Connection) -> None:
        self._owner = owner
        self._conn = conn
        self.dialect = owner.dialect

    def execute(self, statement: ClauseElement, params: Params = None) -> Result:
        """One statement with one set of parameters, or with a list of them (executemany)."""
        if isinstance(params, list):
            compiled = self._owner.compiled(statement, params[0] if params else {})
            cursor = self._conn.executemany(compiled.sql, [compiled.bind(p) for p in params])
        else:
            given: Mapping[str, Any] = params or {}
            compiled = self._owner.compiled(statement, given)
            cursor = self._conn.execute(compiled.sql, compiled.bind(given))
        return Result(cursor, compiled)


class NoWait:
    """Statements on one SQLite connection that never waits; see the module's text."""

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect
        database = engine.url.database
        on_file = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
        self._path = database if on_file else None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, tuple[str, ...]], _Compiled] = {}

    def reading(self) -> _Transaction:
        """Reads, each statement on its own: each sees what was committed when it ran (no
        snapshot across them, which would cost a BEGIN and a COMMIT more)."""
        return _Transaction(self, None)

    def writing(self) -> _Transaction:
        """A write transaction that holds SQLite's write lock from its start, or WouldWait."""
        return _Transaction(self, "BEGIN IMMEDIATE")

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                conn = sqlite3.connect(self._path or "", timeout=0, check_same_thread=False)
            except sqlite3.Error:
                raise WouldWait from None
            try:
                configure_sqlite(conn, busy_timeout_ms=0)
            except sqlite3.Error:
                conn.close()
                raise WouldWait from None
            self._conn = conn
        return self._conn

    def compiled(self, statement: ClauseElement, params: Mapping[str, Any]) -> _Compiled:
        # The parameters' names in their given order: a call site passes them alike each
        # time, and sorting them would cost more than the rare second compile.
        keys = tuple(params)
        found = self._cache.get((id(statement), keys))
        if found is None:
            found = self._compile(statement, keys)
            if len(self._cache) >= MAX_CACHED:
                # Statements are meant to be built once (module constants); one built per
                # call would otherwise fill the cache without end.
                self._cache.clear()
            self._cache[(id(statement), keys)] = found
        return found

    def _compile(self, statement: ClauseElement, keys: tuple[str, ...]) -> _Compiled:
        dialect = self.dialect
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))
        order = tuple(compiled.positiontup or ())
        binders = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in order
        )
        columns = list(getattr(statement, "selected_columns", []))
        row = namedtuple("Row", [c.key for c in columns], rename=True) if columns else None
        readers = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        )
        given = all(name in keys and compiled.binds[name].key == name for name in order)
        return _Compiled(
            statement,
            compiled.string,
            compiled.construct_params,
            given,
            order,
            binders,
            row,
            readers,
        )


class _Transaction:
    """``with nowait.writing() as conn``: the connection is this thread's alone, or
    WouldWait; the transaction commits at the end, or rolls back on an error (a database
    error becomes WouldWait). A class rather than a generator: it runs twice per request."""

    __slots__ = ("_begin", "_conn", "_owner")

    def __init__(self, owner: NoWait, begin: str | None) -> None:
        self._owner = owner
        self._begin = begin
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> Connection:
        owner = self._owner
        if owner._path is None or not owner._lock.acquire(blocking=False):
            raise WouldWait
        try:
            conn = owner._connection()
            if self._begin is not None:
                conn.execute(self._begin)
        except BaseException as exc:
            owner._lock.release()
            if isinstance(exc, sqlite3.Error):
                raise WouldWait from None
            raise
        self._conn = conn
        return Connection(owner, conn)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        conn = self._conn
        assert conn is not None
        try:
            if exc is None and self._begin is not None:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as failed:
                    exc = failed
            if exc is not None:
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except sqlite3.Error:
                    # A connection that cannot even roll back is dropped (SQLite then
                    # rolls back as it closes); the next use opens a new one.
                    self._owner._drop()
                    raise WouldWait from None
                if isinstance(exc, sqlite3.Error):
                    raise WouldWait from None
        finally:
            self._owner._lock.release()
