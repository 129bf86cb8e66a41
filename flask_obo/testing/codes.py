"""What the interactive endpoints remember: authorization codes, sign-in sessions, and the
sign-in requests waiting on a person (the pages between ``/authorize`` and the redirect).

Codes and session cookies are opaque random strings kept only as SHA-256 digests, as refresh
tokens are (see ``issuance.py``). A code is good for one redemption within ten minutes; it
remembers everything the token endpoint checks: the client, the redirect URI and its platform
(a code for a single-page app must be redeemed cross-origin, any other code must not be), the
PKCE challenge, the nonce, and who signed in how.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "CODE_LIFETIME",
    "AuthorizationCode",
    "CodeStore",
    "PendingSignIns",
    "SignInSession",
    "SignInSessions",
    "SignedInAccount",
]

CODE_LIFETIME = 600  # seconds: Entra's codes live about ten minutes
_T = TypeVar("_T")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class AuthorizationCode:
    """What one authorization code stands for."""

    client_id: str
    redirect_uri: str
    platform: str  # where redirect_uri is registered: "spa", "web" or "public" (redirects.py)
    tenant_id: str
    oid: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    amr: tuple[str, ...]
    auth_time: float
    expires_at: float


class CodeStore:
    """One-time authorization codes, kept as digests.

    ``redeem`` burns a code on its first presentation, whatever the outcome of the rest of the
    request: a second presentation is refused as already redeemed (AADSTS54005).
    """

    def __init__(self, max_codes: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._codes: OrderedDict[str, tuple[AuthorizationCode, bool]] = OrderedDict()
        self._max = max_codes

    def issue(self, code: AuthorizationCode) -> str:
        raw = "1.A" + secrets.token_urlsafe(48)
        with self._lock:
            self._codes[_digest(raw)] = (code, False)
            while len(self._codes) > self._max:
                self._codes.popitem(last=False)
        return raw

    def redeem(self, raw: str) -> tuple[AuthorizationCode | None, bool]:
        """``(code, already_redeemed)``; ``(None, False)`` for a code never issued."""
        key = _digest(raw)
        with self._lock:
            found = self._codes.get(key)
            if found is None:
                return None, False
            self._codes[key] = (found[0], True)
            return found


@dataclass
class SignedInAccount:
    """One account signed in to a browser session, and how it authenticated."""

    oid: str
    tenant_id: str
    auth_time: float
    amr: tuple[str, ...]


@dataclass
class SignInSession:
    """The emulator's sign-in session (Entra's ESTSAUTH cookie): the accounts signed in."""

    accounts: dict[str, SignedInAccount] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)


class _Bounded(Generic[_T]):
    """A thread-safe, size-bounded map from opaque random handles (kept as digests) to values."""

    def __init__(self, max_items: int) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, _T] = OrderedDict()
        self._max = max_items

    def add(self, value: _T) -> str:
        handle = secrets.token_urlsafe(32)
        with self._lock:
            self._items[_digest(handle)] = value
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return handle

    def get(self, handle: str | None) -> _T | None:
        if not handle:
            return None
        with self._lock:
            return self._items.get(_digest(handle))

    def remove(self, handle: str | None) -> None:
        if handle:
            with self._lock:
                self._items.pop(_digest(handle), None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class SignInSessions(_Bounded[SignInSession]):
    """Browser sessions by cookie value."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        super().__init__(max_sessions)


class PendingSignIns(_Bounded[_T]):
    """Sign-in requests waiting for the person at a page, by the handle in the page's form."""

    def __init__(self, max_pending: int = 10_000) -> None:
        super().__init__(max_pending)
