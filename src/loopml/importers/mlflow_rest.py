"""Reading a live MLflow tracking server over its REST API (``/api/2.0/mlflow/...``).

The same endpoints MLflow's own client calls: experiments and runs by search, full metric
histories by ``get-history``, registered models and versions by search, and files through
the server's artifact proxy (``/api/2.0/mlflow-artifacts/...``) when the server stores them.
Files the server records at a local path are read from that path (or under ``--artifacts``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx

from loopml.importers.mlflow_files import local_folder, proxied_path
from loopml.importers.mlflow_records import (
    Inventory,
    MlflowSourceError,
    Point,
    RunData,
    SourceExperiment,
    SourceModel,
    SourceRun,
    SourceVersion,
)

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
PAGE = 1000
HISTORY_PAGE = 25_000
TIMEOUT_S = 60.0


def _pairs(items: Any) -> dict[str, str]:
    return {str(i["key"]): str(i.get("value", "")) for i in items or []}


def _int(value: Any) -> int | None:
    # Protobuf's JSON writes int64 fields as strings.
    return None if value is None or value == "" else int(value)


class RestSource:
    def __init__(
        self, url: str, artifacts: Path | None = None, *, timeout: float = TIMEOUT_S
    ) -> None:
        self.base = url.rstrip("/")
        self.description = self.base
        self.root = artifacts
        self.http = httpx.Client(base_url=self.base, timeout=timeout, follow_redirects=False)
        try:
            self._call("POST", "/experiments/search", json={"max_results": 1})
        except BaseException:
            self.http.close()
            raise

    # transport ---------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise MlflowSourceError(f"{self.base} did not answer {path} in time") from None
        except httpx.HTTPError as exc:
            raise MlflowSourceError(
                f"cannot reach the MLflow server at {self.base}: {exc}"
            ) from None

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = self._request(method, API + path, **kwargs)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code != 200 or not isinstance(body, dict):
            detail = body.get("message") if isinstance(body, dict) else None
            raise MlflowSourceError(
                f"{self.base} is not an MLflow tracking server loopml can read: "
                f"{method} {API}{path} answered HTTP {resp.status_code}"
                + (f" ({detail})" if detail else "")
            )
        return body

    def _pages(self, method: str, path: str, key: str, body: dict[str, Any]) -> Iterator[Any]:
        token: str | None = None
        while True:
            page = dict(body, page_token=token) if token else body
            if method == "GET":
                answer = self._call(method, path, params=page)
            else:
                answer = self._call(method, path, json=page)
            yield from answer.get(key, [])
            token = answer.get("next_page_token")
            if not token:
                return

    # what the store holds ----------------------------------------------------------
    @contextlib.contextmanager
    def _shape(self, what: str) -> Iterator[None]:
        """An answer that is JSON but not MLflow's shape is the server's fault, said once."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MlflowSourceError(
                f"{self.base} answered {what} in a shape that is not MLflow's "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from None

    def inventory(self) -> Inventory:
        with self._shape("experiments/search or runs/search"):
            return self._inventory()

    def run_data(self, run: SourceRun) -> RunData:
        with self._shape(f"metrics/get-history of run {run.id}"):
            return self._run_data(run)

    def models(self) -> list[SourceModel]:
        with self._shape("registered-models/search or model-versions/search"):
            return self._models()

    def _inventory(self) -> Inventory:
        experiments = [
            SourceExperiment(str(e["experiment_id"]), str(e["name"]))
            for e in self._pages(
                "POST",
                "/experiments/search",
                "experiments",
                {"max_results": PAGE, "view_type": "ACTIVE_ONLY"},
            )
        ]
        runs: list[SourceRun] = []
        deleted = 0
        self._listed: dict[str, tuple[dict[str, str], dict[str, str], list[str]]] = {}
        if experiments:
            ids = [e.id for e in experiments]
            for r in self._pages(
                "POST",
                "/runs/search",
                "runs",
                {"experiment_ids": ids, "max_results": PAGE, "run_view_type": "ACTIVE_ONLY"},
            ):
                info, data = r["info"], r.get("data", {})
                run_id = str(info.get("run_id") or info["run_uuid"])
                runs.append(
                    SourceRun(
                        run_id,
                        str(info["experiment_id"]),
                        info.get("run_name"),
                        str(info.get("status", "")),
                        _int(info.get("start_time")),
                        _int(info.get("end_time")),
                        info.get("artifact_uri"),
                    )
                )
                keys = sorted({str(m["key"]) for m in data.get("metrics", [])})
                self._listed[run_id] = (_pairs(data.get("params")), _pairs(data.get("tags")), keys)
            deleted = sum(
                1
                for _ in self._pages(
                    "POST",
                    "/runs/search",
                    "runs",
                    {"experiment_ids": ids, "max_results": PAGE, "run_view_type": "DELETED_ONLY"},
                )
            )
        runs.sort(key=lambda r: (r.start_ms or 0, r.id))
        return Inventory(experiments, runs, deleted)

    def _run_data(self, run: SourceRun) -> RunData:
        params, tags, keys = self._listed[run.id]
        metrics: dict[str, list[Point]] = {}
        for key in keys:
            points = [
                Point(
                    int(_int(m.get("step")) or 0),
                    int(_int(m.get("timestamp")) or 0),
                    float(m["value"]),
                )
                for m in self._pages(
                    "GET",
                    "/metrics/get-history",
                    "metrics",
                    {"run_id": run.id, "metric_key": key, "max_results": HISTORY_PAGE},
                )
            ]
            metrics[key] = sorted(points, key=lambda p: (p.step, p.timestamp_ms))
        return RunData(params, tags, metrics)

    def _models(self) -> list[SourceModel]:
        resp = self._request("GET", API + "/registered-models/search", params={"max_results": 1})
        if resp.status_code in (404, 501):
            return []  # a server without a model registry
        found = []
        for m in self._pages(
            "GET", "/registered-models/search", "registered_models", {"max_results": PAGE}
        ):
            name = str(m["name"])
            versions = [
                SourceVersion(
                    name,
                    int(v["version"]),
                    v.get("source"),
                    v.get("run_id") or None,
                    v.get("storage_location") or self._logged_model_uri(v.get("source")),
                    v.get("description", ""),
                    _pairs(v.get("tags")),
                )
                for v in self._pages(
                    "GET",
                    "/model-versions/search",
                    "model_versions",
                    {"filter": f"name='{name}'", "max_results": PAGE},
                )
            ]
            found.append(
                SourceModel(
                    name,
                    m.get("description", ""),
                    _pairs(m.get("tags")),
                    {str(a["alias"]): int(a["version"]) for a in m.get("aliases", [])},
                    sorted(versions, key=lambda v: v.version),
                )
            )
        return found

    def _logged_model_uri(self, source: object) -> str | None:
        """Where an MLflow 3 logged model (``models:/m-...``) keeps its files."""
        if not isinstance(source, str) or not source.startswith("models:/m-"):
            return None
        model_id = source[len("models:/") :].split("/", 1)[0]
        resp = self._request("GET", f"{API}/logged-models/{quote(model_id)}")
        try:
            info = resp.json()["model"]["info"]
        except (ValueError, KeyError, TypeError):
            return None  # no such model, or a server without logged models
        uri = info.get("artifact_uri") if isinstance(info, dict) else None
        return uri if isinstance(uri, str) else None

    # files ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def files(self, uri: str | None, experiment_id: str) -> Iterator[Path | None]:
        remote = proxied_path(uri) if uri else None
        if remote is None or self.root is not None:
            yield local_folder(uri, experiment_id, self.root)
            return
        with tempfile.TemporaryDirectory(prefix="loopml-import-") as tmp:
            count = self._download(remote, Path(tmp))
            yield Path(tmp) if count else None

    def _download(self, remote: str, into: Path) -> int:
        """Copy every file under ``remote`` (a path in the server's artifact root)."""
        resp = self._request("GET", ARTIFACTS, params={"path": remote})
        if resp.status_code == 404:
            return 0
        try:
            listing = resp.json()
        except ValueError:
            listing = None
        if resp.status_code != 200 or not isinstance(listing, dict):
            raise MlflowSourceError(
                f"listing artifacts {remote!r} on {self.base} answered HTTP {resp.status_code}"
            )
        count = 0
        for entry in listing.get("files", []):
            name = PurePosixPath(str(entry["path"])).name
            if name in ("", ".", ".."):
                continue
            child = f"{remote}/{name}"
            if entry.get("is_dir"):
                count += self._download(child, into / name)
                continue
            into.mkdir(parents=True, exist_ok=True)
            self._fetch(child, into / name)
            count += 1
        return count

    def _fetch(self, remote: str, target: Path) -> None:
        """Stream one file to ``target``: a large artifact never sits in memory."""
        try:
            with self.http.stream("GET", f"{ARTIFACTS}/{quote(remote)}") as got:
                if got.status_code != 200:
                    raise MlflowSourceError(
                        f"downloading artifact {remote!r} from {self.base} answered HTTP "
                        f"{got.status_code}"
                    )
                with target.open("wb") as f:
                    for chunk in got.iter_bytes():
                        f.write(chunk)
        except httpx.HTTPError as exc:
            raise MlflowSourceError(f"downloading artifact {remote!r} failed: {exc}") from None

    def close(self) -> None:
        self.http.close()
