"""What served traffic is compared with: the training data of the model version that answered.

A version's registration links the dataset versions it was trained on. Their stored
profiles, restricted to the model's input columns, are the drift reference; their schema
(or one inferred from the profile) judges the quality of served inputs. The model's own
predictions on that data are the reference for prediction drift and, with the training
target, the calibration set for estimated performance until labelled served traffic can
take its place (``Monitor.reference_period``). Those predictions are computed once per
model artifact and stored as an artifact of kind ``monitor_reference``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from loopml.core.errors import InvalidInputError, LoopmlError
from loopml.data.catalog import Catalog
from loopml.data.dataset import Dataset
from loopml.data.profile import Profile, merge_all
from loopml.data.schema import Schema, infer_schema
from loopml.monitor.scores import output_table
from loopml.registry.model_registry import ModelVersion, Registry
from loopml.store.metadata.tables import artifacts, dataset_versions, datasets
from loopml.store.workspace import Workspace

REFERENCE_KIND = "monitor_reference"
log = logging.getLogger("loopml.monitor")


@dataclass(frozen=True)
class Reference:
    """The training-side view of one model version."""

    version: ModelVersion
    datasets: tuple[Dataset, ...]
    inputs: Profile | None
    schema: Schema | None
    target: str | None = None
    # The model's predictions on its training data: prediction, proba, label (if known).
    scored: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def task(self) -> str:
        return self.version.signature.output.task

    @property
    def classes(self) -> list[Any] | None:
        c = self.version.signature.output.classes
        return None if c is None else list(c)

    def outputs(self) -> Profile | None:
        """Profile of the model's outputs on its training data (prediction, score)."""
        from loopml.data.profile import profile

        if self.scored is None or self.scored.height == 0:
            return None
        return profile(output_table(self.scored, self.classes))


