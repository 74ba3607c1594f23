"""Reading an MLflow tracking database directly with SQLAlchemy (MLflow is not needed).

The file is opened read-only: the importer never changes the store it copies from. Before
anything is copied the reader checks that the database is an MLflow store at a schema
revision it knows, and that the tables hold the columns it selects.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from loopml.importers.mlflow_files import local_folder
from loopml.importers.mlflow_records import (
    Inventory,
    MlflowSourceError,
    Point,
    RunData,
    SourceExperiment,
    SourceModel,
    SourceRun,
    SourceVersion,
)
from loopml.importers.mlflow_schema import KNOWN_REVISIONS, NEWEST_KNOWN, NEWEST_RELEASE

REQUIRED = {
    "experiments": {"experiment_id", "name", "lifecycle_stage"},
    "runs": {"run_uuid", "experiment_id", "status", "start_time", "end_time", "artifact_uri"},
    "params": {"key", "value", "run_uuid"},
    "tags": {"key", "value", "run_uuid"},
    "metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
}
ACTIVE = "COALESCE(lifecycle_stage, 'active') = 'active'"


def open_engine(url: str) -> Engine:
    """A read-only engine on ``url``; a missing SQLite file is an error, never created."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MlflowSourceError(
            f"{url!r} is not a database URL (e.g. sqlite:///mlflow.db)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if not db or db == ":memory:":
            raise MlflowSourceError("name the MLflow database file: sqlite:///path/to/mlflow.db")
        path = Path(db)
        if not path.is_file():
            raise MlflowSourceError(f"no MLflow database at {db}: the file does not exist")
        return create_engine(f"sqlite:///file:{path.resolve().as_posix()}?mode=ro&uri=true")
    try:
        return create_engine(parsed)
    except (NoSuchModuleError, ImportError) as exc:
        raise MlflowSourceError(f"cannot open {parsed.render_as_string()}: {exc}") from None


