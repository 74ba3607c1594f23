"""A dataset version as users hold it: metadata plus verified access to its data.

``DatasetVersion`` is what the catalog returns (``lm.datasets.get``); ``lm.Dataset`` is
the pipeline annotation for a step that returns a table, a different thing."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.core.clock import format_ts
from loopml.core.display import Summarized, Summary
from loopml.core.errors import IntegrityError, InvalidInputError
from loopml.data.profile import Profile
from loopml.data.schema import Schema
from loopml.store.artifacts import TreeEntry
from loopml.store.lineage import Direction, LineageGraph
from loopml.store.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class DatasetInfo:
    """The catalog entry of a dataset (all versions)."""

    name: str
    description: str
    owner: str | None
    tags: dict[str, str]
    column_descriptions: dict[str, str]
    created_at: float
    updated_at: float
    latest_version: int | None
    num_versions: int
    columns: tuple[str, ...] = ()


@dataclass(frozen=True, repr=False)
class DatasetVersion(Summarized):
    """One immutable version of a named dataset. Every read verifies the stored bytes.

    ``artifact_id`` is its node in the lineage graph: what runs and model versions link
    to (``lm.models.register(..., datasets=[ds])`` takes the version itself)."""

    name: str
    version: int
    digest: str
    num_rows: int
    num_columns: int
    created_at: float
    artifact_id: str
    profile_digest: str | None
    schema_version: int | None
    description: str = ""
    properties: dict[str, Any] = field(default_factory=dict, repr=False)
    created_by: str | None = None
    workspace: Workspace = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def _summary(self) -> Summary:
        return Summary(
            f"Dataset {self.ref}",
            [
                ("rows", f"{self.num_rows:,}"),
                ("columns", self.num_columns),
                ("added", format_ts(self.created_at)),
                ("digest", self.digest[:19]),
            ],
        )

    def _what(self, part: str) -> str:
        return f"dataset {self.ref} {part}"

    @functools.cached_property
    def files(self) -> tuple[TreeEntry, ...]:
        return self.workspace.artifacts.get_tree(self.digest, what=self._what("manifest")).entries

    @functools.cached_property
    def profile(self) -> Profile:
        if self.profile_digest is None:
            raise InvalidInputError(f"dataset {self.ref} was added without a profile")
        raw = self.workspace.artifacts.get_bytes(self.profile_digest, what=self._what("profile"))
        return Profile.from_json(raw)

    @functools.cached_property
    def schema(self) -> Schema | None:
        if self.schema_version is None:
            return None
        from loopml.data.catalog.schemas import CatalogSchemas

        return CatalogSchemas(self.workspace).get_schema(self.name, self.schema_version)

    def paths(self) -> list[str]:
        """Verified local paths of the version's Parquet files, in order."""
        return [
            self.workspace.artifacts.local_path(e.digest, what=self._what(f"file {e.path}"))
            for e in self.files
        ]

    def to_polars(self) -> pl.DataFrame:
        frames = [self._read(p, e) for p, e in zip(self.paths(), self.files, strict=True)]
        return pl.concat(frames) if len(frames) > 1 else frames[0]

    def scan(self) -> pl.LazyFrame:
        """A lazy frame over the verified files, for queries larger than memory."""
        return pl.scan_parquet(self.paths())

    def to_arrow(self) -> pa.Table:
        tables = []
        for path, entry in zip(self.paths(), self.files, strict=True):
            try:
                tables.append(pq.read_table(path))
            except (OSError, pa.ArrowException) as exc:
                raise IntegrityError(f"{self._what(f'file {entry.path}')}: {exc}") from None
        return pa.concat_tables(tables)

    def to_pandas(self) -> pd.DataFrame:
        return self.to_arrow().to_pandas()

    def _read(self, path: str, entry: TreeEntry) -> pl.DataFrame:
        try:
            return pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise IntegrityError(f"{self._what(f'file {entry.path}')}: {exc}") from None

    def verify(self) -> int:
        """Re-hash every stored part; raise IntegrityError naming the first bad one."""
        store = self.workspace.artifacts
        size = 0
        for e in self.files:
            size += store.verify(e.digest, what=self._what(f"file {e.path}"))
        if self.profile_digest is not None:
            store.verify(self.profile_digest, what=self._what("profile"))
        return size

    def lineage(self, direction: Direction = "downstream") -> LineageGraph:
        """The runs that read this version (downstream) or that produced it (upstream)."""
        return self.workspace.lineage.graph(self.artifact_id, direction)


# The name this class had before it said what it is; kept for code that imports it.
Dataset = DatasetVersion
