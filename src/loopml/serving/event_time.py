"""The time an inference request's event happened, as the client says; the log records it.

Traffic replayed faster than real time (a backfill, a test) is monitored by when its events
happened, not when they were answered. A request carries it as the OIP request parameter
``event_time`` (REST and gRPC) or MLflow's top-level ``event_time`` field (a query
parameter for CSV bodies): epoch seconds, or an ISO-8601 string with a time zone. A time
without a zone is refused rather than guessed.
"""

from __future__ import annotations

import math
from datetime import datetime

from loopml.monitor.logs import EVENT_TIME as EVENT_TIME
from loopml.serving.errors import BadRequestError

# What timestamp[us] holds comfortably, and what datetime can represent: years 1 to 9999.
_MIN_EPOCH = -62_135_596_800.0
_MAX_EPOCH = 253_402_300_799.0
_HINT = "epoch seconds or an ISO-8601 time with a zone, e.g. '2013-03-01T06:00:00Z'"


def parse_event_time(value: object, *, numeric_text: bool = False) -> float | None:
    """``value`` as epoch seconds, None when absent; refuses anything else clearly.

    ``numeric_text`` also takes a number written as text: a query parameter has no
    other way to send one."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequestError(f"{EVENT_TIME} must be {_HINT}, not a boolean")
    if isinstance(value, int | float):
        return _checked(float(value))
    if not isinstance(value, str):
        raise BadRequestError(f"{EVENT_TIME} must be {_HINT}")
    text = value.strip()
    if numeric_text:
        try:
            return _checked(float(text))
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestError(f"{EVENT_TIME} {value[:60]!r} is not {_HINT}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise BadRequestError(
            f"{EVENT_TIME} {value[:60]!r} has no time zone; add one (Z or +01:00)"
        )
    return _checked(parsed.timestamp())


def _checked(seconds: float) -> float:
    if not math.isfinite(seconds) or not _MIN_EPOCH <= seconds <= _MAX_EPOCH:
        raise BadRequestError(f"{EVENT_TIME} must be a finite time between years 1 and 9999")
    return seconds
