"""``loopml import mlflow --from http://...``: the importer reads a live server over MLflow's
REST API, the same endpoints MLflow's client calls.

The server here is a ``loopml server``'s MLflow API (``mlflow server`` does not run from
mlflow-skinny, which is what this environment installs): MLflow's own client logs runs,
metric histories and artifacts into it through the artifact proxy, then the importer copies
them into a second workspace over HTTP, where they must arrive exactly.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests import needs
from tests.importers.cli_run import assert_refused, cli, counts
from tests.server.conftest import start_server, stop

pytestmark = pytest.mark.slow

CLIENT = """
import os, mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
T0 = 1_700_000_000_000
client = MlflowClient()
exp = client.create_experiment("remote")
for n in range(2):
    run = client.create_run(exp, run_name=f"r{n}", start_time=T0 + n)
    rid = run.info.run_id
    client.log_param(rid, "n", n)
    client.set_tag(rid, "origin", "http")
    client.log_batch(rid, metrics=[Metric("loss", 1 / (s + 1), T0 + 10 * s, s) for s in range(300)])
    open("notes.txt", "w").write(f"notes of run {n}")
    client.log_artifact(rid, "notes.txt", artifact_path="docs")
    client.set_terminated(rid, end_time=T0 + 5_000)
    print("RUN_ID=" + rid)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[str]]]:
    needs.module("mlflow", "pip install mlflow-skinny (the test extra has it)")
    home = tmp_path_factory.mktemp("mlflow-server") / "home"
    proc, url = start_server(home)
    try:
        work = tmp_path_factory.mktemp("client")
        script = work / "log.py"
        script.write_text(textwrap.dedent(CLIENT))
        done = subprocess.run(
            [sys.executable, str(script)],
            env={**os.environ, "MLFLOW_TRACKING_URI": url},
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        yield (
            url,
            home,
            [w[len("RUN_ID=") :] for w in done.stdout.split() if w.startswith("RUN_ID=")],
        )
    finally:
        stop(proc)


def test_import_over_http_copies_runs_histories_and_artifacts(
    server: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    url, source_home, run_ids = server
    home = tmp_path / "home"
    done = cli(home, "import", "mlflow", "--from", url)
    assert done.returncode == 0, done.stderr
    assert "2 copied" in done.stdout
    src_ws = Workspace(f"sqlite:///{source_home / 'loopml.db'}", str(source_home / "artifacts"))
    dst_ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    src, dst = Tracker(src_ws), Tracker(dst_ws)
    try:
        copied = {r.id: r for r in dst.search_runs(limit=100)}
        assert set(copied) == set(run_ids)
        for run_id in run_ids:
            a, b = src.get_run(run_id), copied[run_id]
            assert (b.name, b.experiment, b.status) == (a.name, "remote", "finished")
            # MLflow's API speaks milliseconds: the copy has the source's times to the ms.
            assert b.start_time == round(a.start_time * 1000) / 1000
            assert a.end_time is not None and b.end_time == round(a.end_time * 1000) / 1000
            assert b.params == a.params
            assert a.tags.items() <= b.tags.items()
            ha, hb = src.metric_history(run_id, "loss"), dst.metric_history(run_id, "loss")
            assert len(hb) == 300
            assert hb.steps.tolist() == ha.steps.tolist()
            assert hb.timestamps.tolist() == ha.timestamps.tolist()
            assert hb.values.tolist() == ha.values.tolist()
            files = {
                role: dst_ws.artifacts.get_bytes(art.digest)
                for role, art in dst_ws.lineage.artifacts_of(run_id, "output")
            }
            n = a.params["n"]
            assert files == {"docs/notes.txt": f"notes of run {n}".encode()}
    finally:
        src.close()
        dst.close()
        src_ws.close()
        dst_ws.close()
    before = counts(home)
    again = cli(home, "import", "mlflow", "--from", url)
    assert again.returncode == 0 and "0 copied, 2 already here" in again.stdout
    assert counts(home) == before


class _NotMlflow(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>nothing here</html>")

    def log_message(self, *args: object) -> None:
        pass


class _WrongShape(_NotMlflow):
    """Answers experiments/search as MLflow does, and runs/search with runs of no info."""

    def do_POST(self) -> None:
        if self.path.endswith("/experiments/search"):
            body = b'{"experiments": [{"experiment_id": "1", "name": "e"}]}'
        else:
            body = b'{"runs": [{"data": {}}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize(
    "handler, words",
    [
        (_NotMlflow, ("not an MLflow tracking server", "404")),
        (_WrongShape, ("runs/search", "not MLflow's")),
    ],
)
def test_a_server_that_is_not_mlflow(
    tmp_path: Path, handler: type[http.server.BaseHTTPRequestHandler], words: tuple[str, ...]
) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        done = cli(tmp_path / "home", "import", "mlflow", "--from", url)
        assert_refused(tmp_path / "home", done, *words)
    finally:
        httpd.shutdown()
        httpd.server_close()
