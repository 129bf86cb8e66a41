"""One call per key at a time within a process: concurrent callers wait for the leader's result.

Concurrent cache misses for one user and scope set would otherwise each go to the identity
provider. The leader runs the call; followers block on an event (bounded by ``timeout``) and
receive the same result, or an error of their own: a fresh exception of the leader's type with
the same public fields, never the leader's object, whose traceback holds the leader's frames
(and in their locals the leader's bearer token), which an error reporter recording locals
would ship in another request's report.

Background refreshes (refresh-ahead) wait in a bounded queue for a few worker threads and join
the flights only when a worker starts them: a request that misses while a refresh of its key
is running waits for it instead of duplicating it, and never waits on one that has not begun
(after a mass cold start or an identity-provider latency spike the backlog could outlast the
token). When the queue is full a refresh is dropped: the token it would renew is still usable,
and the next request for it asks again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from ._fork import reset_after_fork
from .errors import FlaskOBOError, FlightTimeout

__all__ = ["SingleFlight"]

T = TypeVar("T")
log = logging.getLogger("flask_obo.cache")

_LOG_INTERVAL = 60.0  # seconds between two warnings about a full refresh queue


class _Flight(Generic[T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """Deduplicates concurrent calls by key, and runs fire-and-forget refreshes on a few
    worker threads fed by a bounded queue."""

    def __init__(self, *, background_workers: int = 4, max_queued: int = 256) -> None:
        self.background_workers = max(1, background_workers)
        self.max_queued = max(0, max_queued)
        #: refreshes dropped because the queue was full (each is asked again by a later request)
        self.dropped = 0
        self._reset()
        # A forked worker inherits the parent's flights, whose leaders do not exist in it,
        # a queue no thread serves, and maybe a held lock: it starts afresh.
        reset_after_fork(self)

    def after_fork_in_child(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._flights: dict[str, _Flight[T]] = {}
        self._queue: deque[tuple[str, Callable[[], T]]] = deque()
        self._queued: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closing = False
        self._last_drop_log = -_LOG_INTERVAL

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
        """Queue ``call`` to run as the leader of ``key`` on a worker thread, unless ``key`` is
        in flight or queued already, or the queue is full (then it is dropped).

        Returns whether it was queued. Errors are the call's own to handle and log.
        """
        with self._lock:
            if key in self._flights or key in self._queued:
                return False
            if len(self._queue) >= self.max_queued:
                self.dropped += 1
                self._log_drop_locked()
                return False
            self._queue.append((key, call))
            self._queued.add(key)
            if self._idle == 0 and len(self._threads) < self.background_workers:
                self._start_worker_locked()
            self._work.notify()
            return bool(self._threads) or self._unqueue_locked(key)

    def _start_worker_locked(self) -> None:
        thread = threading.Thread(target=self._serve, name="flask-obo-refresh", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had now: a later request asks again
            return
        self._threads.append(thread)

    def _unqueue_locked(self, key: str) -> bool:
        self._queue = deque(item for item in self._queue if item[0] != key)
        self._queued.discard(key)
        return False

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._idle += 1
                    self._work.wait()
                    self._idle -= 1
                if not self._queue:
                    return  # closing, and nothing left to do
                key, call = self._queue.popleft()
                self._queued.discard(key)
                if key in self._flights:
                    continue  # a request is fetching it itself meanwhile
                # The flight is claimed now, when the work begins, never while it waits.
                flight = self._flights[key] = _Flight()
            with contextlib.suppress(Exception):  # the call reports its own failures
                self._lead(key, flight, call)

    def _log_drop_locked(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= _LOG_INTERVAL:
            self._last_drop_log = now
            log.warning("flask-obo: %d token refreshes queued, none more taken (%d dropped so "
                        "far): each is asked again by a later request while its token is still "
                        "usable; is the identity provider slow?", len(self._queue), self.dropped)

    def close(self) -> None:
        """Run the queued refreshes, wait for them, and end the worker threads."""
        with self._lock:
            self._closing = True
            threads, self._threads = self._threads, []
            self._work.notify_all()
        for thread in threads:
            thread.join()
        with self._lock:
            self._closing = False  # usable again: a later refresh starts new workers


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
