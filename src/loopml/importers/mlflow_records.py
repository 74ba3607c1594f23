"""What an MLflow tracking store holds, as the importer reads it from either kind of source.

Times stay in MLflow's milliseconds here; the importer converts them once, when it writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from loopml.core.errors import LoopmlError


class MlflowSourceError(LoopmlError):
    """The MLflow store cannot be read: not an MLflow store, unreachable, unknown schema."""


@dataclass(frozen=True)
class SourceExperiment:
    id: str
    name: str


@dataclass(frozen=True)
class SourceRun:
    id: str
    experiment_id: str
    name: str | None
    status: str  # MLflow's: RUNNING, SCHEDULED, FINISHED, FAILED, KILLED
    start_ms: int | None
    end_ms: int | None
    artifact_uri: str | None


@dataclass(frozen=True)
class Point:
    step: int
    timestamp_ms: int
    value: float  # NaN where MLflow recorded NaN


@dataclass(frozen=True)
class RunData:
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, list[Point]]


@dataclass(frozen=True)
class SourceVersion:
    model: str
    version: int
    source: str | None
    run_id: str | None
    storage_location: str | None
    description: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceModel:
    name: str
    description: str
    tags: dict[str, str]
    aliases: dict[str, int]
    versions: list[SourceVersion]


@dataclass(frozen=True)
class Inventory:
    """Everything to copy, read before anything is written."""

    experiments: list[SourceExperiment]
    runs: list[SourceRun]
    deleted_runs: int
    notes: list[str] = field(default_factory=list)  # what the import report should say


class Source(Protocol):
    """An MLflow store: a database read with SQL, or a live server read over REST."""

    description: str

    def inventory(self) -> Inventory: ...

    def run_data(self, run: SourceRun) -> RunData: ...

    def models(self) -> list[SourceModel]: ...

    def files(self, uri: str | None, experiment_id: str) -> AbstractContextManager[Path | None]:
        """A local folder holding the files under ``uri`` (None if there are none)."""
        ...

    def close(self) -> None: ...


def walk(folder: Path) -> Iterator[tuple[str, Path]]:
    """Every file under ``folder`` as (relative POSIX path, path), in a stable order."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path.relative_to(folder).as_posix(), path
