"""``loopml runs ls|show|compare``."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from loopml.api import fluent
from loopml.cli import tables
from loopml.cli.console import esc, lit, out, plural
from loopml.cli.workspace_guard import require_workspace
from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.tracking import search
from loopml.tracking.records import Run
from loopml.tracking.search import MAX_SEARCH_LIMIT

app = typer.Typer(help="Browse and compare tracked runs.", no_args_is_help=True)

# The tag the pipeline runner puts on each step's run; top-level runs do not have it.
STEP_TAG = "pipeline.run_id"
_STATUS_STYLE = {"finished": "green", "failed": "red", "killed": "red", "running": "yellow"}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _duration(run: Run) -> str:
    return "" if run.duration is None else f"{run.duration:.1f}s"


def _started(ts: float) -> str:
    # Minutes are enough to tell runs apart in a list (`runs show` has the seconds), and
    # the year only when it is not this one: room for one more metric at 80 columns.
    text = clock.format_ts(ts)
    return text[5:16] if text[:4] == time.strftime("%Y", time.gmtime()) else text[:10]


def _status(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{esc(status)}[/]" if style else esc(status)


def metrics_named(filter: str | None, order_by: str | None) -> list[str]:
    """Metric keys the user filtered or sorted by, in the order they were written."""
    keys: list[str] = []
    try:
        for key in search.parse_order_by(order_by):
            if key.field.entity == "metric":
                keys.append(key.field.key)
        if filter and filter.strip():
            from lark import Lark, Token

            tree = Lark(search.GRAMMAR, parser="lalr").parse(filter)
            for tok in tree.scan_values(lambda v: isinstance(v, Token) and v.type == "FIELD"):
                field = search.parse_field(str(tok))
                if field.entity == "metric":
                    keys.append(field.key)
    except Exception:  # the search already reported a malformed filter or order
        return list(dict.fromkeys(keys))
    return list(dict.fromkeys(keys))


def choose_metric_columns(runs: list[Run], named: list[str], room: int) -> list[str]:
    """The metric columns that fit in ``room`` characters: named ones first, then the
    metrics most runs have."""
    counts = Counter(k for r in runs for k in r.metrics)
    ranked = [k for k in named if k in counts or not runs]
    ranked += [
        k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if k not in ranked
    ]
    chosen: list[str] = []
    for key in ranked:
        need = max(len(key), 8) + tables.GAP
        if need > room:
            if key in named and not chosen:
                chosen.append(key)  # what the user asked about is shown even if tight
            break
        chosen.append(key)
        room -= need
    return chosen


@app.command("ls")
def list_runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only runs of this experiment.")
    ] = None,
    filter: Annotated[
        str | None,
        typer.Option("--filter", "-f", help='Only matching runs, e.g. "metrics.auc > 0.7".'),
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option("--order-by", "-s", help='Sort, e.g. "metrics.auc desc"; newest first.'),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show at most this many.")] = 20,
    all_runs: Annotated[
        bool,
        typer.Option("--all", "-a", help="Include the runs of pipeline steps."),
    ] = False,
) -> None:
    """List runs, newest first, with the metrics that fit (those filtered or sorted by first)."""
    require_workspace(listing=True)
    if not 0 < limit <= MAX_SEARCH_LIMIT:
        raise InvalidInputError(f"--limit must be from 1 to {MAX_SEARCH_LIMIT}")
    # Step runs are left out by the search itself, so a page is always full when it can be.
    wanted = filter if all_runs else _with(filter, f"tags.`{STEP_TAG}` is null")
    runs = fluent.search_runs(experiment, filter=wanted, order_by=order_by, limit=limit)
    hidden = not all_runs and bool(
        fluent.search_runs(
            experiment, filter=_with(filter, f"tags.`{STEP_TAG}` is not null"), limit=1
        )
    )
    experiments = {r.experiment for r in runs}
    one_experiment = len(experiments) == 1
    title = plural(len(runs), "run")
    if one_experiment:
        title += f" in {esc(next(iter(experiments)))}"
    table = tables.table(title)
    tables.fixed(table, "run id")
    used = [12]
    if not one_experiment:
        tables.text(table, "experiment")
        used.append(10)
    tables.text(table, "name", ratio=2)
    table.columns[-1].min_width = 12
    used.append(12)
    for header, width in (("status", 8), ("started", 11), ("duration", 8)):
        tables.fixed(table, header, justify="right" if header == "duration" else "left")
        used.append(width)
    named = metrics_named(filter, order_by)
    metric_keys = choose_metric_columns(runs, named, tables.width_left(out.width, used))
    for key in metric_keys:
        table.add_column(lit(key), justify="right", no_wrap=True, min_width=max(len(key), 8))
    for r in runs:
        row: list[str | Text] = [lit(r.id[:12])]
        if not one_experiment:
            row.append(lit(r.experiment))
        row += [
            lit(r.name),
            _status(r.status),
            lit(_started(r.start_time)),
            lit(_duration(r)),
            *(lit(_fmt(r.metrics.get(k))) for k in metric_keys),
        ]
        table.add_row(*row)
    out.print(table)
    notes = []
    left_out = sorted({k for r in runs for k in r.metrics} - set(metric_keys))
    if left_out:
        notes.append(
            f"{plural(len(left_out), 'more metric')} not shown (sort or filter by one to show it)"
        )
    if hidden:
        notes.append("pipeline step runs hidden (--all shows them)")
    if notes:
        out.print("; ".join(notes), style="dim")


def _with(filter: str | None, condition: str) -> str:
    return condition if not filter else f"({filter}) and {condition}"


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="A run id or any unique prefix of one.")],
) -> None:
    """Everything recorded about one run."""
    require_workspace(missing=f"no run with id {run_id!r}")
    run = fluent.get_run(_resolve_id(run_id))
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    for label, value in (
        ("run", run.id),
        ("experiment", run.experiment),
        ("name", run.name),
        ("status", run.status),
        ("started", clock.format_ts(run.start_time)),
        ("ended", clock.format_ts(run.end_time)),
        ("duration", _duration(run)),
        ("git", f"{run.git_commit or '-'}{' (dirty)' if run.git_dirty else ''}"),
        ("environment", run.environment_digest or "-"),
    ):
        head.add_row(label, lit(value))
    out.print(head)
    for title, values in (("params", run.params), ("metrics", run.metrics), ("tags", run.tags)):
        if values:
            t = tables.table(title)
            tables.text(t, "key", wrap=True)
            t.add_column(
                "value", justify="right" if title == "metrics" else "left", overflow="fold"
            )
            for k, v in sorted(values.items()):
                t.add_row(lit(k), lit(_fmt(v)))
            out.print(t)
    artifacts = fluent.run_outputs(run.id)
    if artifacts:
        t = tables.table("artifacts")
        tables.text(t, "name")
        tables.fixed(t, "kind")
        tables.fixed(t, "size", justify="right")
        t.add_column("digest", overflow="fold")
        for role, a in artifacts:
            t.add_row(lit(role), lit(a.kind), f"{a.size:,}", lit(a.digest))
        out.print(t)
    if run.error:
        out.print("[red]error:[/]")
        out.print(run.error, markup=False)


@app.command("compare")
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or prefixes).")],
) -> None:
    """Params and metrics of several runs side by side; differing params are marked."""
    require_workspace(missing=f"no runs {', '.join(map(repr, run_ids))}")
    runs = [fluent.get_run(_resolve_id(r)) for r in run_ids]
    table = tables.table("comparison")
    tables.text(table, "", wrap=True)
    for r in runs:
        table.add_column(lit(f"{r.name}\n{r.id[:12]}"), justify="right", overflow="fold")
    for key in sorted({k for r in runs for k in r.params}):
        values = [r.params.get(key) for r in runs]
        marker = " *" if len(set(values)) > 1 else ""
        table.add_row(lit(f"params.{key}{marker}"), *(lit(_fmt(v)) for v in values))
    for key in sorted({k for r in runs for k in r.metrics}):
        values_m = [r.metrics.get(key) for r in runs]
        best = max((v for v in values_m if v is not None), default=None)
        table.add_row(
            lit(f"metrics.{key}"),
            *(f"[bold]{_fmt(v)}[/]" if v == best and v is not None else _fmt(v) for v in values_m),
        )
    out.print(table)


def _resolve_id(prefix: str) -> str:
    """Accept a unique prefix of a run id, as `runs ls` prints 12 characters."""
    if len(prefix) == 32:
        return prefix
    cleaned = "".join(ch for ch in prefix if ch.isascii() and ch.isalnum())
    if not cleaned or cleaned != prefix:
        return prefix  # not an id prefix at all: get_run says no run has that id
    matches = fluent.search_runs(filter=f"attributes.run_id like '{cleaned}%'", limit=2)
    if len(matches) == 1:
        return matches[0].id
    if len(matches) > 1:
        raise InvalidInputError(f"run id prefix {prefix!r} is ambiguous; give more characters")
    return prefix
