"""An answer leaves in one write: status line, headers and body together.

uvicorn writes a response's head and its body separately, and each write is a system
call and a TCP segment that wakes the client. The server's protocol joins them. These
tests drive the real protocol class and uvicorn's request cycle with a transport that
records what is written, the boundary where the difference shows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from loopml.serving.http_protocol import guarded_protocol


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = await Request(scope, receive).body()
    await Response(b"got " + body, media_type="text/plain")(scope, receive, send)


async def _exchange(
    chunks: list[bytes], *, writes_before_next: int = 0, answers: int = 1
) -> RecordingTransport:
    """Feed ``chunks`` to one connection; before each chunk after the first, wait until
    ``writes_before_next`` writes have happened; then wait for ``answers`` answers
    (deadline 10 s each)."""
    protocol_class = guarded_protocol(100, 10.0)
    config = uvicorn.Config(echo, http=protocol_class, lifespan="off", log_level="warning")
    config.load()
    transport = RecordingTransport()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(transport)
    try:
        for i, chunk in enumerate(chunks):
            if i:
                async with asyncio.timeout(10):
                    while len(transport.writes) < writes_before_next:
                        await asyncio.sleep(0.001)
            protocol.data_received(chunk)
        async with asyncio.timeout(10):
            while sum(w.endswith(b"got hello") for w in transport.writes) < answers:
                await asyncio.sleep(0.001)
    finally:
        protocol.connection_lost(None)
    return transport


REQUEST = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello"


def test_head_and_body_of_an_answer_are_one_write() -> None:
    transport = asyncio.run(_exchange([REQUEST]))
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 9" in head
    assert body == b"got hello"


def test_keep_alive_answers_each_leave_in_one_write() -> None:
    transport = asyncio.run(_exchange([REQUEST, REQUEST], writes_before_next=1, answers=2))
    assert len(transport.writes) == 2
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") for w in transport.writes)


def test_100_continue_is_sent_before_the_body_arrives() -> None:
    # The client waits for "100 Continue" before sending its body: holding that back
    # with the response's head would leave both sides waiting.
    head = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"
    transport = asyncio.run(_exchange([head, b"hello"], writes_before_next=1))
    assert transport.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(transport.writes) == 2
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[1].endswith(b"\r\n\r\ngot hello")


def test_a_response_that_never_sends_its_body_still_sends_its_head_before_closing() -> None:
    async def head_only(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def run() -> RecordingTransport:
        protocol_class = guarded_protocol(100, 10.0)
        config = uvicorn.Config(
            head_only, http=protocol_class, lifespan="off", log_level="critical"
        )
        config.load()
        transport = RecordingTransport()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(transport)
        protocol.data_received(REQUEST)
        async with asyncio.timeout(10):
            while not transport.closed:
                await asyncio.sleep(0.001)
        protocol.connection_lost(None)
        return transport

    transport = asyncio.run(run())
    # uvicorn closes a connection whose response was left incomplete; what the app did
    # send still goes out first, as it did before writes were joined.
    assert transport.closed
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 200 OK\r\n")
