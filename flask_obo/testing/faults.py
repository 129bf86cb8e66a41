"""Faults for the next N calls of an endpoint: an error status, a delay, a held call, a dropped
connection, a malformed body, or a JSON body of the test's own.

Usage::

    emu.faults.inject("token", "status", status=503, retry_after=2)   # next token call: 503
    emu.faults.inject("jwks", "delay", delay=1.5, count=3)           # next 3 JWKS fetches: +1.5 s
    emu.faults.inject("discovery", "drop")                           # close without an answer
    emu.faults.inject("token", "malformed")                          # 200 with a body of garbage
    emu.faults.inject("token", "json", body={"access_token": "x", "expires_in": "soon"})
    hold = emu.faults.hold("token")      # the next token call waits until hold.release()
    hold.wait_reached()                  # ... it has arrived and is waiting
    hold.release()
    emu.faults.clear()                   # also releases every held call

Endpoints: ``"token"``, ``"discovery"`` (v1 and v2 OpenID configuration, or one of them:
``"discovery_v1"``, ``"discovery_v2"``), ``"jwks"`` (both key sets), ``"userrealm"``,
``"authorize"``, ``"userinfo"``, or ``"*"`` for any of them. Faults queue up per endpoint and are
used first-in, first-out; ``count`` repeats one fault. A ``"delay"`` or ``"hold"`` fault delays
the call and then answers it normally.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENDPOINTS", "KINDS", "Fault", "FaultInjector", "Hold"]

ENDPOINTS = frozenset({"token", "discovery", "discovery_v1", "discovery_v2", "jwks", "userrealm",
                       "authorize", "userinfo", "*"})
KINDS = frozenset({"status", "delay", "drop", "malformed", "json", "hold"})


class Hold:
    """Calls held by a ``hold`` fault: they wait until :meth:`release` (or ``timeout`` seconds),
    then are answered normally. Tests use it to keep a call open while they look."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reached = threading.Event()  # set when the first held call arrives
        self._released = threading.Event()

    def wait_reached(self, timeout: float = 10.0) -> bool:
        """Whether a held call arrived within ``timeout`` seconds."""
        return self.reached.wait(timeout)

    def release(self) -> None:
        """Let every call held by this fault (and any it holds later) answer."""
        self._released.set()

    def wait(self) -> None:
        """Called by the server for each held call."""
        self.reached.set()
        self._released.wait(self.timeout)


@dataclass(frozen=True)
class Fault:
    """One fault to apply to one call."""

    endpoint: str
    kind: str
    status: int = 503
    retry_after: int | str | None = None
    delay: float = 0.0
    body: Any = field(default=None, compare=False)
    hold: Hold | None = field(default=None, compare=False, repr=False)


class FaultInjector:
    """Thread-safe queues of faults, per endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}
        self._applied: list[Fault] = []
        self._holds: list[Hold] = []

    def inject(
        self,
        endpoint: str,
        kind: str = "status",
        count: int = 1,
        *,
        status: int | None = None,
        retry_after: int | str | None = None,
        delay: float = 0.0,
        body: Any = None,
    ) -> Hold | None:
        """Make the next ``count`` calls of ``endpoint`` fail with ``kind``.

        ``kind="status"`` answers ``status`` (default 503; 500, 429, ...) with an Entra-shaped
        ``temporarily_unavailable``/``server_error`` body and, when given, ``Retry-After`` (as
        given: a number, or any text a broken server might send).
        ``kind="delay"`` sleeps ``delay`` seconds before answering normally. ``kind="hold"``
        waits until the returned :class:`Hold` is released (at most ``delay`` seconds, default
        30) before answering normally. ``kind="drop"`` closes the connection without any
        answer. ``kind="malformed"`` answers 200 with a body that is not JSON. ``kind="json"``
        answers ``status`` (default 200) with ``body`` as JSON (``NaN`` and ``Infinity`` are
        written as Python's ``json`` writes them), for answers Entra should never give.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if status is None:
            status = 200 if kind == "json" else 503
        if kind == "status" and not 400 <= status <= 599:
            raise ValueError("a status fault needs an HTTP error status (400-599)")
        if kind == "json" and not 200 <= status <= 599:
            raise ValueError("a json fault needs an HTTP status (200-599)")
        if kind == "delay" and delay <= 0:
            raise ValueError("a delay fault needs delay > 0 (seconds)")
        hold = Hold(delay or 30.0) if kind == "hold" else None
        fault = Fault(endpoint, kind, status, retry_after, delay, body, hold)
        with self._lock:
            if hold is not None:
                self._holds.append(hold)
            self._queues.setdefault(endpoint, deque()).extend([fault] * count)
        return hold

    def hold(self, endpoint: str, count: int = 1, *, timeout: float = 30.0) -> Hold:
        """Hold the next ``count`` calls of ``endpoint`` until the returned ``Hold`` is released
        (at most ``timeout`` seconds)."""
        hold = self.inject(endpoint, "hold", count, delay=timeout)
        assert hold is not None
        return hold

    def take(self, endpoint: str, name: str | None = None) -> Fault | None:
        """The next fault for a call of ``endpoint`` (more specific targets first: ``name``, the
        endpoint's own name such as ``"discovery_v1"``, then ``endpoint``, then ``"*"``)."""
        with self._lock:
            for key in (name, endpoint, "*"):
                if key is None:
                    continue
                queue = self._queues.get(key)
                if queue:
                    fault = queue.popleft()
                    self._applied.append(fault)
                    return fault
        return None

    def pending(self, endpoint: str | None = None) -> int:
        """How many faults are still queued (for ``endpoint``, or in all)."""
        with self._lock:
            if endpoint is not None:
                return len(self._queues.get(endpoint, ()))
            return sum(len(q) for q in self._queues.values())

    @property
    def applied(self) -> list[Fault]:
        """Faults already used, oldest first."""
        with self._lock:
            return list(self._applied)

    def clear(self) -> None:
        """Drop every queued fault, release every held call (and forget the applied ones)."""
        with self._lock:
            self._queues.clear()
            self._applied.clear()
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.release()
