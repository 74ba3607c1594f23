"""Moving content-addressed trees between this machine and a team server.

Both sides name every file by its BLAKE3 digest, so an upload sends only what the server
lacks and a download only what the local cache lacks; every byte is hashed on arrival
(the server refuses a mismatch; here the cache's ``put_bytes`` digest must equal the one
asked for), and the tree's manifest digest covers the list of files itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote

from loopml.api.remote.connection import Connection
from loopml.core import hashing
from loopml.core.errors import IntegrityError, InvalidInputError
from loopml.store.artifacts import ArtifactStore, Tree, TreeEntry


def cache_store() -> ArtifactStore:
    """The local, content-addressed cache of what was downloaded from (or saved for) a
    server; shared by every server, since a digest names the same bytes everywhere."""
    return ArtifactStore(os.path.join(tempfile.gettempdir(), "loopml-remote-cache"))


def _blob(digest: str) -> str:
    return f"/blobs/{quote(digest, safe='')}"


def upload_tree(connection: Connection, store: ArtifactStore, digest: str) -> Tree:
    """Send the tree ``digest`` (its files, then its manifest) from ``store`` to the server."""
    tree = store.get_tree(digest)
    # The manifest last: a tree whose manifest is stored has every file stored.
    upload_blobs(connection, store, [*dict.fromkeys(e.digest for e in tree.entries), digest])
    return tree


def upload_path(connection: Connection, path: str) -> tuple[str, str, int]:
    """Send a file or folder to the server, streamed from where it is (only a folder's
    manifest is written to the cache): (digest, ``"file"`` or ``"tree"``, size)."""
    if os.path.isdir(path):
        base = Path(path)
        files = sorted(p for p in base.rglob("*") if p.is_file())
        entries, wanted = [], []
        for file in files:
            digest, size = hashing.digest_file(os.fspath(file))
            entries.append(TreeEntry(file.relative_to(base).as_posix(), digest, size))
            wanted.append((digest, os.fspath(file)))
        store = cache_store()
        tree = store.put_manifest(entries)
        # The manifest last: a tree whose manifest is stored has every file stored.
        upload_files(connection, [*wanted, (tree.digest, store.local_path(tree.digest))])
        return tree.digest, "tree", tree.size
    digest, size = hashing.digest_file(path)
    upload_files(connection, [(digest, path)])
    return digest, "file", size


def upload_blobs(connection: Connection, store: ArtifactStore, wanted: list[str]) -> None:
    """Send the blobs ``wanted`` that the server lacks, in order, from ``store`` (local)."""
    upload_files(connection, [(d, store.local_path(d)) for d in wanted])


def upload_files(connection: Connection, wanted: list[tuple[str, str]]) -> None:
    """Send the files of ``wanted`` ((digest, local path) pairs) whose digest the server
    lacks, in order; each body streams from its file, so memory stays flat, and the
    server hashes it and refuses bytes that changed since they were hashed here."""
    digests = [d for d, _ in wanted]
    answer = connection.post_json("/missing-blobs", {"digests": digests})
    missing, cap = set(answer["missing"]), answer.get("max_bytes")
    todo = [(d, p) for d, p in dict(wanted).items() if d in missing]
    for _, path in todo:
        size = os.path.getsize(path)
        if cap is not None and size > cap:
            # Refused before anything is sent: the server would answer 413 anyway.
            raise InvalidInputError(
                f"{path} is {size:,} bytes; the server at {connection.url} takes blobs of at "
                f"most {cap:,} bytes (its LOOPML_MAX_UPLOAD_BYTES)"
            )
    for digest, path in todo:
        with open(path, "rb") as body:
            connection.request(
                "PUT",
                _blob(digest),
                content=body,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(os.fstat(body.fileno()).st_size),
                },
            )


def download_tree(connection: Connection, store: ArtifactStore, digest: str) -> Tree:
    """Fetch the tree ``digest`` into ``store`` (what it lacks), verified on arrival; a
    cached copy that no longer matches its digest is fetched again."""
    ensure_blob(connection, store, digest)
    tree = store.get_tree(digest)
    for entry in tree.entries:
        ensure_blob(connection, store, entry.digest)
    return tree


def ensure_blob(connection: Connection, store: ArtifactStore, digest: str) -> None:
    if store.exists(digest):
        try:
            store.verify(digest)
            return
        except IntegrityError:
            store.delete(digest)
    _fetch(connection, store, digest)


def _fetch(connection: Connection, store: ArtifactStore, digest: str) -> None:
    # Streamed into the cache while hashed: nothing is kept unless it matches.
    upload = store.receive(digest)
    try:
        connection.download(_blob(digest), upload.write)
        try:
            upload.commit()
        except InvalidInputError as exc:
            raise IntegrityError(f"the server sent other bytes than {digest}: {exc}") from None
    finally:
        upload.abort()
