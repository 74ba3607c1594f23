"""One HTTP connection to a team server, and its answers turned back into loopml errors.

The server answers an error as ``{"error": message, "type": class name}`` with the status
``error_codes`` gives that class; the client raises the same class (or, for a class it
does not know, the one its status stands for), so code behaves alike in both modes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import orjson

from loopml.core import errors
from loopml.core.errors import LoopmlError, StoreError

if TYPE_CHECKING:
    import httpx

API = "/api/v1"
TIMEOUT_S = 60.0

_BY_NAME: dict[str, type[LoopmlError]] = {
    cls.__name__: cls
    for cls in (
        errors.InvalidInputError,
        errors.NotFoundError,
        errors.ConflictError,
        errors.IntegrityError,
        errors.ConfigError,
        errors.StoreError,
    )
}
_BY_STATUS: dict[int, type[LoopmlError]] = {
    400: errors.InvalidInputError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.InvalidInputError,
    422: errors.InvalidInputError,
}


class RemoteAccessError(LoopmlError):
    """The server refused the token (401: none, unknown or revoked; 403: scope too small)."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"
    exit_code = 1


class Connection:
    """A pooled, thread-safe HTTP client for ``url`` sending ``token`` as a bearer token."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = TIMEOUT_S):
        import httpx

        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(base_url=self.url + API, headers=headers, timeout=timeout)
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()

    def __repr__(self) -> str:
        return f"Connection({self.url!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        content: bytes | IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The server's answer to a 2xx; raises the loopml error any other answer stands for."""
        import httpx

        body = content
        sent_headers = dict(headers or {})
        if json is not None:
            body = orjson.dumps(json)
            sent_headers["Content-Type"] = "application/json"
        try:
            response = self._client.request(
                method, path, content=body, params=params, headers=sent_headers
            )
        except httpx.TransportError as exc:
            raise StoreError(
                f"cannot reach the loopml server at {self.url}: {exc or type(exc).__name__}; "
                "is `loopml server` running there, and is LOOPML_URI right?"
            ) from None
        if response.status_code < 300:
            return response
        raise self.error_of(response)

    def download(self, path: str, write: Callable[[bytes], Any]) -> None:
        """Hand the body of a GET of ``path`` to ``write`` piece by piece, so memory stays
        flat whatever its size; raises the loopml error a non-2xx answer stands for."""
        import httpx

        try:
            with self._client.stream("GET", path) as response:
                if response.status_code >= 300:
                    response.read()
                    raise self.error_of(response)
                for chunk in response.iter_bytes():
                    write(chunk)
        except httpx.TransportError as exc:
            raise StoreError(
                f"cannot reach the loopml server at {self.url}: {exc or type(exc).__name__}; "
                "is `loopml server` running there, and is LOOPML_URI right?"
            ) from None

    def get_json(self, path: str, params: Any = None) -> Any:
        return orjson.loads(self.request("GET", path, params=params).content)

    def post_json(self, path: str, body: Any) -> Any:
        return orjson.loads(self.request("POST", path, json=body).content)

    def error_of(self, response: httpx.Response) -> LoopmlError:
        status = response.status_code
        try:
            body = orjson.loads(response.content)
            message, kind = str(body["error"]), str(body.get("type", ""))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message, kind = response.text[:500] or response.reason_phrase, ""
        where = f"the server at {self.url}"
        if status in (401, 403):
            hint = "" if status == 403 else "; set LOOPML_TOKEN to a token of this server"
            return RemoteAccessError(f"{where} refused the request: {message}{hint}")
        cls = _BY_NAME.get(kind) or _BY_STATUS.get(status)
        if cls is not None:
            return cls(message)
        return StoreError(f"{where} answered {status}: {message}")
