"""A model's served traffic as the loop sees it: logged predictions joined with late labels,
placed in time by their event time (the request's own time) where the log has one.

Log and feedback files are content-addressed and immutable, so each is read once per
:class:`Traffic` and kept; a tick only reads files written since the last one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from sqlalchemy import select

from loopml.core.errors import InvalidInputError
from loopml.monitor.logs import FEEDBACK_KIND, LOG_KIND
from loopml.store.metadata.tables import artifacts
from loopml.store.workspace import Workspace

# The metrics read from class probabilities; the others from the predicted value.
PROBA_METRICS = ("roc_auc", "log_loss")


class Traffic:
    """Prediction log + feedback of every deployment serving ``model``."""

    def __init__(self, workspace: Workspace, model: str) -> None:
        self.workspace = workspace
        self.model = model
        self._logs: dict[str, pl.DataFrame] = {}
        self._feedback: dict[str, pl.DataFrame] = {}
        self._deployments: set[str] = set()
        self._predictions: pl.DataFrame | None = None
        self._labels: pl.DataFrame | None = None

    def refresh(self) -> None:
        """Read the log and feedback files written since the last refresh."""
        with self.workspace.engine.connect() as conn:
            rows = conn.execute(
                select(artifacts.c.digest, artifacts.c.kind, artifacts.c.properties)
                .where(artifacts.c.kind.in_((LOG_KIND, FEEDBACK_KIND)))
                .order_by(artifacts.c.created_at)
            ).all()
        changed = False
        for digest, kind, props in rows:
            props = props or {}
            if kind == LOG_KIND and props.get("model") == self.model and digest not in self._logs:
                self._logs[digest] = _log_frame(self._read(digest, kind))
                self._deployments.add(str(props.get("deployment")))
                changed = True
        for digest, kind, props in rows:
            props = props or {}
            if (
                kind == FEEDBACK_KIND
                and str(props.get("deployment")) in self._deployments
                and digest not in self._feedback
            ):
                self._feedback[digest] = _label_frame(self._read(digest, kind))
                changed = True
        if changed or self._predictions is None:
            self._predictions = _concat(list(self._logs.values()), _empty_log())
            labels = _concat(list(self._feedback.values()), _empty_labels())
            # A request labelled twice: the label sent last wins.
            self._labels = labels.unique(["request_id", "row"], keep="last", maintain_order=True)

    def _read(self, digest: str, kind: str) -> Any:
        data = self.workspace.artifacts.get_bytes(digest, what=f"{kind} {digest[:19]}")
        return pq.read_table(io.BytesIO(data))

    @property
    def predictions(self) -> pl.DataFrame:
        if self._predictions is None:
            self.refresh()
        assert self._predictions is not None
        return self._predictions

    @property
    def labels(self) -> pl.DataFrame:
        if self._labels is None:
            self.refresh()
        assert self._labels is not None
        return self._labels

    def served(
        self, since: float | None, until: float, versions: Sequence[int] | None = None
    ) -> pl.DataFrame:
        """Answered rows (shadow answers excluded) with ``since <= t < until``."""
        df = self.predictions.filter(pl.col("role") != "shadow", pl.col("t") < until)
        if since is not None:
            df = df.filter(pl.col("t") >= since)
        if versions is not None:
            df = df.filter(pl.col("version").is_in(list(versions)))
        return df

    def labelled(
        self, since: float | None, until: float, versions: Sequence[int] | None = None
    ) -> pl.DataFrame:
        """Answered rows in the window that have a label, with a ``label`` column."""
        return self.served(since, until, versions).join(
            self.labels, on=["request_id", "row"], how="inner"
        )

    def latest_labelled_time(self, until: float) -> float | None:
        df = self.labelled(None, until)
        return None if df.is_empty() else float(df["t"].max())  # type: ignore[arg-type]


def features(rows: pl.DataFrame) -> pl.DataFrame:
    """The logged input columns of ``rows`` as a table."""
    if rows.is_empty():
        return pl.DataFrame()
    return rows.select(pl.col("inputs")).unnest("inputs")


def proba_column(proba: Any) -> pl.Series:
    """Class probabilities (rows x classes) as the log's ``proba`` column, built from the
    array at once rather than from a Python list per row."""
    values = np.ascontiguousarray(proba, dtype=np.float64)
    return pl.Series("proba", values).cast(pl.List(pl.Float64))


def score(metric: str, rows: pl.DataFrame, classes: Sequence[Any] | None) -> float | None:
    """``metric`` of the logged answers in ``rows`` against their labels (None if undefined:
    no rows, a single class, no probabilities for a probability metric)."""
    from sklearn import metrics as m

    if rows.is_empty():
        return None
    y = rows["label"].to_numpy()
    if metric in ("mae", "rmse", "r2"):
        pred = rows["prediction"].to_numpy().astype(np.float64)
        if metric == "mae":
            return float(m.mean_absolute_error(y, pred))
        if metric == "rmse":
            return float(np.sqrt(m.mean_squared_error(y, pred)))
        return float(m.r2_score(y, pred)) if len(y) > 1 else None
    if metric == "accuracy":
        return float(m.accuracy_score(y.astype(str), rows["prediction"].to_numpy().astype(str)))
    if metric not in PROBA_METRICS:
        raise InvalidInputError(
            f"the loop compares live models by roc_auc, log_loss, accuracy, mae, rmse or r2, "
            f"not {metric!r}"
        )
    if not classes or len(classes) != 2 or rows["proba"].null_count() == rows.height:
        return None
    proba = np.asarray(rows["proba"].to_list(), dtype=np.float64)
    positive = np.asarray([str(v) == str(classes[1]) for v in y.tolist()])
    if positive.all() or not positive.any():
        return None
    if metric == "roc_auc":
        return float(m.roc_auc_score(positive, proba[:, 1]))
    return float(m.log_loss(positive, proba[:, 1], labels=[False, True]))


def _log_frame(table: Any) -> pl.DataFrame:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    time_col = (
        pl.coalesce(pl.col("event_time"), pl.col("timestamp"))
        if "event_time" in df.columns
        else pl.col("timestamp")
    )
    return df.select(
        pl.col("request_id"),
        pl.col("row").cast(pl.Int32),
        (time_col.dt.epoch("us").cast(pl.Float64) / 1e6).alias("t"),
        pl.col("model_version").cast(pl.Int64).alias("version"),
        pl.col("role"),
        pl.col("inputs"),
        pl.col("prediction"),
        pl.col("proba").cast(pl.List(pl.Float64)),
    )


def _label_frame(table: Any) -> pl.DataFrame:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df.select(pl.col("request_id"), pl.col("row").cast(pl.Int32), pl.col("label"))


def _concat(frames: list[pl.DataFrame], empty: pl.DataFrame) -> pl.DataFrame:
    if not frames:
        return empty
    return pl.concat(frames, how="diagonal_relaxed")


def _empty_log() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "request_id": pl.String,
            "row": pl.Int32,
            "t": pl.Float64,
            "version": pl.Int64,
            "role": pl.String,
            "inputs": pl.Struct({}),
            "prediction": pl.Float64,
            "proba": pl.List(pl.Float64),
        }
    )


def _empty_labels() -> pl.DataFrame:
    return pl.DataFrame(schema={"request_id": pl.String, "row": pl.Int32, "label": pl.Float64})
