"""``loopml serve``, ``loopml predict``, ``loopml build`` and ``loopml feedback``.

``cli/app.py`` registers them with ``serve_cmd.register(app)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from loopml.api.fluent import workspace
from loopml.cli.console import err, out
from loopml.core.errors import InvalidInputError, NotFoundError


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
            "--canary", help="send a share to another ref, e.g. delay-model@challenger:10"
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
) -> None:
    """Serve a registered model over the Open Inference Protocol (REST + gRPC) and /invocations."""
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
    ws = workspace()
    # Resolve now, so a wrong reference is one clean error before anything listens.
    from loopml.serving.model_source import ModelSource

    source = ModelSource(ws)
    for r in [ref, options.shadow, options.canary.ref if options.canary else None]:
        if r is not None:
            source.resolve_version(r)
    if workers == 1:
        from loopml.serving.server import run

        run(ws, options)
        return
    from loopml.serving.supervisor import WorkspaceSpec, run_workers

    spec = WorkspaceSpec(ws.db_url, ws.artifacts_url)
    code = run_workers(spec, options)
    if code:
        raise typer.Exit(code)


def predict(
    ref: Annotated[str, typer.Argument(help="model: name@alias, name:3 or name")],
    input: Annotated[Path, typer.Argument(help="Parquet file to score")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write")],
    executor: Annotated[str, typer.Option("--executor", help="local or ray")] = "local",
    chunk_rows: Annotated[int, typer.Option("--chunk-rows")] = 65_536,
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
        task = progress.add_task(f"scoring with {ref}", total=None)

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
        f"scored {result.rows:,} rows with {result.model} in {result.seconds:.1f}s "
        f"({result.rows / max(result.seconds, 1e-9):,.0f} rows/s) -> {output}"
    )


def build(
    ref: Annotated[str, typer.Argument(help="model: name@alias, name:3 or name")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="folder for the build context")
    ] = Path("loopml-build"),
    image: Annotated[str | None, typer.Option("--image", help="image name:tag")] = None,
) -> None:
    """Write a container build context plus Kubernetes and KServe manifests."""
    from loopml.serving.build import write_build_context

    result = write_build_context(workspace(), ref, out_dir, image=image)
    out.print(f"wrote a build context for {result.model} to {result.directory}:")
    for path in result.files:
        out.print(f"  {path.relative_to(result.directory)}")
    out.print(f"build it with: docker build -t {result.image} {result.directory}")


def feedback(
    labels_file: Annotated[
        Path, typer.Argument(help="CSV or Parquet with request_id, label (and optional row)")
    ],
    deployment: Annotated[
        str, typer.Option("--deployment", "-d", help="deployment name (the served ref)")
    ],
) -> None:
    """Store late ground-truth labels for logged predictions, keyed by request id."""
    from loopml.serving.feedback import Label, store_labels

    if not labels_file.is_file():
        raise NotFoundError(f"no file at {labels_file}")
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
    artifact_id = store_labels(
        workspace(), deployment, [Label(x.request_id, x.row, x.label) for x in parsed]
    )
    out.print(f"stored {len(parsed):,} labels for {deployment} (artifact {artifact_id})")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("predict")(predict)
    app.command("build")(build)
    app.command("feedback")(feedback)
