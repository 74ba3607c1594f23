"""A background thread that does one piece of work every few seconds, or sooner when woken.

The writers that batch in the background (metric points, the server's audit rows) each
need the same thread around their own work: started on first use rather than at
construction (most handles never write), and stopped by a close that must not wait for
the interval to run out. Each keeps its own
``tick`` and its own close semantics (what to flush last, what to do if that fails).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Ticker:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread named ``name``, and
    at once after :meth:`wake`, from :meth:`start` until :meth:`stop`.

    ``tick`` handles its own expected failures; anything it lets through is logged with
    its traceback and the thread goes on, since a writer whose thread died would queue
    forever in silence."""

    def __init__(self, tick: Callable[[], None], *, interval: float, name: str) -> None:
        self._tick = tick
        self.interval = interval
        self.name = name
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self) -> None:
        """Start the thread unless it runs or was stopped; cheap to call on every use."""
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None and not self._stopped:
                thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                thread.start()
                self._thread = thread

    def wake(self) -> None:
        """Have the next tick come now rather than at the end of the interval."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """No tick begins after this returns (unless a tick is what called it, or the
        one under way outlasts ``timeout``). Safe to call more than once."""
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stopped:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopped:
                return
            try:
                self._tick()
            except Exception:
                log.exception(
                    "%s: a background tick failed; the next one will try again", self.name
                )
