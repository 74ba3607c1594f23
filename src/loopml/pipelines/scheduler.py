"""The scheduler: runs pipelines whose cron time has come or whose trigger fired.

``tick(now)`` does one pass and is what tests drive with an injected clock; ``serve``
loops over ticks until told to stop (SIGTERM/SIGINT in ``loopml scheduler``). Stopping
is clean: a pipeline run in progress stops between steps and is recorded as interrupted,
resumable with ``loopml pipeline resume``.

Triggers are at least once. A scheduler claims a due occurrence with a conditional update
that leases it (``retry_at`` in the future), so several schedulers on one workspace never
run it at the same time; the cursor (the dataset version or event acted on, the next cron
time) moves only after the pipeline run finished. A failure, whether the pipeline failed
to import, to build or in a step, is recorded on the schedule and retried with
exponential backoff; a scheduler that dies mid-run leaves a lease that expires.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update

from loopml.core.clock import format_ts
from loopml.core.errors import LoopmlError
from loopml.pipelines import params as params_mod
from loopml.pipelines import records
from loopml.pipelines.loader import load_pipeline
from loopml.pipelines.records import PipelineRun
from loopml.pipelines.runner import run_pipeline
from loopml.pipelines.schedules import (
    Schedule,
    latest_dataset_version,
    list_schedules,
    next_cron_time,
)
from loopml.store.metadata.tables import pipeline_events, pipeline_schedules
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker

log = logging.getLogger("loopml.scheduler")

# A claimed occurrence is leased for this long: a scheduler that dies while running it
# leaves it to another scheduler (or itself, restarted) after the lease.
LEASE_SECONDS = 3600.0
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0


def backoff(
    failures: int, base: float = RETRY_BASE_SECONDS, cap: float = RETRY_MAX_SECONDS
) -> float:
    """Seconds before retrying after ``failures`` failures in a row: base, 2 base, 4 base..."""
    return float(min(cap, base * 2 ** max(0, min(failures - 1, 30))))


@dataclass(frozen=True)
class Fired:
    schedule: str
    reason: str
    run: PipelineRun | None
    # None when the run finished; otherwise what went wrong (the run's status or error).
    error: str | None = None
    failures: int = 0  # failures in a row, this one included
    retry_at: float | None = None  # when a failed occurrence is tried again

    @property
    def ok(self) -> bool:
        return self.error is None


class Scheduler:
    def __init__(
        self,
        ws: Workspace,
        *,
        clock: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
        tracker: Tracker | None = None,
        lease_seconds: float = LEASE_SECONDS,
        retry_base: float = RETRY_BASE_SECONDS,
        retry_max: float = RETRY_MAX_SECONDS,
    ) -> None:
        self.ws = ws
        self.clock = clock
        self.stop = stop or threading.Event()
        # One tracker for every run this scheduler starts, not one per pipeline run.
        self._own_tracker = tracker is None
        self.tracker = tracker if tracker is not None else Tracker(ws)
        self.lease_seconds = lease_seconds
        self.retry_base = retry_base
        self.retry_max = retry_max

    def close(self) -> None:
        """Flush and stop the tracker this scheduler made (not one it was given)."""
        if self._own_tracker:
            self.tracker.close()

    def tick(self, now: float | None = None) -> list[Fired]:
        """Run everything due at ``now``; return what fired."""
        at = self.clock() if now is None else now
        fired = []
        for sched in list_schedules(self.ws):
            if self.stop.is_set():
                break
            if not sched.enabled:
                continue
            try:
                claim = self._claim(sched, at)
            except Exception as exc:  # e.g. the dataset it watches cannot be read now
                log.error("schedule %s: cannot check its trigger: %s", sched.name, exc)
                fired.append(Fired(sched.name, "trigger check", None, f"{exc}"))
                continue
            if claim is not None:
                fired.append(self._run(sched, at, *claim))
        return fired

    def serve(self, poll_seconds: float = 5.0) -> None:
        """Tick until ``stop`` is set; a tick that fails is logged, not fatal."""
        while not self.stop.is_set():
            try:
                for f in self.tick():
                    log.info("schedule %s fired (%s): %s", f.schedule, f.reason, f.error or "ok")
            except Exception:
                log.exception("scheduler tick failed; retrying at the next poll")
            self.stop.wait(poll_seconds)

    # claiming ---------------------------------------------------------------------
    def _claim(self, s: Schedule, now: float) -> tuple[str, dict[str, object], object] | None:
        """(reason, extra params, new cursor) if this scheduler won the due occurrence."""
        if s.retry_at is not None and s.retry_at > now:
            return None  # leased by a running scheduler, or backing off after a failure
        claim: tuple[str, dict[str, object], object]
        if s.kind == "cron":
            if s.next_run is None or s.next_run > now:
                return None
            # Missed occurrences collapse into one run; the next is after ``now``.
            claim = f"cron {s.spec} at {s.next_run:.0f}", {}, next_cron_time(s.spec, now)
        elif s.kind == "dataset":
            latest = latest_dataset_version(self.ws, s.spec)
            if latest <= (s.cursor or 0):
                return None
            from loopml.data.catalog import Catalog

            assert s.param is not None
            dataset = Catalog(self.ws).get(s.spec, latest)
            claim = f"dataset {s.spec}:{latest}", {s.param: dataset}, latest
        elif s.kind == "event":
            with self.ws.engine.connect() as conn:
                newest = conn.execute(
                    select(func.max(pipeline_events.c.id)).where(
                        pipeline_events.c.name == s.spec,
                        pipeline_events.c.id > (s.cursor or 0),
                    )
                ).scalar()
            if newest is None:
                return None
            claim = f"event {s.spec}#{newest}", {}, int(newest)
        else:
            return None
        return claim if self._lease(s, now) else None

    def _lease(self, s: Schedule, now: float) -> bool:
        """Take the occurrence: only if nobody moved the schedule since it was read."""
        c = pipeline_schedules.c
        retry = c.retry_at.is_(None) if s.retry_at is None else c.retry_at == s.retry_at
        cursor = c.cursor.is_(None) if s.cursor is None else c.cursor == s.cursor
        nxt = c.next_run.is_(None) if s.next_run is None else c.next_run == s.next_run
        with self.ws.write_engine.begin() as conn:
            done = conn.execute(
                update(pipeline_schedules)
                .where(c.id == s.id, retry, cursor, nxt)
                .values(retry_at=now + self.lease_seconds)
            )
        return bool(done.rowcount)

    # running ----------------------------------------------------------------------
    def _run(
        self, s: Schedule, now: float, reason: str, extra: dict[str, object], cursor: object
    ) -> Fired:
        try:
            pipe = load_pipeline(s.pipeline_ref)
            params = {**params_mod.decode(self.ws, s.params), **extra}
            run = run_pipeline(
                self.ws,
                pipe,
                params,
                executor=s.executor,
                trigger=f"schedule:{s.name} ({reason})"[:250],
                should_stop=self.stop.is_set,
                raise_on_failure=False,
                tracker=self.tracker,
            )
        except LoopmlError as exc:
            return self._failed(s, now, reason, None, str(exc))
        except Exception as exc:
            # Whatever the user's module or pipeline raised while being set up: the
            # trigger is kept and retried, and the scheduler goes on with the others.
            log.debug("schedule %s could not start", s.name, exc_info=True)
            last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
            return self._failed(s, now, reason, None, f"{type(exc).__name__}: {exc}{where}")
        if run.status == records.FINISHED:
            column = "next_run" if s.kind == "cron" else "cursor"
            self._update(
                s,
                **{column: cursor},
                retry_at=None,
                failures=0,
                last_error=None,
                last_run_id=run.id,
            )
            return Fired(s.name, reason, run)
        if run.status == records.INTERRUPTED:
            # Stopped on request, not a failure: free the occurrence for the next start.
            self._update(s, retry_at=None, last_run_id=run.id)
            return Fired(s.name, reason, run, run.status, s.failures)
        message = (
            f"pipeline run {run.id[:12]} {run.status}: "
            + ((run.error or "").strip().splitlines() or ["see `loopml pipeline show`"])[-1]
        )
        return self._failed(s, now, reason, run, message)

    def _failed(
        self, s: Schedule, now: float, reason: str, run: PipelineRun | None, error: str
    ) -> Fired:
        failures = s.failures + 1
        retry_at = now + backoff(failures, self.retry_base, self.retry_max)
        self._update(
            s,
            failures=failures,
            retry_at=retry_at,
            last_error=error[:20_000],
            **({"last_run_id": run.id} if run is not None else {}),
        )
        log.error(
            "schedule %s failed (%d in a row), retrying at %s: %s",
            s.name,
            failures,
            format_ts(retry_at),
            error,
        )
        return Fired(s.name, reason, run, error, failures, retry_at)

    def _update(self, s: Schedule, **values: object) -> None:
        with self.ws.write_engine.begin() as conn:
            conn.execute(
                update(pipeline_schedules).where(pipeline_schedules.c.id == s.id).values(values)
            )
