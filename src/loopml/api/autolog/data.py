"""The training data of a fit: a content digest for lineage and a sample for signatures."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from loopml.core import hashing
from loopml.registry.table import to_arrow

SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class DataDigest:
    digest: str
    rows: int
    columns: list[dict[str, str]]
    has_target: bool


def _is_sparse(x: Any) -> bool:
    return type(x).__module__.startswith("scipy.sparse")


def _table(x: Any) -> pa.Table:
    if isinstance(x, np.ndarray) and x.ndim == 1:
        return pa.table({"f0": pa.array(x)})
    if type(x).__module__.startswith("pandas") and type(x).__name__ == "Series":
        return pa.table({str(x.name or "f0"): pa.Array.from_pandas(x)})
    if type(x).__module__.startswith("polars") and type(x).__name__ == "Series":
        return pa.table({x.name or "f0": x.to_arrow()})
    if isinstance(x, list | tuple):
        return _table(np.asarray(x))
    return to_arrow(x, what="training data")


def _hash_table(h: hashing.Hasher, table: pa.Table) -> None:
    # One batch, no schema metadata (pandas' index notes): the same values and column
    # types give the same bytes however the table was chunked or where it came from.
    table = table.replace_schema_metadata(None).combine_chunks()
    # Streamed into the hash as Arrow writes it: no second copy of the data in memory.
    with pa.PythonFile(_HashSink(h), mode="w") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)


class _HashSink(io.RawIOBase):
    def __init__(self, h: hashing.Hasher) -> None:
        self._h = h

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b)
        self._h.update(view)
        return view.nbytes


def _hash_sparse(h: hashing.Hasher, x: Any) -> None:
    csr = x.tocsr()
    h.update(f"csr:{csr.shape[0]}x{csr.shape[1]}:{csr.dtype}".encode())
    for part in (csr.data, csr.indices, csr.indptr):
        h.update(np.ascontiguousarray(part).data.cast("B"))


def digest(X: Any, y: Any = None) -> DataDigest:
    """A digest of the features and (when given) the target, with their shape."""
    h = hashing.Hasher()
    if _is_sparse(X):
        _hash_sparse(h, X)
        rows = int(X.shape[0])
        columns = [{"name": n, "type": str(X.dtype)} for n in _array_names(X.shape[1])]
    else:
        table = _table(X)
        _hash_table(h, table)
        rows = table.num_rows
        columns = [{"name": f.name, "type": str(f.type)} for f in table.schema]
    if y is not None:
        h.update(b"\x00target\x00")
        if _is_sparse(y):
            _hash_sparse(h, y)
        else:
            _hash_table(h, _table(y))
    return DataDigest(h.digest(), rows, columns, y is not None)


def _array_names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def sample(X: Any, n: int = SAMPLE_ROWS) -> Any:
    """The first ``n`` rows, in a form the registry infers a signature from, or None."""
    if X is None:
        return None
    if _is_sparse(X):
        return np.asarray(X[:n].todense())
    module = type(X).__module__
    if module.startswith("pandas") and hasattr(X, "iloc"):
        return X.iloc[:n]
    if module.startswith("polars") and hasattr(X, "head"):
        return X.head(n)
    if isinstance(X, pa.Table | pa.RecordBatch):
        return X.slice(0, n)
    if isinstance(X, np.ndarray) and X.ndim == 2:
        return X[:n]
    if isinstance(X, list | tuple):
        arr = np.asarray(X)
        return arr[:n] if arr.ndim == 2 else None
    return None
