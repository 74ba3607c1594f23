"""Where an MLflow artifact URI's files are on this machine.

MLflow records a location per run (and per logged model): a local path, a ``file:`` URI,
``mlflow-artifacts:/...`` when a tracking server proxied the uploads, or an object store.
``--artifacts ROOT`` says where MLflow's artifact root is now (the store was moved, or it
is the server's ``--artifacts-destination``); paths are then looked up under it by their
``<experiment id>/...`` tail, which is how MLflow lays out every artifact root.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

PROXY_SCHEME = "mlflow-artifacts"


class Unreadable(Exception):
    """The files exist somewhere this importer cannot read; the message says why."""


def proxied_path(uri: str) -> str | None:
    """The path inside the server's artifact root of an ``mlflow-artifacts:`` URI."""
    parts = urlsplit(uri)
    if parts.scheme != PROXY_SCHEME:
        return None
    return unquote(parts.path).lstrip("/")


def local_folder(uri: str | None, experiment_id: str, root: Path | None) -> Path | None:
    """The folder holding ``uri``'s files, or None when nothing is there."""
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme == PROXY_SCHEME:
        if root is None:
            raise Unreadable(
                f"{uri} is stored by an MLflow server's artifact proxy; pass --artifacts with "
                "the server's --artifacts-destination folder, or import over http(s)://"
            )
        return _existing(root / (proxied_path(uri) or ""))
    if parts.scheme in ("", "file") or (len(parts.scheme) == 1 and uri[1:3] == ":\\"):
        path = Path(unquote(parts.path) if parts.scheme == "file" else uri)
        if root is not None:
            moved = _under_root(path, experiment_id, root)
            if moved is not None:
                return moved
        return _existing(path)
    raise Unreadable(
        f"{uri} is in {parts.scheme}:// storage, which the importer does not read; copy the "
        "files to a local folder and pass it as --artifacts"
    )


def _under_root(path: Path, experiment_id: str, root: Path) -> Path | None:
    parts = path.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == experiment_id:
            return _existing(root.joinpath(*parts[i:]))
    return None


def _existing(path: Path) -> Path | None:
    # Absent: MLflow creates a run's folder only when something is logged into it.
    return path if path.is_dir() else None
