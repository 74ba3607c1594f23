"""Evaluate a model on labelled data: metrics, per-slice metrics, confusion matrix,
calibration. The result is a JSON artifact and an ``evaluation`` execution in the lineage
graph; :meth:`EvaluationResult.run_metrics` gives the flat dict a run logs as metrics."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopml.core.declared import explain
from loopml.core.errors import InvalidInputError
from loopml.registry.loaded import LoadedModel
from loopml.registry.table import to_arrow
from loopml.store.artifacts import ArtifactStore
from loopml.store.workspace import Workspace

EVALUATION_KIND = "evaluation"
EVALUATION_FORMAT: Literal["loopml.evaluation/1"] = "loopml.evaluation/1"
MAX_SLICES = 200

HIGHER_IS_BETTER = frozenset(
    {
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "average_precision",
        "r2",
    }
)
LOWER_IS_BETTER = frozenset(
    {"log_loss", "brier", "calibration_error", "mae", "rmse", "median_absolute_error"}
)
CLASSIFICATION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "average_precision",
    "log_loss",
    "brier",
    "calibration_error",
)
REGRESSION_METRICS = ("mae", "rmse", "r2", "median_absolute_error")
METRICS = frozenset(CLASSIFICATION_METRICS + REGRESSION_METRICS)


def higher_is_better(metric: str) -> bool:
    if metric not in METRICS:
        raise InvalidInputError(
            f"unknown metric {metric!r}; known metrics: {', '.join(sorted(METRICS))}"
        )
    return metric in HIGHER_IS_BETTER


@dataclass(frozen=True)
class SliceMetrics:
    column: str
    value: Any
    n: int
    metrics: dict[str, float | None]


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    count: int
    mean_predicted: float
    fraction_positive: float


@dataclass(frozen=True)
class EvaluationResult:
    task: str
    target: str
    n_rows: int
    metrics: dict[str, float]
    slices: dict[str, list[SliceMetrics]] = field(default_factory=dict)
    labels: list[Any] | None = None
    confusion_matrix: list[list[int]] | None = None
    calibration: list[CalibrationBin] | None = None
    model: str | None = None
    digest: str | None = None

    def slice_values(self, column: str, metric: str, min_rows: int = 1) -> dict[Any, float]:
        if column not in self.slices:
            raise InvalidInputError(
                f"the evaluation has no slices by {column!r}; evaluate with slice_by="
                f"[{column!r}] (it has: {', '.join(self.slices) or 'none'})"
            )
        return {
            s.value: v
            for s in self.slices[column]
            if s.n >= min_rows and (v := s.metrics.get(metric)) is not None
        }

    def run_metrics(self, prefix: str = "eval") -> dict[str, float]:
        """Flat, finite metrics with names a run accepts, slices included."""
        out = {f"{prefix}/{k}": v for k, v in self.metrics.items() if math.isfinite(v)}
        for column, slices in self.slices.items():
            for s in slices:
                for k, v in s.metrics.items():
                    if v is not None and math.isfinite(v):
                        out[f"{prefix}/slice/{column}/{_metric_safe(s.value)}/{k}"] = v
        return out

    def to_dict(self) -> dict[str, Any]:
        return StoredEvaluation(
            format=EVALUATION_FORMAT,
            task=self.task,  # type: ignore[arg-type]  # evaluate() only makes the two tasks
            target=self.target,
            n_rows=self.n_rows,
            model=self.model,
            metrics=self.metrics,
            slices={
                c: [StoredSlice(value=s.value, n=s.n, metrics=s.metrics) for s in ss]
                for c, ss in self.slices.items()
            },
            labels=self.labels,
            confusion_matrix=self.confusion_matrix,
            calibration=self.calibration,
        ).model_dump()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], digest: str | None = None) -> EvaluationResult:
        try:
            stored = StoredEvaluation.model_validate(d)
        except ValidationError as exc:
            raise InvalidInputError(explain(exc, "evaluation")) from None
        return cls(
            task=stored.task,
            target=stored.target,
            n_rows=stored.n_rows,
            metrics=stored.metrics,
            slices={
                c: [SliceMetrics(c, s.value, s.n, dict(s.metrics)) for s in ss]
                for c, ss in stored.slices.items()
            },
            labels=stored.labels,
            confusion_matrix=stored.confusion_matrix,
            calibration=stored.calibration,
            model=stored.model,
            digest=digest,
        )


class StoredSlice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any
    n: int = Field(ge=0)
    metrics: dict[str, float | None]


class StoredEvaluation(BaseModel):
    """The JSON an evaluation artifact holds, declared: a damaged or foreign file is
    refused with the field that is wrong."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["loopml.evaluation/1"]
    task: Literal["classification", "regression"]
    target: str
    n_rows: int = Field(ge=0)
    model: str | None = None
    metrics: dict[str, float]
    slices: dict[str, list[StoredSlice]] = Field(default_factory=dict)
    labels: list[Any] | None = None
    confusion_matrix: list[list[int]] | None = None
    calibration: list[CalibrationBin] | None = None


