"""``loopml data add|ls|show|validate|diff|verify|schema``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from loopml.api import datasets as api
from loopml.cli import tables
from loopml.cli.console import bars, esc, lit, out, plural
from loopml.cli.workspace_guard import require_workspace
from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.data.dataset import Dataset
from loopml.data.drift import ColumnDrift, DriftReport
from loopml.data.profile import ColumnProfile, Profile
from loopml.data.report import write_html
from loopml.data.schema import Schema
from loopml.data.sources import read_table
from loopml.data.validate import ValidationReport

app = typer.Typer(
    help="Versioned datasets: add, list, inspect, validate, compare, verify.",
    no_args_is_help=True,
)

EXIT_ANOMALIES = 1


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="dataset name, e.g. flights")],
    source: Annotated[str, typer.Argument(help="Parquet/CSV file, folder, or fsspec URL")],
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="What the data is.")
    ] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Who to ask about it.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="A tag (repeatable).")
    ] = None,
    schema: Annotated[
        Path | None, typer.Option("--schema", help="A YAML schema to store with it.")
    ] = None,
) -> None:
    """Add a file, folder or URL as the next version of a dataset."""
    parsed = None if schema is None else _read_schema(schema)
    before = {d.version for d in _versions_or_empty(name)}
    with (
        warnings.catch_warnings(record=True) as caught,
        bars(f"adding {esc(source)} to {esc(name)}") as progress,
    ):
        warnings.simplefilter("always", api.ContentAlreadyStoredWarning)
        ds = api.add(
            name,
            source,
            description=description,
            owner=owner,
            tags=tag,
            schema=parsed,
            progress=progress,
        )
    verb = "already stored as" if ds.version in before else "added"
    out.print(
        f"{verb} [bold]{esc(ds.ref)}[/]: {ds.num_rows:,} rows x "
        f"{plural(ds.num_columns, 'column')}, {plural(len(ds.files), 'file')}, "
        f"digest {ds.digest[:19]}…"
    )
    for w in caught:
        if issubclass(w.category, api.ContentAlreadyStoredWarning):
            out.print(str(w.message), markup=False, soft_wrap=True)


def _versions_or_empty(name: str) -> list[Dataset]:
    try:
        return api.versions(name)
    except LookupError:
        return []


@app.command("ls")
def list_datasets(
    search: Annotated[str | None, typer.Argument(help="Text in the name or description.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only with this tag.")] = None,
    column: Annotated[
        str | None, typer.Option("--column", "-c", help="Only with this column.")
    ] = None,
) -> None:
    """List datasets, optionally searching by text, tag or column name."""
    require_workspace(listing=True)
    found = api.search(search, tag=tag, column=column)
    table = tables.table(plural(len(found), "dataset"))
    tables.text(table, "name", ratio=2)
    tables.fixed(table, "latest", justify="right")
    tables.fixed(table, "versions", justify="right")
    tables.text(table, "owner")
    tables.text(table, "tags")
    tables.fixed(table, "columns", justify="right")
    tables.text(table, "description", ratio=3)
    for d in found:
        table.add_row(
            lit(d.name),
            str(d.latest_version or ""),
            str(d.num_versions),
            lit(d.owner or ""),
            lit(", ".join(d.tags)),
            str(len(d.columns)),
            lit(d.description),
        )
    out.print(table)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="A dataset: flights (latest) or flights:3.")],
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the schema as YAML instead.")
    ] = False,
) -> None:
    """Show a dataset version: catalog entry, versions and column profile."""
    require_workspace(missing=f"no dataset {ref!r}")
    ds = api.get(ref)
    if schema:
        s = ds.schema
        if s is None:
            raise InvalidInputError(f"dataset {ds.ref} has no schema")
        out.print(s.to_yaml(), markup=False, highlight=False)
        return
    info = next(i for i in api.search(ds.name) if i.name == ds.name)
    out.print(f"[bold]{esc(ds.ref)}[/]  {esc(info.description)}")
    out.print(
        f"owner: {esc(info.owner or '-')}   tags: {esc(', '.join(info.tags) or '-')}   "
        f"versions: {info.num_versions}   schema: v{ds.schema_version}"
    )
    out.print(
        f"{ds.num_rows:,} rows x {plural(ds.num_columns, 'column')}, "
        f"{plural(len(ds.files), 'file')}, added {clock.format_ts(ds.created_at)}, "
        f"digest {ds.digest}"
    )
    out.print(_profile_table(ds.profile, info.column_descriptions))


def _profile_table(p: Profile, descriptions: dict[str, str]) -> Table:
    table = tables.table("columns")
    tables.text(table, "column", wrap=True)
    tables.text(table, "type")
    for col in ("nulls", "distinct"):
        tables.fixed(table, col, justify="right")
    for col in ("min", "mean", "max"):
        table.add_column(col, overflow="fold")
    tables.text(table, "top values", ratio=2, wrap=True)
    if descriptions:
        tables.text(table, "description", ratio=2, wrap=True)
    for c in p.columns.values():
        row = [c.name, c.dtype, f"{c.null_fraction:.1%}", _distinct(c), *_summary(c)]
        if descriptions:
            row.append(descriptions.get(c.name, ""))
        table.add_row(*(lit(v) for v in row))
    return table


def _distinct(c: ColumnProfile) -> str:
    if c.distinct is None:
        return ""
    return f"{c.distinct:,}" if c.distinct_exact else f"~{c.distinct:,}"


def _summary(c: ColumnProfile) -> list[str]:
    if c.numeric is not None and c.kind == "numeric":
        n = c.numeric
        return [_num(n.min), _num(n.mean), _num(n.max), ""]
    if c.kind == "temporal":
        return [c.temporal_min or "", "", c.temporal_max or "", ""]
    if c.frequencies is not None:
        total = max(c.frequencies.total, 1)
        top = list(c.frequencies.counts.items())[:3]
        return ["", "", "", ", ".join(f"{k} {v / total:.0%}" for k, v in top)]
    return ["", "", "", ""]


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


@app.command("validate")
def validate(
    source: Annotated[
        str, typer.Argument(help="A file, folder, URL or dataset reference to check.")
    ],
    against: Annotated[
        str | None, typer.Option("--against", "-a", help="The dataset whose schema to use.")
    ] = None,
    schema: Annotated[
        Path | None, typer.Option("--schema", "-s", help="A YAML schema file to use.")
    ] = None,
    skew: Annotated[
        bool, typer.Option("--skew", help="Also compare with the --against dataset's profile.")
    ] = False,
) -> None:
    """Validate data against a schema; exits 1 if any error-level anomaly is found."""
    if (against is None) == (schema is None):
        raise InvalidInputError("give exactly one of --against DATASET or --schema FILE")
    table = api.as_table(source)
    reference = None
    if against is not None:
        ds = api.get(against)
        target: Schema | Dataset = ds
        reference = ds if skew else None
    else:
        assert schema is not None
        if skew:
            raise InvalidInputError("--skew needs --against DATASET (its profile is compared)")
        target = _read_schema(schema)
    report = api.validate(table, target, reference=reference)
    _print_validation(report)
    if not report.ok:
        raise typer.Exit(EXIT_ANOMALIES)


def _print_validation(report: ValidationReport) -> None:
    if not report.anomalies:
        out.print(f"[green]ok[/]: {report.num_rows:,} rows, no anomalies")
        return
    table = tables.table(plural(len(report.anomalies), "anomaly", "anomalies"))
    tables.fixed(table, "severity")
    tables.text(table, "kind")
    tables.text(table, "column")
    tables.fixed(table, "rows", justify="right")
    tables.text(table, "message", ratio=3, wrap=True)
    colors = {"error": "red", "warning": "yellow", "info": "blue"}
    for a in report.anomalies:
        table.add_row(
            f"[{colors.get(a.severity, 'default')}]{esc(a.severity)}[/]",
            lit(a.kind),
            lit(a.column or ""),
            "" if a.count is None else f"{a.count:,}",
            lit(a.message),
        )
    out.print(table)
    verdict = "[red]failed[/]" if not report.ok else "[green]passed[/] (warnings only)"
    out.print(
        f"{verdict}: {plural(len(report.errors), 'error')}, "
        f"{plural(len(report.warnings), 'warning')}"
    )


@app.command("diff")
def diff(
    reference: Annotated[str, typer.Argument(help="A dataset reference, e.g. flights:1.")],
    current: Annotated[str, typer.Argument(help="A dataset reference, or a file, folder or URL.")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML report to this file.")
    ] = None,
    column: Annotated[
        list[str] | None, typer.Option("--column", "-c", help="Only this column (repeatable).")
    ] = None,
) -> None:
    """Drift of every column between two dataset versions (or a dataset and a file)."""
    require_workspace(missing=f"no dataset {reference!r}")
    ref_profile = _profile_of(reference)
    cur_profile = _profile_of(current)
    report = api.drift(ref_profile, cur_profile, columns=column)
    _print_drift(report, reference, current)
    if html is not None:
        write_html(
            report,
            ref_profile,
            cur_profile,
            str(html),
            title=f"Drift: {reference} → {current}",
            reference_label=reference,
            current_label=current,
        )
        out.print(f"HTML report written to {esc(html)}")


def _profile_of(source: str) -> Profile:
    # A stored dataset is compared through its stored profile: its data is not read.
    if os.path.exists(source) or "://" in source:
        return api.profile(read_table(source))
    return api.profile(source)


def _print_drift(report: DriftReport, reference: str, current: str) -> None:
    table = tables.table(f"drift {esc(reference)} → {esc(current)}")
    tables.text(table, "column", wrap=True)
    tables.fixed(table, "kind")
    tables.fixed(table, "method")
    tables.fixed(table, "statistic", justify="right")
    tables.fixed(table, "p-value", justify="right")
    tables.text(table, "verdict", wrap=True)
    for c in report.columns:
        table.add_row(
            lit(c.column),
            lit(c.kind),
            lit(c.method),
            f"{c.statistic:.4g}",
            _p_value(c),
            "[red]drift[/]" if c.drifted else "[green]ok[/]",
        )
    for name, reason in report.skipped.items():
        table.add_row(lit(name), "", "", "", "", lit(f"skipped: {reason}"))
    out.print(table)
    out.print(
        f"{len(report.drifted_columns)} of {plural(len(report.columns), 'column')} drifted; "
        "p-values in parentheses come from the KS or chi-squared test beside a distance method"
    )


def _p_value(c: ColumnDrift) -> str:
    """The verdict's own p-value, or the test's p-value shown beside a distance method.

    Large samples are judged by a distance (Wasserstein, Jensen-Shannon): with hundreds of
    thousands of rows every p-value is tiny, so it is shown for reference, not as the verdict.
    """
    if c.p_value is not None:
        return f"{c.p_value:.3g}"
    key = "ks_pvalue" if c.kind == "numeric" else "chi2_pvalue"
    p = c.stats.get(key)
    return "" if p is None else f"({p:.3g})"


@app.command("verify")
def verify(
    name: Annotated[
        str | None, typer.Argument(help="One dataset; default: everything stored.")
    ] = None,
) -> None:
    """Re-hash stored data; exits 1 if anything was modified or truncated."""
    require_workspace(listing=True)
    with bars(f"re-hashing {esc(name) if name else 'every stored blob'}") as progress:
        report = api.verify(name, progress=progress)
    for problem in report.problems:
        out.print(f"[red]corrupted[/]: {esc(problem)}", soft_wrap=True)
    size_mb = report.bytes / 1e6
    summary = (
        f"{plural(report.versions, 'version')}, {plural(report.blobs, 'blob')}, "
        f"{size_mb:,.1f} MB checked"
    )
    if report.ok:
        out.print(f"[green]ok[/]: {summary}")
        return
    out.print(f"[red]{plural(len(report.problems), 'problem')}[/]: {summary}")
    raise typer.Exit(EXIT_ANOMALIES)


@app.command("schema")
def schema_cmd(
    name: Annotated[str, typer.Argument(help="A dataset name.")],
    set_file: Annotated[
        Path | None, typer.Option("--set", help="Store this YAML as the next schema version.")
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", help="Why the schema changed (with --set).")
    ] = None,
) -> None:
    """Print a dataset's current schema as YAML, or store an edited one with --set."""
    if set_file is not None:
        version = api.save_schema(name, _read_schema(set_file), note=note)
        out.print(f"schema of {esc(name)} is now version {version}")
        return
    require_workspace(missing=f"no dataset {name!r}")
    out.print(api.schema(name).to_yaml(), markup=False, highlight=False)


def _read_schema(path: Path) -> Schema:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read schema file {str(path)!r}: {exc}") from None
    return Schema.from_yaml(text)
