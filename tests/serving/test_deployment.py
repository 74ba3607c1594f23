"""Canary split, shadow scoring, and the hot switch when an alias moves under load."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from loopml.registry.promotion import promote
from loopml.serving import edge
from loopml.serving.log_reader import read_predictions
from loopml.serving.model_source import ServedModel
from loopml.serving.options import CanarySpec, ServeOptions
from loopml.serving.runtime import InferResult, ServingRuntime
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import Data, expected, json_inputs


def test_canary_split_and_shadow_logging(fresh_ws: Workspace, data: Data) -> None:
    options = ServeOptions(
        "delay@champion",
        port=0,
        canary=CanarySpec.parse("delay@challenger:30"),
        shadow="delay:2",
        deployment="canary-test",
    )
    rows = data.rows.head(2)
    versions: Counter[str] = Counter()
    answers: dict[str, list[int]] = {}
    with ServerThread(fresh_ws, options) as server, httpx.Client(base_url=server.url) as http:
        for i in range(120):
            body = http.post(
                "/v2/models/delay/infer", json={"id": f"r{i}", "inputs": json_inputs(rows)}
            ).json()
            versions[body["model_version"]] += 1
            answers[body["model_version"]] = body["outputs"][0]["data"]
        # The same id always meets the same model: the split is by request id.
        again = {
            http.post(
                "/v2/models/delay/infer", json={"id": "r7", "inputs": json_inputs(rows)}
            ).json()["model_version"]
            for _ in range(5)
        }
        assert len(again) == 1
        meta = http.get("/v2/models/delay").json()
        assert meta["versions"] == ["1", "2"]
    assert set(versions) == {"1", "2"} and versions["1"] > versions["2"]
    assert answers["1"] == expected(fresh_ws, "delay:1", rows)[0].tolist()
    assert answers["2"] == expected(fresh_ws, "delay:2", rows)[0].tolist()
    log = read_predictions(fresh_ws, "canary-test")
    assert log is not None
    shadow = log.filter(pc.equal(log.column("role"), "shadow"))
    answered = log.filter(pc.not_equal(log.column("role"), "shadow"))
    # Every request answered is also scored by the shadow, under the same request id.
    assert set(shadow.column("request_id").to_pylist()) == set(
        answered.column("request_id").to_pylist()
    )
    assert set(shadow.column("model_version").to_pylist()) == {2}
    assert set(answered.column("role").to_pylist()) == {"primary", "canary"}


def test_alias_move_switches_version_under_load_without_failures(
    fresh_ws: Workspace, data: Data
) -> None:
    options = ServeOptions("delay@champion", port=0, poll_interval=0.2, deployment="switch")
    rows = data.rows.head(3)
    expected_by_version = {
        "1": expected(fresh_ws, "delay:1", rows)[0].tolist(),
        "2": expected(fresh_ws, "delay:2", rows)[0].tolist(),
    }
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()
    switched = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                try:
                    r = http.post("/v2/models/delay/infer", json={"inputs": json_inputs(rows)})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                if body["outputs"][0]["data"] != expected_by_version[body["model_version"]]:
                    failures.append(f"wrong answer from version {body['model_version']}")
                seen.append(body["model_version"])
                if body["model_version"] == "2":
                    switched.set()

    with ServerThread(fresh_ws, options) as server:
        threads = [threading.Thread(target=load, args=(server.url,)) for _ in range(4)]
        for t in threads:
            t.start()
        while len(seen) < 50 and not failures:
            threading.Event().wait(0.05)
        promote(fresh_ws, "delay", 2, "champion")
        assert switched.wait(30), "the server never switched to version 2"
        count = len(seen)
        while len(seen) < count + 50 and not failures:
            threading.Event().wait(0.05)
        stop.set()
        for t in threads:
            t.join()
        stats = httpx.get(f"{server.url}/v2/server/stats").json()
    assert not failures, failures[:5]
    assert stats["switches"] == 1
    assert seen[0] == "1" and seen[-1] == "2"
    log = read_predictions(fresh_ws, "switch")
    assert log is not None and log.num_rows == 3 * len(seen)


def test_a_request_routed_before_a_hot_switch_is_rebuilt_for_the_new_model(
    fresh_ws: Workspace, data: Data
) -> None:
    """The edge builds a request's table for the model its route names. If that model
    is replaced before the request is queued, the request is routed again and its table
    rebuilt for the new model, which answers it."""
    rows = data.rows.head(3)
    built_for: list[int] = []

    async def main() -> InferResult:
        loop = asyncio.get_running_loop()
        runtime = ServingRuntime(fresh_ws, ServeOptions("delay@champion", poll_interval=3600))
        await runtime.start()
        old = runtime.deployment.primary.batcher

        async def switch() -> None:
            promote(fresh_ws, "delay", 2, "champion")
            assert await runtime.deployment.refresh()
            await asyncio.wait_for(retired(), 30)

        async def retired() -> None:
            while not old._closed:  # the retired batcher refuses new work from here on
                await asyncio.sleep(0.01)

        def build(model: ServedModel) -> pa.Table:
            built_for.append(model.version)
            if len(built_for) == 1:  # routed to version 1; it is replaced meanwhile
                asyncio.run_coroutine_threadsafe(switch(), loop).result(60)
            return pa.Table.from_pandas(data.features(rows), preserve_index=False)

        try:
            return await edge.infer(runtime, build, request_id="r1", offload=True)
        finally:
            await runtime.close()

    result = asyncio.run(main())
    assert built_for == [1, 2]
    assert result.model.version == 2
    assert result.prediction.labels.tolist() == expected(fresh_ws, "delay:2", rows)[0].tolist()