def _metric_safe(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. ]", "_", str(value))[:60] or "_"


def _target(tbl: pa.Table, target: str) -> np.ndarray:
    if target not in tbl.column_names:
        raise InvalidInputError(
            f"evaluation data has no target column {target!r}; it has "
            f"{', '.join(tbl.column_names[:20])}"
        )
    col = tbl.column(target)
    if col.null_count:
        raise InvalidInputError(
            f"target column {target!r} has {col.null_count} missing values; drop those rows"
        )
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, pa.string())
    return np.asarray(col.to_numpy())


def evaluate(
    model: LoadedModel,
    data: Any,
    target: str,
    *,
    slice_by: str | Sequence[str] = (),
    n_bins: int = 10,
) -> EvaluationResult:
    """Score ``model`` on ``data`` (a table holding the features and ``target``)."""
    tbl = to_arrow(data, what="evaluation data")
    if tbl.num_rows == 0:
        raise InvalidInputError("evaluation data has no rows")
    y = _target(tbl, target)
    columns = [slice_by] if isinstance(slice_by, str) else list(slice_by)
    for c in columns:
        if c not in tbl.column_names:
            raise InvalidInputError(f"cannot slice by {c!r}: evaluation data has no such column")
    task = model.task
    if task not in ("classification", "regression"):
        raise InvalidInputError(
            f"{model} predicts neither classes nor numbers as far as loopml knows "
            f"(task {task!r}); evaluation covers classification and regression models"
        )
    pred = model.predict(tbl)
    if task == "classification":
        labels = list(model.classes or np.unique(np.concatenate([y, pred])).tolist())
        proba = model.predict_proba(tbl) if model.has_proba else None
        y = _align_labels(y, labels)

        def scorer(idx: np.ndarray | None) -> dict[str, float | None]:
            return _classification(y, pred, proba, labels, idx, n_bins)

    else:
        labels = []
        proba = None

        def scorer(idx: np.ndarray | None) -> dict[str, float | None]:
            return _regression(y.astype(float), np.asarray(pred, dtype=float), idx)

    overall = {k: v for k, v in scorer(None).items() if v is not None}
    slices = {c: _slices(tbl.column(c), c, scorer) for c in columns}
    result = EvaluationResult(
        task=task,
        target=target,
        n_rows=tbl.num_rows,
        metrics=overall,
        slices=slices,
        model=model.ref or model.digest,
    )
    if task == "classification":
        from sklearn.metrics import confusion_matrix

        cm = confusion_matrix(y, pred, labels=labels).tolist()
        calibration = _calibration(y, proba, labels, n_bins) if proba is not None else None
        result = EvaluationResult(
            **{
                **result.__dict__,
                "labels": _plain(labels),
                "confusion_matrix": cm,
                "calibration": calibration,
            }
        )
    return result


def _plain(values: Sequence[Any]) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _align_labels(y: np.ndarray, labels: list[Any]) -> np.ndarray:
    # Targets stored as int8 while the model says 0/1 are the same labels; strings are not.
    if y.dtype.kind in "biuf" and all(isinstance(c, int | float | np.number) for c in labels):
        return y.astype(np.asarray(labels).dtype)
    return y


def _slices(
    col: pa.ChunkedArray, name: str, scorer: Callable[[np.ndarray | None], dict[str, float | None]]
) -> list[SliceMetrics]:
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, pa.string())
    values = [v for v in pc.unique(col).to_pylist() if v is not None]
    if len(values) > MAX_SLICES:
        raise InvalidInputError(
            f"column {name!r} has {len(values)} distinct values; slicing supports at most "
            f"{MAX_SLICES}. Bucket it into fewer groups first"
        )
    arr = np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
    out = []
    for value in sorted(values, key=str):
        idx = np.flatnonzero(arr == value)
        out.append(SliceMetrics(name, value, int(idx.size), scorer(idx)))
    return out


def _safe(fn: Callable[[], Any]) -> float | None:
    try:
        value = float(fn())
    except (ValueError, IndexError, ZeroDivisionError):
        return None  # undefined on this subset, e.g. AUC with one class present
    return value if math.isfinite(value) else None


