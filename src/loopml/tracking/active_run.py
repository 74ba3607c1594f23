"""A run being recorded: the object ``start_run`` hands out."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loopml.core import names
from loopml.core.errors import IntegrityError, InvalidInputError, NotFoundError
from loopml.store.lineage import ArtifactRecord
from loopml.tracking import validation
from loopml.tracking.run_handle import RunHandle
from loopml.tracking.store import END_STATUSES as END_STATUSES
from loopml.tracking.store import FAILED as FAILED
from loopml.tracking.store import FINISHED as FINISHED
from loopml.tracking.store import RUNNING as RUNNING
from loopml.tracking.store import RunStore

if TYPE_CHECKING:
    from loopml.store.artifacts import ArtifactStore
    from loopml.store.workspace import Workspace
    from loopml.tracking.metric_writer import MetricWriter


class ActiveRun(RunHandle):
    """Log params, metrics, tags and artifacts; use as a context manager.

    An exception inside the ``with`` block marks the run failed, keeps everything logged
    so far, and propagates.
    """

    def __init__(
        self,
        store: RunStore,
        writer: MetricWriter,
        run_id: str,
        experiment: str,
        name: str,
        workspace: Workspace,
    ) -> None:
        self._store = store
        self._workspace = workspace
        super().__init__(writer, run_id, experiment, name)

    # params and tags ----------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, values: Mapping[str, Any]) -> None:
        """Params are write-once: logging a different value for a logged key is refused."""
        if not isinstance(values, Mapping):
            raise InvalidInputError("log_params takes a mapping of names to values")
        if self._ended:
            self._refuse_ended()
        rows = {
            validation.check_name(k, "param"): validation.param_text(k, v)
            for k, v in values.items()
        }
        if not rows:
            return
        self._store.add_params(self.id, rows)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise InvalidInputError("set_tags takes a mapping of names to values")
        rows = {
            validation.check_name(k, "tag"): validation.tag_text(k, v) for k, v in values.items()
        }
        if not rows:
            return
        self._store.set_tags(self.id, rows)

    # artifacts ----------------------------------------------------------------
    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> ArtifactRecord:
        """Store a file or folder in the artifact store as an output of this run."""
        if self._ended:
            self._refuse_ended()
        src = os.fspath(path)
        if not os.path.exists(src):
            raise NotFoundError(f"cannot log artifact: nothing at {src!r}")
        store = self._workspace.artifacts
        label = validation.check_artifact_name(name or os.path.basename(os.path.abspath(src)))
        if os.path.isdir(src):
            tree = store.put_tree(src)
            digest, size, kind = tree.digest, tree.size, "tree"
        else:
            blob = store.put_file(src)
            digest, size, kind = blob.digest, blob.size, "file"
        return self._record_output(digest, kind, size, label)

    def log_stored_artifact(self, digest: str, kind: str, name: str) -> ArtifactRecord:
        """Record a file (``kind="file"``) or folder (``"tree"``) that is already in the
        artifact store, such as one a client uploaded to the server, as an output of this
        run. It is checked first: the blob (and every file of a tree) present and intact,
        and a tree's paths plain relative paths, so a download cannot write outside its
        folder."""
        label = validation.check_artifact_name(name)
        store = self._workspace.artifacts
        if kind == "file":
            size = store.verify(digest, what=f"artifact {label!r}")
        elif kind == "tree":
            size = _checked_tree_size(store, digest, label)
        else:
            raise InvalidInputError(f"an artifact is a 'file' or a 'tree', not {kind!r}")
        return self._record_output(digest, kind, size, label)

    def _record_output(self, digest: str, kind: str, size: int, label: str) -> ArtifactRecord:
        lineage = self._workspace.lineage
        with self._workspace.write_engine.begin() as conn:
            record = lineage.add_artifact(digest, kind, size, name=label, conn=conn)
            lineage.link(self.id, record.id, "output", role=label, conn=conn)
        return record

    @property
    def workspace(self) -> Workspace:
        """The workspace this run is recorded in."""
        return self._workspace

    # lifecycle ----------------------------------------------------------------
    def _finish(self, status: str, error: str | None) -> None:
        self._writer.flush()
        self._store.end_run(self.id, status, error)


def _checked_tree_size(store: ArtifactStore, digest: str, label: str) -> int:
    what = f"artifact {label!r}"
    tree = store.get_tree(digest, what=what)
    seen: set[str] = set()
    for entry in tree.entries:
        names.check_relative_path(entry.path, f"{what}: file")
        if entry.path in seen:
            raise InvalidInputError(f"{what} lists the file {entry.path!r} twice")
        seen.add(entry.path)
        try:
            size = store.verify(entry.digest, what=f"{what}: file {entry.path!r}")
        except IntegrityError as exc:
            raise InvalidInputError(str(exc)) from None
        if size != entry.size:
            raise InvalidInputError(
                f"{what}: file {entry.path!r} is {size} bytes, not the {entry.size} its "
                "manifest says"
            )
    return tree.size
