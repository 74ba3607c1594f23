"""Opening an MLflow store by the URL the user gives: a database URL or an http(s) server."""

from __future__ import annotations

from pathlib import Path

from loopml.importers.mlflow_records import MlflowSourceError, Source


def open_source(url: str, artifacts: Path | None = None) -> Source:
    if not isinstance(url, str) or not url.strip():
        raise MlflowSourceError(
            "--from needs an MLflow store: sqlite:///mlflow.db or http://host:port"
        )
    if artifacts is not None and not artifacts.is_dir():
        raise MlflowSourceError(f"--artifacts {artifacts}: no such folder")
    if url.startswith(("http://", "https://")):
        from loopml.importers.mlflow_rest import RestSource

        return RestSource(url, artifacts)
    from loopml.importers.mlflow_sqlite import SqlSource

    return SqlSource(url, artifacts)
