"""The run filter language, compiled to SQL.

    metrics.auc > 0.7 and (params.depth = '6' or tags.team like 'ops%')
    attributes.status = 'finished' and metrics.`val loss` <= 0.3

Fields are ``metrics.*`` (compared with numbers), ``params.*`` and ``tags.*`` (compared with
quoted strings) and ``attributes.*`` (status, name, run_id, experiment, start_time,
end_time). Keys with spaces or symbols go in backticks. ``and``/``or``/parentheses combine;
``tags.team is null`` / ``is not null`` test whether a run has the key at all.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import LarkError, UnexpectedInput, VisitError
from sqlalchemy import ColumnElement, and_, or_, select

from loopml.core.errors import InvalidInputError
from loopml.store.metadata.tables import (
    executions,
    experiments,
    latest_metrics,
    params,
    runs,
    tags,
)
from loopml.tracking.store import read_status

GRAMMAR = r"""
?start: disjunction
order_by: order_key ("," order_key)*
order_key: FIELD DIRECTION?
?disjunction: conjunction (_OR conjunction)*
?conjunction: _atom (_AND _atom)*
_atom: comparison | "(" disjunction ")"
comparison: FIELD OP value
          | FIELD _IN "(" value ("," value)* ")"  -> membership
          | FIELD _IS NEGATION? _NULL  -> presence
value: SIGNED_NUMBER -> number
     | DQ_STRING -> string
     | SQ_STRING -> string
FIELD: /[A-Za-z_]+\.(`[^`]+`|[A-Za-z0-9_\-.\/:]+)/
OP: ">=" | "<=" | "!=" | "==" | "=" | ">" | "<" | /i?like\b/i | /not\s+i?like\b/i
DQ_STRING: /"[^"]*"/
SQ_STRING: /'[^']*'/
_AND: /and\b/i
_OR: /or\b/i
_IN: /in\b/i
_IS: /is\b/i
NEGATION: /not\b/i
_NULL: /null\b/i
DIRECTION: /(asc|desc)\b/i
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""

_ENTITIES = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_ATTRIBUTES: dict[str, Any] = {
    "status": read_status(),
    "name": executions.c.name,
    "run_name": executions.c.name,
    "run_id": executions.c.id,
    "id": executions.c.id,
    "experiment": experiments.c.name,
    "start_time": executions.c.start_time,
    "end_time": executions.c.end_time,
}
_NUMERIC_ATTRIBUTES = {"start_time", "end_time"}
_STRING_OPS = {"=", "==", "!=", "like", "ilike", "not like", "not ilike"}


@dataclass(frozen=True)
class Field:
    entity: str
    key: str

    def __str__(self) -> str:
        return (
            f"{self.entity}s.{self.key}" if self.entity != "attribute" else f"attributes.{self.key}"
        )


def parse_field(text: str) -> Field:
    prefix, _, key = text.partition(".")
    entity = _ENTITIES.get(prefix.lower())
    if entity is None:
        raise InvalidInputError(
            f"unknown field {text!r}: fields start with metrics., params., tags. or attributes."
        )
    key = key.strip("`")
    if entity == "attribute" and key not in _ATTRIBUTES:
        raise InvalidInputError(
            f"unknown attribute {key!r}; use one of {', '.join(sorted(_ATTRIBUTES))}"
        )
    return Field(entity, key)


_OPERATORS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "like": lambda c, v: c.like(v),
    "ilike": lambda c, v: c.ilike(v),
    "not like": lambda c, v: c.not_like(v),
    "not ilike": lambda c, v: c.not_ilike(v),
}


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    try:
        return _OPERATORS[op](column, value)
    except KeyError:
        raise InvalidInputError(f"unknown operator {op!r}") from None


def condition(field: Field, op: str, value: Any) -> ColumnElement[bool]:
    """One comparison as a SQL condition on the run.

    The subqueries test ``runs.id``: filtering runs before joining ``executions`` lets
    SQLite, which keeps no statistics until ANALYZE, skip an index probe per run.
    """
    run_id = runs.c.id
    if field.entity == "metric":
        if isinstance(value, str) or op not in {"=", "==", "!=", ">", ">=", "<", "<="}:
            raise InvalidInputError(
                f"{field} is a metric: compare it with a number using =, !=, <, <=, > or >="
            )
        # IN (...) rather than a correlated EXISTS: the subquery runs once, on the
        # (key, value) index, instead of once per run.
        return run_id.in_(
            select(latest_metrics.c.run_id).where(
                latest_metrics.c.key == field.key,
                _compare(latest_metrics.c.value, op, value),
            )
        )
    if field.entity in ("param", "tag"):
        table = params if field.entity == "param" else tags
        if not isinstance(value, str) or op not in _STRING_OPS:
            raise InvalidInputError(
                f"{field} is a {field.entity}, stored as text: compare it with a quoted string "
                f"using =, !=, like or ilike, e.g. {field} = '{value}'"
            )
        return run_id.in_(
            select(table.c.run_id).where(
                table.c.key == field.key,
                _compare(table.c.value, op, value),
            )
        )
    column = _ATTRIBUTES[field.key]
    if field.key in _NUMERIC_ATTRIBUTES:
        if isinstance(value, str):
            raise InvalidInputError(f"{field} is a time in epoch seconds: compare it with a number")
    elif not isinstance(value, str) or op not in _STRING_OPS:
        raise InvalidInputError(
            f"{field} is text: compare it with a quoted string using =, !=, like or ilike"
        )
    return _compare(column, op, value)


