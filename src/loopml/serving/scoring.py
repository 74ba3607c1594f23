"""Batch scoring: a Parquet file in, the same rows plus predictions out, in chunks.

Memory stays bounded by the chunk size whatever the file's size. The output is written to
a temporary file next to the target and renamed when complete, so a crash never leaves a
half-written result. With ``executor="ray"`` chunks are scored by Ray tasks (each loads
the model once per worker process); results are written in input order either way.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.core.errors import ConfigError, InvalidInputError, NotFoundError
from loopml.serving.model_source import ModelSource, Prediction, ServedModel
from loopml.store.workspace import Workspace

Progress = Callable[[int, int], None]
PREDICTION = "prediction"
RAY_IN_FLIGHT = 8


@dataclass(frozen=True)
class BatchResult:
    model: str
    rows: int
    seconds: float
    output: Path


def output_columns(model: ServedModel, prediction: Prediction) -> dict[str, pa.Array]:
    """``prediction`` plus, for classifiers, one ``proba_<class>`` column per class."""
    labels = np.asarray(prediction.labels)
    cols: dict[str, pa.Array] = {
        PREDICTION: pa.array(labels if labels.dtype.kind in "biuf" else labels.astype(str))
    }
    if prediction.proba is not None:
        classes = model.classes or list(range(prediction.proba.shape[1]))
        for j, c in enumerate(classes):
            cols[f"proba_{c}"] = pa.array(np.asarray(prediction.proba)[:, j], pa.float64())
    return cols


def score_table(model: ServedModel, table: pa.Table) -> pa.Table:
    missing = [c for c in model.columns if c not in table.column_names]
    if missing:
        raise InvalidInputError(
            f"the input lacks column(s) {missing} that {model.name}:{model.version} takes"
        )
    checked = model.check(table.select(model.columns))
    out = table
    for name, array in output_columns(model, model.predict(checked)).items():
        if name in out.column_names:
            raise InvalidInputError(
                f"the input already has a column named {name!r}; rename it before scoring"
            )
        out = out.append_column(name, array)
    return out


def predict_file(
    workspace: Workspace,
    ref: str,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    executor: str = "local",
    chunk_rows: int = 65_536,
    progress: Progress | None = None,
) -> BatchResult:
    src, dst = Path(input), Path(output)
    if not src.is_file():
        raise NotFoundError(f"no Parquet file at {src}")
    if chunk_rows < 1:
        raise InvalidInputError("chunk rows must be at least 1")
    try:
        parquet = pq.ParquetFile(src)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError(f"{src} is not a readable Parquet file: {exc}") from None
    total = parquet.metadata.num_rows
    started = time.perf_counter()
    source = ModelSource(workspace)
    name, version = source.resolve_version(ref)
    chunks = (pa.Table.from_batches([b]) for b in parquet.iter_batches(batch_size=chunk_rows))
    if executor == "local":
        model = source.load_version(name, version, ref)
        scored: Iterator[pa.Table] = (score_table(model, c) for c in chunks)
    elif executor == "ray":
        scored = _ray_scored(workspace, name, version, chunks)
    else:
        raise InvalidInputError(f"executor must be 'local' or 'ray', not {executor!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}-", suffix=".tmp")
    os.close(fd)
    writer: pq.ParquetWriter | None = None
    done = 0
    try:
        for table in scored:
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(
                table.cast(writer.schema) if table.schema != writer.schema else table
            )
            done += table.num_rows
            if progress is not None:
                progress(done, total)
        if writer is None:
            raise InvalidInputError(f"{src} has no rows to score")
        writer.close()
        writer = None
        os.replace(tmp, dst)
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return BatchResult(f"{name}:{version}", done, time.perf_counter() - started, dst)


def _ray_scored(
    workspace: Workspace, name: str, version: int, chunks: Iterator[pa.Table]
) -> Iterator[pa.Table]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'loopml[ray]'") from None
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    remote = ray.remote(_score_remote)
    spec = (workspace.db_url, workspace.artifacts_url)
    pending: list[Any] = []
    # Bounded in flight, yielded in submission order: memory stays flat, output is ordered.
    for chunk in chunks:
        pending.append(remote.remote(spec, name, version, chunk))
        if len(pending) >= RAY_IN_FLIGHT:
            yield ray.get(pending.pop(0))
    while pending:
        yield ray.get(pending.pop(0))


_RAY_MODELS: dict[tuple[str, str, str, int], ServedModel] = {}


def _score_remote(spec: tuple[str, str], name: str, version: int, chunk: pa.Table) -> pa.Table:
    key = (*spec, name, version)
    model = _RAY_MODELS.get(key)
    if model is None:
        ws = Workspace(spec[0], spec[1], auto_migrate=False)
        model = ModelSource(ws).load_version(name, version, f"{name}:{version}")
        _RAY_MODELS[key] = model
    return score_table(model, chunk)
