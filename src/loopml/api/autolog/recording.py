"""What one autologged fit writes, and into which run.

A fit inside ``with lm.start_run(...)`` logs into that run; a fit outside any run gets a
run of its own, which ends with the fit (failed, with the error, if the fit raised).
Every step is guarded on its own: a param that cannot be stored does not cost the model,
and nothing that goes wrong here reaches the user's ``fit`` except as a warning.
"""

from __future__ import annotations

import json
import math
import re
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from loopml.api import fluent
from loopml.api.autolog import data
from loopml.core.errors import ConfigError
from loopml.store.metadata.tables import artifacts, events
from loopml.store.workspace import Workspace
from loopml.tracking.active_run import FAILED, FINISHED, ActiveRun
from loopml.tracking.tracker import DEFAULT_EXPERIMENT
from loopml.tracking.validation import MAX_NAME_LENGTH, MAX_PARAM_LENGTH

if TYPE_CHECKING:
    from loopml.api.remote import RemoteRun
    from loopml.registry.artifact import SavedModel
    from loopml.store.lineage import ArtifactRecord

MODEL_KIND = "model"
TRAINING_DATA_KIND = "training_data"
TRAINING_DATA_FORMAT = "loopml.training_data/1"
# What the tracker accepts in a name (a role is one too).
NAME_PATTERN = r"^[A-Za-z0-9_\-. /:]+$"
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")


class AutologWarning(UserWarning):
    """Autologging could not record something; the fit itself went ahead."""


@dataclass(frozen=True)
class Settings:
    experiment: str = DEFAULT_EXPERIMENT
    log_models: bool = True
    log_datasets: bool = True
    log_training_metrics: bool = True
    libraries: tuple[str, ...] = ()


def warn(message: str) -> None:
    warnings.warn(message, AutologWarning, stacklevel=3)


def clean_name(name: object) -> str:
    """A param or metric name the tracker accepts, from whatever a library calls it."""
    text = _BAD_NAME_CHARS.sub("_", str(name)).strip() or "_"
    if text.startswith("loopml."):
        text = "_" + text
    return text[:MAX_NAME_LENGTH]


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if _is_object(value) else str(value)
    if len(text) > MAX_PARAM_LENGTH:
        text = text[: MAX_PARAM_LENGTH - 3] + "..."
    return text


def _is_object(value: Any) -> bool:
    return not isinstance(value, int | float | bool | type(None) | str)


