"""Checking a table against a schema: one Polars query counts every kind of violation.

Examples of offending values are fetched by a second, small query only for the checks
that failed, so a clean table costs a single pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from loopml.core.display import Summarized, Summary
from loopml.core.errors import InvalidInputError
from loopml.data.drift import drift
from loopml.data.profile import Profile, profile
from loopml.data.schema import Check, ColumnSchema, Schema, Severity
from loopml.data.tables import TableLike, to_polars

EXAMPLES = 5
_FAMILIES = {
    "int": ("Int", "UInt"),
    "float": ("Float",),
    "text": ("String", "Categorical", "Enum"),
    "decimal": ("Decimal",),
    "datetime": ("Datetime",),
}


@dataclass(frozen=True)
class Anomaly:
    kind: str
    severity: Severity
    column: str | None
    message: str
    count: int | None = None
    examples: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "column": self.column,
            "message": self.message,
            "count": self.count,
            "examples": list(self.examples),
        }


@dataclass(frozen=True, repr=False)
class ValidationReport(Summarized):
    num_rows: int
    anomalies: tuple[Anomaly, ...] = field(default_factory=tuple)

    def _summary(self) -> Summary:
        verdict = "ok" if self.ok else "failed"
        return Summary(
            f"ValidationReport {verdict}: {len(self.errors)} errors, "
            f"{len(self.warnings)} warnings in {self.num_rows:,} rows",
            columns=["severity", "kind", "column", "message"],
            rows=[[a.severity, a.kind, a.column, a.message] for a in self.anomalies],
        )

    @property
    def errors(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.severity == "error"]

    @property
    def warnings(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when nothing of error severity was found."""
        return not self.errors

    def kinds(self) -> set[str]:
        return {a.kind for a in self.anomalies}

    def for_column(self, column: str) -> list[Anomaly]:
        return [a for a in self.anomalies if a.column == column]

    def raise_for_errors(self) -> None:
        if self.errors:
            lines = "; ".join(a.message for a in self.errors[:10])
            raise InvalidInputError(f"validation found {len(self.errors)} error(s): {lines}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_rows": self.num_rows,
            "ok": self.ok,
            "anomalies": [a.to_dict() for a in self.anomalies],
        }


def validate(
    table: TableLike,
    schema: Schema,
    *,
    checks: Sequence[Check | pl.Expr] = (),
    reference: Profile | None = None,
) -> ValidationReport:
    """Anomalies of ``table`` against ``schema``; with ``reference`` (a training profile),
    columns whose distribution moved away from it are reported as skew."""
    if not isinstance(schema, Schema):
        raise InvalidInputError(f"schema must be a loopml Schema, not {type(schema).__name__}")
    df = to_polars(table)
    v = _Validation(df, schema)
    v.structure()
    extra_checks = [
        c if isinstance(c, Check) else Check(f"check {i + 1}", c) for i, c in enumerate(checks)
    ]
    v.values([*schema.checks, *extra_checks])
    if reference is not None:
        v.skew(reference)
    return ValidationReport(df.height, tuple(v.anomalies))


