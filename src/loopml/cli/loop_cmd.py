"""``loopml loop run MODULE:LOOP`` ticks a loop on a schedule; ``loopml loop status`` shows
each loop's state and its latest decisions with their reasons."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from loopml.api import fluent
from loopml.cli.console import out
from loopml.core import clock
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.registry.model_registry import Registry
from loopml.retraining.durations import parse_duration
from loopml.retraining.loop import Loop, TickResult
from loopml.retraining.records import LoopStore

app = typer.Typer(help="Run retraining loops and see what they decided.", no_args_is_help=True)


def load_loop(ref: str) -> Loop:
    """The Loop object ``module:attribute`` names, imported from the current folder."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInputError(f"{ref!r} is not a loop reference; write module:loop")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise NotFoundError(f"cannot import {module_name!r}: no such module") from None
        raise InvalidInputError(f"module {module_name!r} failed to import: {exc}") from None
    except Exception as exc:
        raise InvalidInputError(
            f"module {module_name!r} failed to import: {type(exc).__name__}: {exc}"
        ) from None
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise NotFoundError(f"module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, Loop):
        raise InvalidInputError(f"{ref} is a {type(obj).__name__}, not an lm.Loop")
    return obj


def show_tick(result: TickResult) -> None:
    out.print(
        f"{clock.format_ts(result.at)}  tick {result.tick}: "
        f"[bold]{result.action}[/] — {result.why}",
        soft_wrap=True,
    )


@app.command("run")
def run(
    ref: Annotated[str, typer.Argument(help="module:attribute naming an lm.Loop")],
    every: Annotated[str, typer.Option("--every", help="time between ticks, e.g. 10m, 1h")] = "1h",
    ticks: Annotated[int, typer.Option("--ticks", help="stop after this many ticks")] = 0,
) -> None:
    """Tick the loop now and then every --every until SIGTERM or Ctrl-C (or --ticks N)."""
    seconds = parse_duration(every, "--every")
    if seconds <= 0:
        raise InvalidInputError("--every must be longer than 0 s")
    if ticks < 0:
        raise InvalidInputError("--ticks must be 0 (no limit) or more")
    loop = load_loop(ref)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        out.print(f"received {signal.Signals(signum).name}; stopping after this tick")
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # One process ticks a loop at a time: another one holding it is named, and this
        # one stops before acting.
        with loop.hold():
            out.print(f"loop {loop.name}: ticking as {loop.holder}")
            done = 0
            while not stop.is_set():
                show_tick(loop.tick())
                done += 1
                if ticks and done >= ticks:
                    break
                stop.wait(seconds)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@app.command("status")
def status(
    name: Annotated[str | None, typer.Argument(help="a loop's name (default: every loop)")] = None,
    limit: Annotated[int, typer.Option("--limit", help="decisions shown per loop")] = 20,
) -> None:
    """Each loop's phase, champion and candidate, and its latest decisions with reasons."""
    if limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    ws = fluent.workspace()
    store = LoopStore(ws)
    loops = [store.get(name)] if name is not None else store.all()
    if not loops:
        out.print("no loops yet; tick one with `loopml loop run module:loop`")
        return
    registry = Registry(ws)
    summary = Table(title=f"{len(loops)} loop(s)")
    for col in ("loop", "model", "phase", "aliases", "candidate", "last retrain", "ticks"):
        summary.add_column(col)
    for rec in loops:
        state = rec.state
        lease = store.lease(rec.name)
        if lease is not None:
            out.print(f"loop {rec.name} is being ticked by {lease[0]}")
        aliases = ", ".join(f"{a} -> {v}" for a, v in registry.aliases(rec.model).items())
        summary.add_row(
            rec.name,
            rec.model,
            str(state.get("phase", "")),
            aliases,
            str(state.get("candidate") or "-"),
            clock.format_ts(state.get("last_retrain")) or "never",
            str(state.get("tick", 0)),
        )
    out.print(summary)
    for rec in loops:
        decisions = store.decisions(rec.name, limit=limit)
        table = Table(title=f"loop {rec.name}: latest {len(decisions)} decision(s)")
        for col in ("tick", "at", "decision", "versions", "reasons"):
            table.add_column(col, overflow="fold")
        for d in decisions:
            versions = (
                ""
                if d.from_version is None and d.to_version is None
                else f"{d.from_version or '-'} -> {d.to_version or '-'}"
            )
            table.add_row(
                str(d.tick),
                clock.format_ts(d.at),
                f"{d.kind} {d.outcome}",
                versions,
                "\n".join(d.reasons),
            )
        out.print(table)
