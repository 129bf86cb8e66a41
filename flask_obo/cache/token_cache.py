"""``OboTokenCache``: downstream tokens cached by a hash of (app, tenant, assertion, scopes).

Layers, fastest first:

- a bounded in-process map of decoded entries (the hit path: one dict lookup and a clock
  check); it also keeps serving, until each token's own expiry, while a shared backend is down;
- the Flask-Caching backend (the app's, one built from ``OBO_CACHE``, or an in-process
  ``SimpleCache``), holding JSON entries, AES-GCM encrypted when keys are configured, each with
  a TTL of the token's expiry minus ``OBO_CACHE_EXPIRY_MARGIN``.

Keys are SHA-256 digests: never an assertion or a token. A backend that fails is logged (at
most once a minute) and bypassed for a short while, never turned into a 500. An entry that does
not decode is a miss. Concurrent misses of one key share one identity-provider call; tokens
inside the refresh-ahead window are renewed in the background while the current one is served.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from .. import telemetry
from .._single_flight import SingleFlight
from ._codec import EntryCodec

__all__ = ["AccessToken", "CacheStats", "OboTokenCache", "cache_key"]

log = logging.getLogger("flask_obo.cache")

_BACKEND_RETRY_AFTER = 5.0  # seconds a failed backend is bypassed before the next attempt
_LOG_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A downstream access token. Its repr never shows the token."""

    token: str = field(repr=False)
    expires_on: float  # epoch seconds
    scopes: tuple[str, ...]
    refresh_on: float = 0.0  # epoch seconds after which a refresh-ahead is due
    #: ``"Bearer <token>"``, built once per token rather than per request.
    authorization: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "authorization", "Bearer " + self.token)

    def __str__(self) -> str:
        return repr(self)


@dataclass
class CacheStats:
    """What one process's token cache did since it was built (monitoring; the soak
    benchmark). Counted off the hit path, which costs nothing here."""

    #: acquisitions the cache could not answer at once: each waited on the identity provider,
    #: for a call of its own or another's (a miss, an expired token, a claims challenge)
    waited: int = 0
    #: refreshes queued to run in the background (refresh-ahead)
    refreshes: int = 0


def cache_key(prefix: str, kind: str, client_id: str, tenant: str, subject: str,
              scopes: Iterable[str]) -> str:
    """``prefix`` + SHA-256 over the parts. ``subject`` is already a hash (or empty)."""
    material = "\x1f".join((kind, client_id, tenant.lower(), subject, " ".join(scopes), ""))
    return prefix + hashlib.sha256(material.encode()).hexdigest()


