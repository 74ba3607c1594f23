"""What can go wrong while serving, in domain terms; ``http_errors`` and ``grpc_service``
turn each class into a status code, once.
"""

from __future__ import annotations

from loopml.core.errors import InvalidInputError, LoopmlError, NotFoundError


class BadRequestError(InvalidInputError):
    """The payload does not follow the protocol: malformed JSON, wrong field types, shapes."""


class SignatureMismatchError(InvalidInputError):
    """A well-formed payload that does not fit the model: columns, types, nulls."""


class PayloadTooLargeError(InvalidInputError):
    """More bytes or rows than the server accepts in one request."""


class ModelNotServedError(NotFoundError):
    """The request names a model or version this server does not serve."""


class NotReadyError(LoopmlError):
    """The server is starting or draining and takes no new inference requests."""
