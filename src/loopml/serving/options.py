"""What ``loopml serve`` was asked to do, validated once at the edge."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from loopml.core.errors import InvalidInputError
from loopml.core.names import parse_ref
from loopml.serving.model_source import ModelRef


@dataclass(frozen=True)
class CanarySpec:
    """``name@challenger:10``: send 10% of the traffic to what ``name@challenger`` names.

    ``name@challenger`` alone (``percent`` None): the share is the ``canary`` of the
    retraining loop that moves that alias, read from the workspace and followed when the
    loop's spec changes, so the loop is the one place the share is set."""

    ref: str
    percent: float | None

    @property
    def follows_loop(self) -> bool:
        return self.percent is None

    @classmethod
    def parse(cls, text: str) -> CanarySpec:
        _, at, alias = text.partition("@")
        if at and alias and ":" not in alias:
            parse_ref(text, "canary reference")
            ModelRef.parse(text)
            return cls(text, None)
        ref, sep, pct = text.rpartition(":")
        try:
            percent = float(pct) if sep else -1.0
        except ValueError:
            percent = -1.0
        if not ref or not 0 < percent < 100:
            raise InvalidInputError(
                f"canary {text!r} must be '<model ref>:<percent>' with a percentage between "
                "0 and 100, e.g. 'delay-model@challenger:10', or 'name@alias' for the share "
                "of the retraining loop that moves that alias"
            )
        ModelRef.parse(ref)
        return cls(ref, percent)


@dataclass(frozen=True)
class ServeOptions:
    ref: str
    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int | None = None
    workers: int = 1
    canary: CanarySpec | None = None
    shadow: str | None = None
    deployment: str | None = None
    # No waiting by default: under load, the requests that arrive while the model runs
    # form the next batch anyway, and waiting for more leaves the model idle. Measured at
    # 16 connections, the former 2 ms and 512 rows served 100-row requests with 5% less
    # throughput and a 10% higher p99, and 1-row requests with 18% less throughput.
    max_batch_rows: int = 1024
    max_delay_ms: float = 0.0
    max_request_bytes: int = 32 * 1024 * 1024
    max_request_rows: int = 100_000
    poll_interval: float = 2.0
    log_flush_interval: float = 2.0
    drain_timeout: float = 30.0
    model_threads: int = 1
    # Limits that keep a server answering under hostile or unlucky load (http_protocol):
    # open HTTP connections (None: what the file-descriptor limit safely allows), seconds
    # for a request's headers and for its body, requests waiting for the model before new
    # ones are shed with 503 + Retry-After, and the body size above which parsing moves
    # off the event loop.
    # "fast": the log is written every log_flush_interval (a killed process loses up to
    # that much); "strict": each answer waits until its record is written (group commit).
    log_durability: str = "fast"
    max_connections: int | None = None
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_queued_requests: int = 2048
    offload_bytes: int = 256 * 1024
    # gRPC's own limits (grpc_service.start_grpc): calls in progress at once (None: the
    # queue limit plus room for health checks), beyond which a call is RESOURCE_EXHAUSTED;
    # and seconds a connection may sit with no call before the server closes it.
    grpc_max_calls: int | None = None
    grpc_idle_timeout: float = 60.0

    def __post_init__(self) -> None:
        ModelRef.parse(self.ref)
        if self.shadow is not None:
            ModelRef.parse(self.shadow)
        checks = [
            (self.workers >= 1, "--workers must be at least 1"),
            (0 <= self.port < 65536, "--port must be between 0 and 65535"),
            (
                self.grpc_port is None or 0 <= self.grpc_port < 65536,
                "--grpc-port must be between 0 and 65535",
            ),
            (self.max_batch_rows >= 1, "max batch rows must be at least 1"),
            (self.max_delay_ms >= 0, "max batch delay must be >= 0 ms"),
            (self.poll_interval > 0, "the registry poll interval must be > 0 s"),
            (self.max_request_rows >= 1, "max request rows must be at least 1"),
            (self.model_threads >= 1, "model threads must be at least 1"),
            (
                self.max_connections is None or self.max_connections >= 1,
                "--max-connections must be at least 1",
            ),
            (
                self.log_durability in ("fast", "strict"),
                "--log-durability must be 'fast' or 'strict'",
            ),
            (self.header_timeout > 0, "the header timeout must be > 0 s"),
            (self.body_timeout > 0, "the body timeout must be > 0 s"),
            (self.max_queued_requests >= 1, "max queued requests must be at least 1"),
            (
                self.grpc_max_calls is None or self.grpc_max_calls >= 1,
                "max gRPC calls must be at least 1",
            ),
            (self.grpc_idle_timeout > 0, "the gRPC idle timeout must be > 0 s"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message)
        if self.workers > 1 and (self.port == 0 or self.grpc_port == 0):
            raise InvalidInputError("with --workers > 1 give fixed ports: workers share them")

    @property
    def deployment_name(self) -> str:
        return self.deployment or self.ref

    def connection_limit(self) -> int:
        """Open HTTP connections: ``max_connections``, or what this process's
        file-descriptor limit allows with room to spare for the model, the log, the
        database, and gRPC's share (:meth:`grpc_connection_limit`)."""
        if self.max_connections is not None:
            return self.max_connections
        budget = descriptor_budget()
        if self.grpc_port is None:
            return budget
        return max(64, budget - self.grpc_connection_limit())

    def grpc_connection_limit(self) -> int:
        """Open gRPC connections: ``max_connections`` (each transport has its own cap),
        or a quarter of the descriptor budget; gRPC clients keep few, long-lived channels."""
        if self.max_connections is not None:
            return self.max_connections
        return max(16, descriptor_budget() // 4)

    def grpc_call_limit(self) -> int:
        if self.grpc_max_calls is not None:
            return self.grpc_max_calls
        return self.max_queued_requests + 128

    @property
    def max_elements(self) -> int:
        # A request's tensors may not hold more elements than max rows x a wide model.
        return self.max_request_rows * 1024


def descriptor_budget() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 100_000
    return max(64, int(soft * 0.9) - 256)


def raise_fd_limit() -> None:
    """Lift this process's soft limit on open files to the hard limit: every connection is
    one, and the connection cap is derived from it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
