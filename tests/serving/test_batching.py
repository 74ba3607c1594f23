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


def test_quick_models_run_on_the_event_loop_and_slow_ones_in_their_thread() -> None:
    """Handing a call to a thread and back costs more than a quick model's call: once a
    model's small calls are measured quick they run on the loop; a slow call sends the
    model back to its thread. Answers are the same either way."""

    def run(delay: float, inline_seconds: float) -> list[tuple[str, list[int]]]:
        seen: list[tuple[str, list[int]]] = []

        def predict(table: pa.Table) -> Prediction:
            if delay:
                threading.Event().wait(delay)
            x = table.column("x").to_numpy()
            seen.append((threading.current_thread().name, x.tolist()))
            return Prediction(x * 2, None)

        async def main() -> None:
            batcher = MicroBatcher(predict, name="model", inline_seconds=inline_seconds)
            for i in range(5):
                assert (await batcher.submit(_table([i]))).labels.tolist() == [2 * i]
            await batcher.close()

        asyncio.run(main())
        return seen

    quick = run(0.0, inline_seconds=60)  # far above any call's time, however busy
    assert quick[0][0].startswith("model")  # measured first, in the model's thread
    assert [name for name, _ in quick[1:]] == ["MainThread"] * 4
    assert [x for _, x in quick] == [[0], [1], [2], [3], [4]]
    slow = run(0.05, inline_seconds=0.005)  # each call waits ten times the limit
    assert all(name.startswith("model") for name, _ in slow)
