"""What a table is expected to look like: inferred from a profile, then curated as YAML.

User checks are Polars SQL expressions (``"distance > 0"``) so that a schema stays a
plain, editable, diffable document; in Python a ``pl.Expr`` is accepted too, but such a
check cannot be written to YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import polars as pl
import yaml

from loopml.core.errors import InvalidInputError
from loopml.data.profile import ColumnProfile, Profile

SCHEMA_FORMAT = "loopml.schema/1"
Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
DEFAULT_SEVERITIES: dict[str, Severity] = {
    "missing_column": "error",
    "extra_column": "warning",
    "type_mismatch": "error",
    "unexpected_nulls": "error",
    "null_rate": "warning",
    "out_of_range": "warning",
    "unseen_category": "warning",
    "duplicate_key": "error",
    "check_failed": "error",
    "skew": "warning",
}
DOMAIN_MAX = 200  # categorical columns with at most this many values get a domain
_COLUMN_KEYS = {
    "name",
    "dtype",
    "nullable",
    "max_null_fraction",
    "min",
    "max",
    "domain",
    "unique",
    "description",
}
_TOP_KEYS = {"format", "columns", "key", "checks", "severities"}


@dataclass(frozen=True)
class ColumnSchema:
    name: str
    dtype: str
    nullable: bool = True
    max_null_fraction: float | None = None
    min: float | None = None
    max: float | None = None
    domain: tuple[str, ...] | None = None
    unique: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "nullable": self.nullable}
        if self.max_null_fraction is not None:
            d["max_null_fraction"] = self.max_null_fraction
        if self.min is not None:
            d["min"] = self.min
        if self.max is not None:
            d["max"] = self.max
        if self.domain is not None:
            d["domain"] = list(self.domain)
        if self.unique:
            d["unique"] = True
        if self.description:
            d["description"] = self.description
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ColumnSchema:
        if not isinstance(d, dict):
            raise InvalidInputError(f"{where} must be a mapping with at least name and dtype")
        unknown = set(d) - _COLUMN_KEYS
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_COLUMN_KEYS)}"
            )
        for key in ("name", "dtype"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise InvalidInputError(f"{where}: {key} must be a non-empty string")
        where = f"column {d['name']!r}"
        domain = d.get("domain")
        if domain is not None and not isinstance(domain, list):
            raise InvalidInputError(f"{where}: domain must be a list of values")
        mnf = _opt_number(d.get("max_null_fraction"), f"{where}: max_null_fraction")
        if mnf is not None and not 0 <= mnf <= 1:
            raise InvalidInputError(f"{where}: max_null_fraction must be between 0 and 1")
        lo = _opt_number(d.get("min"), f"{where}: min")
        hi = _opt_number(d.get("max"), f"{where}: max")
        if lo is not None and hi is not None and lo > hi:
            raise InvalidInputError(f"{where}: min {lo} is greater than max {hi}")
        return cls(
            name=d["name"],
            dtype=d["dtype"],
            nullable=_bool(d.get("nullable", True), f"{where}: nullable"),
            max_null_fraction=mnf,
            min=lo,
            max=hi,
            domain=None if domain is None else tuple(str(v) for v in domain),
            unique=_bool(d.get("unique", False), f"{where}: unique"),
            description=str(d.get("description", "")),
        )


@dataclass(frozen=True)
class Check:
    """A condition every row must meet; rows where it is null are not counted as failing."""

    name: str
    expr: str | pl.Expr
    severity: Severity = "error"

    def expression(self) -> pl.Expr:
        if isinstance(self.expr, pl.Expr):
            return self.expr
        try:
            return pl.sql_expr(self.expr)
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise InvalidInputError(
                f"check {self.name!r}: cannot parse {self.expr!r} as a Polars SQL expression: {exc}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        if isinstance(self.expr, pl.Expr):
            raise InvalidInputError(
                f"check {self.name!r} is a Python Polars expression and cannot be saved; "
                "write it as a SQL expression string such as 'distance > 0'"
            )
        return {"name": self.name, "expr": self.expr, "severity": self.severity}


@dataclass(frozen=True)
class Schema:
    columns: tuple[ColumnSchema, ...]
    key: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    severities: dict[str, Severity] = field(default_factory=lambda: dict(DEFAULT_SEVERITIES))

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise InvalidInputError("a schema names some column twice")
        missing = [k for k in self.key if k not in names]
        if missing:
            raise InvalidInputError(f"key column(s) {missing} are not columns of the schema")
        for kind, sev in self.severities.items():
            if kind not in DEFAULT_SEVERITIES:
                raise InvalidInputError(
                    f"unknown anomaly kind {kind!r} in severities; "
                    f"known: {sorted(DEFAULT_SEVERITIES)}"
                )
            if sev not in SEVERITIES:
                raise InvalidInputError(f"severity of {kind} must be one of {SEVERITIES}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSchema:
        for c in self.columns:
            if c.name == name:
                return c
        raise InvalidInputError(f"the schema has no column {name!r}")

    def severity(self, kind: str) -> Severity:
        return self.severities.get(kind, DEFAULT_SEVERITIES[kind])

    # edits return a new schema: schemas are values, versions are stored separately
    def with_column(self, name: str, **changes: Any) -> Schema:
        col = self.column(name)
        if "domain" in changes and changes["domain"] is not None:
            changes["domain"] = tuple(str(v) for v in changes["domain"])
        new = ColumnSchema.from_dict({**col.to_dict(), **_dictify(changes)}, f"column {name!r}")
        return replace(self, columns=tuple(new if c.name == name else c for c in self.columns))

    def with_check(self, name: str, expr: str | pl.Expr, severity: Severity = "error") -> Schema:
        check = Check(name, expr, severity)
        check.expression()  # fail now, not at validation time
        return replace(self, checks=(*[c for c in self.checks if c.name != name], check))

    def with_key(self, *columns: str) -> Schema:
        return replace(self, key=tuple(columns))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SCHEMA_FORMAT,
            "columns": [c.to_dict() for c in self.columns],
            "key": list(self.key),
            "checks": [c.to_dict() for c in self.checks],
            "severities": dict(self.severities),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, d: Any) -> Schema:
        if not isinstance(d, dict):
            raise InvalidInputError("a schema must be a mapping with a 'columns' list")
        unknown = set(d) - _TOP_KEYS
        if unknown:
            raise InvalidInputError(
                f"unknown schema key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}"
            )
        if d.get("format", SCHEMA_FORMAT) != SCHEMA_FORMAT:
            raise InvalidInputError(f"schema format must be {SCHEMA_FORMAT!r}")
        cols = d.get("columns")
        if not isinstance(cols, list) or not cols:
            raise InvalidInputError("a schema needs a non-empty 'columns' list")
        columns = tuple(ColumnSchema.from_dict(c, f"columns[{i}]") for i, c in enumerate(cols))
        checks = []
        for i, c in enumerate(d.get("checks") or []):
            if not isinstance(c, dict) or set(c) - {"name", "expr", "severity"}:
                raise InvalidInputError(f"checks[{i}] must be a mapping of name, expr, severity")
            if not isinstance(c.get("expr"), str):
                raise InvalidInputError(f"checks[{i}]: expr must be a SQL expression string")
            sev = c.get("severity", "error")
            if sev not in SEVERITIES:
                raise InvalidInputError(f"checks[{i}]: severity must be one of {SEVERITIES}")
            check = Check(str(c.get("name") or c["expr"]), c["expr"], cast(Severity, sev))
            check.expression()
            checks.append(check)
        key = d.get("key") or []
        if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
            raise InvalidInputError("key must be a list of column names")
        severities = d.get("severities") or {}
        if not isinstance(severities, dict):
            raise InvalidInputError("severities must map anomaly kinds to error|warning|info")
        return cls(columns, tuple(key), tuple(checks), {**DEFAULT_SEVERITIES, **severities})

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Schema:
        try:
            # libyaml's safe loader when built in: the pure-Python one takes ~0.5 s for the
            # schema of a 25-column table with its value domains.
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"the schema is not valid YAML: {exc}") from None
        return cls.from_dict(data)


def infer_schema(profile: Profile, *, domain_max: int = DOMAIN_MAX) -> Schema:
    """A schema that the profiled data satisfies, as a starting point to curate."""
    return Schema(tuple(_infer_column(c, domain_max) for c in profile.columns.values()))


def _infer_column(c: ColumnProfile, domain_max: int) -> ColumnSchema:
    nullable = c.null_count > 0
    # Leave headroom: the next batch's null rate will not be exactly this one.
    mnf = min(1.0, round(c.null_fraction * 2 + 0.01, 4)) if nullable else None
    lo = hi = None
    if c.kind == "numeric" and c.numeric is not None and c.numeric.count:
        lo, hi = c.numeric.min, c.numeric.max
        if _is_integer(c.dtype) and lo is not None and hi is not None:
            lo, hi = int(lo), int(hi)
    domain = None
    f = c.frequencies
    if (
        c.kind == "categorical"
        and c.dtype != "Boolean"
        and f is not None
        and f.complete
        and 0 < len(f.counts) <= domain_max
    ):
        domain = tuple(sorted(f.counts))
    unique = (
        c.distinct_exact
        and c.distinct is not None
        and c.non_null > 1
        and c.distinct == c.non_null
        and (_is_integer(c.dtype) or c.dtype == "String")
    )
    return ColumnSchema(c.name, c.dtype, nullable, mnf, lo, hi, domain, bool(unique))


def _is_integer(dtype: str) -> bool:
    return dtype.startswith(("Int", "UInt"))


def _opt_number(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v):
        raise InvalidInputError(f"{where} must be a number")
    return v


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise InvalidInputError(f"{where} must be true or false")
    return v


def _dictify(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in changes.items()}
