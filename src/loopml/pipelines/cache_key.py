"""The cache key of a step execution (Hamilton-style): what it ran and on what.

key = digest(format, step name, code version, output kind, parameters, input digests)

Parameters are the literal arguments as canonical JSON; inputs are the content digests
of upstream outputs and catalog datasets, never their bytes, so computing a key costs
nothing however large the data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from loopml.core.errors import InvalidInputError
from loopml.core.hashing import digest_bytes

FORMAT = "loopml.step-cache/1"


def canonical_json(value: Any, *, what: str) -> str:
    """One spelling per value: sorted keys, no spaces, tuples as lists, no NaN."""
    try:
        return json.dumps(
            _plain(value, what), sort_keys=True, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{what} must be a JSON value (number, string, bool, None, list or dict of "
            f"them), got {type(value).__name__}: {exc}. Pass tables and models between "
            "steps, or datasets from the catalog, not as literal parameters"
        ) from None


def _plain(value: Any, what: str) -> Any:
    # numpy scalars are common parameters; they mean the same as Python numbers.
    item = getattr(value, "item", None)
    if item is not None and type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        value = item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinity have no JSON spelling")
    if isinstance(value, Mapping):
        return {str(k): _plain(v, what) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, what) for v in value]
    return value


def cache_key(
    step: str,
    code_version: str,
    output_kind: str,
    params: Mapping[str, str],
    inputs: Mapping[str, str],
) -> str:
    """``params`` maps names to canonical JSON; ``inputs`` maps names to digests."""
    payload = {
        "format": FORMAT,
        "step": step,
        "code": code_version,
        "kind": output_kind,
        "params": dict(params),
        "inputs": dict(inputs),
    }
    return digest_bytes(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
