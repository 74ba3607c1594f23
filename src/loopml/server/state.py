"""What every request handler shares: the workspace and the objects opened on it once."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from fastapi import Request

from loopml.registry.model_registry import Registry
from loopml.server.audit import AuditLog
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker

# The largest blob an upload may send. Uploads stream to disk, so this guards the disk,
# not memory; ``loopml server`` takes another from LOOPML_MAX_UPLOAD_BYTES.
MAX_UPLOAD_BYTES = 16 * 1024**3


@dataclass
class ServerState:
    workspace: Workspace
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    tracker: Tracker = field(init=False)
    registry: Registry = field(init=False)
    audit: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        self.tracker = Tracker(self.workspace)
        self.registry = Registry(self.workspace)
        self.audit = AuditLog(self.workspace)

    def close(self) -> None:
        self.tracker.close()
        self.audit.close()


def state(request: Request) -> ServerState:
    found: ServerState = request.app.state.loopml
    return found


@functools.lru_cache(maxsize=1)
def monitoring_module() -> object | None:
    """``loopml.monitor`` when installed in this version, else None (imported lazily)."""
    try:
        import importlib

        return importlib.import_module("loopml.monitor")
    except ImportError:
        return None
