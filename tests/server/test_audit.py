"""The audit of writes (``api_writes``): queued without I/O, written in batches by a
background thread, and every queued row written when the server stops cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from loopml.server.audit import AuditLog
from loopml.store.metadata.tables import api_writes
from loopml.store.workspace import Workspace
from tests.server.conftest import start_server, stop


def _rows(ws: Workspace) -> list[tuple[str | None, str, str, int]]:
    with ws.engine.connect() as conn:
        q = select(
            api_writes.c.token_name, api_writes.c.method, api_writes.c.path, api_writes.c.status
        )
        return [tuple(r) for r in conn.execute(q.order_by(api_writes.c.id)).all()]


def test_rows_are_written_in_the_background_and_all_at_close(tmp_path: Path) -> None:
    ws = Workspace(f"sqlite:///{tmp_path / 'db.sqlite'}", str(tmp_path / "artifacts"))
    audit = AuditLog(ws, interval=0.05)
    try:
        audit.record("ci", "POST", "/api/v1/runs", 200)
        deadline = time.monotonic() + 30
        while not _rows(ws) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _rows(ws) == [("ci", "POST", "/api/v1/runs", 200)]
        # A long interval: nothing is written by the thread before close, close writes all.
        slow = AuditLog(ws, interval=3600)
        for i in range(250):
            slow.record(None, "POST", f"/api/2.0/mlflow/runs/log-metric/{i}", 400 + i % 2)
        assert slow.pending == 250
        slow.close()
        slow.close()  # twice is fine
        assert slow.pending == 0
        rows = _rows(ws)
        assert len(rows) == 251 and rows[-1] == (
            None,
            "POST",
            "/api/2.0/mlflow/runs/log-metric/249",
            401,
        )
        assert all(len(path) <= 1000 for _, _, path, _ in rows)
    finally:
        audit.close()
        ws.close()


@pytest.mark.slow
def test_a_clean_stop_keeps_the_audit_of_every_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc, url = start_server(home, "server")
    try:
        api = f"{url}/api/2.0/mlflow"
        run_id = httpx.post(f"{api}/runs/create", json={}).json()["run"]["info"]["run_id"]
        for i in range(40):
            r = httpx.post(
                f"{api}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": i}
            )
            assert r.status_code == 200, r.text
        refused = httpx.post(f"{api}/runs/log-metric", json={"run_id": run_id, "key": "m"})
        assert refused.status_code == 400
        assert httpx.get(f"{api}/runs/get", params={"run_id": run_id}).status_code == 200
    finally:
        stop(proc)
    ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    try:
        rows = _rows(ws)
    finally:
        ws.close()
    # Through MLflow's hot endpoints too: writes only (the GET is not recorded), refused
    # ones too, in order, all of them once the server has stopped.
    assert [(m, p.rsplit("/", 1)[-1], s) for _, m, p, s in rows] == [
        ("POST", "create", 200),
        *[("POST", "log-metric", 200)] * 40,
        ("POST", "log-metric", 400),
    ]
