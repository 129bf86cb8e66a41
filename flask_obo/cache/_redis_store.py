"""The token cache on Flask-Caching's Redis backends (RedisCache, RedisSentinelCache,
RedisClusterCache): short client timeouts, raw-bytes entries, and the client's health.

- Timeouts: redis-py waits 5 s per command and retries 10 times by default, so a hung Redis
  would hold every request for most of a minute. ``OBO_CACHE`` gets short socket timeouts and
  at most one immediate retry (which reconnects a pooled connection Redis dropped) unless its
  ``CACHE_OPTIONS`` say otherwise; a plain Redis client handed in with the app's own
  ``Cache`` gets a pool of flask-obo's own with the same timeouts.
- Entries: Flask-Caching pickles values, and unpickling what is read from a shared server lets
  whoever can write to it run code in the app. ``RedisEntryStore`` stores the codec's bytes as
  they are (AES-GCM sealed) and reads bytes back, on the primary, so a reader sees the last
  write (a replica may lag behind a lock's release).
- Health: a failed command is remembered for a few seconds so the cross-process lock is
  skipped while Redis is known to be down (the cache itself bypasses the backend and logs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["REDIS_CACHE_TYPES", "RedisEntryStore", "is_redis_backend", "with_redis_defaults"]

log = logging.getLogger("flask_obo.cache")

REDIS_CACHE_TYPES = frozenset({"RedisCache", "RedisSentinelCache", "RedisClusterCache"})
#: Seconds to connect, and to wait for an answer; overridable through CACHE_OPTIONS.
DEFAULT_SOCKET_TIMEOUT = 0.25
_FAST_ENOUGH = 1.0  # an app's own client with timeouts at or below this is used as it is
_POOL_INTERNAL = ("maint_notifications", "orig_", "himport_registry")
_RETRY_AFTER = 5.0  # seconds the lock stays off after a failure (as the cache's bypass)


def _redis_kind(cache_type: Any) -> str | None:
    """The Flask-Caching Redis backend that ``CACHE_TYPE`` names, if it names one."""
    name = str(cache_type or "")
    for kind in REDIS_CACHE_TYPES:
        if name in (kind, f"flask_caching.backends.{kind}",
                    f"flask_caching.backends.rediscache.{kind}"):
            return kind
    return None


def _retry(retries: int) -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), retries)


def with_redis_defaults(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``OBO_CACHE`` settings with flask-obo's defaults for a Redis backend filled in.

    Nothing the app set is overridden, except ``decode_responses`` (entries are bytes).
    """
    result = dict(settings)
    kind = _redis_kind(result.get("CACHE_TYPE"))
    if kind is None:
        return result
    # Cache keys already carry OBO_CACHE_KEY_PREFIX; Flask-Caching's "flask_cache_" adds nothing.
    result.setdefault("CACHE_KEY_PREFIX", "")
    options = dict(result.get("CACHE_OPTIONS") or {})
    options.pop("decode_responses", None)
    options.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
    options.setdefault("socket_connect_timeout", DEFAULT_SOCKET_TIMEOUT)
    options.setdefault("retry", _retry(1))
    if kind == "RedisSentinelCache":  # the sentinels' own connections (master discovery)
        options.setdefault("sentinel_socket_timeout", DEFAULT_SOCKET_TIMEOUT)
        options.setdefault("sentinel_socket_connect_timeout", DEFAULT_SOCKET_TIMEOUT)
        options.setdefault("sentinel_retry", _retry(0))
    if kind == "RedisClusterCache":
        result["CACHE_TYPE"] = f"{__name__}.RedisClusterCache"  # connects on first use
    result["CACHE_OPTIONS"] = options
    return result


def is_redis_backend(backend: Any) -> bool:
    """A cachelib/Flask-Caching Redis backend (its client reachable as ``_write_client``)."""
    from cachelib.redis import RedisCache  # Flask-Caching's three Redis backends extend it

    return isinstance(backend, RedisCache) and getattr(backend, "_write_client", None) is not None


class RedisEntryStore:
    """``get``/``set``/``delete`` of raw bytes on a Redis backend's client (no pickle)."""

    #: entries here are readable by other processes and hosts (OboTokenCache.shared)
    shared = True

    def __init__(self, backend: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self._clock = clock  # the token cache's: a test moves both
        self.backend_name = type(backend).__name__
        self.client = _fast_client(backend._write_client, self.backend_name)
        self._prefix = backend.key_prefix
        self._failed_at = float("-inf")

    def __repr__(self) -> str:
        return f"<RedisEntryStore on {self.backend_name}>"

    def name(self, key: str) -> str:
        """The Redis key of cache key ``key``."""
        prefix = self._prefix if isinstance(self._prefix, str) else self.backend._get_prefix()
        return f"{prefix}{key}"

    def get(self, key: str) -> bytes | None:
        try:
            value = self.client.get(self.name(key))
        except Exception:
            self.note_failure()
            raise
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, timeout: int) -> bool:
        try:
            return bool(self.client.set(self.name(key), value, ex=max(1, int(timeout))))
        except Exception:
            self.note_failure()
            raise

    def delete(self, key: str) -> bool:
        try:
            return bool(self.client.delete(self.name(key)))
        except Exception:
            self.note_failure()
            raise

    # health --------------------------------------------------------------------------------
    def note_failure(self) -> None:
        self._failed_at = self._clock()

    @property
    def recently_failed(self) -> bool:
        # A clock set back (the wall clock can be) ends the window rather than stretching it.
        return 0 <= self._clock() - self._failed_at < _RETRY_AFTER


