"""Durations written as people write them: ``90s``, ``30m``, ``12h``, ``1d``, ``7d``, ``2w``."""

from __future__ import annotations

from loopml.core.errors import InvalidInputError
from loopml.core.names import parse_positive_int

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_duration(value: str | float | int, what: str = "duration") -> float:
    """Seconds in ``value``: a number of seconds (>= 0) or '<n><s|m|h|d|w>'."""
    if isinstance(value, bool):
        raise InvalidInputError(f"{what} must be a duration such as '1d', not {value!r}")
    if isinstance(value, int | float):
        if not value >= 0 or value == float("inf"):
            raise InvalidInputError(f"{what} must be a finite number of seconds >= 0")
        return float(value)
    if not isinstance(value, str) or len(value) < 2 or value[-1] not in _UNITS:
        raise InvalidInputError(
            f"{what} {str(value)[:40]!r} is not a duration; write e.g. '90s', '30m', '12h', "
            "'1d' or '2w'"
        )
    try:
        count = parse_positive_int(value[:-1], what)
    except InvalidInputError:
        raise InvalidInputError(
            f"{what} {value[:40]!r} is not a duration; write a whole number and a unit, e.g. '7d'"
        ) from None
    return count * _UNITS[value[-1]]


def format_duration(seconds: float) -> str:
    for unit, size in (("w", 7 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
