"""The UI's static files: our own (``server/static``) and Plotly's bundle from the installed
``plotly`` package, served so that a browser fetches each once.

Pages link ``/static/NAME?v=HASH`` (:func:`url`); an answer to a URL carrying the current
hash may be cached for a year without asking again, and a new release changes the hash.
Every answer has an ETag, so a revalidation costs a 304. Bodies are gzipped once, in
memory, for clients that accept it: Plotly's 4.8 MB bundle travels as about 1.4 MB.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response

from loopml.core.errors import NotFoundError

router = APIRouter(include_in_schema=False)
PLOTLY = "plotly.min.js"
FOREVER = "public, max-age=31536000, immutable"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str

    @property
    def version(self) -> str:
        return self.etag.strip('"')[:16]


def _source(name: str) -> Traversable:
    if name == PLOTLY:
        return resources.files("plotly") / "package_data" / PLOTLY
    # Only plain file names of our own folder: no paths, no hidden files.
    if "/" in name or "\\" in name or name.startswith("."):
        raise NotFoundError(f"no static file {name!r}")
    return resources.files("loopml.server") / "static" / name


@functools.cache
def load(name: str) -> Asset:
    source = _source(name)
    media_type = next((t for ext, t in MEDIA_TYPES.items() if name.endswith(ext)), None)
    if media_type is None or not source.is_file():
        raise NotFoundError(f"no static file {name!r}")
    body = source.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, gzip.compress(body, compresslevel=6, mtime=0), etag, media_type)


def url(name: str) -> str:
    """The address a page links ``name`` by: it changes whenever the file does."""
    return f"/static/{name}?v={load(name).version}"


@router.get("/static/{name}")
def static_file(
    name: str,
    v: Annotated[str | None, Query(max_length=64)] = None,
    if_none_match: Annotated[str | None, Header(max_length=1000)] = None,
    accept_encoding: Annotated[str | None, Header(max_length=1000)] = None,
) -> Response:
    asset = load(name)
    headers = {
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        # A versioned link names these exact bytes; an unversioned one must revalidate.
        "Cache-Control": FOREVER if v == asset.version else "no-cache",
    }
    if if_none_match is not None and asset.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    if accept_encoding is not None and "gzip" in accept_encoding.lower():
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
