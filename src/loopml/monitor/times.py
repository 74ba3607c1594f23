"""Times and window lengths as users give them: datetimes, epoch seconds, "1d"."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from loopml.core.errors import InvalidInputError

_UNITS = {"d": 86_400, "w": 7 * 86_400}
_LENGTH = re.compile(r"([1-9][0-9]{0,4})([dw])")


def epoch(value: Any, what: str) -> float | None:
    """Epoch seconds from a datetime (naive means UTC) or a number; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return dt.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(
            f"{what} must be a datetime or epoch seconds, not {type(value).__name__}"
        )
    if not math.isfinite(value):
        raise InvalidInputError(f"{what} must be a finite number of epoch seconds")
    return float(value)


def window_seconds(window: Any) -> float:
    """``"1d"``, ``"7d"``, ``"2w"``: windows are whole UTC days (segments are days)."""
    if not isinstance(window, str) or not _LENGTH.fullmatch(window.strip()):
        raise InvalidInputError(
            f"window must be a number of days or weeks such as '1d', '7d' or '2w', "
            f"not {window!r} (windows are whole UTC days)"
        )
    m = _LENGTH.fullmatch(window.strip())
    assert m is not None
    return float(int(m.group(1)) * _UNITS[m.group(2)])


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
