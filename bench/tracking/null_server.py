"""A server that answers MLflow's tracking requests at once and stores nothing: the floor.

    python null_server.py PORT [SEARCH_ANSWER.json]

Timing MLflow's client against it shows what the client itself costs, whichever server it
talks to; ``client_vs_server.py`` prints that next to both servers' figures. It answers
just enough for the client script (a made-up experiment and run, ``{}`` for writes) on
plain asyncio with keep-alive; ``runs/search`` gets the bytes of SEARCH_ANSWER.json, a real
server's answer to the script's search recorded beforehand, so the client parses (and
builds its DataFrame from) the same runs as against a real server.
"""

from __future__ import annotations

import asyncio
import json
import sys

_EXPERIMENT = {
    "experiment_id": "1",
    "name": "bench-client",
    "artifact_location": "mlflow-artifacts:/1",
    "lifecycle_stage": "active",
}
_INFO = {
    "run_id": "0" * 32,
    "run_uuid": "0" * 32,
    "run_name": "floor",
    "experiment_id": "1",
    "status": "RUNNING",
    "start_time": 1,
    "artifact_uri": "mlflow-artifacts:/1/0/artifacts",
    "lifecycle_stage": "active",
}
_ANSWERS = {
    "/api/2.0/mlflow/experiments/get-by-name": {"experiment": _EXPERIMENT},
    "/api/2.0/mlflow/experiments/get": {"experiment": _EXPERIMENT},
    "/api/2.0/mlflow/experiments/create": {"experiment_id": "1"},
    "/api/2.0/mlflow/runs/create": {"run": {"info": _INFO, "data": {}}},
    "/api/2.0/mlflow/runs/get": {"run": {"info": _INFO, "data": {}}},
    "/api/2.0/mlflow/runs/update": {"run_info": _INFO},
}


def _response(answer: object) -> bytes:
    body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


_READY = {path: _response(answer) for path, answer in _ANSWERS.items()}
_EMPTY = _response({})


class NullProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            self.buffer = self.buffer[end + 4 + length :]
            path = head.split(" ", 2)[1].split("?", 1)[0]
            self.transport.write(_READY.get(path, _EMPTY))


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(NullProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) > 2:
        with open(sys.argv[2], "rb") as f:
            _READY["/api/2.0/mlflow/runs/search"] = _response(f.read())
    asyncio.run(serve(int(sys.argv[1])))
