"""Checks on names and values at the tracking API boundary."""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from loopml.core import names
from loopml.core.errors import InvalidInputError

MAX_NAME_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
RESERVED_PREFIX = "loopml."
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-. /:]+$")


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"{what} name must be a string, got {type(name).__name__}")
    if not name or not name.strip():
        raise InvalidInputError(f"{what} name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(
            f"{what} name {name[:40]!r}... is {len(name)} characters; the limit is "
            f"{MAX_NAME_LENGTH}"
        )
    if not _NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"{what} name {name!r} has characters other than letters, digits, "
            "'_', '-', '.', ' ', '/' and ':'"
        )
    if name.startswith(RESERVED_PREFIX):
        raise InvalidInputError(
            f"{what} name {name!r} starts with {RESERVED_PREFIX!r}, which is reserved for "
            "loopml's own entries; choose another name"
        )
    return name


def check_artifact_name(name: object) -> str:
    """An artifact's name: a tracking name that is also a plain relative path, since a
    download writes the artifact under it."""
    return names.check_relative_path(check_name(name, "artifact"), "artifact name")


def check_metric_value(key: str, value: object) -> float:
    # The usual case first: an exact float is checked without the ABC test below, which
    # costs more than the rest of a point's checks (a log_batch checks thousands).
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(
            f"metric {key!r} must be a number, got {type(value).__name__} {value!r:.60}"
        )
    v = float(value)
    if not math.isfinite(v):
        raise InvalidInputError(
            f"metric {key!r} is {v}; only finite numbers are stored. Log a sentinel metric "
            "(e.g. 'diverged' = 1) to record a non-finite value"
        )
    return v


def check_step(key: str, step: object) -> int:
    if type(step) is int and -(2**63) <= step < 2**63:  # the usual case, as above
        return step
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise InvalidInputError(f"step of metric {key!r} must be an integer, got {step!r:.60}")
    s = int(step)
    if not -(2**63) <= s < 2**63:
        raise InvalidInputError(f"step {s} of metric {key!r} does not fit in 64 bits")
    return s


def param_text(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_LENGTH:
        raise InvalidInputError(
            f"param {key!r} is {len(text)} characters long; the limit is {MAX_PARAM_LENGTH}. "
            "Log large values as an artifact instead"
        )
    return text


def tag_text(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TAG_LENGTH:
        raise InvalidInputError(
            f"tag {key!r} is {len(text)} characters long; the limit is {MAX_TAG_LENGTH}"
        )
    return text
