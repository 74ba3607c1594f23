"""``loopml serve NAME@alias`` with ``LOOPML_URI``: the models come from a team server.

The server resolves the reference; the version's files are fetched into the local
content-addressed cache (only what it lacks, each file hash-checked, as ``lm.models.load``
does remotely) and served by the ordinary inference server. Alias moves are followed as
locally: the deployment asks :meth:`RemoteModelSource.resolve_version` every poll
interval, which here is one request to the server. The prediction log and labels stay in
the local workspace the server is given.
"""

from __future__ import annotations

from loopml.api.remote.connection import Connection
from loopml.api.remote.registry import RemoteRegistry
from loopml.core.errors import ConfigError
from loopml.serving.model_source import ModelSource, ServedModel
from loopml.store.workspace import Workspace


class RemoteModelSource(ModelSource):
    """A team server's registry, seen from an inference server on another machine."""

    def __init__(self, connection: Connection) -> None:
        # The base class's workspace registry is never made: every read goes to the server.
        self.connection = connection
        self.registry = RemoteRegistry(connection)

    def resolve_version(self, ref: str) -> tuple[str, int]:
        return self.registry.resolve_number(ref)

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
