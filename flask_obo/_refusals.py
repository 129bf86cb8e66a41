"""Server-log lines that say why a request was refused, without letting a flood flood the log.

The client gets a short fixed phrase; the operator needs more: which check failed and the
non-secret values it compared (the received and expected ``aud``, ``iss``, ``tid``, the scope
that was missing), as Microsoft.Identity.Web's IDX10214 and IDX10205 lines give them. Never the
token: a SHA-256 prefix names it, so a client can tell which of its tokens it was.

Levels (logger ``flask_obo``): DEBUG for a request that sent no token (browsers, probes), INFO
for a token that expired or is not valid yet (clients renew those), WARNING for every other
refusal (a client or API configured for something else, or a forged token). Each reason gets at
most ``burst`` lines per ``window`` seconds in a process; the first line after that says how
many were left out. Each app has its own (``OboState.refusals``), on the app's clock.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import OboError

if TYPE_CHECKING:
    from flask import Request

__all__ = ["RefusalLog", "clean", "one_line", "request_line"]

_LEVELS = {"missing": logging.DEBUG, "expired": logging.INFO, "not_yet_valid": logging.INFO}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str, limit: int = 200) -> str:
    """Text that may come from the request, short and on one line."""
    text = _CONTROL.sub("?", text)
    return text if len(text) <= limit else text[:limit] + "..."


def request_line(req: Request) -> str:
    """``GET /path``, as a refusal's log line names the request."""
    return f"{req.method} {one_line(req.path)}"


def clean(value: object, limit: int = 120) -> str:
    """``repr`` of a value that may come from the request, short and on one line."""
    return one_line(repr(value), limit)


@dataclass
class _Window:
    start: float
    lines: int = 0
    left_out: int = 0


class RefusalLog:
    """Writes one explaining line per refusal, at most ``burst`` per reason per ``window``."""

    def __init__(self, logger: logging.Logger | None = None, *, burst: int = 5,
                 window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger or logging.getLogger("flask_obo")
        self.burst = burst
        self.window = window
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def refused(self, error: OboError, *, where: str = "", token: str | None = None) -> None:
        """Log ``error`` (its reason, status and ``log_detail``) unless its reason is over its
        allowance; ``where`` is the request (``GET /me``), ``token`` is only hashed."""
        reason = error.reason or type(error).__name__
        level = _LEVELS.get(reason, logging.WARNING)
        if not self.logger.isEnabledFor(level):
            return
        with self._lock:
            now = self._clock()
            window = self._windows.get(reason)
            left_out = 0
            if window is None or now - window.start >= self.window:
                left_out = window.left_out if window is not None else 0
                window = self._windows[reason] = _Window(now)
            if window.lines >= self.burst:
                window.left_out += 1
                return
            window.lines += 1
        parts = [f"flask-obo: refused {where or 'a request'}: {error.code} "
                 f"{error.error or type(error).__name__} ({reason})"]
        if error.log_detail:
            parts.append(f": {error.log_detail}")
        if token:
            digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
            parts.append(f"; token sha256:{digest[:12]}")
        if left_out:
            parts.append(f" (and {left_out} more refusals for {reason} left out of the log)")
        self.logger.log(level, "%s", "".join(parts))
