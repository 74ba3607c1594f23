"""From one request id to everything that produced its answer, in one call.

The monitor's score blobs say which log file holds the request (a monitored request is
found without opening every log file); that one file gives the logged inputs and outputs.
The registry gives the model version and its artifact digest, the tracking store the run
with its parameters and code commit, the catalog the digests of the training datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import select

from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.monitor.logs import read_file
from loopml.monitor.reference import References
from loopml.registry.model_registry import Registry
from loopml.store.metadata.tables import monitor_segments
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker


@dataclass(frozen=True)
class TracedDataset:
    ref: str
    digest: str
    artifact_id: str
    rows: int


@dataclass(frozen=True)
class Trace:
    request_id: str
    deployment: str
    model: str
    version: int
    model_digest: str
    log_artifact_id: str
    log_digest: str
    rows: list[dict[str, Any]]  # per predicted row: row, inputs, prediction, proba, times, role
    run_id: str | None = None
    run_params: dict[str, str] = field(default_factory=dict)
    code_version: str | None = None
    datasets: tuple[TracedDataset, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "deployment": self.deployment,
            "model": self.model,
            "version": self.version,
            "model_digest": self.model_digest,
            "log_artifact_id": self.log_artifact_id,
            "log_digest": self.log_digest,
            "rows": self.rows,
            "run_id": self.run_id,
            "run_params": self.run_params,
            "code_version": self.code_version,
            "datasets": [d.__dict__ for d in self.datasets],
        }


def trace(ws: Workspace, request_id: str) -> Trace:
    """Inputs, outputs, model version + digest, run (params, commit), dataset digests."""
    from loopml.monitor.api import monitor_of

    if not isinstance(request_id, str) or not request_id or not request_id.isprintable():
        raise InvalidInputError("request id must be a non-empty printable string")
    monitor = monitor_of(ws)
    monitor.refresh()
    with ws.engine.connect() as conn:
        segs = conn.execute(
            select(
                monitor_segments.c.source_id,
                monitor_segments.c.scores_digest,
                monitor_segments.c.model,
                monitor_segments.c.version,
                monitor_segments.c.deployment,
            ).order_by(monitor_segments.c.created_at.desc())
        ).all()
    for seg in segs:
        scores = monitor.blobs.read(seg.scores_digest, "monitor scores")
        hit = scores.filter(pl.col("request_id") == request_id)
        if hit.height:
            source = hit["source"][0] if "source" in hit.columns else seg.source_id
            return _build(ws, monitor.references, request_id, seg, str(source))
    raise NotFoundError(
        f"no logged prediction has request id {request_id!r}; the server writes its log "
        "every few seconds, so a request answered just now may not be there yet"
    )


def _build(ws: Workspace, references: References, request_id: str, seg: Any, source: str) -> Trace:
    record = ws.lineage.get_artifact(source)
    table = read_file(ws, record)
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    mine = df.filter(pl.col("request_id") == request_id).sort("row")
    rows = []
    for r in mine.iter_rows(named=True):
        rows.append(
            {
                "row": r["row"],
                "inputs": r["inputs"],
                "prediction": r["prediction"],
                "proba": r.get("proba"),
                "timestamp": r["timestamp"],
                "event_time": r.get("event_time"),
                "role": r.get("role"),
                "model_version": r["model_version"],
                "latency_ms": r.get("latency_ms"),
            }
        )
    mv = Registry(ws).get_version(str(seg.model), int(seg.version))
    logged_digest = (record.properties or {}).get("model_digest")
    if logged_digest is not None and logged_digest != mv.digest:
        raise NotFoundError(
            f"the log of request {request_id!r} names model digest {logged_digest}, but "
            f"{mv.ref} is {mv.digest}: the registry and the log disagree"
        )
    run_params: dict[str, str] = {}
    code_version = mv.code_version
    if mv.run_id is not None:
        tracker = Tracker(ws)
        try:
            run = tracker.get_run(mv.run_id)
        finally:
            tracker.close()
        run_params = dict(run.params)
        if code_version is None and run.git_commit is not None:
            code_version = run.git_commit + ("+dirty" if run.git_dirty else "")
    ref = references.get(mv.name, mv.version)
    datasets = tuple(
        TracedDataset(d.ref, d.digest, d.artifact_id, d.num_rows) for d in ref.datasets
    )
    return Trace(
        request_id=request_id,
        deployment=str(seg.deployment),
        model=mv.name,
        version=mv.version,
        model_digest=mv.digest,
        log_artifact_id=record.id,
        log_digest=record.digest,
        rows=rows,
        run_id=mv.run_id,
        run_params=run_params,
        code_version=code_version,
        datasets=datasets,
    )
