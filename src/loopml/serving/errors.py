"""What can go wrong while serving, in domain terms.

Each class declares its HTTP status and gRPC code; the REST and gRPC edges, the metrics and
the fast path all look them up with :func:`loopml.core.errors.error_codes`, so both
protocols give the same answer for the same mistake.
"""

from __future__ import annotations

from loopml.core.errors import InvalidInputError, LoopmlError, NotFoundError


class BadRequestError(InvalidInputError):
    """The payload does not follow the protocol: malformed JSON, wrong field types, shapes."""


class SignatureMismatchError(InvalidInputError):
    """A well-formed payload that does not fit the model: columns, types, nulls, infinities."""

    http_status = 422


class PayloadTooLargeError(InvalidInputError):
    """More bytes or rows than the server accepts in one request."""

    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class RequestTimeoutError(BadRequestError):
    """The client did not send its request in time (a slow or stalled upload)."""

    http_status = 408
    grpc_code = "DEADLINE_EXCEEDED"


class ModelNotServedError(NotFoundError):
    """The request names a model or version this server does not serve."""


class NotReadyError(LoopmlError):
    """The server is starting or draining and takes no new inference requests."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class OverloadedError(NotReadyError):
    """More requests are waiting than the server will queue; the client should retry later."""

    # Seconds a client is asked to wait (HTTP Retry-After).
    retry_after = 1


class ModelInputError(SignatureMismatchError):
    """The model itself refused a request's input (it raised ValueError or TypeError)."""


class ModelError(LoopmlError):
    """The model raised an unexpected exception while predicting one request."""

    http_status = 500
    grpc_code = "INTERNAL"
    exit_code = 1


def model_failure(model: str, exc: BaseException) -> LoopmlError:
    """The error a client sees when the model raised ``exc``: it names the model as the
    source, so a 4xx/5xx from inside the model is not mistaken for the server's own."""
    detail = f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, ValueError | TypeError):
        return ModelInputError(f"model {model} refused the input ({detail})")
    return ModelError(f"model {model} failed on this request ({detail})")