class Recorder:
    """Logs one fit into a run; use :func:`begin` to make one."""

    def __init__(self, run: ActiveRun | RemoteRun, owned: bool, settings: Settings) -> None:
        self.run = run
        self.owned = owned
        self.settings = settings

    def attempt(self, what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:
            warn(f"autolog could not {what} for run {self.run.id}: {type(exc).__name__}: {exc}")

    def log_params(self, params: Mapping[str, Any]) -> None:
        rows = {clean_name(k): param_value(v) for k, v in params.items()}
        if not rows:
            return
        # Params are write-once; a second fit in one run keeps the first fit's values.
        logged = fluent.get_run(self.run.id).params
        clash = sorted(k for k, v in rows.items() if k in logged and logged[k] != v)
        if clash:
            warn(
                f"autolog kept the params {', '.join(clash[:5])} of run {self.run.id} as first "
                "logged; a later fit in the same run had other values (start a run per fit)"
            )
        self.run.log_params({k: v for k, v in rows.items() if k not in logged})

    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            return
        if math.isfinite(v):
            self.run.log_metric(clean_name(key), v, step=step)

    def log_series(self, prefix: str, results: Mapping[str, Mapping[str, Any]]) -> None:
        """Per-iteration results as ``{data_name: {metric: [v0, v1, ...]}}``, as XGBoost's
        ``evals_result`` and LightGBM's ``record_evaluation`` give them."""
        for data_name, by_metric in results.items():
            for metric, values in by_metric.items():
                key = clean_name(f"{prefix}{data_name}-{metric}")
                for step, value in enumerate(values):
                    # XGBoost's cross-validated metrics come as (mean, std) pairs.
                    v = value[0] if isinstance(value, tuple | list) else value
                    self.log_metric(key, v, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.run.set_tags({clean_name(k): param_value(v) for k, v in tags.items()})

    def log_model(self, model: Any, X_sample: Any) -> None:
        """Save the fitted model as an output of the run: into the workspace's stores, or
        in remote mode uploaded to the server, which records it the same way."""
        class_name = f"{type(model).__module__}.{type(model).__qualname__}"
        if isinstance(self.run, ActiveRun):
            from loopml.registry.artifact import save_model

            ws = self.run.workspace
            saved = save_model(ws.artifacts, model, X_sample)
            artifact_id = record_model(ws, self.run.id, saved, class_name).id
        else:
            from loopml.api.remote.run_artifacts import log_model

            remote = fluent.remote_tracker()
            if remote is None:
                raise ConfigError("this run is remote, but LOOPML_URI is no longer set")
            artifact_id = log_model(remote.connection, self.run.id, model, X_sample, class_name)
        self.run.set_tags({"autolog.model_artifact_id": artifact_id})

    def log_training_data(self, X: Any, y: Any, role: str = "training_data") -> None:
        """Link the data's digest as an input of the run in ``role``: ``training_data``,
        or the name of an evaluation set (``validation_0``, ...). In remote mode only the
        digest and shape go to the server, which records them the same way."""
        role = clean_name(role)
        d = data.digest(X, y)
        self.run.set_tags({f"autolog.{role}_digest": d.digest})
        if isinstance(self.run, ActiveRun):
            record_training_data(self.run.workspace, self.run.id, d, role)
            return
        from loopml.api.remote.run_artifacts import log_training_data

        remote = fluent.remote_tracker()
        if remote is None:
            raise ConfigError("this run is remote, but LOOPML_URI is no longer set")
        log_training_data(remote.connection, self.run.id, d, role)

    def finish(self, exc: BaseException | None = None) -> None:
        if not self.owned:
            return
        if exc is None:
            self.run.end(FINISHED)
        else:
            detail = "".join(traceback.format_exception(exc))[-20_000:]
            self.run.end(FAILED, error=detail)


def record_training_data(
    ws: Workspace, run_id: str, d: data.DataDigest, role: str
) -> ArtifactRecord:
    """The data's description (digest, rows, columns) as a ``training_data`` artifact,
    linked as an input of ``run_id`` in ``role``: one path for a local fit and for a
    digest a remote client sent. Fits on the same data share one node, so the graph shows
    every run trained on it; a second fit on the same data in one run links it once."""
    description = {
        "format": TRAINING_DATA_FORMAT,
        "content_digest": d.digest,
        "rows": d.rows,
        "columns": d.columns,
        "has_target": d.has_target,
    }
    blob = ws.artifacts.put_bytes(json.dumps(description, sort_keys=True).encode())
    with ws.engine.connect() as conn:
        found = conn.execute(
            select(artifacts.c.id)
            .where(artifacts.c.kind == TRAINING_DATA_KIND, artifacts.c.digest == blob.digest)
            .limit(1)
        ).scalar()
        linked = (
            found is not None
            and conn.execute(
                select(events.c.artifact_id).where(
                    events.c.execution_id == run_id,
                    events.c.artifact_id == found,
                    events.c.type == "input",
                    events.c.role == role,
                )
            ).first()
            is not None
        )
    if found is None:
        record = ws.lineage.add_artifact(
            blob.digest,
            TRAINING_DATA_KIND,
            blob.size,
            name=f"data {d.digest[:15]}",
            properties={"content_digest": d.digest, "rows": d.rows, "source": "autolog"},
        )
    else:
        record = ws.lineage.get_artifact(str(found))
    if not linked:
        ws.lineage.link(run_id, record.id, "input", role=role)
    return record


def record_model(
    ws: Workspace, run_id: str, saved: SavedModel, class_name: str, source: str = "autolog"
) -> ArtifactRecord:
    """The saved model tree as a ``model`` artifact, output of the run in the role
    ``model``: one path for a local fit and for a model a remote client uploaded."""
    record = ws.lineage.add_artifact(
        saved.digest,
        MODEL_KIND,
        saved.size,
        name="model",
        properties={
            "flavor": saved.metadata.flavor,
            "class": class_name,
            "run_id": run_id,
            "source": source,
        },
    )
    ws.lineage.link(run_id, record.id, "output", role="model")
    return record


def begin(settings: Settings, tags: Mapping[str, Any]) -> Recorder | None:
    """A recorder on the active run, or on a new run; None (with a warning) if neither."""
    try:
        run = fluent.active_run()
        owned = run is None
        if run is None:
            # Named for what was fitted, so `loopml runs ls` tells the runs apart.
            estimator = str(tags.get("autolog.estimator", "fit")).rsplit(".", 1)[-1]
            run = fluent.start_run(settings.experiment, name=clean_name(estimator))
        recorder = Recorder(run, owned, settings)
    except Exception as exc:
        warn(f"autolog could not start a run; the fit is not logged: {type(exc).__name__}: {exc}")
        return None
    recorder.attempt("set tags", lambda: recorder.set_tags(tags))
    return recorder


def record_fit(
    settings: Settings,
    tags: Mapping[str, Any],
    fit: Callable[[], Any],
    before: Callable[[Recorder], None],
    after: Callable[[Recorder, Any], None],
) -> Any:
    """Run ``fit`` between ``before`` and ``after``, each logging into one recorder."""
    recorder = begin(settings, tags)
    if recorder is not None:
        recorder.attempt("log before the fit", lambda: before(recorder))
    try:
        result = fit()
    except BaseException as exc:
        if recorder is not None:
            _end_failed(recorder, exc)
        raise
    if recorder is not None:
        recorder.attempt("log the fit", lambda: after(recorder, result))
        recorder.attempt("end the run", lambda: recorder.finish())
    return result


def _end_failed(recorder: Recorder, error: BaseException) -> None:
    recorder.attempt("end the run", lambda: recorder.finish(error))
