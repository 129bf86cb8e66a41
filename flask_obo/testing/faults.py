"""Faults for the next N calls of an endpoint: an error status, a delay, a dropped connection,
or a malformed body.

Usage::

    emu.faults.inject("token", "status", status=503, retry_after=2)   # next token call: 503
    emu.faults.inject("jwks", "delay", delay=1.5, count=3)           # next 3 JWKS fetches: +1.5 s
    emu.faults.inject("discovery", "drop")                           # close without an answer
    emu.faults.inject("token", "malformed")                          # 200 with a body of garbage
    emu.faults.clear()

Endpoints: ``"token"``, ``"discovery"`` (v1 and v2 OpenID configuration, or one of them:
``"discovery_v1"``, ``"discovery_v2"``), ``"jwks"`` (both key sets), ``"userrealm"``,
``"authorize"``, or ``"*"`` for any of them. Faults queue up per
endpoint and are used first-in, first-out; ``count`` repeats one fault. A ``"delay"`` fault
delays the call and then answers it normally.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["ENDPOINTS", "KINDS", "Fault", "FaultInjector"]

ENDPOINTS = frozenset({"token", "discovery", "discovery_v1", "discovery_v2", "jwks", "userrealm",
                       "authorize", "userinfo", "*"})
KINDS = frozenset({"status", "delay", "drop", "malformed"})


@dataclass(frozen=True)
class Fault:
    """One fault to apply to one call."""

    endpoint: str
    kind: str
    status: int = 503
    retry_after: int | None = None
    delay: float = 0.0


class FaultInjector:
    """Thread-safe queues of faults, per endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}
        self._applied: list[Fault] = []

    def inject(
        self,
        endpoint: str,
        kind: str = "status",
        count: int = 1,
        *,
        status: int = 503,
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next ``count`` calls of ``endpoint`` fail with ``kind``.

        ``kind="status"`` answers ``status`` (500, 503, 429, ...) with an Entra-shaped
        ``temporarily_unavailable``/``server_error`` body and, when given, ``Retry-After``.
        ``kind="delay"`` sleeps ``delay`` seconds before answering normally. ``kind="drop"``
        closes the connection without any answer. ``kind="malformed"`` answers 200 with a body
        that is not JSON.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if kind == "status" and not 400 <= status <= 599:
            raise ValueError("a status fault needs an HTTP error status (400-599)")
        if kind == "delay" and delay <= 0:
            raise ValueError("a delay fault needs delay > 0 (seconds)")
        fault = Fault(endpoint, kind, status, retry_after, delay)
        with self._lock:
            self._queues.setdefault(endpoint, deque()).extend([fault] * count)

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
        """Drop every queued fault (and forget the applied ones)."""
        with self._lock:
            self._queues.clear()
            self._applied.clear()
