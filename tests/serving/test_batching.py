"""Adaptive micro-batching: combined under concurrency, correct and in order."""

from __future__ import annotations

import asyncio
import threading

import httpx
import numpy as np
import pyarrow as pa
import pytest

from loopml.serving.batching import MicroBatcher
from loopml.serving.errors import NotReadyError
from loopml.serving.model_source import Prediction
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import Data, expected, json_inputs


class Gate:
    """A predict function that blocks its first call until released: deterministic batching."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[int] = []

    def __call__(self, table: pa.Table) -> Prediction:
        if not self.batches:
            self.release.wait(10)
        self.batches.append(table.num_rows)
        x = table.column("x").to_numpy()
        if np.any(x < 0):
            raise ValueError("negative")
        return Prediction(x * 2, None)


def _table(values: list[int]) -> pa.Table:
    return pa.table({"x": pa.array(values, pa.int64())})


def test_requests_queued_while_busy_form_one_batch_and_get_their_own_rows() -> None:
    async def main() -> list[list[int]]:
        gate = Gate()
        batcher = MicroBatcher(gate, max_batch_rows=1000, max_delay=0)
        first = asyncio.ensure_future(batcher.submit(_table([1])))
        await asyncio.sleep(0.05)  # the worker is now blocked inside the first batch
        rest = [asyncio.ensure_future(batcher.submit(_table([i, i + 100]))) for i in range(10)]
        await asyncio.sleep(0.05)
        gate.release.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        assert gate.batches == [1, 20]  # ten requests, one model call
        return [r.labels.tolist() for r in results]

    answers = asyncio.run(main())
    assert answers[0] == [2]
    assert answers[1:] == [[2 * i, 2 * (i + 100)] for i in range(10)]


def test_max_batch_rows_splits_batches_and_a_bad_request_fails_alone() -> None:
    async def main() -> None:
        gate = Gate()
        batcher = MicroBatcher(gate, max_batch_rows=4, max_delay=0.001)
        blocker = asyncio.ensure_future(batcher.submit(_table([0])))
        await asyncio.sleep(0.05)
        good = [asyncio.ensure_future(batcher.submit(_table([i, i]))) for i in range(4)]
        bad = asyncio.ensure_future(batcher.submit(_table([-1])))
        await asyncio.sleep(0.05)
        gate.release.set()
        await blocker
        for i, f in enumerate(good):
            assert (await f).labels.tolist() == [2 * i, 2 * i]
        with pytest.raises(ValueError, match="negative"):
            await bad
        assert max(gate.batches) <= 4
        await batcher.close()
        with pytest.raises(NotReadyError):
            await batcher.submit(_table([1]))

    asyncio.run(main())


def test_concurrent_clients_get_correct_answers_in_order(
    server: ServerThread, shared_ws: Workspace, data: Data
) -> None:
    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, list[int], str]:
        rows = data.rows.slice(i * 3, 1 + i % 3)
        r = await client.post(
            "/v2/models/delay/infer", json={"id": f"c{i}", "inputs": json_inputs(rows)}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        return i, body["outputs"][0]["data"], body["id"]

    async def main() -> list[tuple[int, list[int], str]]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(one(client, i) for i in range(150)))

    before = _batch_stats(server)
    results = asyncio.run(main())
    labels, _ = expected(shared_ws, "delay:1", data.rows.head(450))
    for i, got, rid in results:
        assert rid == f"c{i}"
        assert got == labels[i * 3 : i * 3 + 1 + i % 3].tolist()
    after = _batch_stats(server)
    calls, requests = after[0] - before[0], after[1] - before[1]
    assert requests == 150
    assert calls <= requests  # every request went through the batcher (usually far fewer calls)


def _batch_stats(server: ServerThread) -> tuple[float, float]:
    text = httpx.get(f"{server.url}/metrics").text
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith('loopml_batch_requests_count{model="delay:1",role="primary"}'):
            count = float(line.split()[-1])
        if line.startswith('loopml_batch_requests_sum{model="delay:1",role="primary"}'):
            total = float(line.split()[-1])
    return count, total


def test_a_model_call_that_blocks_never_stops_the_event_loop() -> None:
    """However quick a model's earlier calls were, a call that blocks runs in the model's
    thread: the event loop (other connections, health checks) keeps going meanwhile."""
    release = threading.Event()
    seen: list[str] = []

    def predict(table: pa.Table) -> Prediction:
        seen.append(threading.current_thread().name)
        if table.column("x").to_pylist() == [-1]:
            release.wait(30)
        x = table.column("x").to_numpy()
        return Prediction(x * 2, None)

    async def main() -> None:
        batcher = MicroBatcher(predict, name="model")
        for i in range(20):  # quick calls first
            assert (await batcher.submit(_table([i]))).labels.tolist() == [2 * i]
        blocked = asyncio.ensure_future(batcher.submit(_table([-1])))
        ticks = 0
        while not seen or len(seen) < 21:
            await asyncio.sleep(0.01)
        for _ in range(10):  # the loop still turns while the model call is held
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 10 and not blocked.done()
        release.set()
        assert (await blocked).labels.tolist() == [-2]
        await batcher.close()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert all(name.startswith("model") for name in seen)