class _Validation:
    def __init__(self, df: pl.DataFrame, schema: Schema) -> None:
        self.df = df
        self.schema = schema
        self.anomalies: list[Anomaly] = []
        self.comparable: list[ColumnSchema] = []

    def add(self, kind: str, column: str | None, message: str, **kw: Any) -> None:
        severity = kw.pop("severity", None) or self.schema.severity(kind)
        self.anomalies.append(Anomaly(kind, severity, column, message, **kw))

    def structure(self) -> None:
        actual = {n: str(t) for n, t in self.df.schema.items()}
        for col in self.schema.columns:
            if col.name not in actual:
                self.add("missing_column", col.name, f"column {col.name!r} is missing")
                continue
            got = actual[col.name]
            if got == col.dtype:
                self.comparable.append(col)
            elif _family(got) is not None and _family(got) == _family(col.dtype):
                # Same kind of value at another width: report, but still check the values.
                self.add(
                    "type_mismatch",
                    col.name,
                    f"column {col.name!r} is {got}, expected {col.dtype}",
                    severity="warning",
                )
                self.comparable.append(col)
            else:
                self.add(
                    "type_mismatch",
                    col.name,
                    f"column {col.name!r} is {got}, expected {col.dtype}; its values were "
                    "not checked",
                )
        expected = set(self.schema.column_names)
        for name in actual:
            if name not in expected:
                self.add("extra_column", name, f"column {name!r} is not in the schema")

    def values(self, checks: Sequence[Check]) -> None:
        names = {c.name for c in self.comparable}
        key_ok = bool(self.schema.key) and all(k in names for k in self.schema.key)
        runnable = self._runnable(checks)
        try:
            row = self._count(runnable, key_ok)
        except pl.exceptions.PolarsError:
            # Some check does not evaluate on this table; report it and run the rest.
            runnable = self._evaluable(runnable)
            row = self._count(runnable, key_ok)
        self._report(row, runnable, key_ok)

    def _count(self, runnable: list[tuple[Check, pl.Expr]], key_ok: bool) -> dict[str, Any]:
        exprs: list[pl.Expr] = [pl.len().alias("rows")]
        for i, col in enumerate(self.comparable):
            exprs += _column_exprs(i, col, self.df.schema[col.name])
        if key_ok:
            key = pl.struct(list(self.schema.key))
            exprs.append((pl.len() - key.n_unique()).alias("key:dups"))
        for j, (_, expr) in enumerate(runnable):
            exprs.append(expr.not_().sum().alias(f"check:{j}"))
        return self.df.lazy().select(exprs).collect().row(0, named=True)

    def _runnable(self, checks: Sequence[Check]) -> list[tuple[Check, pl.Expr]]:
        out = []
        columns = set(self.df.columns)
        for check in checks:
            expr = check.expression()
            missing = sorted(set(expr.meta.root_names()) - columns)
            if missing:
                self.add(
                    "check_failed",
                    None,
                    f"check {check.name!r} could not run: column(s) {missing} are missing",
                    severity=check.severity,
                )
                continue
            out.append((check, expr))
        return out

    def _evaluable(self, runnable: list[tuple[Check, pl.Expr]]) -> list[tuple[Check, pl.Expr]]:
        out = []
        for check, expr in runnable:
            try:
                self.df.head(1).lazy().select(expr.not_().sum()).collect()
            except pl.exceptions.PolarsError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
                self.add(
                    "check_failed",
                    None,
                    f"check {check.name!r} could not run on this table: {first}",
                    severity=check.severity,
                )
                continue
            out.append((check, expr))
        return out

    def _report(
        self, row: dict[str, Any], runnable: list[tuple[Check, pl.Expr]], key_ok: bool
    ) -> None:
        rows = int(row["rows"])
        for i, col in enumerate(self.comparable):
            self._report_column(i, col, row, rows)
        if key_ok and row["key:dups"]:
            n = int(row["key:dups"])
            key = list(self.schema.key)
            dup = self.df.filter(pl.struct(key).is_duplicated()).select(key).unique().head(EXAMPLES)
            self.add(
                "duplicate_key",
                None,
                f"{n} row(s) repeat a key {key} already seen",
                count=n,
                examples=tuple(str(r) for r in dup.rows()),
            )
        for j, (check, _) in enumerate(runnable):
            n = int(row[f"check:{j}"] or 0)
            if n:
                self.add(
                    "check_failed",
                    None,
                    f"check {check.name!r} failed on {n} of {rows} rows",
                    count=n,
                    severity=check.severity,
                )

    def _report_column(self, i: int, col: ColumnSchema, row: dict[str, Any], rows: int) -> None:
        name = col.name
        nulls = int(row[f"{i}:nulls"])
        if nulls and not col.nullable:
            self.add(
                "unexpected_nulls",
                name,
                f"column {name!r} has {nulls} null(s) but is not nullable",
                count=nulls,
            )
        elif nulls and col.max_null_fraction is not None and rows:
            rate = nulls / rows
            if rate > col.max_null_fraction:
                self.add(
                    "null_rate",
                    name,
                    f"column {name!r} is {rate:.1%} null, above the expected "
                    f"{col.max_null_fraction:.1%}",
                    count=nulls,
                )
        below, above = int(row.get(f"{i}:below") or 0), int(row.get(f"{i}:above") or 0)
        if below or above:
            parts = []
            if below:
                parts.append(f"{below} below {col.min} (lowest {row[f'{i}:min']})")
            if above:
                parts.append(f"{above} above {col.max} (highest {row[f'{i}:max']})")
            self.add(
                "out_of_range",
                name,
                f"column {name!r} has values out of range: {', '.join(parts)}",
                count=below + above,
            )
        unseen = int(row.get(f"{i}:unseen") or 0)
        if unseen:
            assert col.domain is not None
            examples = (
                self.df.lazy()
                .select(_text(name, self.df.schema[name]))
                .filter(~pl.col(name).is_in(list(col.domain)))
                .unique()
                .sort(name)
                .head(EXAMPLES)
                .collect()[name]
                .to_list()
            )
            self.add(
                "unseen_category",
                name,
                f"column {name!r} has {unseen} value(s) outside its domain, e.g. "
                f"{', '.join(map(repr, examples))}",
                count=unseen,
                examples=tuple(str(e) for e in examples),
            )
        dups = int(row.get(f"{i}:dups") or 0)
        if dups:
            c = pl.col(name)
            examples = (
                self.df.lazy()
                .select(c.drop_nulls())
                .filter(c.is_duplicated())
                .unique()
                .head(EXAMPLES)
                .collect()[name]
                .to_list()
            )
            self.add(
                "duplicate_key",
                name,
                f"column {name!r} should be unique but {dups} value(s) repeat, e.g. "
                f"{', '.join(map(repr, examples))}",
                count=dups,
                examples=tuple(str(e) for e in examples),
            )

    def skew(self, reference: Profile) -> None:
        current = profile(self.df.select([c for c in self.df.columns if c in reference.columns]))
        report = drift(reference, current)
        for d in report.columns:
            if d.drifted:
                value = (
                    f"p-value {d.p_value:.3g}" if d.p_value is not None else f"{d.statistic:.3f}"
                )
                self.add(
                    "skew",
                    d.column,
                    f"column {d.column!r} differs from the training profile: {d.method} "
                    f"{value} (threshold {d.threshold})",
                )


def _column_exprs(i: int, col: ColumnSchema, dtype: pl.DataType) -> list[pl.Expr]:
    c = pl.col(col.name)
    exprs = [c.null_count().alias(f"{i}:nulls")]
    if col.min is not None or col.max is not None:
        v = pl.when(c.is_nan()).then(None).otherwise(c) if dtype.is_float() else c
        if col.min is not None:
            exprs.append((v < col.min).sum().alias(f"{i}:below"))
        if col.max is not None:
            exprs.append((v > col.max).sum().alias(f"{i}:above"))
        exprs += [v.min().alias(f"{i}:min"), v.max().alias(f"{i}:max")]
    if col.domain is not None:
        exprs.append((~_text(col.name, dtype).is_in(list(col.domain))).sum().alias(f"{i}:unseen"))
    if col.unique:
        nn = c.drop_nulls()
        exprs.append((nn.len() - nn.n_unique()).alias(f"{i}:dups"))
    return exprs


def _text(name: str, dtype: pl.DataType) -> pl.Expr:
    c = pl.col(name)
    return c if dtype == pl.String else c.cast(pl.String)


def _family(dtype: str) -> str | None:
    for fam, prefixes in _FAMILIES.items():
        if dtype.startswith(prefixes):
            return fam
    return None
