"""``loopml scheduler``: run due pipelines until SIGTERM or Ctrl-C, then stop cleanly."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from loopml.api import fluent
from loopml.cli.console import out
from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.pipelines.scheduler import Scheduler


def scheduler(
    poll: Annotated[float, typer.Option("--poll", help="Seconds between checks.")] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
) -> None:
    """Run scheduled and triggered pipelines as a long-running process.

    SIGTERM or Ctrl-C stops it cleanly: a pipeline in progress stops between steps, is
    recorded as interrupted, and can be resumed with `loopml pipeline resume`.
    """
    if not poll > 0:
        raise InvalidInputError("--poll must be a positive number of seconds")
    # loopml's own log lines only; library chatter (alembic, ray) stays at its defaults.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    loopml_log = logging.getLogger("loopml")
    loopml_log.addHandler(handler)
    loopml_log.setLevel(logging.INFO)
    stop = threading.Event()
    sched = Scheduler(fluent.workspace(), stop=stop, tracker=fluent.tracker())

    def _stop(signum: int, _frame: FrameType | None) -> None:
        out.print(f"received {signal.Signals(signum).name}; stopping after the current step")
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if once:
            failed = 0
            for fired in sched.tick():
                if fired.ok:
                    out.print(escape(f"{fired.schedule}: {fired.reason} -> finished"))
                    continue
                failed += 1
                retry = ""
                if fired.retry_at is not None:
                    retry = (
                        f" ({fired.failures} in a row; retried after "
                        f"{clock.format_ts(fired.retry_at)})"
                    )
                out.print(
                    escape(f"{fired.schedule}: {fired.reason} -> failed: {fired.error}{retry}"),
                    soft_wrap=True,
                )
            if failed:
                raise typer.Exit(1)
            return
        out.print(f"scheduler started (polling every {poll:g}s); SIGTERM or Ctrl-C stops it")
        sched.serve(poll)
        out.print("scheduler stopped")
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        loopml_log.removeHandler(handler)
