"""``loopml serve``, ``loopml predict``, ``loopml build`` and ``loopml feedback``.

``cli/app.py`` registers them with ``serve_cmd.register(app)``.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from loopml.api import config
from loopml.api.fluent import workspace
from loopml.cli.console import err, esc, out, plural
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.store.workspace import Workspace

if TYPE_CHECKING:
    from loopml.api.remote.model_source import RemoteModelSource
    from loopml.serving.options import ServeOptions
    from loopml.serving.supervisor import WorkspaceSpec


def serve(
    ref: Annotated[str, typer.Argument(help="model to serve: name@alias, name:3 or name")],
    port: Annotated[int, typer.Option("--port", "-p", help="HTTP port")] = 8080,
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", help="gRPC port (off unless given)")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="server processes")] = 1,
    canary: Annotated[
        str | None,
        typer.Option(
            "--canary",
            help="send a share to another ref, e.g. delay-model@challenger:10; "
            "delay-model@challenger alone takes the share of the retraining loop that moves "
            "that alias (and follows it when the loop's canary changes)",
        ),
    ] = None,
    shadow: Annotated[
        str | None, typer.Option("--shadow", help="also score this ref silently and log it")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="interface to bind")] = "127.0.0.1",
    max_batch_rows: Annotated[
        int, typer.Option("--max-batch-rows", help="most rows in one model call")
    ] = 1024,
    max_delay_ms: Annotated[
        float,
        typer.Option(
            "--max-delay-ms",
            help="wait this long for more requests to fill a batch (0: batch only what is "
            "already queued)",
        ),
    ] = 0.0,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="seconds between alias checks")
    ] = 2.0,
    name: Annotated[
        str | None, typer.Option("--name", help="deployment name in the prediction log")
    ] = None,
    log_durability: Annotated[
        str,
        typer.Option(
            "--log-durability",
            help="fast: the prediction log is written every 2 s, and a killed server loses "
            "up to that much; strict: each answer waits until its record is written",
        ),
    ] = "fast",
    max_connections: Annotated[
        int | None,
        typer.Option(
            "--max-connections",
            help="open HTTP connections per worker (default: what the open-file limit allows)",
        ),
    ] = None,
    header_timeout: Annotated[
        float, typer.Option("--header-timeout", help="seconds for a request's headers")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option("--body-timeout", help="seconds for a request's body")
    ] = 30.0,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            help="remote mode (LOOPML_URI) only: the local workspace folder that keeps the "
            "prediction log and labels (default: $XDG_CACHE_HOME/loopml/serve/HOST-PORT, "
            "HOST-PORT of the server); read it with LOOPML_HOME=DIR and LOOPML_URI unset. "
            "Locally the log goes to the workspace itself",
        ),
    ] = None,
) -> None:
    """Serve a registered model over the Open Inference Protocol (REST + gRPC) and /invocations.

    With LOOPML_URI set, the model comes from that loopml server: the server resolves the
    reference, the version's files are fetched into the local cache (hash-checked), and
    an alias moved on the server is followed within --poll-interval seconds. The
    prediction log stays on this machine, in --log-dir."""
    from loopml.serving.options import CanarySpec, ServeOptions

    options = ServeOptions(
        ref=ref,
        host=host,
        port=port,
        grpc_port=grpc_port,
        workers=workers,
        canary=CanarySpec.parse(canary) if canary else None,
        shadow=shadow,
        deployment=name,
        max_batch_rows=max_batch_rows,
        max_delay_ms=max_delay_ms,
        poll_interval=poll_interval,
        log_durability=log_durability,
        max_connections=max_connections,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
    )
    from loopml.serving.model_source import ModelSource
    from loopml.serving.supervisor import WorkspaceSpec

    settings = config.resolve()
    refs = [ref, options.shadow, options.canary.ref if options.canary else None]
    source: ModelSource | None = None
    if settings.remote:
        assert settings.uri is not None
        source = remote = _remote_source(settings.uri, settings.token, options)
        # Resolve now (a pinned version too), so a wrong reference is one clean error
        # before anything is made.
        for r in refs:
            if r is not None:
                remote.registry.resolve(r)
        ws, spec = _log_workspace(settings.uri, settings.token, log_dir)
    else:
        if log_dir is not None:
            raise InvalidInputError(
                "--log-dir is for remote mode (LOOPML_URI); locally the prediction log is "
                "kept in the workspace, where monitoring reads it"
            )
        ws = workspace()
        spec = WorkspaceSpec(ws.db_url, ws.artifacts_url)
        local = ModelSource(ws)
        for r in refs:
            if r is not None:
                local.resolve_version(r)
    if workers == 1:
        from loopml.serving.server import run

        run(ws, options, source=source)
        return
    from loopml.serving.supervisor import run_workers

    code = run_workers(spec, options)
    if code:
        raise typer.Exit(code)


def _remote_source(uri: str, token: str | None, options: ServeOptions) -> RemoteModelSource:
    """The team server's registry as where the served models come from."""
    from loopml.api.remote.model_source import remote_model_source

    if options.canary is not None and options.canary.follows_loop:
        raise InvalidInputError(
            f"in remote mode give the canary's share: --canary {options.canary.ref}:10 "
            "(the retraining loop whose share it would follow lives on the server)"
        )
    return remote_model_source(uri, token)


