"""Spreading HTTP connections evenly over the worker processes.

With ``SO_REUSEPORT`` the kernel picks a worker by hashing each connection's addresses, so
16 keep-alive connections can land 11 on one worker and 5 on the other; the busier worker's
requests then wait twice as long, which is most of the latency tail (bench/serving). So the
supervisor owns the one listening socket, accepts, and hands each connection to the next
worker in turn over a Unix socket pair (``SCM_RIGHTS``); the worker adopts it into its
uvicorn server. Accepting costs the supervisor a system call per connection, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable

from loopml.core.errors import LoopmlError
from loopml.serving.listener import HANDSHAKE_GRACE, accept_queued, refuse_new_handshakes

log = logging.getLogger("loopml.serving")

READY = b"ready"
_CONNECTION = b"c"
_ACCEPT_POLL_S = 0.2


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(supervisor end, worker end); message boundaries keep one connection per message."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Dispatcher:
    """Accepts on ``listener`` in a thread and passes connections to the workers in turn."""

    def __init__(self, listener: socket.socket, channels: list[socket.socket]) -> None:
        self._listener = listener
        self._channels = channels
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopml-accept", daemon=True)
        self._next = 0

    def wait_ready(self, alive: Callable[[], bool], timeout: float) -> bool:
        """Wait for every worker's ready message; False as soon as ``alive()`` is not.

        Raises LoopmlError when time runs out."""
        deadline = time.monotonic() + timeout
        waiting = set(range(len(self._channels)))
        while waiting:
            if not alive():
                return False
            if time.monotonic() > deadline:
                raise LoopmlError(f"the workers did not become ready within {timeout:.0f}s")
            for i in list(waiting):
                channel = self._channels[i]
                channel.settimeout(0.05)
                try:
                    if channel.recv(16) == READY:
                        waiting.discard(i)
                except TimeoutError:
                    pass
                except OSError:
                    return False
        for channel in self._channels:
            channel.setblocking(False)
        return True

    def start(self) -> None:
        self._listener.settimeout(_ACCEPT_POLL_S)
        self._thread.start()

    def stop_accepting(self) -> None:
        """Stop accepting; hand over what the kernel had already accepted, then close.

        A connection in the listen backlog has completed its handshake: the client has
        sent its request, and closing the socket would reset it unanswered. After the
        close, new connections are refused, which a client can tell apart and retry."""
        if self._listener.fileno() == -1:
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if refuse_new_handshakes(self._listener):
            time.sleep(HANDSHAKE_GRACE)

        def hand_over(conn: socket.socket) -> None:
            with conn:
                self._hand_over(conn)

        accept_queued(self._listener, hand_over)
        self._listener.close()

    def close(self) -> None:
        """Close the channels: a worker still running takes this as the supervisor gone."""
        self.stop_accepting()
        for channel in self._channels:
            channel.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("accepting a connection failed: %s", exc)
                continue
            with conn:
                self._hand_over(conn)

    def _hand_over(self, conn: socket.socket) -> None:
        # The next worker in turn; one whose queue is full or that has gone is skipped.
        for _ in range(len(self._channels)):
            channel = self._channels[self._next]
            self._next = (self._next + 1) % len(self._channels)
            try:
                socket.send_fds(channel, [_CONNECTION], [conn.fileno()])
                return
            except OSError:
                continue
        log.warning("no worker could take a connection; closing it")


class Receiver:
    """The worker's end: adopts each connection the supervisor passes.

    The channel closing means the supervisor is gone (even killed outright): ``on_lost``
    then shuts the worker down rather than leave it running unsupervised."""

    def __init__(
        self,
        channel: socket.socket,
        adopt: Callable[[socket.socket], object],
        on_lost: Callable[[], object],
    ) -> None:
        self._channel = channel
        self._adopt = adopt
        self._on_lost = on_lost
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._channel.setblocking(False)
        self._loop.add_reader(self._channel.fileno(), self._receive)
        self._channel.send(READY)

    def _lost(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._channel.fileno())
            self._loop = None
            log.warning("the supervisor is gone; this worker shuts down")
            self._on_lost()

    def stop(self) -> None:
        """Adopt every connection already passed (the supervisor stops passing before it
        asks a worker to stop), then close the channel."""
        if self._loop is not None:
            self._receive()
        if self._loop is not None:
            self._loop.remove_reader(self._channel.fileno())
            self._loop = None
        self._channel.close()

    def _receive(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._channel, 16, 8)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:
                self._lost()
                return
            for fd in fds:
                conn = socket.socket(fileno=fd)
                try:
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._adopt(conn)
                except OSError:
                    with contextlib.suppress(OSError):
                        conn.close()
