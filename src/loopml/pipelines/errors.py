"""The error a failed pipeline run raises: a LoopmlError, so the CLI prints it cleanly."""

from __future__ import annotations

from loopml.core.errors import LoopmlError


class PipelineFailedError(LoopmlError):
    """A step failed (after its retries); the run is recorded as failed and resumable."""

    def __init__(self, message: str, *, run_id: str, node: str | None, traceback: str | None):
        super().__init__(message)
        self.run_id = run_id
        self.node = node
        self.traceback = traceback