def _log_workspace(
    uri: str, token: str | None, log_dir: Path | None
) -> tuple[Workspace, WorkspaceSpec]:
    """The local workspace that keeps the prediction log in remote mode, and what
    ``--workers`` processes need to open it and reach the server themselves."""
    from loopml.api.remote.model_source import remote_model_source
    from loopml.serving.supervisor import WorkspaceSpec

    folder = (log_dir or default_log_dir(uri)).expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot use {folder} for the prediction log: {exc.strerror or exc}; "
            "pick another folder with --log-dir"
        ) from None
    db_url, artifacts = f"sqlite:///{folder / 'loopml.db'}", str(folder / "artifacts")
    ws = Workspace(db_url, artifacts, actor=config.os_user())
    err.print(
        f"prediction log: {esc(folder)} (read it with LOOPML_HOME={esc(folder)})", soft_wrap=True
    )
    spec = WorkspaceSpec(db_url, artifacts, model_source=partial(remote_model_source, uri, token))
    return ws, spec


def default_log_dir(uri: str) -> Path:
    """``$XDG_CACHE_HOME/loopml/serve/HOST-PORT`` (``~/.cache`` without it): one folder
    per server, so serving models of two servers never mixes their logs."""
    parts = urlsplit(uri)
    where = f"{parts.hostname}-{parts.port or (443 if parts.scheme == 'https' else 80)}"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "loopml" / "serve" / where.replace(":", "_")


