"""Which model version answers a request: the primary, a canary share, a shadow; and the
hot switch when an alias moves.

Each served reference is a :class:`Slot` holding its current :class:`Route` (a loaded
version and its batcher). The watcher polls the registry; when an alias points elsewhere
it loads and warms the new version first, then swaps the slot's route in one assignment on
the event loop. Requests that already hold the old route finish on it: its batcher drains
before it closes. No request is dropped or answered by a half-loaded model.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from functools import partial

from loopml.core.errors import InvalidInputError
from loopml.serving.batching import MicroBatcher
from loopml.serving.errors import ModelNotServedError
from loopml.serving.metrics import ServingMetrics
from loopml.serving.model_source import ModelSource, ServedModel, limit_native_threads
from loopml.serving.options import ServeOptions

log = logging.getLogger("loopml.serving")

PRIMARY, CANARY, SHADOW = "primary", "canary", "shadow"


@dataclass(frozen=True)
class Route:
    model: ServedModel
    batcher: MicroBatcher
    role: str


class Slot:
    def __init__(self, ref: str, role: str, route: Route) -> None:
        self.ref = ref
        self.role = role
        self.route = route


class Deployment:
    def __init__(self, source: ModelSource, options: ServeOptions, metrics: ServingMetrics) -> None:
        self.source = source
        self.options = options
        self.metrics = metrics
        self.slots: dict[str, Slot] = {}
        spec = options.canary
        self.canary_percent = spec.percent if spec and spec.percent is not None else 0.0
        self._watcher: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()
        self.switches = 0

    async def start(self) -> None:
        if self.options.canary:
            await asyncio.to_thread(self._canary_share)
        refs = [(PRIMARY, self.options.ref)]
        if self.options.canary:
            refs.append((CANARY, self.options.canary.ref))
        if self.options.shadow:
            refs.append((SHADOW, self.options.shadow))
        for role, ref in refs:
            model = await asyncio.to_thread(self.source.load, ref)
            await asyncio.to_thread(_warm_up, model)
            self.slots[role] = Slot(ref, role, self._route(model, role))
            self._report(role, model)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="alias-watch")

    def _route(self, model: ServedModel, role: str) -> Route:
        label = f"{model.name}:{model.version}"

        def observe(requests: int, rows: int) -> None:
            self.metrics.batch_requests.labels(label, role).observe(requests)
            self.metrics.batch_rows.labels(label, role).observe(rows)

        batcher = MicroBatcher(
            model.predict,
            max_batch_rows=self.options.max_batch_rows,
            max_delay=self.options.max_delay_ms / 1000,
            observer=observe,
            name=f"{role}-{model.version}",
            thread_initializer=partial(limit_native_threads, self.options.model_threads),
        )
        return Route(model, batcher, role)

    def _report(self, role: str, model: ServedModel) -> None:
        self.metrics.served_version.labels(model.name, self.slots[role].ref, role).set(
            model.version
        )

    # routing ---------------------------------------------------------------------------
    @property
    def primary(self) -> Route:
        return self.slots[PRIMARY].route

    @property
    def shadow(self) -> Route | None:
        slot = self.slots.get(SHADOW)
        return None if slot is None else slot.route

    def routes(self) -> list[Route]:
        return [s.route for s in self.slots.values()]

    def select(self, name: str | None, version: str | None, request_id: str | None) -> Route:
        """The route for a request naming ``name`` (and maybe ``version``).

        Only inference requests (with an id) are bucketed for the canary; a lookup without
        one (metadata, readiness) describes the primary."""
        routes = [r for r in self.routes() if name is None or r.model.name == name]
        if not routes:
            raise ModelNotServedError(
                f"model {str(name)[:100]!r} is not served here; this server serves "
                f"{self.describe()}"
            )
        if version:
            for r in routes:
                if str(r.model.version) == version:
                    return r
            raise ModelNotServedError(
                f"version {version[:40]!r} of model {routes[0].model.name!r} is not served "
                f"here; served: {self.describe()}"
            )
        primary = self.primary
        if name is not None and primary.model.name != name:
            answering = [r for r in routes if r.role != SHADOW]
            return (answering or routes)[0]
        canary = self.slots.get(CANARY)
        if (
            canary is not None
            and request_id is not None
            and _bucket(request_id) < self.canary_percent
        ):
            return canary.route
        return primary

    def describe(self) -> str:
        return ", ".join(
            f"{r.model.name}:{r.model.version} ({r.role}, {self.slots[r.role].ref})"
            for r in self.routes()
        )

    def _canary_share(self) -> None:
        """The canary's share: the retraining loop's when ``--canary name@alias`` gives
        none; a share given that differs from the loop's is refused, naming both."""
        spec = self.options.canary
        assert spec is not None
        found = self.source.loop_canary(spec.ref)
        if spec.percent is None:
            if found is None:
                raise InvalidInputError(
                    f"--canary {spec.ref} takes its share from the retraining loop that "
                    f"moves {spec.ref}, and there is none in this workspace yet: declare or "
                    f"tick the loop first, or give a share, e.g. --canary {spec.ref}:10"
                )
            if found[1] != self.canary_percent:
                log.warning(
                    "canary %s: %g%% of requests, the share of loop %r",
                    spec.ref,
                    found[1],
                    found[0],
                )
            self.canary_percent = found[1]
        elif found is not None and found[1] != spec.percent:
            raise InvalidInputError(
                f"--canary {spec.ref}:{spec.percent:g} sends {spec.percent:g}% of requests to "
                f"the canary, but loop {found[0]!r} that moves {spec.ref} has canary="
                f"{found[1] / 100:g} ({found[1]:g}%); give --canary {spec.ref} to take the "
                "loop's share, or change the loop's"
            )

    # hot switch ------------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A registry hiccup must not stop serving the version already loaded.
                log.exception("checking the registry for alias moves failed; will retry")

    async def refresh(self) -> list[str]:
        """Switch every slot whose reference now points to another version, and follow
        the loop's canary share."""
        if self.options.canary and self.options.canary.follows_loop:
            await asyncio.to_thread(self._canary_share)
        switched = []
        for slot in list(self.slots.values()):
            name, version = await asyncio.to_thread(self.source.resolve_version, slot.ref)
            current = slot.route.model
            if (name, version) == (current.name, current.version):
                continue
            model = await asyncio.to_thread(self.source.load_version, name, version, slot.ref)
            await asyncio.to_thread(_warm_up, model)
            old = slot.route
            slot.route = self._route(model, slot.role)
            self._report(slot.role, model)
            self.switches += 1
            task = asyncio.get_running_loop().create_task(old.batcher.close())
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
            message = f"{slot.ref}: switched {current.name}:{current.version} -> {name}:{version}"
            log.warning(message)
            switched.append(message)
        return switched

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await asyncio.gather(*self._retired, return_exceptions=True)
        for route in self.routes():
            await route.batcher.close()


def _bucket(request_id: str) -> float:
    """A stable 0-100 bucket per request id: a retried request meets the same model."""
    digest = hashlib.blake2b(request_id.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


def _warm_up(model: ServedModel) -> None:
    # The first call pays lazy imports and allocations; do it before taking traffic.
    example = model.example()
    if example is not None:
        model.predict(model.check(example))
