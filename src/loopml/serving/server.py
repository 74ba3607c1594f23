"""One server process: REST (uvicorn) and gRPC (grpc.aio) on one event loop, one runtime.

Shutdown is graceful: on SIGTERM/SIGINT (or :meth:`ServerThread.stop`) the server stops
accepting connections, lets in-flight REST and gRPC requests finish, drains the batchers
and shadow scoring, and flushes the prediction log before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import threading
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

from loopml.core.errors import LoopmlError
from loopml.serving.connections import Receiver
from loopml.serving.grpc_service import start_grpc
from loopml.serving.http_protocol import guarded_protocol
from loopml.serving.listener import HANDSHAKE_GRACE, accept_queued, refuse_new_handshakes
from loopml.serving.model_source import ModelSource
from loopml.serving.options import ServeOptions, raise_fd_limit
from loopml.serving.rest_app import create_app
from loopml.serving.runtime import ServingRuntime
from loopml.store.workspace import Workspace

log = logging.getLogger("loopml.serving")
# Seconds a thread that wants the GIL waits before asking its holder to let go (Python's
# default is 5 ms). A request crosses two threads, the event loop and its model's thread,
# and under load both always have work: at 5 ms, a batch ready to run could wait 5 ms for
# the loop to let go, and answers for the loop to get it back, several times the whole
# work of a light request (about 0.5 ms). The cost is more frequent switches.
GIL_SWITCH_S = 0.0005
T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop where it is installed (libuv's loop: less CPU per request
    than asyncio's own in every part of the request path, from reading the socket to
    waking the loop when a model's answer is ready), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: this module decides how to shut down."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._adopting: set[asyncio.Task[Any]] = set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def adopt(self, conn: socket.socket) -> None:
        """Serve a connection accepted elsewhere (the supervisor), as if accepted here.

        The protocol is built as uvicorn's own startup builds it, so the connection joins
        ``server_state`` and graceful shutdown drains it like any other."""
        config = self.config

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(protocol, conn))
        self._adopting.add(task)
        task.add_done_callback(lambda done: self._adopted(done, conn))

    async def adoptions(self) -> None:
        """Wait until every connection being adopted has joined the server."""
        await asyncio.gather(*self._adopting, return_exceptions=True)

    def _adopted(self, task: asyncio.Task[Any], conn: socket.socket) -> None:
        self._adopting.discard(task)
        if task.cancelled() or task.exception() is not None:
            log.warning("could not take over a connection: %r", task)
            conn.close()


@dataclass(frozen=True)
class BoundPorts:
    http: int
    grpc: int | None


def bind_http(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio turns Nagle off only on sockets whose proto says
    # TCP, and accepted sockets inherit proto 0 otherwise. With Nagle on, a response sent
    # as two writes (headers, body) on a keep-alive connection waits for the client's
    # delayed ACK: +40 ms on every request after a connection's first.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if reuse_port:
        # Workers each bind the same port; the kernel spreads connections across them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LoopmlError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def check_port_free(host: str, port: int, *, reuse_port: bool, what: str) -> None:
    """Raise one clean LoopmlError if ``port`` is taken, before a library tries it.

    gRPC's C core reports a busy port with its own log line on stderr and a long
    traceback; trying the bind ourselves first gives the same one line as a busy HTTP
    port."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise LoopmlError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


async def serve(
    workspace: Workspace,
    options: ServeOptions,
    stop: asyncio.Event,
    *,
    reuse_port: bool = False,
    multiprocess_dir: str | None = None,
    on_ready: asyncio.Future[BoundPorts] | None = None,
    connections: socket.socket | None = None,
    source: ModelSource | None = None,
) -> None:
    """Serve until ``stop`` is set, then shut down gracefully.

    With ``connections`` (a worker under the supervisor), HTTP connections arrive over that
    channel instead of from a listening socket of this process's own."""
    runtime = ServingRuntime(workspace, options, multiprocess_dir=multiprocess_dir, source=source)
    sock = (
        None
        if connections is not None
        else bind_http(options.host, options.port, reuse_port=reuse_port)
    )
    if options.grpc_port is not None:
        try:
            check_port_free(options.host, options.grpc_port, reuse_port=reuse_port, what="gRPC")
        except LoopmlError:
            if sock is not None:
                sock.close()
            raise
    receiver = None
    grpc_server = None
    try:
        await runtime.start()
        grpc_port = None
        if options.grpc_port is not None:
            grpc_server, grpc_port = await start_grpc(
                runtime, options.host, options.grpc_port, reuse_port=reuse_port
            )
        config = uvicorn.Config(
            create_app(runtime),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(options.drain_timeout),
            timeout_keep_alive=30,
            # Nothing here reads the client's address, and rewriting it from forwarded
            # headers is a middleware layer around every request.
            proxy_headers=False,
            http=guarded_protocol(options.connection_limit(), options.header_timeout),
        )
        http = _Uvicorn(config)
        sockets = [] if sock is None else [sock]
        http_task = asyncio.get_running_loop().create_task(http.serve(sockets=sockets))
        while not http.started and not http_task.done():
            await asyncio.sleep(0.01)
        if http_task.done():
            http_task.result()
            raise LoopmlError("the HTTP server stopped while starting")
        if connections is not None:
            receiver = Receiver(connections, http.adopt, on_lost=stop.set)
            receiver.start()
        if on_ready is not None and not on_ready.done():
            port = options.port if sock is None else sock.getsockname()[1]
            on_ready.set_result(BoundPorts(port, grpc_port))
        await _wait_either(stop.wait(), http_task)
        # Graceful: refuse new work, let in-flight requests finish on both transports.
        runtime.ready = False
        if sock is not None:
            await _drain_backlog(http, sock)
        if receiver is not None:
            receiver.stop()
            receiver = None
            await http.adoptions()  # so graceful shutdown answers them too
        http.should_exit = True
        stops = [http_task]
        if grpc_server is not None:
            stops.append(asyncio.ensure_future(grpc_server.stop(options.drain_timeout)))
        await asyncio.gather(*stops, return_exceptions=True)
    except BaseException as exc:
        if on_ready is not None and not on_ready.done():
            on_ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
        raise
    finally:
        if grpc_server is not None:
            await grpc_server.stop(None)
        if receiver is not None:
            receiver.stop()
        await runtime.close()
        if sock is not None:
            sock.close()


