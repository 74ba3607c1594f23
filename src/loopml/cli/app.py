"""The ``loopml`` entry point; user mistakes become one clean line and exit code 2."""

from __future__ import annotations

import sys

import typer
from sqlalchemy.exc import OperationalError

from loopml.cli import (
    console,
    data_cmd,
    demo_cmd,
    gc_cmd,
    models_cmd,
    pipeline_cmd,
    reproduce_cmd,
    runs_cmd,
    scheduler_cmd,
    serve_cmd,
    server_cmd,
    workspace_cmd,
)
from loopml.core.errors import LoopmlError

app = typer.Typer(
    name="loopml",
    help="The whole production-ML loop: data, runs, models, serving, monitoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(demo_cmd.demo)
app.add_typer(data_cmd.app, name="data")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(models_cmd.app, name="models")
app.add_typer(pipeline_cmd.app, name="pipeline")
app.command()(scheduler_cmd.scheduler)
app.command()(gc_cmd.gc)
app.command()(reproduce_cmd.reproduce)
workspace_cmd.register(app)
serve_cmd.register(app)
server_cmd.register(app)

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising for loopml errors."""
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except LoopmlError as exc:
        console.err.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
        return EXIT_USER_ERROR
    except OperationalError as exc:
        console.err.print(f"[bold red]error:[/] the metadata database failed: {exc.orig}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        console.err.print("interrupted")
        return 130
    return 0


def entry() -> None:
    sys.exit(main())