def _classification(
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
    labels: list[Any],
    idx: np.ndarray | None,
    n_bins: int,
) -> dict[str, float | None]:
    import warnings

    from sklearn import metrics as m
    from sklearn.exceptions import UndefinedMetricWarning

    yt, yp = (y, pred) if idx is None else (y[idx], pred[idx])
    pr = proba if proba is None or idx is None else proba[idx]
    binary = len(labels) == 2
    avg: dict[str, Any] = (
        {"pos_label": labels[-1], "average": "binary"} if binary else {"average": "macro"}
    )
    out: dict[str, float | None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        out["accuracy"] = _safe(lambda: m.accuracy_score(yt, yp))
        out["balanced_accuracy"] = _safe(lambda: m.balanced_accuracy_score(yt, yp))
        out["precision"] = _safe(
            lambda: m.precision_score(yt, yp, labels=labels, zero_division=0, **avg)
        )
        out["recall"] = _safe(lambda: m.recall_score(yt, yp, labels=labels, zero_division=0, **avg))
        out["f1"] = _safe(lambda: m.f1_score(yt, yp, labels=labels, zero_division=0, **avg))
        if pr is not None:
            if binary:
                positive = (yt == labels[1]).astype(int)
                p1 = pr[:, 1]
                out["roc_auc"] = _safe(lambda: m.roc_auc_score(positive, p1))
                out["average_precision"] = _safe(lambda: m.average_precision_score(positive, p1))
                out["brier"] = _safe(lambda: m.brier_score_loss(positive, p1))
                bins = _calibration(yt, pr, labels, n_bins)
                out["calibration_error"] = (
                    sum(b.count * abs(b.fraction_positive - b.mean_predicted) for b in bins)
                    / max(len(yt), 1)
                    if bins
                    else None
                )
            else:
                out["roc_auc"] = _safe(
                    lambda: m.roc_auc_score(yt, pr, multi_class="ovr", labels=labels)
                )
            out["log_loss"] = _safe(lambda: m.log_loss(yt, pr, labels=labels))
    return out


def _regression(y: np.ndarray, pred: np.ndarray, idx: np.ndarray | None) -> dict[str, float | None]:
    from sklearn import metrics as m

    yt, yp = (y, pred) if idx is None else (y[idx], pred[idx])
    return {
        "mae": _safe(lambda: m.mean_absolute_error(yt, yp)),
        "rmse": _safe(lambda: math.sqrt(m.mean_squared_error(yt, yp))),
        "r2": _safe(lambda: m.r2_score(yt, yp)) if len(yt) > 1 else None,
        "median_absolute_error": _safe(lambda: m.median_absolute_error(yt, yp)),
    }


def _calibration(
    y: np.ndarray, proba: np.ndarray, labels: list[Any], n_bins: int
) -> list[CalibrationBin] | None:
    if len(labels) != 2 or len(y) == 0:
        return None
    p = proba[:, 1]
    positive = (y == labels[1]).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        if count:
            bins.append(
                CalibrationBin(
                    float(edges[b]),
                    float(edges[b + 1]),
                    count,
                    float(p[mask].mean()),
                    float(positive[mask].mean()),
                )
            )
    return bins


# storing --------------------------------------------------------------------------------
def save_evaluation(
    ws: Workspace,
    result: EvaluationResult,
    *,
    model_artifact_id: str | None = None,
    dataset_artifact_ids: Sequence[str] = (),
    run_id: str | None = None,
    created_by: str | None = None,
) -> tuple[EvaluationResult, str]:
    """Store the result as a JSON artifact with its lineage; return it with its digest and
    the evaluation's artifact id. ``created_by`` (the workspace's actor by default) is
    kept in the evaluation execution's properties."""
    data = json.dumps(result.to_dict(), sort_keys=True, default=str).encode()
    blob = ws.artifacts.put_bytes(data)
    with ws.write_engine.begin() as conn:
        lineage = ws.lineage
        if run_id is not None:
            lineage.require_execution(conn, run_id, "run")
        lineage.require_artifacts(conn, dataset_artifact_ids, "dataset")
        name = f"evaluation of {result.model or 'a model'}"
        props = {
            "model": result.model,
            "task": result.task,
            "n_rows": result.n_rows,
            "metrics": result.metrics,
        }
        artifact_id = lineage.add_artifact(
            blob.digest, EVALUATION_KIND, blob.size, name=name, properties=props, conn=conn
        ).id
        who = created_by or ws.actor
        execution_id = lineage.add_execution(
            "evaluation",
            name=name,
            status="finished",
            properties={**props, **({"created_by": who} if who else {})},
            conn=conn,
        ).id
        if model_artifact_id is not None:
            lineage.link(execution_id, model_artifact_id, "input", "model", conn=conn)
        for dataset_id in dataset_artifact_ids:
            lineage.link(execution_id, dataset_id, "input", "data", conn=conn)
        lineage.link(execution_id, artifact_id, "output", "evaluation", conn=conn)
        if run_id is not None:
            lineage.link(run_id, artifact_id, "output", "evaluation", conn=conn)
    return EvaluationResult(**{**result.__dict__, "digest": blob.digest}), artifact_id


def load_evaluation(store: ArtifactStore, digest: str) -> EvaluationResult:
    raw = store.get_bytes(digest, what=f"evaluation {digest}")
    return EvaluationResult.from_dict(json.loads(raw), digest=digest)
