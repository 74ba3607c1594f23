"""The catalog entry of a dataset (all its versions): description, owner, tags and column
descriptions, checked and written in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from loopml.core import names
from loopml.core.errors import InvalidInputError
from loopml.data.profile import Profile
from loopml.store.metadata.tables import datasets

# Tags are a mapping, as on runs and models; a list of names is accepted and each name
# becomes a key with an empty value.
Tags = Mapping[str, Any] | Sequence[str]


def check_name(name: str) -> str:
    return names.check_name(name, what="dataset name")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"flights"`` -> (flights, None) meaning latest; ``"flights:3"`` -> (flights, 3)."""
    parsed = names.parse_ref(ref, "dataset reference", allow_alias=False)
    return parsed.name, parsed.version


def check_tags(tags: Tags | None) -> dict[str, str] | None:
    if tags is None:
        return None
    if isinstance(tags, Mapping):
        if not all(isinstance(k, str) and k for k in tags):
            raise InvalidInputError("tag names must be non-empty strings")
        return {k: "" if v is None else str(v) for k, v in tags.items()}
    if isinstance(tags, str) or not all(isinstance(t, str) and t for t in tags):
        raise InvalidInputError(
            "tags must be a mapping such as {'source': 'faa'} or a list of non-empty "
            "strings such as ['faa', 'raw']"
        )
    return dict.fromkeys(tags, "")


def stored_tags(raw: Any) -> dict[str, str]:
    """Tags as stored; rows written before tags were mappings hold a list."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    return dict.fromkeys((str(t) for t in raw or ()), "")


def check_descriptions(descriptions: Mapping[str, str] | None, prof: Profile) -> None:
    if not descriptions:
        return
    unknown = sorted(set(descriptions) - set(prof.columns))
    if unknown:
        raise InvalidInputError(
            f"column_descriptions name column(s) {unknown} that the dataset does not have"
        )


def upsert_entry(conn: Connection, name: str, meta: Mapping[str, Any], now: float) -> int:
    """The dataset's id, creating its entry or applying the non-None fields of ``meta``.

    The row lock (PostgreSQL; SQLite writers are serialised anyway) makes concurrent
    writers of one dataset take their version numbers in turn."""
    row = conn.execute(select(datasets).where(datasets.c.name == name).with_for_update()).first()
    changes: dict[str, Any] = {}
    if meta.get("description") is not None:
        changes["description"] = str(meta["description"])
    if meta.get("owner") is not None:
        changes["owner"] = str(meta["owner"])
    if meta.get("tags") is not None:
        changes["tags"] = dict(meta["tags"])
    if row is None:
        result = conn.execute(
            insert(datasets).values(
                name=name,
                description=changes.get("description", ""),
                owner=changes.get("owner"),
                tags=changes.get("tags", {}),
                column_descriptions=dict(meta.get("column_descriptions") or {}),
                created_at=now,
                updated_at=now,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])
    if meta.get("column_descriptions"):
        changes["column_descriptions"] = {
            **row.column_descriptions,
            **dict(meta["column_descriptions"]),
        }
    if changes:
        conn.execute(
            update(datasets).where(datasets.c.id == row.id).values(**changes, updated_at=now)
        )
    return int(row.id)