def predict(
    ref: Annotated[str, typer.Argument(help="model: name@alias, name:3 or name")],
    input: Annotated[Path, typer.Argument(help="Parquet file to score")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write")],
    executor: Annotated[
        str, typer.Option("--executor", help="Where to score: local or ray.")
    ] = "local",
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", help="Rows scored per chunk.")
    ] = 65_536,
) -> None:
    """Score a Parquet file in chunks; write the input columns plus predictions."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from loopml.serving.scoring import predict_file

    if executor not in ("local", "ray"):
        raise InvalidInputError(f"--executor must be 'local' or 'ray', not {executor!r}")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"scoring with {esc(ref)}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = predict_file(
            workspace(),
            ref,
            input,
            output,
            executor=executor,
            chunk_rows=chunk_rows,
            progress=advance,
        )
    out.print(
        f"scored {plural(result.rows, 'row')} with {esc(result.model)} in "
        f"{result.seconds:.1f}s ({result.rows / max(result.seconds, 1e-9):,.0f} rows/s) "
        f"-> {esc(output)}"
    )


def build(
    ref: Annotated[str, typer.Argument(help="model: name@alias, name:3 or name")],
    out_dir: Annotated[
        Path, typer.Option("--output", "-o", help="The folder to write the build context to.")
    ] = Path("loopml-build"),
    image: Annotated[
        str | None, typer.Option("--image", help="Image name:tag (default: model:version).")
    ] = None,
    storage_uri: Annotated[
        str | None,
        typer.Option(
            "--storage-uri",
            help="Also write a KServe manifest that loads the model from this URI "
            "(upload the context's workspace/ folder there), e.g. s3://bucket/delay-model.",
        ),
    ] = None,
) -> None:
    """Write a container build context plus Kubernetes and KServe manifests."""
    from loopml.serving.build import write_build_context

    result = write_build_context(workspace(), ref, out_dir, image=image, storage_uri=storage_uri)
    out.print(f"wrote a build context for {esc(result.model)} to {esc(result.directory)}:")
    for path in result.files:
        out.print(f"  {esc(path.relative_to(result.directory))}")
    out.print(f"build it with: docker build -t {esc(result.image)} {esc(result.directory)}")
    if storage_uri is not None:
        out.print(
            f"for kserve/inferenceservice-storage-uri.yaml, upload "
            f"{esc(result.directory / 'workspace')} to {esc(storage_uri)}"
        )


def feedback(
    labels_file: Annotated[
        Path,
        typer.Argument(help="CSV, Parquet or JSON with request_id, label (and optional row)."),
    ],
    deployment: Annotated[
        str,
        typer.Option("--deployment", "-d", help="The deployment that answered (its served ref)."),
    ],
) -> None:
    """Store late ground-truth labels for logged predictions, keyed by request id."""
    from loopml.serving.feedback import Label, store_labels

    if not labels_file.is_file():
        raise NotFoundError(f"no file at {labels_file}")
    ws = workspace()
    logged = logged_keys(ws, deployment)
    import polars as pl

    suffix = labels_file.suffix.lower()
    if suffix == ".parquet":
        frame = pl.read_parquet(labels_file)
    elif suffix == ".csv":
        frame = pl.read_csv(labels_file)
    elif suffix in (".json", ".jsonl"):
        frame = (
            pl.read_ndjson(labels_file)
            if suffix == ".jsonl"
            else pl.DataFrame(json.loads(labels_file.read_text()))
        )
    else:
        raise InvalidInputError("labels must be a .csv, .parquet, .json or .jsonl file")
    missing = {"request_id", "label"} - set(frame.columns)
    if missing:
        raise InvalidInputError(
            f"{labels_file} lacks column(s) {sorted(missing)}; it has {frame.columns}"
        )
    rows = frame["row"].to_list() if "row" in frame.columns else [0] * frame.height
    from loopml.serving.feedback import parse_labels

    parsed = parse_labels(
        {
            "labels": [
                {"request_id": str(r), "row": int(i or 0), "label": v}
                for r, i, v in zip(
                    frame["request_id"].to_list(), rows, frame["label"].to_list(), strict=True
                )
            ]
        }
    )
    matched = sum((x.request_id, x.row) in logged for x in parsed)
    artifact_id = store_labels(
        ws, deployment, [Label(x.request_id, x.row, x.label) for x in parsed]
    )
    out.print(
        f"stored {plural(len(parsed), 'label')} for {esc(deployment)} (artifact "
        f"{esc(artifact_id)}): {matched:,} matched a logged prediction"
        + (
            f", {len(parsed) - matched:,} did not (unknown request id or row; "
            "they are kept for predictions still being flushed)"
            if matched < len(parsed)
            else ""
        )
    )


def logged_keys(ws: Workspace, deployment: str) -> set[tuple[str, int]]:
    """(request id, row) of every prediction ``deployment`` logged; refuse a deployment
    that never served, naming those that did."""
    from loopml.serving.log_reader import read_predictions

    table = read_predictions(ws, deployment)
    if table is None or table.num_rows == 0:
        known = served_deployments(ws)
        raise NotFoundError(
            f"deployment {deployment!r} has not logged any prediction in this workspace, so "
            "no label can match one; deployments that have: "
            f"{', '.join(repr(d) for d in known) or 'none'}"
        )
    ids = table.column("request_id").to_pylist()
    rows = table.column("row").to_pylist()
    return set(zip(ids, rows, strict=True))


def served_deployments(ws: Workspace) -> list[str]:
    from sqlalchemy import select

    from loopml.serving.prediction_log import LOG_KIND
    from loopml.store.metadata.tables import artifacts

    with ws.engine.connect() as conn:
        props = conn.execute(
            select(artifacts.c.properties).where(artifacts.c.kind == LOG_KIND)
        ).scalars()
        return sorted({str(p.get("deployment")) for p in props if p and p.get("deployment")})


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("predict")(predict)
    app.command("build")(build)
    app.command("feedback")(feedback)
