"""Time in one representation: seconds since the epoch, UTC, as float."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> float:
    return time.time()


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


def format_ts(ts: float | None) -> str:
    dt = to_datetime(ts)
    return "" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S")
