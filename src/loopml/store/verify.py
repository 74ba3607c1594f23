"""Re-hashing stored blobs: every blob in the artifact store, named by what records it.

A domain can check its own blobs first under more precise names (the catalog names a
dataset's version and file) through the same ``Verifier``; ``verify_store`` then checks
every blob not yet seen, named from the ``artifacts`` table or by digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from loopml.core.errors import LoopmlError
from loopml.core.progress import Progress, silent
from loopml.store.metadata.tables import artifacts
from loopml.store.workspace import Workspace


@dataclass(frozen=True)
class VerifyReport:
    versions: int  # dataset versions walked (0 when only the store was walked)
    blobs: int
    bytes: int
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


class Verifier:
    """Re-hashes each digest once and collects what failed, worded for the user."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.checked: dict[str, bool] = {}
        self.problems: list[str] = []
        self.bytes = 0

    def check(self, digest: str, what: str) -> bool:
        """Whether the blob is intact. An intact blob is not read again; a bad one is
        reported under each name that holds it (a part shared by several versions)."""
        if self.checked.get(digest):
            return True
        try:
            self.bytes += self.ws.artifacts.verify(digest, what=what)
            self.checked[digest] = True
        except LoopmlError as exc:
            self.checked[digest] = False
            self.problems.append(str(exc))
        return self.checked[digest]

    def report(self, versions: int = 0) -> VerifyReport:
        return VerifyReport(versions, len(self.checked), self.bytes, tuple(self.problems))


def verify_store(
    ws: Workspace, verifier: Verifier | None = None, *, progress: Progress = silent
) -> VerifyReport:
    """Re-hash every blob in the artifact store that ``verifier`` has not checked yet;
    ``progress`` hears ("re-hashing other blobs", done, total)."""
    verifier = verifier or Verifier(ws)
    names = artifact_names(ws)
    todo = [d for d in ws.artifacts.iter_digests() if d not in verifier.checked]
    stage = "re-hashing other blobs"
    progress(stage, 0, len(todo))
    for i, digest in enumerate(todo, 1):
        verifier.check(digest, names.get(digest, f"blob {digest}"))
        progress(stage, i, len(todo))
    return verifier.report()


def artifact_names(ws: Workspace) -> dict[str, str]:
    """A readable name for each recorded digest: its artifact kind and name."""
    with ws.engine.connect() as conn:
        rows = conn.execute(select(artifacts.c.digest, artifacts.c.kind, artifacts.c.name)).all()
    return {r.digest: f"{r.kind} {r.name or r.digest}" for r in rows}
