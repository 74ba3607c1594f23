"""``loopml serve NAME@alias`` with ``LOOPML_URI``: the models come from a team server.

The server resolves the reference; the version's files are fetched into the local
content-addressed cache (only what it lacks, each file hash-checked, as ``lm.models.load``
does remotely) and served by the ordinary inference server. Alias moves are followed as
locally: the deployment asks :meth:`RemoteModelSource.resolve_version` every poll
interval, which here is one request to the server. The prediction log and labels stay in
the local workspace the server is given.
"""

from __future__ import annotations

import logging

from loopml.api.remote.connection import Connection, RemoteAccessError
from loopml.api.remote.registry import RemoteRegistry
from loopml.core.errors import ConfigError, StoreError
from loopml.serving.model_source import ModelSource, ServedModel
from loopml.store.workspace import Workspace

log = logging.getLogger("loopml.serving")


class RemoteModelSource(ModelSource):
    """A team server's registry, seen from an inference server on another machine."""

    def __init__(self, connection: Connection) -> None:
        # The base class's workspace registry is never made: every read goes to the server.
        self.connection = connection
        self.registry = RemoteRegistry(connection)
        self._last: dict[str, tuple[str, int]] = {}
        self._outage: str | None = None

    def resolve_version(self, ref: str) -> tuple[str, int]:
        """What ``ref`` names now. While the server cannot be reached (or refuses the
        token), a reference resolved before keeps its last answer: the version being
        served goes on answering, and the outage is logged once, not at every poll."""
        try:
            found = self.registry.resolve_number(ref)
        except (StoreError, RemoteAccessError) as exc:
            if ref not in self._last:
                raise
            if self._outage is None:
                self._outage = str(exc)
                name, version = self._last[ref]
                log.warning("%s; serving %s:%s until the server answers", exc, name, version)
            return self._last[ref]
        if self._outage is not None:
            self._outage = None
            log.warning("the loopml server at %s answers again", self.connection.url)
        self._last[ref] = found
        return found

    def loop_canary(self, ref: str) -> tuple[str, float] | None:
        # The loops live in the server's workspace, which this process does not open; the
        # CLI asks for an explicit share in remote mode, so there is nothing to follow.
        return None

    def load_version(self, name: str, version: int, ref: str) -> ServedModel:
        mv = self.registry.get_version(name, version)
        loaded = self.registry.load_version(mv, ref)
        # No artifact id: it names a row of the server's lineage graph, which the local log
        # workspace lacks. Each log file still records the model's name, version and digest.
        return ServedModel(loaded, name, version, ref)

    def versions(self, name: str) -> list[int]:
        return [v.version for v in self.registry.versions(name)]

    def packages(self, name: str, version: int) -> dict[str, str]:
        raise ConfigError(_LOCAL_ONLY)

    def export(self, ref: str, target: Workspace, alias: str) -> tuple[str, int, int]:
        raise ConfigError(_LOCAL_ONLY)


_LOCAL_ONLY = (
    "building a bundle needs the workspace's stores; unset LOOPML_URI on a machine that has them"
)


def remote_model_source(url: str, token: str | None) -> RemoteModelSource:
    """A source with its own connection: what each ``--workers`` process calls (with
    ``functools.partial``) after it starts, since a connection does not cross processes."""
    return RemoteModelSource(Connection(url, token))