async def _drain_backlog(http: _Uvicorn, sock: socket.socket) -> None:
    """Stop new connections, then serve those the kernel already queued: uvicorn's
    shutdown closes the listening socket, which would reset them unanswered."""
    if refuse_new_handshakes(sock):
        await asyncio.sleep(HANDSHAKE_GRACE)
    accept_queued(sock, http.adopt)
    await http.adoptions()


async def _wait_either(event_wait: Coroutine[Any, Any, Any], task: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(event_wait)
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


def run(
    workspace: Workspace,
    options: ServeOptions,
    *,
    reuse_port: bool = False,
    multiprocess_dir: str | None = None,
    announce: bool = True,
    connections: socket.socket | None = None,
    source: ModelSource | None = None,
) -> None:
    """Serve in this process until SIGTERM or SIGINT."""
    raise_fd_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready: asyncio.Future[BoundPorts] = loop.create_future()
        ready.add_done_callback(_freeze_startup_objects)
        if announce:
            ready.add_done_callback(lambda f: _announce(options, f))
        await serve(
            workspace,
            options,
            stop,
            reuse_port=reuse_port,
            multiprocess_dir=multiprocess_dir,
            on_ready=ready,
            connections=connections,
            source=source,
        )

    # This process serves and nothing else: hand the GIL over sooner (see GIL_SWITCH_S).
    sys.setswitchinterval(GIL_SWITCH_S)
    run_event_loop(main())


def _freeze_startup_objects(ready: asyncio.Future[BoundPorts]) -> None:
    """Keep what startup built (modules, the model, the app) out of garbage collection.

    A full collection walks every tracked object: about 250,000 once a server has
    imported its libraries, 70 ms of holding the GIL, and under load each one stalled
    every request in the process for 70-130 ms, every several seconds. That was most of
    the p99 latency. What startup built lives as long as the process (a model replaced
    later is still freed by reference counting), so scanning it finds nothing. Collect
    once first, so startup's own garbage is freed rather than kept forever."""
    if not ready.cancelled() and ready.exception() is None:
        gc.collect()
        gc.freeze()


def _announce(options: ServeOptions, ready: asyncio.Future[BoundPorts]) -> None:
    if ready.cancelled() or ready.exception() is not None:
        return
    ports = ready.result()
    grpc_text = f", gRPC on {options.host}:{ports.grpc}" if ports.grpc is not None else ""
    # One parseable line: scripts and tests wait for it.
    print(
        f"loopml serving {options.ref} on http://{options.host}:{ports.http}{grpc_text}", flush=True
    )


class ServerThread:
    """A server on a background thread with its own loop: for tests, the demo, benchmarks."""

    def __init__(self, workspace: Workspace, options: ServeOptions) -> None:
        self.workspace = workspace
        self.options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._ports: BoundPorts | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="loopml-server", daemon=True)

    def start(self, timeout: float = 120.0) -> BoundPorts:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise LoopmlError("the server did not start in time")
        if self._error is not None:
            raise self._error
        assert self._ports is not None
        return self._ports

    @property
    def url(self) -> str:
        assert self._ports is not None
        return f"http://{self.options.host}:{self._ports.http}"

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            ready: asyncio.Future[BoundPorts] = self._loop.create_future()
            ready.add_done_callback(self._on_ready)
            await serve(self.workspace, self.options, self._stop, on_ready=ready)

        try:
            run_event_loop(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def _on_ready(self, ready: asyncio.Future[BoundPorts]) -> None:
        if not ready.cancelled():
            if ready.exception() is None:
                self._ports = ready.result()
            else:
                self._error = ready.exception()
        self._ready.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful shutdown; returns when the log is flushed."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._error is not None and not isinstance(self._error, LoopmlError):
            raise self._error

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
