"""One call per key at a time within a process: concurrent callers wait for the leader's result.

Concurrent cache misses for one user and scope set would otherwise each go to the identity
provider. The leader runs the call; followers block on an event (bounded by ``timeout``) and
receive the same result, or an error of their own: a fresh exception of the leader's type with
the same public fields, never the leader's object, whose traceback holds the leader's frames
(and in their locals the leader's bearer token), which an error reporter recording locals
would ship in another request's report. Background refreshes join the same flights, so a
request that misses while a refresh-ahead is in progress waits for it instead of duplicating it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from ._fork import reset_after_fork
from .errors import FlaskOBOError, FlightTimeout

__all__ = ["SingleFlight"]

T = TypeVar("T")
log = logging.getLogger("flask_obo.cache")


class _Flight(Generic[T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """Deduplicates concurrent calls by key, and runs fire-and-forget refreshes in a small pool."""

    def __init__(self, *, background_workers: int = 2) -> None:
        self._workers = background_workers
        self._reset()
        # A forked worker inherits the parent's flights, whose leaders do not exist in it,
        # and maybe a held lock: it starts with none, and builds its own thread pool.
        reset_after_fork(self)

    def after_fork_in_child(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight[T]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = os.getpid()

    def in_flight(self, key: str) -> bool:
        return key in self._flights

    def run(self, key: str, call: Callable[[], T], *, timeout: float) -> tuple[T, bool]:
        """``(result, led)``: ``led`` is False when the result came from another caller's call."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if leader:
            return self._lead(key, flight, call), True
        if not flight.done.wait(timeout):
            raise FlightTimeout(key)
        if flight.error is not None:
            raise _fresh(flight.error) from None
        return flight.result, False  # type: ignore[return-value]

    def _lead(self, key: str, flight: _Flight[T], call: Callable[[], T]) -> T:
        try:
            flight.result = call()
            return flight.result
        except BaseException as exc:
            flight.error = _fresh(exc)  # a template without the leader's traceback
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def start_in_background(self, key: str, call: Callable[[], T]) -> bool:
        """Run ``call`` as the leader of ``key`` in a worker thread, unless ``key`` is in flight.

        Returns whether a call was started. Errors are the call's own to handle and log.
        """
        if key in self._flights:
            return False
        executor = self._pool()
        with self._lock:  # claim the flight now, so a second caller sees it at once
            if key in self._flights:
                return False
            flight = self._flights[key] = _Flight()

        def task() -> None:
            with contextlib.suppress(Exception):  # the call reports its own failures
                self._lead(key, flight, call)

        try:
            executor.submit(task)
        except RuntimeError:  # interpreter or pool shutting down
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()
            return False
        return True

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=self._workers, thread_name_prefix="flask-obo-refresh")
        return self._executor

    def close(self) -> None:
        """Wait for background refreshes to finish and release their threads."""
        executor, self._executor = self._executor, None
        if executor is not None and self._executor_pid == os.getpid():
            executor.shutdown(wait=True)


def _fresh(error: BaseException) -> BaseException:
    """A new exception of ``error``'s type with its arguments and attributes (containers
    copied, so no caller's changes reach another's), and no traceback, cause or context."""
    cls = type(error)
    try:
        fresh = cls.__new__(cls, *error.args)
        fresh.args = error.args
        for name, value in vars(error).items():
            setattr(fresh, name, value.copy() if isinstance(value, (dict, list, set)) else value)
    except Exception:  # a type that cannot be built this way: say what failed, no more
        return FlaskOBOError(f"the call this request waited for failed with {cls.__name__}")
    return fresh
