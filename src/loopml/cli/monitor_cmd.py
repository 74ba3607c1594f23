"""``loopml monitor NAME [--window 1d] [--html FILE]``; ``loopml monitor grafana -o DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from loopml.api import fluent
from loopml.cli.console import out
from loopml.core.errors import InvalidInputError

GRAFANA = "grafana"


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "-"
    return str(v)


def monitor(
    name: Annotated[
        str,
        typer.Argument(
            help="a model (all its deployments) or a deployment; 'grafana' with -o writes "
            "the Grafana dashboard and Prometheus alerting rules"
        ),
    ],
    window: Annotated[str, typer.Option(help="window length: 1d, 7d, 2w (whole days)")] = "1d",
    since: Annotated[float | None, typer.Option(help="epoch seconds")] = None,
    until: Annotated[float | None, typer.Option(help="epoch seconds")] = None,
    html: Annotated[Path | None, typer.Option(help="write an HTML report with charts")] = None,
    alerts: Annotated[
        Path | None, typer.Option(help="alert rules (YAML) evaluated on new windows")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="with 'grafana': directory to write")
    ] = None,
) -> None:
    """Drift, performance, volume and latency of served traffic, one row per window."""
    if name == GRAFANA and output is not None:
        from loopml.monitor.prometheus import write_assets

        for path in write_assets(output):
            out.print(f"wrote {path}")
        return
    if output is not None:
        raise InvalidInputError("-o/--output goes with 'loopml monitor grafana -o DIR'")
    from loopml.monitor import api

    ws = fluent.workspace()
    h = api.history(ws, name, window, since, until, alerts=None if alerts is None else alerts)
    if h.height == 0:
        out.print(f"no logged predictions for {name} in that range")
    else:
        table = Table(title=f"{name}: {h.height} window(s) of {window}")
        cols = [
            ("start", "start"),
            ("versions", "versions"),
            ("rows", "rows"),
            ("labelled", "labelled_rows"),
            ("drift", "drift_score"),
            ("drifted columns", "drifted_columns"),
            ("AUC", "perf_roc_auc"),
            ("est. AUC", "est_roc_auc"),
            ("p99 ms", "latency_p99"),
        ]
        for title, _ in cols:
            table.add_column(title, overflow="fold")
        for r in h.iter_rows(named=True):
            table.add_row(
                *(
                    r["start"].strftime("%Y-%m-%d") if key == "start" else _fmt(r.get(key))
                    for _, key in cols
                )
            )
        out.print(table)
    if html is not None:
        from loopml.monitor.report import write_html

        write_html(h, str(html), f"loopml monitoring: {name}")
        out.print(f"wrote {html}")


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
