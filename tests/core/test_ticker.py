"""The background thread the batching writers share (core/ticker.py). Every wait here is
a deadline for a failure, never a measure: the interval is an hour, so only ``wake``
makes a tick happen."""

from __future__ import annotations

import logging
import threading

import pytest

from loopml.core.ticker import Ticker

HOUR = 3600.0
DEADLINE = 30.0


class Counting:
    def __init__(self, fail_first: bool = False) -> None:
        self.ticks = 0
        self.fail_first = fail_first
        self.ticked = threading.Event()

    def __call__(self) -> None:
        self.ticks += 1
        self.ticked.set()
        if self.fail_first and self.ticks == 1:
            raise RuntimeError("the first tick breaks")

    def woken(self, ticker: Ticker) -> None:
        """Wake ``ticker`` and wait for the tick that follows."""
        ticker.wake()
        assert self.ticked.wait(DEADLINE), "no tick"
        self.ticked.clear()


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_the_thread_starts_on_first_use_once_and_ticks_when_woken() -> None:
    tick = Counting()
    ticker = Ticker(tick, interval=HOUR, name="ticker-test-start")
    assert not ticker.started and threads_named("ticker-test-start") == []
    for _ in range(3):
        ticker.start()
    assert ticker.started and len(threads_named("ticker-test-start")) == 1
    tick.woken(ticker)
    tick.woken(ticker)
    ticker.stop()
    assert tick.ticks == 2
    assert threads_named("ticker-test-start") == []


def test_after_stop_nothing_ticks_and_nothing_starts_again() -> None:
    tick = Counting()
    ticker = Ticker(tick, interval=HOUR, name="ticker-test-stop")
    ticker.start()
    ticker.stop()
    ticker.stop()  # safe twice
    ticker.wake()
    ticker.start()
    assert ticker.stopped and threads_named("ticker-test-stop") == []
    assert tick.ticks == 0


def test_a_stop_before_any_start_means_no_thread_ever() -> None:
    ticker = Ticker(Counting(), interval=HOUR, name="ticker-test-never")
    ticker.stop()
    ticker.start()
    assert not ticker.started and threads_named("ticker-test-never") == []


def test_a_failing_tick_is_logged_and_the_thread_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tick = Counting(fail_first=True)
    ticker = Ticker(tick, interval=HOUR, name="ticker-test-fail")
    ticker.start()
    with caplog.at_level(logging.ERROR, logger="loopml.core.ticker"):
        tick.woken(ticker)
        tick.woken(ticker)
    ticker.stop()
    assert tick.ticks == 2
    assert "ticker-test-fail" in caplog.text and "the first tick breaks" in caplog.text


def test_a_tick_may_stop_its_own_ticker() -> None:
    done = threading.Event()

    def stop_myself() -> None:
        ticker.stop()  # joining itself would hang: it must not try
        done.set()

    ticker = Ticker(stop_myself, interval=HOUR, name="ticker-test-self")
    ticker.start()
    ticker.wake()
    assert done.wait(DEADLINE)
    ticker.stop()
    assert threads_named("ticker-test-self") == []
