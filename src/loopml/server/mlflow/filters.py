"""MLflow's run filter and order-by syntax, rewritten into loopml's filter language.

The two languages share their shape (``metrics.auc > 0.7 AND params.depth = '6'``); what
differs is rewritten token by token: double-quoted keys become backticked keys, bare
attribute names gain ``attributes.``, statuses are lower case, and times are compared in
seconds rather than milliseconds. Anything else passes through, so loopml's own parser
reports a malformed filter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from loopml.core.errors import InvalidInputError

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:`[^`]*`|"[^"]*"|[A-Za-z0-9_\-./:]+))?)
  | (?P<op>>=|<=|!=|==|=|>|<)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_BARE_ATTRIBUTES = {"run_id", "run_name", "status", "start_time", "end_time", "user_id"}
_TIMES = {"start_time", "end_time"}
_KEYWORDS = {"and", "or", "in", "like", "ilike", "not", "asc", "desc"}
_ENTITIES = {
    "metrics": "metrics",
    "metric": "metrics",
    "params": "params",
    "param": "params",
    "parameters": "params",
    "tags": "tags",
    "tag": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise InvalidInputError(
                f"cannot read the filter at {text[pos : pos + 20]!r}; "
                "write e.g. metrics.auc > 0.7 AND params.depth = '6'"
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _field(ident: str) -> tuple[str, str]:
    """(entity, key) of an identifier, with loopml's spelling."""
    if "." not in ident and ident.lower() in _BARE_ATTRIBUTES:
        ident = "attributes." + ident
    if "." not in ident:
        raise InvalidInputError(
            f"{ident!r} is not a field; use metrics.<key>, params.<key>, tags.<key> or "
            "attributes.<name>"
        )
    entity, key = ident.split(".", 1)
    found = _ENTITIES.get(entity.lower())
    if found is None:
        raise InvalidInputError(
            f"{entity!r} is not searchable here; use metrics, params, tags or attributes"
        )
    if (key.startswith('"') and key.endswith('"')) or (key.startswith("`") and key.endswith("`")):
        key = key[1:-1]
    if found == "attributes":
        key = {"run_name": "name", "user_id": "user"}.get(key.lower(), key.lower())
    return found, key


def _spell(entity: str, key: str) -> str:
    if entity == "attributes" and key == "user":
        return "tags.`mlflow.user`"
    plain = re.fullmatch(r"[A-Za-z0-9_\-./:]+", key) is not None
    return f"{entity}.{key if plain else '`' + key + '`'}"


def translate_filter(text: str | None) -> str | None:
    """loopml's filter for MLflow's ``text`` (None or blank: no filter)."""
    if text is None or not text.strip():
        return None
    out: list[str] = []
    field: tuple[str, str] | None = None
    for kind, value in _tokens(text):
        if kind == "ident" and value.lower() not in _KEYWORDS:
            field = _field(value)
            out.append(_spell(*field))
            continue
        if kind == "string" and field == ("attributes", "status"):
            value = value.lower()
        elif kind == "number" and field is not None and field[1] in _TIMES:
            value = repr(float(value) / 1000.0)
        elif kind == "op" and value == "==":
            value = "="
        out.append(value)
    return " ".join(out)


def translate_order_by(clauses: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for clause in clauses or []:
        if not isinstance(clause, str):
            raise InvalidInputError("order_by takes strings such as 'metrics.auc DESC'")
        parts = _tokens(clause)
        if not parts or parts[0][0] != "ident":
            raise InvalidInputError(f"cannot order by {clause!r}")
        entity, key = _field(parts[0][1])
        direction = parts[1][1].lower() if len(parts) > 1 else "asc"
        if len(parts) > 2 or direction not in ("asc", "desc"):
            raise InvalidInputError(f"cannot order by {clause!r}; use '<field> ASC|DESC'")
        out.append(f"{_spell(entity, key)} {direction}")
    return out


# --- registry and logged-model filters -----------------------------------------------------
# MLflow's registry searches take a few fields compared with =, !=, LIKE or ILIKE, joined by
# AND (``name LIKE 'fraud%' AND tags.team = 'risk'``); they are matched here in Python over
# the listed records, which the registry holds few enough of.

Condition = tuple[str, str, str]
MAX_FILTER = 4000
_PATTERN_OPS = {"=", "!=", "like", "ilike"}


def conditions(text: str | None, fields: Sequence[str]) -> list[Condition]:
    """(field, op, value) per clause; a field not in ``fields`` (or ``tags.<key>``) is refused."""
    if text is None or not text.strip():
        return []
    if len(text) > MAX_FILTER:
        raise InvalidInputError(f"a filter is at most {MAX_FILTER} characters")
    tokens = _tokens(text)
    out: list[Condition] = []
    i = 0
    while i < len(tokens):
        if out:
            if tokens[i][1].lower() != "and":
                raise InvalidInputError(f"join filter clauses with AND, not {tokens[i][1]!r}")
            i += 1
        clause = tokens[i : i + 3]
        if len(clause) < 3 or clause[0][0] != "ident" or clause[2][0] != "string":
            raise InvalidInputError(
                f"cannot read the filter {text[:100]!r}; write e.g. name = 'my-model'"
            )
        name, op, value = clause[0][1], clause[1][1].lower(), clause[2][1][1:-1]
        if name.startswith(("tags.", "tag.")):
            name = "tags." + name.split(".", 1)[1].strip('`"')
        elif name not in fields:
            raise InvalidInputError(f"cannot filter on {name!r}; use {', '.join(fields)}")
        op = "=" if op == "==" else op
        if op not in _PATTERN_OPS:
            raise InvalidInputError(f"{name} takes =, !=, LIKE or ILIKE, not {op!r}")
        out.append((name, op, value))
        i += 3
    return out


def matches(record: dict[str, str], found: Sequence[Condition]) -> bool:
    for name, op, value in found:
        have = record.get(name)
        if have is None:
            # A record without the tag is not equal to any value (MLflow's own client
            # filters with tag.`mlflow.prompt.is_prompt` != 'true').
            if op == "!=":
                continue
            return False
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op in ("like", "ilike") and not _like(have, value, op == "ilike"):
            return False
    return True


def _like(text: str, pattern: str, fold: bool) -> bool:
    """SQL LIKE (``%`` any run, ``_`` one character) by dynamic programming: time linear in
    text x pattern, where a regex of user ``%``s could backtrack exponentially."""
    if fold:
        text, pattern = text.casefold(), pattern.casefold()
    # row[j]: pattern so far matches text[:j].
    row = [True] + [False] * len(text)
    for c in pattern:
        if c == "%":
            seen = False
            for j in range(len(row)):
                seen = seen or row[j]
                row[j] = seen
        else:
            row = [False] + [row[j] and (c == "_" or c == text[j]) for j in range(len(text))]
    return row[-1]
