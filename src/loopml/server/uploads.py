"""Request bodies streamed into the artifact store: what every upload endpoint shares.

A body goes to a temp file while it is hashed (``ArtifactStore.receive``), so memory stays
flat whatever its size, and is stored only once complete (and matching the digest the
client named, where it named one). A body over the server's cap, a client that leaves
halfway, or any failure leaves nothing behind: no object, no temp file.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import Request
from starlette.requests import ClientDisconnect

from loopml.core.errors import InvalidInputError
from loopml.store.artifacts import ArtifactStore, Blob

# Pieces of an upload are gathered to this size before a worker thread writes and hashes
# them: fewer thread hops than one per network read, and little memory per upload.
WRITE_BYTES = 1024 * 1024


class BlobTooLargeError(InvalidInputError):
    """An upload larger than the server accepts."""

    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


def too_large(cap: int) -> BlobTooLargeError:
    return BlobTooLargeError(
        f"an upload is at most {cap:,} bytes on this server (LOOPML_MAX_UPLOAD_BYTES); "
        "nothing was stored"
    )


async def store_body(
    request: Request, store: ArtifactStore, cap: int, digest: str | None = None
) -> Blob:
    """The request's body, stored in ``store`` (under ``digest`` only if it hashes to it;
    with no ``digest``, under the one it hashes to). A declared or actual size over
    ``cap`` is refused (413) before or as soon as it is passed."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise too_large(cap)
    upload = await anyio.to_thread.run_sync(store.receive, digest)
    try:
        pending = bytearray()
        async for chunk in request.stream():
            if upload.size + len(pending) + len(chunk) > cap:
                raise too_large(cap)
            pending += chunk
            if len(pending) >= WRITE_BYTES:
                await anyio.to_thread.run_sync(upload.write, bytes(pending))
                pending.clear()
        await anyio.to_thread.run_sync(upload.write, bytes(pending))
        return await anyio.to_thread.run_sync(upload.commit)
    except ClientDisconnect:
        # No one is left to answer; the write log records the refusal, and no traceback.
        raise InvalidInputError(
            "the client disconnected before the whole body arrived; nothing was stored"
        ) from None
    finally:
        upload.abort()