def _fast_client(client: Any, backend_name: str) -> Any:
    """``client``, or for a plain Redis client with long timeouts, one on a pool of our own."""
    try:
        import redis
    except ImportError:  # pragma: no cover - a Redis backend cannot exist without it
        return client
    if isinstance(client, _ConnectLater):
        return client
    pool: Any = getattr(client, "connection_pool", None)
    kwargs = dict(getattr(pool, "connection_kwargs", None) or {})
    if type(client) is not redis.Redis or type(pool) not in (redis.ConnectionPool,
                                                              redis.BlockingConnectionPool):
        if _slow(kwargs) and kwargs:
            log.warning("flask-obo: the token cache's %s client waits up to %s s per command: "
                        "a hung Redis would hold requests that long; set CACHE_OPTIONS "
                        "{'socket_timeout': %s, 'socket_connect_timeout': %s} on it, or give "
                        "flask-obo its own with OBO_CACHE", backend_name,
                        kwargs.get("socket_timeout"), DEFAULT_SOCKET_TIMEOUT,
                        DEFAULT_SOCKET_TIMEOUT)
        return client
    if not _slow(kwargs):
        return client
    # The pool adds its own bookkeeping entries to connection_kwargs: a new pool makes its own.
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith(_POOL_INTERNAL)}
    kwargs.update(socket_timeout=DEFAULT_SOCKET_TIMEOUT,
                  socket_connect_timeout=DEFAULT_SOCKET_TIMEOUT, retry=_retry(1),
                  decode_responses=False)
    log.info("flask-obo: the app's %s client waits up to %s s per command; the token cache "
             "uses a connection pool of its own with %s s timeouts", backend_name,
             client.connection_pool.connection_kwargs.get("socket_timeout"),
             DEFAULT_SOCKET_TIMEOUT)
    return redis.Redis.from_pool(type(pool)(connection_class=pool.connection_class, **kwargs))


def _slow(kwargs: Mapping[str, Any]) -> bool:
    def too_long(value: Any) -> bool:
        return value is None or float(value) > _FAST_ENOUGH

    retry = kwargs.get("retry")
    retries = retry.get_retries() if retry is not None and hasattr(retry, "get_retries") else 0
    return (too_long(kwargs.get("socket_timeout"))
            or too_long(kwargs.get("socket_connect_timeout")) or retries > 1
            or bool(kwargs.get("decode_responses")))


# a cluster unreachable at start -------------------------------------------------------------
def _cluster_cache_class() -> Any:
    from flask_caching.backends.rediscache import RedisClusterCache

    return RedisClusterCache


class _ConnectLater:
    """Stands in for a cluster client that could not be built: builds it on first use, at most
    every few seconds, and raises redis's ConnectionError meanwhile (the cache bypasses)."""

    def __init__(self, build: Any) -> None:
        self._build = build
        self._client: Any = None
        self._lock = threading.Lock()
        self._next_try = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connect(), name)

    def _connect(self) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisClusterException

        if self._client is None:
            with self._lock:
                if self._client is None:
                    if time.monotonic() < self._next_try:
                        raise RedisConnectionError("the Redis cluster could not be reached")
                    try:
                        self._client = self._build()
                    except RedisClusterException as exc:
                        self._next_try = time.monotonic() + _RETRY_AFTER
                        raise RedisConnectionError(str(exc)) from None
        return self._client


class RedisClusterCache(_cluster_cache_class()):  # type: ignore[misc]
    """Flask-Caching's ``RedisClusterCache``, except that a cluster that cannot be reached at
    start (redis-py connects when the client is built) is connected to on first use, so the
    app starts and serves meanwhile, as it does with RedisCache and RedisSentinelCache.
    Named as Flask-Caching's, so that logs name what the app configured."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from cachelib.redis_base import BaseRedisCache
        from redis.exceptions import RedisClusterException

        parent = _cluster_cache_class()
        try:
            parent.__init__(self, *args, **kwargs)
        except RedisClusterException as exc:
            log.error("flask-obo: the Redis cluster could not be reached at start (%s): the "
                      "token cache connects on first use", type(exc).__name__)
            later = _ConnectLater(lambda: parent(*args, **kwargs)._write_client)
            BaseRedisCache.__init__(self, later, kwargs.get("default_timeout", 300),
                                    kwargs.get("key_prefix", ""))

