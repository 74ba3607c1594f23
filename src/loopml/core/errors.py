"""The exceptions loopml raises for problems a user can act on.

Every message says what was wrong and, where there is one, what to do next. The entry
points (CLI, HTTP) translate these into exit codes and status codes in one place; code
below the edge never knows about HTTP.
"""

from __future__ import annotations


class LoopmlError(Exception):
    """Base class of every error loopml raises on purpose."""


class InvalidInputError(LoopmlError, ValueError):
    """The caller passed something malformed: a bad name, value, filter or payload."""


class NotFoundError(LoopmlError, LookupError):
    """A run, artifact, dataset or model that was asked for does not exist."""


class ConflictError(LoopmlError):
    """The request contradicts the current state (e.g. writing to a finished run)."""


class IntegrityError(LoopmlError):
    """Stored bytes do not match their digest: tampered, truncated or corrupted."""


class ConfigError(LoopmlError):
    """The workspace configuration is missing, malformed or points nowhere usable."""


class StoreError(LoopmlError):
    """A store could not be reached or written (disk full, permissions, server down)."""