class _Local:
    """A bounded map of decoded entries: lock-free reads, oldest-first eviction on insert."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[str, tuple[AccessToken, float]] = {}  # key -> (token, usable_until)
        self._lock = threading.Lock()

    def put(self, key: str, token: AccessToken, usable_until: float) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self.entries.pop(key, None)
            while len(self.entries) >= self.size:
                del self.entries[next(iter(self.entries))]
            self.entries[key] = (token, usable_until)

    def drop(self, key: str) -> None:
        with self._lock:
            self.entries.pop(key, None)


class OboTokenCache:
    """Downstream tokens by hashed key, over a Flask-Caching backend with an in-process front."""

    def __init__(
        self,
        backend: Any | None,
        *,
        prefix: str = "flask_obo:",
        encryption_keys: Iterable[bytes] = (),
        expiry_margin: float = 60,
        refresh_ahead: float = 300,
        wait_timeout: float = 20.0,
        local_size: int = 4096,
        lock_factory: Callable[[str], AbstractContextManager[Any]] | None = None,
        shared: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend  # a flask_caching / cachelib BaseCache, or None (front only)
        #: whether other processes and hosts read the backend's entries (then they are sealed)
        self.shared = shared
        #: epoch seconds, for token lifetimes (tests pass a clock they control)
        self.clock = clock
        self.prefix = prefix
        self.codec = EntryCodec(tuple(encryption_keys))
        self.expiry_margin = expiry_margin
        self.refresh_ahead = refresh_ahead
        self.wait_timeout = wait_timeout
        self.local = _Local(local_size)
        self._keys = functools.lru_cache(maxsize=max(1024, local_size))(
            functools.partial(cache_key, prefix))
        self.flights: SingleFlight[AccessToken] = SingleFlight()
        self.stats = CacheStats()
        self._stats_lock = threading.Lock()
        # Cross-process mutual exclusion around a fill (Redis locks); in-process: none needed.
        self._lock_factory = lock_factory or (lambda key: contextlib.nullcontext())
        self._backend_failed_at = float("-inf")
        self._last_log = float("-inf")  # the first failure is logged, whatever the uptime

    def key(self, kind: str, client_id: str, tenant: str, subject: str,
            scopes: Iterable[str]) -> str:
        """``cache_key`` with this cache's prefix, remembered for recent arguments: the same
        caller's token asks for the same key on every request (a hash of hashes, no secret)."""
        return self._keys(kind, client_id, tenant, subject,
                          scopes if isinstance(scopes, tuple) else tuple(scopes))

    def lock(self, key: str) -> AbstractContextManager[Any]:
        """The cross-process lock of ``key`` (on Redis; elsewhere a no-op): held around one
        identity-provider call, or given up after its wait."""
        return self._lock_factory(key)

    # reads ---------------------------------------------------------------------------------
    def get(self, key: str) -> AccessToken | None:
        """A usable token (before its expiry minus the margin), or None."""
        hit = self.local.entries.get(key)
        if hit is not None and self.clock() < hit[1]:
            return hit[0]
        return self._get_from_backend(key)

    def _get_from_backend(self, key: str) -> AccessToken | None:
        raw = self._backend_call("get", key)
        if raw is None:
            return None
        entry = self.codec.decode(key, raw)
        if entry is None:
            log.debug("cache entry %s did not decode: treated as a miss", key[-12:])
            return None
        token_str, expires_on, refresh_on, scopes = entry
        usable_until = expires_on - self.expiry_margin
        if self.clock() >= usable_until:
            return None
        token = AccessToken(token_str, expires_on, scopes, refresh_on)
        self.local.put(key, token, usable_until)
        return token

    # writes --------------------------------------------------------------------------------
    def set(self, key: str, token: AccessToken) -> AccessToken:
        """Store ``token`` until its expiry minus the margin; returns it with ``refresh_on`` set."""
        now = self.clock()
        usable_until = token.expires_on - self.expiry_margin
        ttl = usable_until - now
        if ttl < 1:
            log.warning("downstream token lives %.0f s, not more than OBO_CACHE_EXPIRY_MARGIN "
                        "(%s s): not cached", token.expires_on - now, self.expiry_margin)
            return token
        token = AccessToken(token.token, token.expires_on, token.scopes,
                            usable_until - min(self.refresh_ahead, ttl / 2))
        self.local.put(key, token, usable_until)
        raw = self.codec.encode(key, (token.token, token.expires_on, token.refresh_on,
                                      token.scopes))
        self._backend_call("set", key, raw, int(ttl))
        return token

    def delete(self, key: str) -> None:
        self.local.drop(key)
        self._backend_call("delete", key)

    # misses --------------------------------------------------------------------------------
    def get_or_fetch(self, key: str, fetch: Callable[[], AccessToken], *,
                     store_key: str | None = None, force: bool = False) -> tuple[AccessToken, bool]:
        """The cached token for ``key``, else one from ``fetch`` (called once per key at a time).

        Returns ``(token, fetched)``: ``fetched`` is True for the caller whose ``fetch`` ran.
        With ``force`` the cache is not read (a claims challenge); the result is stored under
        ``store_key`` (default ``key``), replacing what was there.
        """
        store = store_key or key
        if not force:
            token = self.get(store)
            if token is not None:
                return token, False
        with self._stats_lock:
            self.stats.waited += 1

        def fill() -> AccessToken:
            with self._lock_factory(store):
                if not force:  # another process may have filled it while we waited for the lock
                    again = self._get_from_backend(store)
                    if again is not None:
                        return again
                return self.set(store, fetch())

        return self.flights.run(key, fill, timeout=self.wait_timeout)

    def refresh_in_background(self, key: str, fetch: Callable[[], AccessToken]) -> bool:
        """Start a refresh of ``key`` unless one is running; the current token keeps serving."""

        def refresh() -> AccessToken:
            with self._lock_factory(key):
                # Another process may have refreshed it while we waited for the lock.
                again = self._get_from_backend(key)
                if again is not None and again.refresh_on > self.clock():
                    return again
                return self.set(key, fetch())

        queued = self.flights.start_in_background(key, refresh)
        if queued:
            with self._stats_lock:
                self.stats.refreshes += 1
        return queued

    def close(self) -> None:
        self.flights.close()

    # backend -------------------------------------------------------------------------------
    def _backend_call(self, op: str, *args: Any) -> Any:
        # Bypassed for a while after a failure, on the cache's clock (a test moves it); a clock
        # set back ends the bypass rather than stretching it.
        if self.backend is None:
            return None
        if 0 <= self.clock() - self._backend_failed_at < _BACKEND_RETRY_AFTER:
            return None
        try:
            return getattr(self.backend, op)(*args)
        except Exception as exc:
            telemetry.cache_error(op)
            self._backend_failed_at = self.clock()
            now = time.monotonic()
            if now - self._last_log >= _LOG_INTERVAL:
                self._last_log = now
                log.error("token cache backend %s failed on %s (%s): bypassed for %.0f s; "
                          "serving from the in-process cache and the identity provider",
                          getattr(self.backend, "backend_name", type(self.backend).__name__),
                          op, type(exc).__name__, _BACKEND_RETRY_AFTER)
            return None
