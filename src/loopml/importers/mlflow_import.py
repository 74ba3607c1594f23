"""Copy an MLflow tracking store into a loopml workspace; a re-run copies only what is new.

Runs keep MLflow's run id where it is free (so ``mlflow.parentRunId`` tags and links
still point right) and always carry the reserved tag ``mlflow.source_run_id``, which is
how a re-run knows what it already copied. Each run is written in one transaction with
its params, tags, full metric histories and artifact links, after its files are in the
content-addressed store: an interrupted import leaves whole runs or none.

Only runs that have ended are copied; one still running is copied by a later import,
once it has ended. Registered model versions become loopml versions as the server's MLflow
registry makes them (``loopml.registry.mlflow_model``): servable when loopml serves their
flavor, otherwise stored with the reason (``loopml.not_servable``). The version's MLflow
number is its tag ``mlflow.version``; MLflow aliases follow their versions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from loopml.core import clock, names
from loopml.core.errors import LoopmlError, StoreError
from loopml.core.ids import new_id
from loopml.importers.mlflow_files import Unreadable
from loopml.importers.mlflow_records import (
    RunData,
    Source,
    SourceModel,
    SourceRun,
    SourceVersion,
    walk,
)
from loopml.registry.artifact import NOT_SERVABLE, save_files, save_model
from loopml.registry.mlflow_model import (
    MLMODEL,
    NOT_SERVABLE_TAG,
    SOURCE_TAG,
    convert,
    parse_mlmodel,
    read_safely,
)
from loopml.registry.model_registry import Registry
from loopml.store.workspace import Workspace
from loopml.tracking.recorded import (
    RecordedRun,
    Series,
    run_exists,
    runs_by_tag,
    write_recorded_run,
)

SOURCE_RUN_TAG = "mlflow.source_run_id"
VERSION_TAG = "mlflow.version"
# The server's MLflow artifact proxy names files so; imported files are found there too.
FILE_KIND = "mlflow_file"
STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
_RUN_ID = re.compile(r"[0-9a-f]{32}")

Progress = Callable[[str, int, int], None]


@dataclass
class ImportReport:
    source: str
    experiments: int = 0
    runs_copied: int = 0
    runs_already: int = 0
    runs_unfinished: int = 0
    runs_deleted: int = 0
    metric_points: int = 0
    nan_points_skipped: int = 0
    files: int = 0
    file_bytes: int = 0
    versions_servable: int = 0
    versions_recorded: int = 0
    versions_already: int = 0
    aliases_set: int = 0
    notes: list[str] = field(default_factory=list)


def import_mlflow(
    ws: Workspace, source: Source, *, progress: Progress | None = None
) -> ImportReport:
    """Copy what ``source`` holds that ``ws`` does not have yet."""
    report = ImportReport(source.description)
    tell = progress or (lambda stage, done, total: None)
    inventory = source.inventory()
    report.experiments = len(inventory.experiments)
    report.runs_deleted = inventory.deleted_runs
    report.notes.extend(inventory.notes)
    experiments = {e.id: e.name for e in inventory.experiments}
    copied = runs_by_tag(ws.engine, SOURCE_RUN_TAG)
    tell("runs", 0, len(inventory.runs))
    for i, run in enumerate(inventory.runs, 1):
        if run.id in copied:
            report.runs_already += 1
        elif run.status not in STATUS:
            report.runs_unfinished += 1
        else:
            copied[run.id] = _copy_run(ws, source, run, experiments[run.experiment_id], report)
        tell("runs", i, len(inventory.runs))
    if report.runs_unfinished:
        report.notes.append(
            f"{report.runs_unfinished} run(s) had not ended; import again once they have"
        )
    models = source.models()
    registry = Registry(ws)
    runs_of = {r.id: r for r in inventory.runs}
    total = sum(len(m.versions) for m in models)
    done = 0
    tell("model versions", 0, total)
    for model in models:
        done = _copy_model(ws, registry, source, model, runs_of, copied, report, done, tell, total)
    return report


# --- runs -------------------------------------------------------------------------------
def _copy_run(
    ws: Workspace, source: Source, run: SourceRun, experiment: str, report: ImportReport
) -> str:
    data = source.run_data(run)
    metrics: dict[str, Series] = {}
    for key, points in data.metrics.items():
        kept = [p for p in points if math.isfinite(p.value)]
        report.nan_points_skipped += len(points) - len(kept)
        report.metric_points += len(kept)
        if kept:
            metrics[key] = Series(
                np.array([p.step for p in kept], dtype=np.int64),
                np.array([p.timestamp_ms for p in kept], dtype=np.float64) / 1000.0,
                np.array([p.value for p in kept], dtype=np.float64),
            )
    start = run.start_ms / 1000.0 if run.start_ms is not None else clock.now()
    # Files go into the content-addressed store first; rows point at them only once whole.
    files: list[tuple[str, str, int]] = []
    try:
        with source.files(run.artifact_uri, run.experiment_id) as folder:
            for rel, path in walk(folder) if folder is not None else ():
                blob = ws.artifacts.put_file(path)
                files.append((rel, blob.digest, blob.size))
    except Unreadable as exc:
        report.notes.append(f"run {run.id}: artifacts not copied: {exc}")
    try:
        run_id = _write_run(ws, run, experiment, data, metrics, start, files)
    except SQLAlchemyError as exc:
        # The transaction rolled back: nothing of this run is in the workspace.
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
        raise StoreError(
            f"MLflow run {run.id} could not be written, so the import stopped there (the runs "
            f"before it are whole): {reason}"
        ) from None
    report.runs_copied += 1
    report.files += len(files)
    report.file_bytes += sum(size for _, _, size in files)
    return run_id


def _write_run(
    ws: Workspace,
    run: SourceRun,
    experiment: str,
    data: RunData,
    metrics: dict[str, Series],
    start: float,
    files: list[tuple[str, str, int]],
) -> str:
    """The run with its params, tags, metrics and file links, in one transaction."""
    with ws.write_engine.begin() as conn:
        run_id = run.id if _RUN_ID.fullmatch(run.id) and not run_exists(conn, run.id) else new_id()
        exp_id = write_recorded_run(
            conn,
            RecordedRun(
                id=run_id,
                experiment=experiment,
                name=run.name or data.tags.get("mlflow.runName") or f"run-{run_id[:8]}",
                status=STATUS[run.status],
                start_time=start,
                end_time=run.end_ms / 1000.0 if run.end_ms is not None else None,
                params=data.params,
                tags={**data.tags, SOURCE_RUN_TAG: run.id},
                metrics=metrics,
                git_commit=data.tags.get("mlflow.source.git.commit"),
            ),
        )
        for rel, digest, size in files:
            record = ws.lineage.add_artifact(
                digest, FILE_KIND, size, name=f"{exp_id}/{run_id}/artifacts/{rel}", conn=conn
            )
            ws.lineage.link(run_id, record.id, "output", role=rel, conn=conn)
    return run_id


# --- registered models ----------------------------------------------------------------------
def _copy_model(
    ws: Workspace,
    registry: Registry,
    source: Source,
    model: SourceModel,
    runs_of: dict[str, SourceRun],
    copied: dict[str, str],
    report: ImportReport,
    done: int,
    tell: Progress,
    total: int,
) -> int:
    try:
        names.check_name(model.name, "model name")
    except LoopmlError as exc:
        report.notes.append(f"registered model {model.name!r} not imported: {exc}")
        return done + len(model.versions)
    _copy_model_record(registry, model, report)
    have = {
        int(v.tags[VERSION_TAG]): v.version
        for v in (registry.versions(model.name) if registry.models(name=model.name) else [])
        if v.tags.get(VERSION_TAG, "").isdigit()
    }
    for version in model.versions:
        if version.version in have:
            report.versions_already += 1
        else:
            number = _copy_version(registry, source, version, runs_of, copied, report)
            if number is not None:
                have[version.version] = number
        done += 1
        tell("model versions", done, total)
    for alias, mlflow_version in sorted(model.aliases.items()):
        target = have.get(mlflow_version)
        if target is None:
            report.notes.append(
                f"alias {model.name}@{alias} not set: MLflow version {mlflow_version} was not "
                "imported"
            )
            continue
        try:
            current = registry.alias_version(model.name, alias)
            if current != target:
                registry.move_alias(
                    model.name,
                    alias,
                    target,
                    action="import",
                    reason=f"imported from MLflow ({source.description})",
                    expected_from=current,
                )
                report.aliases_set += 1
        except LoopmlError as exc:
            report.notes.append(f"alias {model.name}@{alias} not set: {exc}")
    return done


def _copy_model_record(registry: Registry, model: SourceModel, report: ImportReport) -> None:
    """The registered model's description and tags. A model new here is created with them;
    one already here keeps its own description and tags, and gains only what it lacks (a
    re-import adds what MLflow gained since, and never undoes an edit made in loopml)."""
    try:
        found = registry.models(name=model.name)
        if not found:
            registry.create_model(model.name, description=model.description, tags=model.tags)
            return
        here = found[0]
        description = model.description if model.description and not here.description else None
        new_tags = {k: v for k, v in model.tags.items() if k not in here.tags}
        if description is not None or new_tags:
            registry.update_model(model.name, description=description, tags=new_tags)
    except LoopmlError as exc:
        report.notes.append(
            f"registered model {model.name}: description and tags not copied: {exc}"
        )


def _model_uri(version: SourceVersion, runs_of: dict[str, SourceRun]) -> tuple[str | None, str]:
    """Where the version's files are, and the experiment id to look them up under."""
    run = runs_of.get(version.run_id or "")
    experiment_id = run.experiment_id if run is not None else ""
    if version.storage_location:
        return version.storage_location, experiment_id
    src = version.source or ""
    if src.startswith("runs:/"):
        run_id, _, path = src[len("runs:/") :].partition("/")
        run = runs_of.get(run_id)
        if run is None or not run.artifact_uri:
            return None, experiment_id
        return f"{run.artifact_uri.rstrip('/')}/{path}", run.experiment_id
    if src.startswith("models:/"):
        return None, experiment_id
    return src or None, experiment_id


