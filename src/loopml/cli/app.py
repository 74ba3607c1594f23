"""The ``loopml`` entry point: a user mistake becomes one clean line, never a traceback.

Exit codes come from the error table in ``loopml.core.errors`` (as Click's own: 2 for a
usage mistake, 1 for anything else), so the CLI, REST and gRPC agree on what an error is.
"""

from __future__ import annotations

import sys
import types
from typing import Annotated, Any

import typer
from sqlalchemy.exc import OperationalError

from loopml.cli import (
    console,
    data_cmd,
    demo_cmd,
    gc_cmd,
    import_cmd,
    loop_cmd,
    models_cmd,
    monitor_cmd,
    pipeline_cmd,
    reproduce_cmd,
    runs_cmd,
    scheduler_cmd,
    serve_cmd,
    server_cmd,
    trace_cmd,
    workspace_cmd,
)
from loopml.core.errors import LoopmlError, error_codes

app = typer.Typer(
    name="loopml",
    help="The whole production-ML loop: data, runs, models, serving, monitoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Options show their type, not `<bool>` or `TEXT` placeholders nobody reads.
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("loopml")
        except PackageNotFoundError:  # running from a source tree without installing
            from loopml import __version__ as installed
        console.out.print(f"loopml {installed}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print loopml's version and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """The whole production-ML loop: data, runs, models, serving, monitoring."""


app.command()(demo_cmd.demo)
app.add_typer(data_cmd.app, name="data")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(models_cmd.app, name="models")
app.add_typer(pipeline_cmd.app, name="pipeline")
app.add_typer(loop_cmd.app, name="loop")
app.command()(scheduler_cmd.scheduler)
app.command()(gc_cmd.gc)
app.command()(reproduce_cmd.reproduce)
app.add_typer(import_cmd.app, name="import")
workspace_cmd.register(app)
serve_cmd.register(app)
server_cmd.register(app)
monitor_cmd.register(app)
trace_cmd.register(app)

# Kept for callers that compare against it: Click's code for a usage mistake.
EXIT_USER_ERROR = 2
EXIT_ERROR = 1


def _plain_usage_pieces(command: Any, ctx: Any) -> list[str]:
    # Click's own convention: REF for a required argument, [REF] for an optional one
    # (Typer writes `{ref}`, which reads like a template placeholder).
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if param.param_type_name == "argument":
            name = (param.metavar or param.name or "arg").upper()
            name = name if param.required else f"[{name}]"
            pieces.append(f"{name}..." if param.nargs != 1 else name)
    return pieces


def build_command() -> Any:
    """The Click command tree of ``app``, with usage lines in Click's own convention."""
    root = typer.main.get_command(app)

    def tidy(command: Any) -> None:
        command.collect_usage_pieces = types.MethodType(_plain_usage_pieces, command)
        for sub in getattr(command, "commands", {}).values():
            tidy(sub)

    tidy(root)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising for loopml errors."""
    try:
        build_command().main(args=argv, prog_name="loopml", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except LoopmlError as exc:
        console.print_error(str(exc))
        return error_codes(exc).exit_code
    except OperationalError as exc:
        console.print_error(f"the metadata database failed: {exc.orig}")
        return EXIT_ERROR
    except OSError as exc:
        # A file the user named that cannot be read or written: say which and why.
        where = f" {exc.filename}" if exc.filename else ""
        console.print_error(f"cannot use{where}: {exc.strerror or exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        console.err.print("interrupted")
        return 130
    return 0


def entry() -> None:
    sys.exit(main())
