"""``loopml trace REQUEST_ID``: a prediction back to its model, run, code and data."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loopml.api import fluent
from loopml.cli.console import out


def trace(
    request_id: Annotated[str, typer.Argument(help="the id the server returned")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Inputs, outputs, model version and digest, training run and dataset digests."""
    from loopml.monitor import trace as find

    t = find(fluent.workspace(), request_id)
    if as_json:
        out.print_json(json.dumps(t.to_dict(), default=str))
        return
    out.print(f"request   {t.request_id} ({len(t.rows)} row(s)) on deployment {t.deployment}")
    out.print(f"model     {t.model}:{t.version}  digest {t.model_digest}")
    out.print(f"log file  {t.log_digest}")
    out.print(f"run       {t.run_id or '-'}  params {t.run_params or {}}")
    out.print(f"code      {t.code_version or '-'}")
    for d in t.datasets:
        out.print(f"dataset   {d.ref}  digest {d.digest}  ({d.rows} rows)")
    for r in t.rows:
        out.print(
            f"row {r['row']}: prediction {r['prediction']!r} proba {r['proba']} "
            f"event_time {r['event_time']} inputs {json.dumps(r['inputs'], default=str)}"
        )


def register(app: typer.Typer) -> None:
    app.command("trace")(trace)