class SqlSource:
    """An MLflow store read with SQL; ``artifacts`` overrides where its files are now."""

    def __init__(self, url: str, artifacts: Path | None = None) -> None:
        self.engine = open_engine(url)
        self.description = make_url(url).render_as_string(hide_password=True)
        self.root = artifacts
        self._notes: list[str] = []
        try:
            self._check()
        except BaseException:
            self.engine.dispose()
            raise
        self._columns = {
            table: {c["name"] for c in inspect(self.engine).get_columns(table)}
            for table in ("runs", "model_versions")
            if self._has(table)
        }

    def _has(self, table: str) -> bool:
        return table in self._tables

    def _check(self) -> None:
        what = self.description
        try:
            self._tables = set(inspect(self.engine).get_table_names())
            if "alembic_version" not in self._tables or "runs" not in self._tables:
                raise MlflowSourceError(
                    f"{what} is not an MLflow tracking store (it has no alembic_version and "
                    "runs tables)"
                )
            with self.engine.connect() as conn:
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            for table, wanted in REQUIRED.items():
                have = (
                    {c["name"] for c in inspect(self.engine).get_columns(table)}
                    if table in self._tables
                    else set()
                )
                if not wanted <= have:
                    raise MlflowSourceError(
                        f"{what} is not an MLflow tracking store loopml can read: table "
                        f"{table!r} lacks {', '.join(sorted(wanted - have))}"
                    )
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            raise MlflowSourceError(f"cannot read {what} as an MLflow store: {reason}") from None
        if revision not in KNOWN_REVISIONS:
            self._notes.append(
                f"{what} is at MLflow schema revision {revision!r}, which this loopml does not "
                f"know (it knows MLflow's up to {NEWEST_RELEASE}, revision {NEWEST_KNOWN}); "
                "every table and column it reads was there, so it was read as usual: look "
                "over what arrived"
            )

    def _rows(self, sql: str, **binds: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(text(sql), binds).all())
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            raise MlflowSourceError(f"reading {self.description} failed: {reason}") from None

    def inventory(self) -> Inventory:
        experiments = [
            SourceExperiment(str(r[0]), str(r[1]))
            for r in self._rows(
                f"SELECT experiment_id, name FROM experiments WHERE {ACTIVE} ORDER BY experiment_id"
            )
        ]
        name = "name" if "name" in self._columns["runs"] else "NULL"
        active = ", ".join(str(int(e.id)) for e in experiments) or "NULL"
        runs = [
            SourceRun(str(r[0]), str(r[1]), r[2], str(r[3]), r[4], r[5], r[6])
            for r in self._rows(
                f"SELECT run_uuid, experiment_id, {name}, status, start_time, end_time, "
                f"artifact_uri FROM runs WHERE {ACTIVE} AND experiment_id IN ({active}) "
                "ORDER BY start_time, run_uuid"
            )
        ]
        total = self._rows("SELECT count(*) FROM runs")[0][0]
        return Inventory(experiments, runs, int(total) - len(runs), list(self._notes))

    def run_data(self, run: SourceRun) -> RunData:
        params = dict(self._rows("SELECT key, value FROM params WHERE run_uuid = :r", r=run.id))
        tags = {
            k: "" if v is None else v
            for k, v in self._rows("SELECT key, value FROM tags WHERE run_uuid = :r", r=run.id)
        }
        metrics: dict[str, list[Point]] = {}
        for key, step, stamp, value, is_nan in self._rows(
            "SELECT key, step, timestamp, value, is_nan FROM metrics WHERE run_uuid = :r "
            "ORDER BY key, step, timestamp",
            r=run.id,
        ):
            try:
                v = math.nan if is_nan or value is None else float(value)
                point = Point(int(step or 0), int(stamp), v)
            except (TypeError, ValueError):
                raise MlflowSourceError(
                    f"run {run.id} in {self.description} has a malformed point of metric "
                    f"{key!r} (step {step!r}, timestamp {stamp!r}, value {value!r}); nothing "
                    "of that run was copied"
                ) from None
            metrics.setdefault(str(key), []).append(point)
        return RunData(
            {str(k): "" if v is None else str(v) for k, v in params.items()}, tags, metrics
        )

    def models(self) -> list[SourceModel]:
        if not {"registered_models", "model_versions"} <= self._tables:
            return []
        where = (
            "WHERE workspace = 'default'" if "workspace" in self._columns["model_versions"] else ""
        )
        storage = (
            "storage_location" if "storage_location" in self._columns["model_versions"] else "NULL"
        )
        versions: dict[str, list[SourceVersion]] = {}
        for r in self._rows(
            f"SELECT name, version, source, run_id, {storage}, description FROM model_versions "
            f"{where} ORDER BY name, version"
        ):
            versions.setdefault(r[0], []).append(
                SourceVersion(r[0], int(r[1]), r[2], r[3], r[4], r[5] or "")
            )
        version_tags: dict[tuple[str, int], dict[str, str]] = {}
        if "model_version_tags" in self._tables:
            for name, version, key, value in self._rows(
                f"SELECT name, version, key, value FROM model_version_tags {where}"
            ):
                version_tags.setdefault((name, int(version)), {})[key] = value or ""
        model_tags: dict[str, dict[str, str]] = {}
        if "registered_model_tags" in self._tables:
            for name, key, value in self._rows(
                f"SELECT name, key, value FROM registered_model_tags {where}"
            ):
                model_tags.setdefault(name, {})[key] = value or ""
        aliases: dict[str, dict[str, int]] = {}
        if "registered_model_aliases" in self._tables:
            for name, alias, version in self._rows(
                f"SELECT name, alias, version FROM registered_model_aliases {where}"
            ):
                aliases.setdefault(name, {})[alias] = int(version)
        return [
            SourceModel(
                name,
                description or "",
                model_tags.get(name, {}),
                aliases.get(name, {}),
                [
                    SourceVersion(
                        v.model,
                        v.version,
                        v.source,
                        v.run_id,
                        v.storage_location,
                        v.description,
                        version_tags.get((name, v.version), {}),
                    )
                    for v in versions.get(name, [])
                ],
            )
            for name, description in self._rows(
                f"SELECT name, description FROM registered_models {where} ORDER BY name"
            )
        ]

    @contextlib.contextmanager
    def files(self, uri: str | None, experiment_id: str) -> Iterator[Path | None]:
        yield local_folder(uri, experiment_id, self.root)

    def close(self) -> None:
        self.engine.dispose()
