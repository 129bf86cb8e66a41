"""Time in tests: a clock the test moves, and waiting for something a test can observe.

A test never sleeps to let time pass: it gives flask-obo a ``Clock`` (``FlaskOBO(clock=...)``,
``OboTokenCache(clock=...)``, ``TokenValidator(clock=...)``) and moves it. A test that waits for
another thread waits for an event, or for a condition it can observe (the emulator's call log),
with a generous timeout only as a guard against a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Clock", "wait_for"]


class Clock:
    """Epoch seconds that move only when the test says: ``clock.advance(3600)``."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


def wait_for(predicate: Callable[[], object], timeout: float = 10.0,
             interval: float = 0.01) -> bool:
    """Whether ``predicate()`` became true within ``timeout`` seconds, checked every
    ``interval`` (longer for a predicate that does work, such as a request)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)  # the poll interval: the condition decides, not the time
    return True
