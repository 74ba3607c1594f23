"""Lineage of any artifact or execution, and artifacts themselves (verified downloads)."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.server.routes.common import ERRORS
from loopml.server.state import ServerState, state
from loopml.server.wire import ArtifactOut, LineageOut, TreeFileOut
from loopml.store.lineage import ArtifactRecord

router = APIRouter(tags=["lineage"], responses=ERRORS)
St = Annotated[ServerState, Depends(state)]
TREE_KINDS = frozenset({"tree", "dataset"})


@router.get("/lineage/{node_id}", response_model=LineageOut, summary="Upstream or downstream")
def lineage(
    s: St,
    node_id: str,
    direction: Literal["upstream", "downstream"] = "upstream",
    max_depth: Annotated[int, Query(ge=1, le=100)] = 50,
) -> LineageOut:
    """What produced ``node_id`` (upstream) or what used it (downstream)."""
    return LineageOut.of(s.workspace.lineage.graph(node_id, direction, max_depth), direction)


@router.get("/artifacts/{artifact_id}", response_model=ArtifactOut)
def artifact(s: St, artifact_id: str) -> ArtifactOut:
    return ArtifactOut.of(s.workspace.lineage.get_artifact(artifact_id))


def _tree(s: ServerState, record: ArtifactRecord) -> list[TreeFileOut]:
    if record.kind not in TREE_KINDS:
        raise InvalidInputError(f"artifact {record.id} is a single {record.kind}, not a folder")
    tree = s.workspace.artifacts.get_tree(record.digest, what=record.name or record.id)
    return [TreeFileOut(path=e.path, digest=e.digest, size=e.size) for e in tree.entries]


@router.get("/artifacts/{artifact_id}/files", response_model=list[TreeFileOut])
def artifact_files(s: St, artifact_id: str) -> list[TreeFileOut]:
    """The files of a folder artifact (a logged folder or a dataset version)."""
    return _tree(s, s.workspace.lineage.get_artifact(artifact_id))


@router.get(
    "/artifacts/{artifact_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download(
    s: St,
    artifact_id: str,
    path: Annotated[str | None, Query(max_length=1000, description="a file of a folder")] = None,
) -> FileResponse:
    """The artifact's bytes (a file of it for folders), verified against the digest first."""
    record = s.workspace.lineage.get_artifact(artifact_id)
    if record.kind in TREE_KINDS:
        if path is None:
            raise InvalidInputError(
                f"artifact {artifact_id} is a folder: pass ?path= with one of its files "
                f"(listed at /api/v1/artifacts/{artifact_id}/files)"
            )
        entry = next((e for e in _tree(s, record) if e.path == path), None)
        if entry is None:
            raise NotFoundError(f"artifact {artifact_id} has no file {path!r}")
        digest, filename = entry.digest, os.path.basename(entry.path)
    else:
        if path is not None:
            raise InvalidInputError(f"artifact {artifact_id} is a single file: drop ?path=")
        digest, filename = record.digest, record.name or artifact_id
    what = f"{record.name or artifact_id}{'/' + path if path else ''}"
    local = s.workspace.artifacts.local_path(digest, what=what)
    return FileResponse(local, filename=filename, media_type="application/octet-stream")
