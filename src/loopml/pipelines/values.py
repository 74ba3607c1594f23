"""Step outputs to artifacts and back.

Tables become one Parquet blob, models a model-artifact tree (``loopml.registry``), plain
values canonical JSON; a catalog dataset is already an artifact and is passed by its
digest. Loading verifies every byte against the digest (the artifact store does), so a
downstream step never reads tampered data. Everything here needs only the artifact
store, not the metadata database: it is what runs inside process and Ray workers.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import polars as pl

from loopml.core.errors import InvalidInputError
from loopml.pipelines.cache_key import canonical_json
from loopml.pipelines.types import kind_of_value, table_flavor
from loopml.store.artifacts import ArtifactStore


@dataclass(frozen=True)
class StoredValue:
    kind: str
    digest: str
    size: int
    # Set when the value is already a lineage node (a catalog dataset version).
    artifact_id: str | None = None


def store(artifacts: ArtifactStore, value: Any, kind: str, *, what: str) -> StoredValue:
    """Write ``value`` as ``kind`` (``auto``: decided from the value)."""
    if kind == "auto":
        found = kind_of_value(value)
        if found is None:
            raise InvalidInputError(
                f"{what} returned a {type(value).__module__}.{type(value).__qualname__}, "
                "which loopml cannot store: return a table, a model of a supported "
                "library, or a JSON value (dict, list, str, number, bool)"
            )
        kind = found
    if kind == "none":
        if value is not None:
            raise InvalidInputError(f"{what} is annotated -> None but returned a value")
        kind = "json"
    if kind == "table":
        return _store_table(artifacts, value, what)
    if kind == "model":
        from loopml.registry.artifact import save_model

        saved = save_model(artifacts, value)
        return StoredValue("model", saved.digest, saved.size)
    if kind == "dataset":
        from loopml.data.dataset import Dataset

        if not isinstance(value, Dataset):
            raise InvalidInputError(f"{what} must return a catalog Dataset, got {type(value)}")
        return StoredValue("dataset", value.digest, value.num_rows, value.artifact_id)
    if kind == "json":
        if not isinstance(value, dict | list | tuple | str | int | float | bool | type(None)):
            raise InvalidInputError(
                f"{what} returned a {type(value).__name__}, not a JSON value (dict, list, str, "
                "number, bool, None); change its return annotation or what it returns"
            )
        data = canonical_json(value, what=f"the value {what} returned").encode()
        blob = artifacts.put_bytes(data)
        return StoredValue("json", blob.digest, blob.size)
    raise InvalidInputError(f"{what}: unknown output kind {kind!r}")


def _store_table(artifacts: ArtifactStore, value: Any, what: str) -> StoredValue:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    fd, path = tempfile.mkstemp(prefix="loopml-step-", suffix=".parquet")
    os.close(fd)
    try:
        if isinstance(value, pl.DataFrame):
            value.write_parquet(path)
        elif isinstance(value, pd.DataFrame):
            pq.write_table(pa.Table.from_pandas(value), path)
        elif isinstance(value, pa.Table):
            pq.write_table(value, path)
        else:
            raise InvalidInputError(
                f"{what} is annotated to return a table but returned a "
                f"{type(value).__name__}; return a Polars or pandas DataFrame or an Arrow table"
            )
        blob = artifacts.put_file(path)
    finally:
        os.unlink(path)
    return StoredValue("table", blob.digest, blob.size)


def verify(artifacts: ArtifactStore, kind: str, digest: str, *, what: str) -> None:
    """Raise (NotFoundError, IntegrityError) unless every byte of the output is intact."""
    if kind in ("model", "dataset"):
        tree = artifacts.get_tree(digest, what=what)
        for entry in tree.entries:
            _verify_blob(artifacts, entry.digest, what=f"{what}/{entry.path}")
    else:
        _verify_blob(artifacts, digest, what=what)


SMALL_BLOB = 4 * 1024 * 1024


def _verify_blob(artifacts: ArtifactStore, digest: str, *, what: str) -> None:
    # Streaming verification sets up a 16 MB buffer per call; a cache hit on a small
    # output (most JSON values) is far cheaper hashed in memory (get_bytes verifies).
    from loopml.core.errors import NotFoundError

    try:
        size = artifacts.fs.size(artifacts.path_of(digest))
    except FileNotFoundError:
        raise NotFoundError(f"artifact {what} is not in the artifact store") from None
    if size is not None and size <= SMALL_BLOB:
        artifacts.get_bytes(digest, what=what)
    else:
        artifacts.verify(digest, what=what)


def purge_corrupted(artifacts: ArtifactStore, kind: str, digest: str) -> None:
    """Delete stored objects of an output that do not match their digest.

    Content-addressed writes skip objects that already exist, so a corrupted blob would
    survive recomputation; removing it lets the recomputed output be written afresh.
    Bytes that fail their digest are not the artifact they claim to be: nothing is lost.
    """
    from loopml.core.errors import IntegrityError, NotFoundError

    pieces = [digest]
    if kind in ("model", "dataset"):
        try:
            pieces += [e.digest for e in artifacts.get_tree(digest).entries]
        except (IntegrityError, InvalidInputError):
            pieces = [digest]
        except NotFoundError:
            return
    for piece in pieces:
        try:
            artifacts.verify(piece)
        except IntegrityError:
            artifacts.delete(piece)
        except NotFoundError:
            continue


def load(artifacts: ArtifactStore, kind: str, digest: str, annotation: Any, *, what: str) -> Any:
    """The stored value, shaped as the receiving parameter's annotation asks."""
    if kind == "json":
        return json.loads(artifacts.get_bytes(digest, what=what))
    if kind == "model":
        from loopml.registry.artifact import load_model
        from loopml.registry.loaded import LoadedModel

        loaded = load_model(artifacts, digest, what=what)
        return loaded if annotation is LoadedModel else loaded.native
    if kind == "table":
        paths = [artifacts.local_path(digest, what=what)]
    elif kind == "dataset":
        tree = artifacts.get_tree(digest, what=what)
        paths = [artifacts.local_path(e.digest, what=f"{what}/{e.path}") for e in tree.entries]
    else:
        raise InvalidInputError(f"{what}: unknown output kind {kind!r}")
    frame = pl.read_parquet(paths)
    flavor = table_flavor(annotation)
    if flavor == "pandas":
        return frame.to_pandas()
    if flavor == "arrow":
        return frame.to_arrow()
    return frame
