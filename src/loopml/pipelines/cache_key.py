"""The cache key of a step execution (Hamilton-style): what it ran and on what.

key = digest(format, step name, code version, output kind, parameters, input digests)

Parameters are the literal arguments as canonical JSON; inputs are the content digests
of upstream outputs and catalog datasets, never their bytes, so computing a key costs
nothing however large the data. The parts are stored beside the digest, so a key decodes
back into them and a cache miss can be explained against an earlier key (``explain``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class CacheKey:
    """The parts a key is computed from; ``digest`` is the key itself."""

    step: str
    code: str
    kind: str
    params: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return cache_key(self.step, self.code, self.kind, self.params, self.inputs)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "step": self.step,
            "code": self.code,
            "kind": self.kind,
            "params": dict(self.params),
            "inputs": dict(self.inputs),
        }

    @classmethod
    def from_json(cls, data: Any) -> CacheKey | None:
        """The key stored as ``data``; None for anything that is not one (older rows)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            return None
        try:
            return cls(
                str(data["step"]),
                str(data["code"]),
                str(data["kind"]),
                {str(k): str(v) for k, v in dict(data["params"]).items()},
                {str(k): str(v) for k, v in dict(data["inputs"]).items()},
            )
        except (KeyError, TypeError, ValueError):
            return None


def explain(before: CacheKey | None, now: CacheKey) -> list[str]:
    """What differs between an earlier key of the same node and this one, in words."""
    if before is None:
        return ["no earlier run of this step to reuse"]
    reasons: list[str] = []
    if before.code != now.code:
        reasons.append(f"code of step {now.step} changed")
    if before.kind != now.kind:
        reasons.append(f"output kind {before.kind} -> {now.kind}")
    for name in sorted(set(before.params) | set(now.params)):
        old, new = before.params.get(name), now.params.get(name)
        if old == new:
            continue
        if old is None:
            reasons.append(f"param {name} added ({new})")
        elif new is None:
            reasons.append(f"param {name} removed (was {old})")
        else:
            reasons.append(f"param {name} {old} -> {new}")
    for name in sorted(set(before.inputs) | set(now.inputs)):
        if before.inputs.get(name) != now.inputs.get(name):
            reasons.append(f"input {name} digest changed")
    return reasons or ["same key as before, but no cache entry (cleared or never recorded)"]


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
