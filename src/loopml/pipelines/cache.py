"""Cache records: step cache key -> stored output. Metadata only, kept apart from the
outputs themselves (which are artifacts), as Hamilton keeps its metadata store apart
from its result store.

A record is only trusted after its artifact verifies: an output that was deleted,
truncated or tampered with is dropped from the cache and the step recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from loopml.core import clock
from loopml.core.errors import IntegrityError, InvalidInputError, NotFoundError
from loopml.pipelines import values
from loopml.pipelines.cache_key import CacheKey
from loopml.store.metadata.tables import pipeline_cache
from loopml.store.workspace import Workspace


@dataclass(frozen=True)
class CacheEntry:
    key: str
    step: str
    code_version: str
    output_kind: str
    output_digest: str
    output_artifact_id: str
    execution_id: str
    created_at: float
    key_parts: dict[str, Any] | None = None

    def decode(self) -> CacheKey | None:
        """The parts this entry's key was computed from (None for entries made before
        keys were stored with their parts)."""
        return CacheKey.from_json(self.key_parts)


@dataclass(frozen=True)
class Lookup:
    entry: CacheEntry | None
    # Why a record was not used: "" (none found), "missing" or "corrupted".
    rejected: str = ""


class StepCache:
    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace

    def get(self, key: str) -> CacheEntry | None:
        with self.ws.engine.connect() as conn:
            row = conn.execute(select(pipeline_cache).where(pipeline_cache.c.key == key)).first()
        return None if row is None else CacheEntry(**row._mapping)

    def lookup(self, key: str) -> Lookup:
        """The entry for ``key`` if its output is intact; a broken one is dropped."""
        entry = self.get(key)
        if entry is None:
            return Lookup(None)
        try:
            values.verify(
                self.ws.artifacts,
                entry.output_kind,
                entry.output_digest,
                what=f"cached output of step {entry.step}",
            )
        except NotFoundError:
            self.drop(key)
            return Lookup(None, "missing")
        except (IntegrityError, InvalidInputError):
            self.drop(key)
            values.purge_corrupted(self.ws.artifacts, entry.output_kind, entry.output_digest)
            return Lookup(None, "corrupted")
        return Lookup(entry)

    def record(
        self,
        key: str,
        *,
        step: str,
        code_version: str,
        output: values.StoredValue,
        artifact_id: str,
        execution_id: str,
        key_parts: dict[str, Any] | None = None,
    ) -> None:
        with self.ws.write_engine.begin() as conn:
            # Delete-then-insert: an upsert that reads the same on SQLite and PostgreSQL.
            conn.execute(delete(pipeline_cache).where(pipeline_cache.c.key == key))
            conn.execute(
                insert(pipeline_cache).values(
                    key=key,
                    step=step,
                    code_version=code_version,
                    output_kind=output.kind,
                    output_digest=output.digest,
                    output_artifact_id=artifact_id,
                    execution_id=execution_id,
                    created_at=clock.now(),
                    key_parts=key_parts,
                )
            )

    def drop(self, key: str) -> None:
        with self.ws.write_engine.begin() as conn:
            conn.execute(delete(pipeline_cache).where(pipeline_cache.c.key == key))

    def clear(self, step: str | None = None) -> int:
        with self.ws.write_engine.begin() as conn:
            q = delete(pipeline_cache)
            if step is not None:
                q = q.where(pipeline_cache.c.step == step)
            return int(conn.execute(q).rowcount or 0)
