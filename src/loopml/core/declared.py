"""Validation errors of declared records (pydantic models and dataclasses) as one line a
problem, each naming its field, for the user who wrote the YAML or JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError


def explain(
    exc: ValidationError,
    what: str,
    special: Callable[[str, dict[str, Any]], str | None] | None = None,
) -> str:
    """``exc`` as ``"<what> <field>: <problem>; …"``; ``special`` may word an error
    itself (given the ``where`` prefix and the error) or return None to leave it."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{what} {loc}: " if loc else f"{what}: "
        kind = err["type"]
        worded = special(where, dict(err)) if special is not None else None
        if worded is not None:
            lines.append(worded)
        elif kind in ("unexpected_keyword_argument", "extra_forbidden"):
            lines.append(f"{where}unknown key {err['loc'][-1]!r}")
        elif kind == "missing":
            lines.append(f"{where}required")
        elif kind == "value_error":
            lines.append(f"{where}{err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{where}{err['msg']}, got {err.get('input')!r}")
    return "; ".join(lines)
