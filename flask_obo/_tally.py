"""Counts on the request path, read by a collector: the tallies under flask-obo's counters.

OpenTelemetry's counters there are observable (``telemetry.py``): adding one to a tally must
cost next to nothing, exactly, from any number of threads. Each thread counts in a dict of its
own, without a lock (a lock, cold in the middle of a request, costs more than all the rest);
the collector sums the dicts. No OpenTelemetry here: plain counting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ._fork import reset_after_fork

__all__ = ["MAX_SERIES", "MAX_THREADS", "Attributes", "Series", "SeriesMemo", "Tally"]

Attributes = dict[str, str | bool]
MAX_SERIES = 512  # distinct attribute sets per memo: a bound on cardinality, whatever happens
MAX_THREADS = 256  # threads counting in dicts of their own, per tally


class Series:
    """One attribute set, built once: hashed by identity, cheaper on the hot path than a tuple
    of pairs (whose hash is computed at every lookup)."""

    __slots__ = ("attributes",)

    def __init__(self, attributes: Attributes) -> None:
        self.attributes = attributes


class Tally:
    """Counts per ``Series``, exact whatever the threads.

    A dead thread's counts are settled into one shared dict when the next thread starts
    counting, so a server that makes a thread per request keeps one dict per live thread. Past
    ``MAX_THREADS`` (green threads that never look dead), threads count in the shared dict,
    under the lock. ``enabled=False``: nothing is counted (nobody could read it).
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self._reset()
        reset_after_fork(self)
        if not enabled:
            self.add = _ignore  # type: ignore[method-assign]

    def _reset(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()  # for the list of threads and the shared dict
        self._threads: list[tuple[threading.Thread, dict[Series, int]]] = []
        self._settled: dict[Series, int] = {}

    def add(self, series: Series) -> None:
        try:
            counts: dict[Series, int] | None = self._local.counts
        except AttributeError:
            counts = self._join()
        if counts is None:
            with self._lock:
                self._settled[series] = self._settled.get(series, 0) + 1
        else:
            counts[series] = counts.get(series, 0) + 1

    def totals(self) -> dict[Series, int]:
        with self._lock:
            self._settle_dead()
            totals = dict(self._settled)
            # Copies: their threads may be counting meanwhile.
            for counts in [dict(counts) for _, counts in self._threads]:
                for series, count in counts.items():
                    totals[series] = totals.get(series, 0) + count
        return totals

    def after_fork_in_child(self) -> None:
        # A worker counts its own requests: the parent's (a preloading master's) are not its.
        self._reset()

    def _join(self) -> dict[Series, int] | None:
        counts: dict[Series, int] = {}
        with self._lock:
            self._settle_dead()
            joined = len(self._threads) < MAX_THREADS
            if joined:
                self._threads.append((threading.current_thread(), counts))
        self._local.counts = counts if joined else None
        return self._local.counts  # type: ignore[no-any-return]

    def _settle_dead(self) -> None:
        alive = []
        for thread, counts in self._threads:
            if thread.is_alive():
                alive.append((thread, counts))
            else:  # it counts no more
                for series, count in counts.items():
                    self._settled[series] = self._settled.get(series, 0) + count
        self._threads = alive


def _ignore(series: Series) -> None:
    pass


class SeriesMemo:
    """The ``Series`` of each distinct tuple of values, built once. Bounded: past
    ``MAX_SERIES``, ``overflow`` gives coarser attributes, whose few series are kept instead."""

    def __init__(self, build: Callable[..., Attributes],
                 overflow: Callable[..., Attributes]) -> None:
        self._build = build
        self._overflow = overflow
        self._known: dict[tuple[Any, ...], Series] = {}
        self._interned: dict[tuple[tuple[str, str | bool], ...], Series] = {}

    def get(self, *values: Any) -> Series:
        series = self._known.get(values)
        if series is not None:
            return series
        if len(self._known) >= MAX_SERIES:
            return self._intern(self._overflow(*values))
        series = self._known[values] = self._intern(self._build(*values))
        return series

    def _intern(self, attributes: Attributes) -> Series:
        # Equal attributes, one series: two values that label alike are one time series.
        return self._interned.setdefault(tuple(sorted(attributes.items())), Series(attributes))
