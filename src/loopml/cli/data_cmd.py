"""``loopml data add|ls|show|validate|diff|verify|schema``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from loopml.api import datasets as api
from loopml.cli.console import out
from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.data.dataset import Dataset
from loopml.data.drift import DriftReport
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
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="repeatable")] = None,
    schema: Annotated[
        Path | None, typer.Option("--schema", help="YAML schema to store with it")
    ] = None,
) -> None:
    """Add a file, folder or URL as the next version of a dataset."""
    parsed = None if schema is None else _read_schema(schema)
    before = {d.version for d in _versions_or_empty(name)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", api.ContentAlreadyStoredWarning)
        ds = api.add(name, source, description=description, owner=owner, tags=tag, schema=parsed)
    verb = "already stored as" if ds.version in before else "added"
    out.print(
        f"{verb} [bold]{ds.ref}[/]: {ds.num_rows:,} rows x {ds.num_columns} columns, "
        f"{len(ds.files)} file(s), digest {ds.digest[:19]}…"
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
    search: Annotated[str | None, typer.Argument(help="text in name or description")] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t")] = None,
    column: Annotated[str | None, typer.Option("--column", "-c")] = None,
) -> None:
    """List datasets, optionally searching by text, tag or column name."""
    found = api.search(search, tag=tag, column=column)
    table = Table(title=f"{len(found)} dataset(s)")
    for col in ("name", "latest", "versions", "owner", "tags", "columns", "description"):
        table.add_column(col)
    for d in found:
        table.add_row(
            d.name,
            str(d.latest_version or ""),
            str(d.num_versions),
            d.owner or "",
            ", ".join(d.tags),
            str(len(d.columns)),
            d.description,
        )
    out.print(table)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="flights or flights:3")],
    schema: Annotated[bool, typer.Option("--schema", help="print the schema as YAML")] = False,
) -> None:
    """Show a dataset version: catalog entry, versions and column profile."""
    ds = api.get(ref)
    if schema:
        s = ds.schema
        if s is None:
            raise InvalidInputError(f"dataset {ds.ref} has no schema")
        out.print(s.to_yaml(), markup=False, highlight=False)
        return
    info = next(i for i in api.search(ds.name) if i.name == ds.name)
    out.print(f"[bold]{ds.ref}[/]  {info.description}")
    out.print(
        f"owner: {info.owner or '-'}   tags: {', '.join(info.tags) or '-'}   "
        f"versions: {info.num_versions}   schema: v{ds.schema_version}"
    )
    out.print(
        f"{ds.num_rows:,} rows x {ds.num_columns} columns, {len(ds.files)} file(s), "
        f"added {clock.format_ts(ds.created_at)}, digest {ds.digest}"
    )
    out.print(_profile_table(ds.profile, info.column_descriptions))


def _profile_table(p: Profile, descriptions: dict[str, str]) -> Table:
    table = Table(title="columns")
    for col in ("column", "type", "nulls", "distinct", "min", "mean", "max", "top values"):
        table.add_column(col, justify="right" if col in ("nulls", "distinct") else "left")
    if descriptions:
        table.add_column("description")
    for c in p.columns.values():
        row = [c.name, c.dtype, f"{c.null_fraction:.1%}", _distinct(c), *_summary(c)]
        if descriptions:
            row.append(descriptions.get(c.name, ""))
        table.add_row(*row)
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
    source: Annotated[str, typer.Argument(help="file, folder, URL or dataset ref to check")],
    against: Annotated[
        str | None, typer.Option("--against", "-a", help="dataset whose schema to use")
    ] = None,
    schema: Annotated[Path | None, typer.Option("--schema", "-s", help="YAML schema")] = None,
    skew: Annotated[
        bool, typer.Option("--skew", help="also compare with the --against dataset's profile")
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
    table = Table(
        title=f"{len(report.anomalies)} anomal{'y' if len(report.anomalies) == 1 else 'ies'}"
    )
    for col in ("severity", "kind", "column", "rows", "message"):
        table.add_column(col)
    colors = {"error": "red", "warning": "yellow", "info": "blue"}
    for a in report.anomalies:
        table.add_row(
            f"[{colors[a.severity]}]{a.severity}[/]",
            a.kind,
            a.column or "",
            "" if a.count is None else f"{a.count:,}",
            a.message,
        )
    out.print(table)
    verdict = "[red]failed[/]" if not report.ok else "[green]passed[/] (warnings only)"
    out.print(f"{verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")


@app.command("diff")
def diff(
    reference: Annotated[str, typer.Argument(help="dataset ref, e.g. flights:1")],
    current: Annotated[str, typer.Argument(help="dataset ref, file, folder or URL")],
    html: Annotated[Path | None, typer.Option("--html", help="write an HTML report here")] = None,
    column: Annotated[
        list[str] | None, typer.Option("--column", "-c", help="only these (repeatable)")
    ] = None,
) -> None:
    """Drift of every column between two dataset versions (or a dataset and a file)."""
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
        out.print(f"HTML report written to {html}")


def _profile_of(source: str) -> Profile:
    # A stored dataset is compared through its stored profile: its data is not read.
    if os.path.exists(source) or "://" in source:
        return api.profile(read_table(source))
    return api.profile(source)


def _print_drift(report: DriftReport, reference: str, current: str) -> None:
    table = Table(title=f"drift {reference} → {current}")
    for col in ("column", "kind", "method", "statistic", "p-value", "verdict"):
        table.add_column(col, justify="right" if col in ("statistic", "p-value") else "left")
    for c in report.columns:
        table.add_row(
            c.column,
            c.kind,
            c.method,
            f"{c.statistic:.4g}",
            "" if c.p_value is None else f"{c.p_value:.3g}",
            "[red]drift[/]" if c.drifted else "[green]ok[/]",
        )
    for name, reason in report.skipped.items():
        table.add_row(name, "", "", "", "", f"skipped: {reason}")
    out.print(table)
    out.print(f"{len(report.drifted_columns)} of {len(report.columns)} column(s) drifted")


@app.command("verify")
def verify(
    name: Annotated[str | None, typer.Argument(help="one dataset; default: everything")] = None,
) -> None:
    """Re-hash stored data; exits 1 if anything was modified or truncated."""
    report = api.verify(name)
    for problem in report.problems:
        out.print(f"[red]corrupted[/]: {problem}", soft_wrap=True)
    size_mb = report.bytes / 1e6
    summary = f"{report.versions} version(s), {report.blobs} blob(s), {size_mb:,.1f} MB checked"
    if report.ok:
        out.print(f"[green]ok[/]: {summary}")
        return
    out.print(f"[red]{len(report.problems)} problem(s)[/]: {summary}")
    raise typer.Exit(EXIT_ANOMALIES)


@app.command("schema")
def schema_cmd(
    name: Annotated[str, typer.Argument(help="dataset name")],
    set_file: Annotated[
        Path | None, typer.Option("--set", help="store this YAML as the next schema version")
    ] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
) -> None:
    """Print a dataset's current schema as YAML, or store an edited one with --set."""
    if set_file is not None:
        version = api.save_schema(name, _read_schema(set_file), note=note)
        out.print(f"schema of {name} is now version {version}")
        return
    out.print(api.schema(name).to_yaml(), markup=False, highlight=False)


def _read_schema(path: Path) -> Schema:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read schema file {str(path)!r}: {exc}") from None
    return Schema.from_yaml(text)
