"""A short Redis lock per cache key, so processes sharing a Redis make one identity-provider
call per key between them (``OboTokenCache``'s ``lock_factory``).

The holder sets ``<entry key>:lock`` to a random value with ``SET NX PX``; only that value can
delete it (a Lua compare-and-delete), so a holder whose lock expired cannot release the next
holder's. The others retry with a short backoff until they hold it (the cache then reads the
entry the previous holder stored) or until their wait is over. A holder that dies leaves a
lock that expires after ``ttl``, and a waiter then calls the identity provider itself. Each
process's own waiters are already one thanks to the in-process single flight.

Redis failing never blocks a request: the lock is skipped (the fetch happens without it) and
the failure is logged as a warning (the cache logs the outage itself) at most once a minute;
while the store knows Redis is down, the lock is not tried at all.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from ._redis_store import RedisEntryStore

__all__ = ["RedisLocks"]

log = logging.getLogger("flask_obo.cache")

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_FIRST_DELAY = 0.005
_MAX_DELAY = 0.1
_LOG_INTERVAL = 60.0


class RedisLocks:
    """``locks(key)`` -> a context manager that holds ``key``'s lock (or gave up on it)."""

    def __init__(self, store: RedisEntryStore, *, ttl: float, wait: float | None = None) -> None:
        self.store = store
        self.ttl_ms = max(1, int(ttl * 1000))
        # Longer than the lock lives: a dead holder's lock expires before its waiters give up.
        self.wait = ttl + 1.0 if wait is None else wait
        self._release: Any = None  # the registered script, made on first use
        self._last_log = -_LOG_INTERVAL

    def __call__(self, key: str) -> AbstractContextManager[bool]:
        return self._hold(key)

    def name(self, key: str) -> str:
        return self.store.name(key) + ":lock"

    @contextmanager
    def _hold(self, key: str) -> Iterator[bool]:
        """Yields whether the lock is held; the body runs either way."""
        if self.store.recently_failed:
            yield False
            return
        name = self.name(key)
        token = secrets.token_hex(16)
        held = self.acquire(name, token)
        try:
            yield held
        finally:
            if held:
                self.release(name, token)

    def acquire(self, name: str, token: str) -> bool:
        """Try until held, or until ``wait`` is over or Redis fails (then False)."""
        client = self.store.client
        deadline = time.monotonic() + self.wait
        delay = _FIRST_DELAY
        while True:
            try:
                if client.set(name, token, nx=True, px=self.ttl_ms):
                    return True
            except Exception as exc:
                self._failed("acquire", exc)
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("flask-obo: token cache lock %s was still held after %.1f s: "
                            "calling the identity provider without it", _short(name), self.wait)
                return False
            # Jitter keeps the waiters of several processes from polling in step.
            time.sleep(min(delay * (0.5 + random.random()), remaining))  # noqa: S311
            delay = min(delay * 2, _MAX_DELAY)

    def release(self, name: str, token: str) -> bool:
        """Delete the lock if ``token`` still holds it (it may have expired and moved on)."""
        try:
            if self._release is None:
                self._release = self.store.client.register_script(_RELEASE)
            return bool(self._release(keys=[name], args=[token]))
        except Exception as exc:
            self._failed("release", exc)  # it expires by itself
            return False

    def _failed(self, op: str, exc: Exception) -> None:
        self.store.note_failure()
        now = time.monotonic()
        if now - self._last_log >= _LOG_INTERVAL:
            self._last_log = now
            log.warning("flask-obo: token cache lock on %s failed on %s (%s): fetching "
                        "without the cross-process lock", self.store.backend_name, op,
                        type(exc).__name__)


def _short(name: str) -> str:
    """A lock name as logged: enough of the hash to tell keys apart."""
    return "..." + name[-20:]
