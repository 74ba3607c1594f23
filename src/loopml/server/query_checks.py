"""A query parameter the API document declares once may not arrive twice.

FastAPI quietly keeps the last of ``?order_by=a&order_by=b``, so a client that meant both
gets an answer for one; the document says the parameter is a single string, so the request
is refused instead (schemathesis' negative-data check found the silent pick).
"""

from __future__ import annotations

import types
import typing

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from loopml.core.errors import InvalidInputError

_SEQUENCES = (list, tuple, set, frozenset)


def _is_sequence(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(annotation)[0])
    return origin in _SEQUENCES or annotation in _SEQUENCES


def _sequence_params(dependant: Dependant) -> set[str]:
    """The query parameters declared as lists, by the name they arrive under."""
    found = {f.alias for f in dependant.query_params if _is_sequence(f.field_info.annotation)}
    for sub in dependant.dependencies:
        found |= _sequence_params(sub)
    return found


async def single_valued_query(request: Request) -> None:
    """Refuse a repeated query parameter unless the route declares it as a list (async:
    a plain function would cost every request a hop to the thread pool)."""
    params = request.query_params
    items = params.multi_items()
    if len(items) == len(params):
        return
    # Only requests that repeat a key pay for walking the route's declared parameters.
    route = request.scope.get("route")
    repeatable = _sequence_params(route.dependant) if isinstance(route, APIRoute) else set()
    seen: set[str] = set()
    for key, _ in items:
        if key in seen and key not in repeatable:
            raise InvalidInputError(
                f"query parameter {key!r} was given more than once; it takes one value"
            )
        seen.add(key)
