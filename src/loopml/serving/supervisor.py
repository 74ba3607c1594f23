"""``--workers N``: N server processes behind one HTTP port (and one gRPC port).

Each worker is a full server (its own event loop, loaded model, batchers and prediction
log writer), started with the ``spawn`` method so no locks, threads or database
connections are inherited. The supervisor accepts HTTP connections and hands them to the
workers in turn (:mod:`loopml.serving.connections`), so each serves an even share; gRPC,
whose server owns its sockets, shares its port via SO_REUSEPORT. Correctness with several
workers:

* prediction log: each worker writes its own Parquet files and artifact rows; request ids
  are random UUIDs, so rows never collide and none is written twice;
* metrics: prometheus-client's multiprocess mode (a shared directory of memory-mapped
  files, set up here before any worker imports prometheus-client); ``/metrics`` on any
  worker reports the sum over all of them;
* shutdown: SIGTERM/SIGINT to the supervisor is forwarded to every worker, each drains and
  flushes, and the supervisor exits when all have.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from loopml.core.errors import LoopmlError
from loopml.serving.connections import Dispatcher, channel_pair
from loopml.serving.options import ServeOptions
from loopml.serving.server import bind_http, check_port_free

if TYPE_CHECKING:
    from loopml.serving.model_source import ModelSource

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class WorkspaceSpec:
    """What a worker needs to open the same workspace (a Workspace is not picklable).

    ``model_source``, when given, makes each worker's model source (a picklable callable,
    e.g. a team server's registry in remote mode); the workspace then holds the log only."""

    db_url: str
    artifacts_url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    model_source: Callable[[], ModelSource] | None = None


def _worker(
    spec: WorkspaceSpec, options: ServeOptions, metrics_dir: str, connections: socket.socket
) -> None:
    from loopml.serving.server import run
    from loopml.store.workspace import Workspace

    ws = Workspace(spec.db_url, spec.artifacts_url, storage_options=spec.storage_options)
    try:
        run(
            ws,
            options,
            reuse_port=True,
            multiprocess_dir=metrics_dir,
            announce=False,
            connections=connections,
            source=None if spec.model_source is None else spec.model_source(),
        )
    finally:
        ws.close()


def run_workers(spec: WorkspaceSpec, options: ServeOptions) -> int:
    """Run ``options.workers`` workers until SIGTERM/SIGINT; return an exit code."""
    listener = bind_http(options.host, options.port, reuse_port=False)  # fails clearly if taken
    if options.grpc_port is not None:
        try:  # the workers share it with SO_REUSEPORT; refuse a port someone else holds
            check_port_free(options.host, options.grpc_port, reuse_port=True, what="gRPC")
        except LoopmlError:
            listener.close()
            raise
    listener.setblocking(True)
    pairs = [channel_pair() for _ in range(options.workers)]
    dispatcher = Dispatcher(listener, [ours for ours, _ in pairs])
    metrics_dir = tempfile.mkdtemp(prefix="loopml-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the spawned workers
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(
            target=_worker,
            args=(spec, options, metrics_dir, theirs),
            name=f"loopml-worker-{i}",
        )
        for i, (_, theirs) in enumerate(pairs)
    ]
    stopping = False
    signalled = False

    def forward(signum: int, frame: FrameType | None) -> None:
        # Only note it here: the main loop stops accepting first, then signals the workers,
        # so no connection is handed to a worker that is already draining.
        nonlocal stopping
        stopping = True

    def signal_workers() -> None:
        nonlocal signalled
        signalled = True
        for w in workers:
            if w.pid is not None and w.is_alive():
                os.kill(w.pid, signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for w in workers:
            w.start()
        for _, theirs in pairs:
            theirs.close()  # the workers hold their own copies now
        try:
            if not dispatcher.wait_ready(
                lambda: not stopping and all(w.is_alive() for w in workers), 300
            ):
                if stopping:  # interrupted while starting: not an error
                    signal_workers()
                    for w in workers:
                        w.join(60)
                    return 0
                raise LoopmlError("a worker stopped while starting; see its error above")
            dispatcher.start()
            _wait_ready(options, workers)
        except LoopmlError:
            signal_workers()
            for w in workers:
                w.join(60)
            raise
        grpc_text = f", gRPC on {options.host}:{options.grpc_port}" if options.grpc_port else ""
        print(
            f"loopml serving {options.ref} on http://{options.host}:{options.port}{grpc_text} "
            f"({options.workers} workers)",
            flush=True,
        )
        code = 0
        while any(w.is_alive() for w in workers):
            if stopping and not signalled:
                dispatcher.stop_accepting()  # before the workers drain, not during
                signal_workers()
            for w in workers:
                w.join(0.1)
                if not w.is_alive() and w.exitcode not in (0, None) and not signalled:
                    # A worker died on its own: stop the others rather than serve degraded.
                    code = 1
                    dispatcher.stop_accepting()
                    signal_workers()
        return code
    finally:
        dispatcher.close()
        for s, handler in old.items():
            signal.signal(s, handler)
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _wait_ready(options: ServeOptions, workers: list[Any], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{host}:{options.port}/v2/health/ready"
    while time.monotonic() < deadline:
        if any(not w.is_alive() for w in workers):
            raise LoopmlError("a worker stopped while starting; see its error above")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise LoopmlError(f"the workers did not become ready within {timeout:.0f}s")