class References:
    """References by model version, built once per process (they never change)."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.registry = Registry(workspace)
        self._cache: dict[tuple[str, int], Reference] = {}
        self._inputs: dict[tuple[str, int], Reference] = {}  # without predictions

    def get(self, model: str, version: int) -> Reference:
        """The version's reference, with the model's predictions on its training data (made
        and stored once per model artifact)."""
        key = (model, version)
        if key not in self._cache:
            self._cache[key] = self._with_scores(self.inputs(model, version))
        return self._cache[key]

    def inputs(self, model: str, version: int) -> Reference:
        """The version's reference without predictions: the training inputs' profile and
        schema (what a log writer needs to summarise what it writes)."""
        key = (model, version)
        if key in self._cache:
            return self._cache[key]
        if key not in self._inputs:
            self._inputs[key] = self._build(model, version)
        return self._inputs[key]

    def _build(self, model: str, version: int) -> Reference:
        mv = self.registry.get_version(model, version)
        found = _datasets(self.ws, mv.dataset_artifact_ids)
        columns = mv.signature.columns
        inputs = None
        usable = self._usable(found, columns)
        if usable:
            merged = merge_all(d.profile for d in usable)
            inputs = Profile(merged.num_rows, {c: merged.columns[c] for c in columns})
        return Reference(mv, tuple(found), inputs, _schema(usable, inputs, columns))

    @staticmethod
    def _usable(found: tuple[Dataset, ...] | list[Dataset], columns: list[str]) -> list[Dataset]:
        return [d for d in found if all(c in d.profile.columns for c in columns)]

    def _with_scores(self, ref: Reference) -> Reference:
        mv = ref.version
        usable = self._usable(ref.datasets, mv.signature.columns)
        if not usable:
            return ref
        try:
            scored, target = self._scored(mv, usable)
        except LoopmlError as exc:
            log.warning("no prediction reference for %s: %s", mv.ref, exc)
            return ref
        return Reference(mv, ref.datasets, ref.inputs, ref.schema, target, scored)

    def _scored(self, mv: ModelVersion, usable: list[Dataset]) -> tuple[pl.DataFrame, str | None]:
        stored = _stored_reference(self.ws, mv)
        if stored is not None:
            return stored
        data = pl.concat([d.to_polars() for d in usable], how="diagonal_relaxed")
        model = self.registry.load(mv.ref)
        columns = mv.signature.columns
        frame = data.select(columns)
        pred = model.predict(frame)
        cols: dict[str, Any] = {"prediction": _plain_array(pred)}
        if model.has_proba:
            proba = np.asarray(model.predict_proba(frame), dtype=np.float64)
            cols["proba"] = pa.FixedSizeListArray.from_arrays(
                pa.array(proba.reshape(-1)), proba.shape[1]
            ).cast(pa.list_(pa.float64()))
        target = _find_target(data, columns, mv)
        if target is not None:
            cols["label"] = pa.array(label_keys(data[target]).to_list(), pa.string())
            cols["value"] = pa.array(_as_float(data[target]), pa.float64())
        table = pa.table(cols)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        blob = self.ws.artifacts.put_bytes(sink.getvalue())
        self.ws.lineage.add_artifact(
            blob.digest,
            REFERENCE_KIND,
            blob.size,
            name=mv.ref,
            properties={"model_digest": mv.digest, "target": target, "rows": table.num_rows},
        )
        out = pl.from_arrow(table)
        assert isinstance(out, pl.DataFrame)
        return out, target


def _plain_array(values: Any) -> pa.Array:
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        return pa.array(arr)
    return pa.array([None if v is None else str(v) for v in arr.tolist()], pa.string())


def _as_float(col: pl.Series) -> list[float | None]:
    if col.dtype.is_numeric() or col.dtype == pl.Boolean:
        return col.cast(pl.Float64).to_list()
    return [None] * col.len()


def label_keys(col: pl.Series) -> pl.Series:
    """Labels and classes as comparable text: 1, 1.0 and True are all "1"."""
    if col.dtype == pl.Boolean:
        return col.cast(pl.Int64).cast(pl.String)
    if col.dtype.is_float():
        whole = col.is_finite() & (col == col.round(0))
        return (
            pl.select(
                pl.when(whole)
                .then(col.cast(pl.Int64, strict=False).cast(pl.String))
                .otherwise(col.cast(pl.String))
            )
            .to_series()
            .alias(col.name)
        )
    return col.cast(pl.String)


def class_keys(classes: list[Any]) -> list[str]:
    return label_keys(pl.Series("c", classes, strict=False)).to_list()


def _find_target(data: pl.DataFrame, columns: list[str], mv: ModelVersion) -> str | None:
    """The one column outside the inputs that can be the label, or None if not exactly one."""
    output = mv.signature.output
    candidates = [c for c in data.columns if c not in columns]
    if output.task == "classification" and output.classes is not None:
        known = set(class_keys(list(output.classes)))
        fits = [
            c
            for c in candidates
            if data[c].null_count() == 0 and set(label_keys(data[c]).unique().to_list()) <= known
        ]
    else:
        fits = []
    return fits[0] if len(fits) == 1 else None


def _stored_reference(ws: Workspace, mv: ModelVersion) -> tuple[pl.DataFrame, str | None] | None:
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(artifacts.c.digest, artifacts.c.properties)
            .where(artifacts.c.kind == REFERENCE_KIND, artifacts.c.name == mv.ref)
            .order_by(artifacts.c.created_at.desc())
        ).all()
    for digest, props in rows:
        if (props or {}).get("model_digest") == mv.digest:
            raw = ws.artifacts.get_bytes(digest, what=f"prediction reference of {mv.ref}")
            out = pl.read_parquet(io.BytesIO(raw))
            return out, (props or {}).get("target")
    return None


def _datasets(ws: Workspace, artifact_ids: tuple[str, ...]) -> list[Dataset]:
    if not artifact_ids:
        return []
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(datasets.c.name, dataset_versions.c.version)
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .where(dataset_versions.c.artifact_id.in_(artifact_ids))
        ).all()
    return [Catalog(ws).get(name, version) for name, version in rows]


def _schema(usable: list[Dataset], inputs: Profile | None, columns: list[str]) -> Schema | None:
    for d in usable:
        try:
            curated = d.schema
        except InvalidInputError:
            curated = None
        if curated is not None and all(c in curated.column_names for c in columns):
            return Schema(
                tuple(curated.column(c) for c in columns), severities=dict(curated.severities)
            )
    return None if inputs is None else infer_schema(inputs)
