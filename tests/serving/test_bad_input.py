"""Malformed and hostile payloads: always a 4xx naming the problem, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from loopml.demo.flights import FEATURES
from loopml.serving.server import ServerThread
from tests.serving.conftest import Data, json_inputs

INFER = "/v2/models/delay/infer"


def _inputs(data: Data, n: int = 2) -> list[dict[str, Any]]:
    return json_inputs(data.rows.head(n))


def _replace(inputs: list[dict[str, Any]], name: str, **changes: Any) -> list[dict[str, Any]]:
    return [{**t, **changes} if t["name"] == name else t for t in inputs]


def cases(data: Data) -> list[tuple[str, bytes | dict[str, Any], int, str]]:
    """(id, body, status, a fragment the error must contain)."""
    ok = _inputs(data)
    return [
        ("empty-body", b"", 400, "empty"),
        ("not-json", b"{'inputs': []}", 400, "not valid JSON"),
        ("truncated-json", b'{"inputs": [', 400, "not valid JSON"),
        ("not-utf8", b'{"inputs": "\xff\xfe"}', 400, "not valid JSON"),
        ("deep-nesting", b"[" * 200_000 + b"]" * 200_000, 400, "nested too deeply"),
        ("json-array", b"[]", 400, "JSON object"),
        ("inputs-not-list", {"inputs": 3}, 400, "inputs"),
        ("no-inputs", {"inputs": []}, 400, "no inputs"),
        ("input-not-object", {"inputs": [1]}, 400, "inputs.0"),
        ("shape-strings", {"inputs": _replace(ok, "temp", shape=["2"])}, 400, "shape"),
        ("shape-negative", {"inputs": _replace(ok, "temp", shape=[-2])}, 400, ">= 0"),
        (
            "shape-mismatch",
            {"inputs": _replace(ok, "temp", shape=[3])},
            400,
            "'temp' has shape [3]",
        ),
        ("rows-disagree", {"inputs": _replace(ok, "temp", shape=[1], data=[1.0])}, 422, "disagree"),
        ("unknown-datatype", {"inputs": _replace(ok, "temp", datatype="FLOAT")}, 400, "datatype"),
        ("strings-in-fp64", {"inputs": _replace(ok, "temp", data=["a", "b"])}, 422, "'temp'"),
        ("float-in-int64", {"inputs": _replace(ok, "month", data=[1.5, 2.5])}, 422, "'month'"),
        ("bool-in-int64", {"inputs": _replace(ok, "month", data=[True, False])}, 422, "'month'"),
        ("int-overflow", {"inputs": _replace(ok, "month", data=[2**80, 1])}, 422, "'month'"),
        ("numbers-in-bytes", {"inputs": _replace(ok, "carrier", data=[1, 2])}, 422, "'carrier'"),
        (
            "object-in-bytes",
            {"inputs": _replace(ok, "carrier", data=[{"a": 1}, "UA"])},
            422,
            "'carrier'",
        ),
        (
            "ragged-data",
            {"inputs": _replace(ok, "temp", data=[[1.0, 2.0], [3.0]])},
            400,
            "does not have shape",
        ),
        ("missing-column", {"inputs": [t for t in ok if t["name"] != "dest"]}, 422, "'dest'"),
        (
            "extra-column",
            {"inputs": [*ok, {"name": "bogus", "shape": [2], "datatype": "FP64", "data": [1, 2]}]},
            422,
            "'bogus'",
        ),
        ("duplicate-input", {"inputs": [*ok, ok[0]]}, 400, "twice"),
        ("zero-rows", {"inputs": [{**t, "shape": [0], "data": []} for t in ok]}, 422, "no rows"),
        (
            "too-many-rows",
            {"inputs": [{**t, "shape": [6000], "data": t["data"] * 3000} for t in ok]},
            413,
            "at most 5000",
        ),
        (
            "column-3d",
            {"inputs": _replace(ok, "temp", shape=[2, 1, 1])},
            422,
            "[rows]",
        ),
        ("id-not-string", {"id": 5, "inputs": ok}, 400, "id"),
        ("id-too-long", {"id": "x" * 500, "inputs": ok}, 400, "request id"),
        ("id-control-chars", {"id": "a\nb", "inputs": ok}, 400, "printable"),
        ("unknown-output", {"inputs": ok, "outputs": [{"name": "logits"}]}, 400, "'logits'"),
        (
            "hostile-name",
            {
                "inputs": [
                    *ok,
                    {
                        "name": "\x00" * 10_000 + "☃",
                        "shape": [2],
                        "datatype": "FP64",
                        "data": [1, 2],
                    },
                ]
            },
            400,
            "at most 1000 characters",
        ),
        ("huge-string", {"inputs": _replace(ok, "carrier", data=["Z" * 1_000_000, "UA"])}, 200, ""),
        (
            "nan-token",
            b'{"inputs": [{"name": "temp", "shape": [1], "datatype": "FP64", "data": [NaN]}]}',
            422,
            "missing",
        ),
    ]


def test_bad_inference_requests_get_clear_4xx(server: ServerThread, data: Data) -> None:
    failures = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for case_id, body, status, fragment in cases(data):
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = http.post(INFER, content=content, headers={"content-type": "application/json"})
            if r.status_code != status or (fragment and fragment not in r.json()["error"]):
                failures.append(f"{case_id}: {r.status_code} {r.text[:300]}")
            assert r.status_code < 500, f"{case_id}: {r.status_code} {r.text[:300]}"
            assert r.headers.get("x-request-id")
        # Still healthy and still right after all that.
        assert http.get("/v2/health/ready").status_code == 200
        assert http.post(INFER, json={"inputs": _inputs(data)}).status_code == 200
    assert not failures, "\n".join(failures)


def test_oversized_body_refused_before_reading(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url) as http:
        r = http.post(INFER, content=b" " * (33 * 1024 * 1024))
        assert r.status_code == 413
        assert "at most" in r.json()["error"]


def test_binary_extension_errors(server: ServerThread, data: Data) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "temp",
                    "shape": [2],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    with httpx.Client(base_url=server.url) as http:
        short = http.post(
            INFER,
            content=header + b"\x00" * 8,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert short.status_code == 400 and "past the end" in short.json()["error"]
        bad_len = http.post(
            INFER, content=header, headers={"Inference-Header-Content-Length": "99999"}
        )
        assert bad_len.status_code == 400


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "exactly one of"),
        ({"instances": [], "inputs": []}, "exactly one of"),
        ({"dataframe_split": {"columns": ["a"]}}, "data"),
        ({"dataframe_split": {"columns": ["month"], "data": [[1, 2]]}}, "row 0"),
        ({"dataframe_records": [{"month": 1}]}, "missing column"),
        ({"dataframe_records": [{"month": [1]}]}, "nested"),
        ({"inputs": {"month": [1, "x"]}}, "mixes types"),
        ({"instances": [[1, 2]]}, "16 columns"),
        ({"instances": [1, {"a": 1}]}, "row objects or row arrays"),
        ({"dataframe_records": "x"}, "list of rows"),
    ],
)
def test_bad_invocations(server: ServerThread, body: dict[str, Any], fragment: str) -> None:
    r = httpx.post(f"{server.url}/invocations", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert fragment in r.json()["error"]


def test_text_that_utf8_cannot_hold(server: ServerThread, data: Data) -> None:
    # json reads "\ud800" (a lone surrogate) into a str that no UTF-8 encoder accepts.
    rows = [list(r) for r in data.rows.head(2).select(FEATURES).rows()]
    rows[1][FEATURES.index("carrier")] = "\ud800"
    for body in (
        {"dataframe_split": {"columns": FEATURES, "data": rows}},
        {"dataframe_records": [dict(zip(FEATURES, r, strict=True)) for r in rows]},
    ):
        r = httpx.post(
            f"{server.url}/invocations",
            content=json.dumps(body),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, r.text
        assert "'carrier'" in r.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"labels": []},
        {"labels": [{"request_id": 3, "label": 1}]},
        {"labels": [{"request_id": "a"}]},
        {"labels": [{"request_id": "a", "label": 1, "row": -1}]},
        {"labels": [{"request_id": "a", "label": 1}, {"request_id": "b", "label": "x"}]},
        {"labels": [{"request_id": "a\ud800", "label": 1}]},
        {"labels": [{"request_id": "a", "label": "\ud800"}]},
    ],
)
def test_bad_feedback(server: ServerThread, body: dict[str, Any]) -> None:
    # json.dumps escapes lone surrogates ("\ud800"), which httpx's own encoder cannot write.
    headers = {"content-type": "application/json"}
    r = httpx.post(f"{server.url}/v2/feedback", content=json.dumps(body), headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_unknown_routes_and_methods(server: ServerThread) -> None:
    assert httpx.get(f"{server.url}/v2/models/delay/infer").status_code == 405
    assert httpx.post(f"{server.url}/v2/models/nope/infer", json={"inputs": []}).status_code in (
        400,
        404,
    )
    r = httpx.post(
        f"{server.url}/v2/models/nope/infer",
        json={"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]},
    )
    assert r.status_code == 404 and "not served" in r.json()["error"]
