"""The exceptions loopml raises for problems a user can act on, and how each edge shows them.

Every message says what was wrong and, where there is one, what to do next. Each class
carries its HTTP status, gRPC status-code name and CLI exit code as class attributes; the
edges (REST, gRPC, metrics, CLI) call :func:`error_codes`, which walks ``type(exc).__mro__``
so the most specific class that sets a code decides, whatever order classes were declared
in. Code below the edge raises these and never knows about HTTP or gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass


class LoopmlError(Exception):
    """Base class of every error loopml raises on purpose."""

    http_status: int = 400
    # The name of a ``grpc.StatusCode`` member; core must not import grpc.
    grpc_code: str = "INVALID_ARGUMENT"
    # As Click: 2 for a usage mistake, 1 for everything else.
    exit_code: int = 1


class InvalidInputError(LoopmlError, ValueError):
    """The caller passed something malformed: a bad name, value, filter or payload."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    exit_code = 2


class NotFoundError(LoopmlError, LookupError):
    """A run, artifact, dataset or model that was asked for does not exist."""

    http_status = 404
    grpc_code = "NOT_FOUND"
    exit_code = 1


class ConflictError(LoopmlError):
    """The request contradicts the current state (e.g. writing to a finished run)."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"
    exit_code = 1


class IntegrityError(LoopmlError):
    """Stored bytes do not match their digest: tampered, truncated or corrupted."""

    http_status = 500
    grpc_code = "DATA_LOSS"
    exit_code = 1


class ConfigError(LoopmlError):
    """The workspace configuration is missing, malformed or points nowhere usable."""

    http_status = 500
    grpc_code = "FAILED_PRECONDITION"
    exit_code = 2


class StoreError(LoopmlError):
    """A store could not be reached or written (disk full, permissions, server down)."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    exit_code = 1


@dataclass(frozen=True)
class ErrorCodes:
    http_status: int
    grpc_code: str
    exit_code: int


# What an exception that is not a LoopmlError means at an edge: a bug, not a user mistake.
UNEXPECTED = ErrorCodes(http_status=500, grpc_code="INTERNAL", exit_code=1)


def error_codes(exc: BaseException) -> ErrorCodes:
    """The codes each edge uses for ``exc``: the nearest class in its MRO that declares them.

    Walking the MRO (rather than a list of ``isinstance`` checks) means a subclass that sets
    only ``http_status`` still inherits its parent's gRPC code and exit code.
    """
    if not isinstance(exc, LoopmlError):
        return UNEXPECTED
    found: dict[str, object] = {}
    for cls in type(exc).__mro__:
        for attr in ("http_status", "grpc_code", "exit_code"):
            if attr not in found and attr in vars(cls):
                found[attr] = vars(cls)[attr]
    return ErrorCodes(
        http_status=int(found["http_status"]),  # type: ignore[call-overload]
        grpc_code=str(found["grpc_code"]),
        exit_code=int(found["exit_code"]),  # type: ignore[call-overload]
    )