def _copy_version(
    registry: Registry,
    source: Source,
    version: SourceVersion,
    runs_of: dict[str, SourceRun],
    copied: dict[str, str],
    report: ImportReport,
) -> int | None:
    """Register ``version`` as the next loopml version of its model; its number.

    The MLmodel folder becomes a loopml model tree as the server's MLflow registry makes
    one (nothing is unpickled): a flavor loopml serves is servable, any other is stored
    with the reason it cannot be served. None when its files cannot be found."""
    uri, experiment_id = _model_uri(version, runs_of)
    what = f"MLflow model {version.model} version {version.version}"
    try:
        with source.files(uri, experiment_id) as folder:
            contents = {rel: path.read_bytes() for rel, path in walk(folder)} if folder else {}
    except Unreadable as exc:
        report.notes.append(f"{what} not imported: {exc}")
        return None
    if MLMODEL not in contents:
        report.notes.append(
            f"{what} not imported: no MLmodel file at {uri or 'its (unrecorded) location'}; "
            "pass --artifacts if the files moved, then import again"
        )
        return None
    store = registry.ws.artifacts
    try:
        converted = convert(parse_mlmodel(contents[MLMODEL]), set(contents))
        reason = converted.reason
        if converted.safe_file is not None:
            loaded = read_safely(contents[converted.safe_file], converted)
            if isinstance(loaded, str):
                reason = loaded
                info = {**converted.metadata.flavor_info, NOT_SERVABLE: reason}
                saved = save_files(store, contents, replace(converted.metadata, flavor_info=info))
            else:
                saved = save_model(store, loaded)
        else:
            saved = save_files(store, contents, converted.metadata)
        tags = {**version.tags, VERSION_TAG: str(version.version)}
        if version.source:
            tags[SOURCE_TAG] = version.source
        if version.run_id:
            tags[SOURCE_RUN_TAG] = version.run_id
        if reason is not None:
            tags[NOT_SERVABLE_TAG] = reason
        mv = registry.register_saved(
            version.model,
            saved,
            run_id=copied.get(version.run_id or ""),
            description=version.description,
            tags=tags,
            created_by=f"mlflow import ({source.description})",
        )
    except LoopmlError as exc:
        report.notes.append(f"{what} not imported: {exc}")
        return None
    if reason is None:
        report.versions_servable += 1
    else:
        report.versions_recorded += 1
    return mv.version
