"""The prediction log and feedback: written asynchronously, complete after shutdown."""

from __future__ import annotations

import httpx
import numpy as np
import pyarrow as pa

from loopml.demo.flights import FEATURES
from loopml.serving.log_reader import read_feedback, read_predictions
from loopml.serving.options import ServeOptions
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import Data, expected, json_inputs


def test_every_prediction_is_logged_and_feedback_joins(fresh_ws: Workspace, data: Data) -> None:
    options = ServeOptions(
        "delay@champion", port=0, deployment="delay-prod", log_flush_interval=0.2
    )
    sent: dict[str, int] = {}
    with ServerThread(fresh_ws, options) as server, httpx.Client(base_url=server.url) as http:
        for i in range(20):
            rows = data.rows.slice(i * 4, 1 + i % 4)
            r = http.post("/v2/models/delay/infer", json={"inputs": json_inputs(rows)})
            sent[r.json()["id"]] = rows.height
        records = data.rows.head(3).select(FEATURES).to_dicts()
        r = http.post("/invocations", json={"dataframe_records": records})
        assert r.status_code == 200, r.text
        sent[r.headers["x-request-id"]] = 3
        labels = [{"request_id": rid, "row": 0, "label": i % 2} for i, rid in enumerate(sent)]
        stored = http.post("/v2/feedback", json={"labels": labels})
        assert stored.status_code == 200 and stored.json()["stored"] == len(sent)
    log = read_predictions(fresh_ws, "delay-prod")
    assert log is not None
    per_request = log.group_by("request_id").aggregate([("row", "count")]).to_pylist()
    assert {r["request_id"]: r["row_count"] for r in per_request} == sent
    assert set(log.column("model_version").to_pylist()) == {1}
    assert set(log.column("role").to_pylist()) == {"primary"}
    assert log.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert log.schema.field("inputs").type.get_field_index("carrier") >= 0
    first = log.filter(pa.compute.equal(log.column("request_id"), next(iter(sent))))
    inputs = first.column("inputs").combine_chunks().flatten()
    frame = pa.Table.from_arrays(inputs, names=[f.name for f in first.schema.field("inputs").type])
    local_labels, local_proba = expected(fresh_ws, "delay:1", frame)
    np.testing.assert_array_equal(first.column("prediction").to_numpy(), local_labels)
    np.testing.assert_allclose(np.array(first.column("proba").to_pylist()), local_proba)
    assert min(log.column("latency_ms").to_pylist()) > 0
    feedback = read_feedback(fresh_ws, "delay-prod")
    assert feedback is not None and feedback.num_rows == len(sent)
    joined = feedback.join(
        log.select(["request_id", "row", "prediction"]), keys=["request_id", "row"]
    )
    assert joined.num_rows == len(sent)
