"""One window of a model's served traffic: drift, quality, latency, realised and estimated
performance, computed from stored day segments and stored as a result.

A window is a range of whole UTC days (``since`` is floored to its day, ``until`` rounded
up), because segments are days. Before computing, new log and feedback files are read
(each once). A window whose segments and label revisions are those of a stored result is
read back instead of recomputed, so a history over months only recomputes the days that
new logs or late labels touched.

``drift_score`` is the share of input columns whose distribution drifted from the training
data (0 to 1), by loopml's drift defaults (``lm.drift``). ``errors`` counts the requests
answered with an error, by HTTP status, from the server's error files (see
``errors.py``); ``error_rate`` is failed / (failed + answered rows). A request that
failed before the server read it as an inference request (unparseable JSON, a bad request
id) is not in those files; the server's ``/metrics`` counters see it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import insert, select

from loopml.core import clock
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.core.hashing import digest_bytes
from loopml.core.ids import new_id
from loopml.data.drift import ColumnDrift, DriftReport, drift
from loopml.data.validate import Anomaly, ValidationReport
from loopml.monitor import performance as perf
from loopml.monitor.errors import error_counts, ingest_errors
from loopml.monitor.labels import KEY, LABEL_COLUMNS, Blobs, ingest_labels
from loopml.monitor.reference import Reference, References, class_keys
from loopml.monitor.scores import proba_matrix
from loopml.monitor.segments import DAY, Summary, ingest_logs
from loopml.monitor.summary import merge_anomalies, merge_profiles
from loopml.monitor.times import epoch, to_datetime, window_seconds
from loopml.registry.model_registry import Registry
from loopml.store.metadata.tables import monitor_results, monitor_segments, monitor_sources
from loopml.store.workspace import Workspace

FIGURES_FORMAT = "loopml.monitor_window/1"


@dataclass(frozen=True)
class WindowReport:
    name: str
    deployment: str | None
    model: str
    versions: tuple[int, ...]
    start: datetime
    end: datetime
    rows: int
    labelled_rows: int
    drift: DriftReport | None
    drift_score: float | None
    prediction_drift: DriftReport | None
    quality: ValidationReport | None
    latency_ms: dict[str, float]
    errors: dict[str, int]
    performance: dict[str, float] | None
    estimated_performance: dict[str, float] | None
    reference: tuple[str, ...] = ()
    # What CBPE was calibrated on (see ``Monitor.reference_period``); None without estimate.
    estimate_reference: str | None = None
    by_version: dict[int, WindowReport] = field(default_factory=dict)
    id: str | None = None
    computed_at: float = 0.0

    @property
    def anomaly_rate(self) -> float:
        """Share of rows hit by the most frequent row-level input anomaly (0 when clean)."""
        if self.quality is None or not self.rows:
            return 0.0
        counts = [a.count or 0 for a in self.quality.anomalies]
        return min(1.0, max(counts, default=0) / self.rows)

    @property
    def error_rate(self) -> float:
        failed = sum(self.errors.values())
        total = self.rows + failed
        return failed / total if total else 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "format": FIGURES_FORMAT,
            "deployment": self.deployment,
            "model": self.model,
            "versions": list(self.versions),
            "start": self.start.timestamp(),
            "end": self.end.timestamp(),
            "rows": self.rows,
            "labelled_rows": self.labelled_rows,
            "drift": None if self.drift is None else self.drift.to_dict(),
            "drift_score": self.drift_score,
            "prediction_drift": (
                None if self.prediction_drift is None else self.prediction_drift.to_dict()
            ),
            "quality": None if self.quality is None else self.quality.to_dict(),
            "latency_ms": self.latency_ms,
            "errors": self.errors,
            "performance": _clean(self.performance),
            "estimated_performance": _clean(self.estimated_performance),
            "reference": list(self.reference),
            "estimate_reference": self.estimate_reference,
            "by_version": {str(v): w.figures() for v, w in self.by_version.items()},
        }

    @classmethod
    def from_figures(
        cls, name: str, d: dict[str, Any], id: str | None = None, computed_at: float = 0.0
    ) -> WindowReport:
        return cls(
            name=name,
            deployment=d["deployment"],
            model=d["model"],
            versions=tuple(d["versions"]),
            start=to_datetime(d["start"]),
            end=to_datetime(d["end"]),
            rows=int(d["rows"]),
            labelled_rows=int(d["labelled_rows"]),
            drift=_drift_from(d["drift"]),
            drift_score=d["drift_score"],
            prediction_drift=_drift_from(d["prediction_drift"]),
            quality=_quality_from(d["quality"]),
            latency_ms=dict(d["latency_ms"]),
            errors={str(k): int(v) for k, v in d["errors"].items()},
            performance=d["performance"],
            estimated_performance=d["estimated_performance"],
            reference=tuple(d.get("reference", ())),
            estimate_reference=d.get("estimate_reference"),
            by_version={
                int(v): cls.from_figures(name, w, id, computed_at)
                for v, w in d["by_version"].items()
            },
            id=id,
            computed_at=computed_at,
        )


def _clean(m: dict[str, float] | None) -> dict[str, float] | None:
    if m is None:
        return None
    return {k: v for k, v in m.items() if v is not None and math.isfinite(v)}


def _drift_from(d: dict[str, Any] | None) -> DriftReport | None:
    if d is None:
        return None
    cols = tuple(
        ColumnDrift(
            c["column"],
            c["kind"],
            c["method"],
            math.nan if c["statistic"] is None else c["statistic"],
            c["p_value"],
            c["threshold"],
            c["drifted"],
            c["reference_count"],
            c["current_count"],
            dict(c["stats"]),
        )
        for c in d["columns"]
    )
    return DriftReport(cols, d["reference_rows"], d["current_rows"], dict(d["skipped"]))


def _quality_from(d: dict[str, Any] | None) -> ValidationReport | None:
    if d is None:
        return None
    return ValidationReport(
        d["num_rows"],
        tuple(Anomaly.from_dict(a) for a in d["anomalies"]),
    )


# --- the monitor --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    id: str
    deployment: str
    model: str
    version: int
    bucket: float
    rows: int
    summary_digest: str
    scores_digest: str
    labels_digest: str | None
    labelled_rows: int
    revision: int


def _segment_of(r: Any) -> _Segment:
    return _Segment(
        r.id,
        r.deployment,
        r.model,
        int(r.version),
        float(r.bucket),
        int(r.rows),
        r.summary_digest,
        r.scores_digest,
        r.labels_digest,
        int(r.labelled_rows),
        int(r.revision),
    )


@dataclass(frozen=True)
class _Calibration:
    """Labelled rows CBPE calibrates on: positive-class scores, outcomes, and where from."""

    scores: np.ndarray
    positive: np.ndarray
    source: str


REFERENCE_LABELS = 5_000  # labelled rows in a reference period (whole days, earliest first)
MIN_REFERENCE_LABELS = 200  # fewer: calibrate on the training data instead
TRAINING_REFERENCE = "training data (in sample: optimistic)"

OnResult = Callable[[WindowReport], None]


class Monitor:
    """Checks of one workspace; holds the per-process caches (references, blobs)."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.references = References(workspace)
        self.blobs = Blobs(workspace)
        self.recomputed = 0  # windows computed (not read back) by this monitor

    def refresh(self) -> None:
        """Read new prediction-log and feedback files (each only once, ever)."""
        ingest_logs(self.ws, self.references)
        ingest_labels(self.ws, self.blobs)
        ingest_errors(self.ws)

    # resolving names ---------------------------------------------------------------------
    def resolve(self, name: str) -> tuple[str, str]:
        """("deployment" | "model", name), or NotFoundError naming what exists."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError("name must be a model or deployment name")
        with self.ws.engine.connect() as conn:
            for col, what in (
                (monitor_sources.c.deployment, "deployment"),
                (monitor_segments.c.model, "model"),
            ):
                if conn.execute(select(col).where(col == name).limit(1)).first():
                    return what, name
            known = sorted(
                {r[0] for r in conn.execute(select(monitor_sources.c.deployment).distinct())}
            )
        if any(m.name == name for m in Registry(self.ws).models()):
            return "model", name
        raise NotFoundError(
            f"no served traffic for {name!r}: it is neither a registered model nor a "
            f"deployment; deployments with logged traffic: {', '.join(known) or 'none'}"
        )

    def segments(self, name: str, lo: float | None, hi: float | None) -> list[_Segment]:
        what, value = self.resolve(name)
        col = monitor_segments.c.deployment if what == "deployment" else monitor_segments.c.model
        q = select(monitor_segments).where(col == value).order_by(monitor_segments.c.bucket)
        if lo is not None:
            q = q.where(monitor_segments.c.bucket >= lo)
        if hi is not None:
            q = q.where(monitor_segments.c.bucket < hi)
        with self.ws.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [_segment_of(r) for r in rows]

    # checking -----------------------------------------------------------------------------
    def check(
        self,
        name: str,
        since: Any = None,
        until: Any = None,
        *,
        on_result: OnResult | None = None,
        refresh: bool = True,
    ) -> WindowReport:
        lo, hi = epoch(since, "since"), epoch(until, "until")
        if lo is not None and hi is not None and hi <= lo:
            raise InvalidInputError("until must be after since")
        if refresh:
            self.refresh()
        lo_day = None if lo is None else math.floor(lo / DAY) * DAY
        hi_day = None if hi is None else math.ceil(hi / DAY) * DAY
        segs = self.segments(name, lo_day, hi_day)
        if lo_day is None:
            lo_day = segs[0].bucket if segs else math.floor(clock.now() / DAY) * DAY
        if hi_day is None:
            hi_day = (segs[-1].bucket + DAY) if segs else lo_day + DAY
        return self._window(name, segs, lo_day, hi_day, on_result)

    def history(
        self,
        name: str,
        window: str = "1d",
        since: Any = None,
        until: Any = None,
        *,
        on_result: OnResult | None = None,
    ) -> list[WindowReport]:
        length = window_seconds(window)
        lo, hi = epoch(since, "since"), epoch(until, "until")
        self.refresh()
        segs = self.segments(name, None if lo is None else math.floor(lo / DAY) * DAY, hi)
        if not segs:
            return []
        first = math.floor((lo if lo is not None else segs[0].bucket) / length) * length
        last = hi if hi is not None else segs[-1].bucket + DAY
        out = []
        start = first
        while start < last:
            end = start + length
            inside = [s for s in segs if start <= s.bucket < end]
            if inside:
                out.append(self._window(name, inside, start, end, on_result))
            start = end
        return out

    def _window(
        self,
        name: str,
        segs: list[_Segment],
        start: float,
        end: float,
        on_result: OnResult | None,
    ) -> WindowReport:
        errors, error_ids = error_counts(self.ws, self.resolve(name)[0], name, start, end)
        periods = {
            key: self.reference_period(*key, start) for key in {(s.model, s.version) for s in segs}
        }
        basis: list[Any] = [FIGURES_FORMAT, sorted((s.id, s.revision) for s in segs)]
        # Late labels in a reference period, or new error counts, make the window stale too.
        basis.append(sorted((s.id, s.revision) for p in periods.values() for s in p))
        if error_ids:
            basis.append(error_ids)
        fingerprint = digest_bytes(json.dumps(basis, separators=(",", ":")).encode())
        stored = self._stored(name, start, end, fingerprint)
        if stored is not None:
            return stored
        report = replace(self.compute(name, segs, start, end, periods), errors=errors)
        self.recomputed += 1
        report = self._store(report, fingerprint)
        if on_result is not None:
            on_result(report)
        return report

    def _stored(self, name: str, start: float, end: float, fingerprint: str) -> WindowReport | None:
        with self.ws.engine.connect() as conn:
            row = conn.execute(
                select(monitor_results)
                .where(
                    monitor_results.c.name == name,
                    monitor_results.c.window_start == start,
                    monitor_results.c.window_end == end,
                    monitor_results.c.fingerprint == fingerprint,
                )
                .order_by(monitor_results.c.computed_at.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return WindowReport.from_figures(name, row.figures, row.id, row.computed_at)

    def _store(self, report: WindowReport, fingerprint: str) -> WindowReport:
        now = clock.now()
        result_id = new_id()
        figures = report.figures()
        with self.ws.write_engine.begin() as conn:
            execution = self.ws.lineage.add_execution(
                "monitor_check",
                name=report.name,
                status="finished",
                properties={
                    "result_id": result_id,
                    "start": report.start.timestamp(),
                    "end": report.end.timestamp(),
                    "rows": report.rows,
                },
                conn=conn,
            )
            conn.execute(
                insert(monitor_results).values(
                    id=result_id,
                    name=report.name,
                    version=None,
                    window_start=report.start.timestamp(),
                    window_end=report.end.timestamp(),
                    fingerprint=fingerprint,
                    rows=report.rows,
                    labelled_rows=report.labelled_rows,
                    drift_score=report.drift_score,
                    figures=figures,
                    execution_id=execution.id,
                    computed_at=now,
                )
            )
        return replace(report, id=result_id, computed_at=now)

    # computing ----------------------------------------------------------------------------
    def reference_period(self, model: str, version: int, before: float) -> list[_Segment]:
        """The labelled served traffic CBPE calibrates on, as NannyML's reference period:
        the earliest days of this version with labels, before ``before``, until they hold
        ``REFERENCE_LABELS`` labelled rows. The model never trained on them, so calibrating
        there is not optimistic the way in-sample training predictions are. Empty when
        fewer than ``MIN_REFERENCE_LABELS`` labelled rows exist yet: the estimate then
        falls back to the training data, and the report says so."""
        q = (
            select(monitor_segments)
            .where(
                monitor_segments.c.model == model,
                monitor_segments.c.version == version,
                monitor_segments.c.labelled_rows > 0,
                monitor_segments.c.bucket < before,
            )
            .order_by(monitor_segments.c.bucket, monitor_segments.c.id)
        )
        out: list[_Segment] = []
        labelled = 0
        with self.ws.engine.connect() as conn:
            for r in conn.execute(q):
                if labelled >= REFERENCE_LABELS and r.bucket != out[-1].bucket:
                    break  # whole days only
                out.append(_segment_of(r))
                labelled += int(r.labelled_rows)
        return out if labelled >= MIN_REFERENCE_LABELS else []

    def compute(
        self,
        name: str,
        segs: list[_Segment],
        start: float,
        end: float,
        periods: dict[tuple[str, int], list[_Segment]] | None = None,
    ) -> WindowReport:
        versions = sorted({(s.model, s.version) for s in segs})
        deployments = sorted({s.deployment for s in segs})
        by_version: dict[int, WindowReport] = {}
        parts: dict[tuple[str, int], _Part] = {}
        for model, version in versions:
            mine = [s for s in segs if (s.model, s.version) == (model, version)]
            part = self._part(model, version, mine)
            period = (periods or {}).get((model, version))
            if period:
                part.calibration = self._calibration(part.reference, period)
            parts[(model, version)] = part
            by_version[version] = part.report(name, deployments, start, end)
        if len(parts) == 1:
            only = next(iter(by_version.values()))
            return only
        if not parts:
            model = name
            return _empty(name, model, deployments, start, end)
        # Several versions: inputs against the reference of the version with most rows.
        main = max(parts.values(), key=lambda p: p.rows)
        combined = _Part.combine(list(parts.values()), main.reference)
        overall = combined.report(name, deployments, start, end)
        return replace(overall, by_version=by_version)

    def _part(self, model: str, version: int, segs: list[_Segment]) -> _Part:
        ref = self.references.get(model, version)
        summaries = [
            Summary.from_json(
                self.ws.artifacts.get_bytes(s.summary_digest, what="monitor segment summary")
            )
            for s in segs
        ]
        scores = pl.concat(
            [self.blobs.read(s.scores_digest, "monitor scores") for s in segs],
            how="vertical_relaxed",
        )
        labelled = [self._labels(s.labels_digest) for s in segs if s.labels_digest]
        labels = pl.concat(labelled, how="vertical_relaxed") if labelled else None
        return _Part(model, version, ref, summaries, scores, labels)

    def _labels(self, digest: str) -> pl.DataFrame:
        return self.blobs.read(digest, "monitor labels").select(LABEL_COLUMNS)

    def _calibration(self, ref: Reference, period: list[_Segment]) -> _Calibration | None:
        """(positive-class score, labelled positive) of the period's labelled rows."""
        classes = ref.classes
        if ref.task != "classification" or classes is None or len(classes) != 2:
            return None
        scores = pl.concat(
            [self.blobs.read(s.scores_digest, "monitor scores") for s in period],
            how="vertical_relaxed",
        )
        labels = pl.concat(
            [self._labels(s.labels_digest) for s in period if s.labels_digest],
            how="vertical_relaxed",
        )
        joined = scores.join(labels, on=KEY, how="inner")
        proba = proba_matrix(joined)
        if proba is None or proba.shape[1] != 2:
            return None
        positive = (joined["label"] == class_keys(classes)[1]).to_numpy()
        first, last = period[0].bucket, period[-1].bucket + DAY
        where = (
            f"served traffic {to_datetime(first).date()} to {to_datetime(last).date()} "
            f"({joined.height:,} labelled rows)"
        )
        return _Calibration(proba[:, 1], positive, where)


