"""The record of requests the emulator answered, with every secret redacted.

Secrets, passwords, assertions and refresh tokens never enter the log: each is replaced by
``"sha256:<first 16 hex digits>"``, enough to tell two values apart and nothing more.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["CallLog", "fingerprint", "redact_form"]

logger = logging.getLogger("flask_obo.testing")

SECRET_PARAMS = frozenset({
    "client_secret", "client_assertion", "assertion", "password", "refresh_token", "code",
    "device_code", "code_verifier",
})
_GRANT_ALIASES = {
    "obo": "on_behalf_of",
    "ropc": "password",
    "client_credentials": "client_credentials",
}


def fingerprint(value: str) -> str:
    """``sha256:<prefix>`` of ``value``: safe to log, compare and show."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:16]


def redact_form(form: Mapping[str, str]) -> dict[str, str]:
    return {k: fingerprint(v) if k in SECRET_PARAMS else v for k, v in form.items()}


class CallLog:
    """Thread-safe list of call records (dicts), newest last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def add(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._records.append(dict(record))
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(copy.deepcopy(dict(record)))
            except Exception:  # a listener's bug must not break the emulator's answer
                logger.exception("Entra emulator: a call listener failed")

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def query(
        self, grant: str | None = None, *, endpoint: str | None = "token"
    ) -> list[dict[str, Any]]:
        """Records of ``endpoint`` (``None`` or ``"*"`` for all) and, for the token endpoint,
        of ``grant`` (``"on_behalf_of"``, ``"client_credentials"``, ``"password"``,
        ``"refresh_token"``, or a full ``grant_type``)."""
        wanted = _GRANT_ALIASES.get(grant, grant) if grant else None
        with self._lock:
            records = list(self._records)
        out = []
        for rec in records:
            if endpoint not in (None, "*") and rec.get("endpoint") != endpoint:
                continue
            if wanted and wanted not in (rec.get("grant"), rec.get("grant_type")):
                continue
            out.append(copy.deepcopy(rec))
        return out

    def count(self, endpoint: str | None = None) -> int:
        with self._lock:
            if endpoint in (None, "*"):
                return len(self._records)
            return sum(1 for r in self._records if r.get("endpoint") == endpoint)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
