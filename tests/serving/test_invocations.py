"""MLflow's scoring payloads on /invocations, with plain HTTP."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from loopml.demo.flights import FEATURES
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import NUMERIC, Data, expected


@pytest.mark.parametrize(
    "form", ["dataframe_split", "dataframe_records", "instances", "inputs", "csv"]
)
def test_payload_forms(server: ServerThread, shared_ws: Workspace, data: Data, form: str) -> None:
    rows = data.rows.slice(300, 25).select(FEATURES)
    if form == "dataframe_split":
        kwargs = {
            "json": {
                "dataframe_split": {"columns": rows.columns, "data": [list(r) for r in rows.rows()]}
            }
        }
    elif form in ("dataframe_records", "instances"):
        kwargs = {"json": {form: rows.to_dicts()}}
    elif form == "inputs":
        kwargs = {"json": {"inputs": rows.to_dict(as_series=False)}}
    else:
        buf = io.BytesIO()
        rows.write_csv(buf)
        kwargs = {"content": buf.getvalue()}
    headers = {"X-Request-ID": f"mlflow-{form}"}
    if form == "csv":
        headers["content-type"] = "text/csv"
    r = httpx.post(f"{server.url}/invocations", headers=headers, **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == f"mlflow-{form}"
    np.testing.assert_array_equal(r.json()["predictions"], expected(shared_ws, "delay:1", rows)[0])


def test_row_arrays_for_array_models(
    numeric_server: ServerThread, shared_ws: Workspace, data: Data
) -> None:
    matrix = data.rows.head(10).select(NUMERIC).fill_null(0).to_numpy().astype(float)
    r = httpx.post(f"{numeric_server.url}/invocations", json={"instances": matrix.tolist()})
    assert r.status_code == 200, r.text
    from loopml.registry.model_registry import Registry

    assert r.json()["predictions"] == Registry(shared_ws).load("numeric:1").predict(matrix).tolist()
    assert httpx.get(f"{numeric_server.url}/ping").status_code == 200