@dataclass
class _Part:
    """The rows of one model version (or several, combined) in a window."""

    model: str
    version: int | None
    reference: Reference
    summaries: list[Summary]
    scores: pl.DataFrame
    labels: pl.DataFrame | None
    versions: tuple[int, ...] = ()
    calibrated: np.ndarray | None = None
    calibration: _Calibration | None = None  # a reference period; None: the training data
    estimate_sources: tuple[str, ...] = ()  # set when parts are combined

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.summaries)

    @classmethod
    def combine(cls, parts: list[_Part], reference: Reference) -> _Part:
        scores = pl.concat([p.scores for p in parts], how="diagonal_relaxed")
        labelled = [p.labels for p in parts if p.labels is not None]
        calibrated = [p.estimated_inputs() for p in parts]
        joined: np.ndarray | None = None
        sources: tuple[str, ...] = ()
        if all(c is not None for c in calibrated):
            joined = np.concatenate([c for c in calibrated if c is not None])
            found = [p.estimate_source() for p in parts]
            sources = tuple(
                dict.fromkeys(f"v{p.version}: {f}" for p, f in zip(parts, found, strict=True))
            )
        out = cls(
            reference.version.name,
            None,
            reference,
            [s for p in parts for s in p.summaries],
            scores,
            pl.concat(labelled, how="vertical_relaxed") if labelled else None,
            tuple(sorted({v for p in parts for v in (p.versions or (p.version,)) if v})),
            joined,
            estimate_sources=sources,
        )
        return out

    def estimated_inputs(self) -> np.ndarray | None:
        """[calibrated p, predicted positive] rows for CBPE, or None where it cannot apply."""
        ref = self.reference
        if self.calibrated is not None:
            return self.calibrated
        classes = ref.classes
        if ref.task != "classification" or classes is None or len(classes) != 2:
            return None
        keys = class_keys(classes)
        proba = proba_matrix(self.scores)
        if proba is None or proba.shape[1] != 2:
            return None
        calibrator = None
        if self.calibration is not None:
            c = self.calibration
            calibrator = perf.Calibrator.fit(c.scores, c.positive)
        if calibrator is None:
            self.calibration = None
            if ref.scored is None or "label" not in ref.scored.columns:
                return None
            ref_proba = proba_matrix(ref.scored)
            if ref_proba is None or ref_proba.shape[1] != 2:
                return None
            positive = (ref.scored["label"] == keys[1]).to_numpy()
            calibrator = perf.Calibrator.fit(ref_proba[:, 1], positive)
        if calibrator is None:
            return None
        predicted = self.scores["prediction"].cast(pl.String).to_numpy() == keys[1]
        return np.column_stack([calibrator(proba[:, 1]), predicted.astype(np.float64)])

    def estimate_source(self) -> str | None:
        """Where the estimate's calibration came from (call after ``estimated_inputs``)."""
        if self.estimate_sources:
            return "; ".join(self.estimate_sources)
        return TRAINING_REFERENCE if self.calibration is None else self.calibration.source

    def report(self, name: str, deployments: list[str], start: float, end: float) -> WindowReport:
        ref = self.reference
        inputs = merge_profiles([s.inputs for s in self.summaries])
        outputs = merge_profiles([s.outputs for s in self.summaries])
        drift_report = None
        if ref.inputs is not None and inputs is not None:
            cols = [c for c in ref.inputs.columns if c in inputs.columns]
            drift_report = drift(ref.inputs, inputs, columns=cols) if cols else None
        prediction_drift = None
        ref_out = ref.outputs()
        if ref_out is not None and outputs is not None:
            cols = [c for c in ref_out.columns if c in outputs.columns]
            try:
                prediction_drift = drift(ref_out, outputs, columns=cols) if cols else None
            except InvalidInputError:
                prediction_drift = None
        latency: dict[str, float] = {}
        if outputs is not None and "latency_ms" in outputs.columns:
            stats = outputs.columns["latency_ms"].numeric
            if stats is not None:
                q = stats.quantiles()
                latency = {k: q[k] for k in ("p50", "p95", "p99") if k in q}
        quality = ValidationReport(self.rows, merge_anomalies(self.summaries))
        realised, labelled = self._realised()
        est_in = self.estimated_inputs()
        estimated = None if est_in is None else perf.estimate(est_in[:, 0], est_in[:, 1] > 0.5)
        return WindowReport(
            name=name,
            deployment=deployments[0] if len(deployments) == 1 else None,
            model=self.model,
            versions=self.versions or ((self.version,) if self.version is not None else ()),
            start=to_datetime(start),
            end=to_datetime(end),
            rows=self.rows,
            labelled_rows=labelled,
            drift=drift_report,
            drift_score=None if drift_report is None else drift_report.share_drifted,
            prediction_drift=prediction_drift,
            quality=quality,
            latency_ms=latency,
            errors={},
            performance=realised,
            estimated_performance=estimated,
            reference=tuple(d.ref for d in ref.datasets),
            estimate_reference=None if estimated is None else self.estimate_source(),
        )

    def _realised(self) -> tuple[dict[str, float] | None, int]:
        if self.labels is None or self.labels.height == 0:
            return None, 0
        joined = self.scores.join(self.labels, on=KEY, how="inner")
        ref = self.reference
        classes = None if ref.classes is None else class_keys(ref.classes)
        proba = proba_matrix(joined)
        preds = joined["prediction"]
        pred_arr = (
            preds.cast(pl.String).to_numpy() if ref.task == "classification" else preds.to_numpy()
        )
        if ref.task == "classification":
            from loopml.monitor.reference import label_keys

            pred_arr = label_keys(preds).to_numpy()
        metrics = perf.realised(
            ref.task,
            classes,
            joined["label"].to_numpy(),
            joined["value"].to_numpy(),
            pred_arr,
            proba,
        )
        return metrics, joined.height


def _empty(name: str, model: str, deployments: list[str], start: float, end: float) -> WindowReport:
    return WindowReport(
        name=name,
        deployment=deployments[0] if len(deployments) == 1 else None,
        model=model,
        versions=(),
        start=to_datetime(start),
        end=to_datetime(end),
        rows=0,
        labelled_rows=0,
        drift=None,
        drift_score=None,
        prediction_drift=None,
        quality=None,
        latency_ms={},
        errors={},
        performance=None,
        estimated_performance=None,
    )
