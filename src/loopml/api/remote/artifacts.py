"""Moving content-addressed trees between this machine and a team server.

Both sides name every file by its BLAKE3 digest, so an upload sends only what the server
lacks and a download only what the local cache lacks; every byte is hashed on arrival
(the server refuses a mismatch; here the cache's ``put_bytes`` digest must equal the one
asked for), and the tree's manifest digest covers the list of files itself.
"""

from __future__ import annotations

import os
import tempfile
from urllib.parse import quote

from loopml.api.remote.connection import Connection
from loopml.core.errors import IntegrityError
from loopml.store.artifacts import ArtifactStore, Tree


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


def upload_blobs(connection: Connection, store: ArtifactStore, wanted: list[str]) -> None:
    """Send the blobs ``wanted`` that the server lacks, in order."""
    missing = set(connection.post_json("/missing-blobs", {"digests": wanted})["missing"])
    for d in (w for w in wanted if w in missing):
        connection.request(
            "PUT",
            _blob(d),
            content=store.get_bytes(d),
            headers={"Content-Type": "application/octet-stream"},
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
    data = connection.request("GET", _blob(digest)).content
    got = store.put_bytes(data).digest
    if got != digest:
        store.delete(got)
        raise IntegrityError(
            f"the server sent bytes hashing to {got} for {digest}; nothing was kept"
        )