def absent(field: Field, *, negated: bool = False) -> ColumnElement[bool]:
    """``field is null`` (the run has no such metric, param or tag, or the attribute is
    empty), or with ``negated`` ``field is not null``."""
    if field.entity == "attribute":
        column = _ATTRIBUTES[field.key]
        return column.is_not(None) if negated else column.is_(None)
    table = {"metric": latest_metrics, "param": params, "tag": tags}[field.entity]
    having = select(table.c.run_id).where(table.c.key == field.key)
    return runs.c.id.in_(having) if negated else runs.c.id.not_in(having)


@v_args(inline=True)
class _ToSQL(Transformer[Token, ColumnElement[bool]]):
    def number(self, tok: Token) -> float:
        return float(tok)

    def string(self, tok: Token) -> str:
        return str(tok)[1:-1]

    def comparison(self, field: Token, op: Token, value: Any) -> ColumnElement[bool]:
        return condition(parse_field(str(field)), " ".join(str(op).lower().split()), value)

    def membership(self, field: Token, *values: Any) -> ColumnElement[bool]:
        f = parse_field(str(field))
        return or_(*(condition(f, "=", v) for v in values))

    def presence(self, field: Token, *negation: Token) -> ColumnElement[bool]:
        return absent(parse_field(str(field)), negated=bool(negation))

    def conjunction(self, *parts: ColumnElement[bool]) -> ColumnElement[bool]:
        return and_(*parts)

    def disjunction(self, *parts: ColumnElement[bool]) -> ColumnElement[bool]:
        return or_(*parts)


# SQLite parses ``a OR b OR ...`` into a tree at most 1,000 deep; stay well inside it.
MAX_COMPARISONS = 500
MAX_NESTING = 50


@functools.cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", start=["start", "order_by"])


def check_text(text: str, what: str) -> None:
    """Refuse text the database cannot store: a lone surrogate has no UTF-8 encoding."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode: {exc.object[exc.start : exc.end]!r} at position "
            f"{exc.start} is a lone surrogate"
        ) from None


def _check_size(tree: Any) -> None:
    comparisons = sum(
        1 if t.data == "comparison" else len(t.children) - 1
        for t in tree.iter_subtrees()
        if t.data in ("comparison", "membership")
    )
    if comparisons > MAX_COMPARISONS:
        raise InvalidInputError(
            f"the filter has {comparisons} comparisons; the limit is {MAX_COMPARISONS}. "
            "Narrow it, or tag the runs you want and filter on the tag"
        )


def _nesting(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def compile_filter(text: str) -> ColumnElement[bool]:
    if not isinstance(text, str):
        raise InvalidInputError(f"filter must be a string, got {type(text).__name__}")
    check_text(text, "the filter")
    if _nesting(text) > MAX_NESTING:
        raise InvalidInputError(
            f"the filter's parentheses are nested more than {MAX_NESTING} deep; simplify it"
        )
    try:
        tree = _parser().parse(text, start="start")
        _check_size(tree)
        result: ColumnElement[bool] = _ToSQL().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, InvalidInputError):
            raise exc.orig_exc from None
        raise
    except UnexpectedInput as exc:
        context = exc.get_context(text, span=30).rstrip()
        raise InvalidInputError(
            f"cannot parse filter {text!r} at position {exc.column}:\n{context}\n"
            "expected comparisons like metrics.auc > 0.7 or params.depth = '6', joined by and/or"
        ) from None
    except LarkError as exc:
        raise InvalidInputError(f"cannot parse filter {text!r}: {exc}") from None
    return result


@dataclass(frozen=True)
class OrderKey:
    field: Field
    descending: bool


def attribute_column(key: str) -> Any:
    return _ATTRIBUTES[key]


MAX_SEARCH_LIMIT = 100_000


def check_search_limit(limit: object) -> int:
    """A search's ``limit``: an integer from 1 to :data:`MAX_SEARCH_LIMIT`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_SEARCH_LIMIT:
        raise InvalidInputError(f"limit must be an integer from 1 to {MAX_SEARCH_LIMIT}")
    return limit


def check_max_points(max_points: object) -> None:
    """A chart's ``max_points``: None, or an integer of at least 2."""
    if max_points is not None and (
        isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2
    ):
        raise InvalidInputError("max_points must be an integer of at least 2")


def order_by_text(spec: str | Sequence[str] | None) -> str | None:
    """``order_by`` checked here and joined into the one string a server parses again."""
    if not parse_order_by(spec):
        return None
    return spec if isinstance(spec, str) else ", ".join(spec or ())


def parse_order_by(spec: str | Sequence[str] | None) -> list[OrderKey]:
    """``"metrics.auc desc, params.depth"`` (or a list of such items) as sort keys."""
    if spec is None:
        return []
    if isinstance(spec, str):
        items = [spec]
    elif isinstance(spec, Sequence) and all(isinstance(i, str) for i in spec):
        items = list(spec)
    else:
        raise InvalidInputError("order_by is a string such as 'metrics.auc desc', or a list")
    keys = []
    for item in items:
        check_text(item, "order_by")
        try:
            tree = _parser().parse(item, start="order_by")
        except LarkError:
            raise InvalidInputError(
                f"cannot parse order_by {item!r}: expected fields with an optional asc or "
                "desc, separated by commas, e.g. 'metrics.auc desc, params.depth'"
            ) from None
        for key in (k for k in tree.children if isinstance(k, Tree)):
            field_token, *direction = key.children
            descending = bool(direction) and str(direction[0]).lower() == "desc"
            keys.append(OrderKey(parse_field(str(field_token)), descending))
    return keys
