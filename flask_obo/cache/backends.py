"""The backend under the token cache, chosen at init_app, and its line in ``flask obo check``.

- The backend: the Flask-Caching ``Cache`` handed to ``FlaskOBO(cache=...)``, else one built
  from ``OBO_CACHE``, else an in-process ``SimpleCache``.
- A Redis backend is reached through ``RedisEntryStore`` (raw bytes on the primary) and gets a
  cross-process lock per key (``RedisLocks``), so N processes make one identity-provider call
  per key between them.
- Every backend not known to live in this process is taken for shared and encrypts its entries:
  with the configured keys, or with one derived from the app's credential (``_keys``). Only
  Flask-Caching's and cachelib's own ``SimpleCache`` are known to; a subclass, a wrapper or a
  backend of the app's own may keep its entries anywhere, whatever it is called.
- Never a backend that unpickles what it reads before flask-obo sees the bytes (memcached, a
  cache directory, uWSGI's cache, cachelib's DynamoDB, MongoDB and Valkey caches): whoever can
  write to the store would run code in the API, and encryption cannot help. init_app refuses
  them, before building one from ``OBO_CACHE``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import cachelib
from cachelib.simple import SimpleCache as CachelibSimpleCache
from flask_caching import Cache
from flask_caching.backends.simplecache import SimpleCache
from werkzeug.utils import import_string

from ..checks import CheckResult
from ..config import OboConfig
from ..errors import ConfigError
from ._keys import encryption_keys_for
from ._redis_lock import RedisLocks
from ._redis_store import RedisEntryStore, is_redis_backend, with_redis_defaults
from .token_cache import OboTokenCache

if TYPE_CHECKING:
    from flask import Flask

    from ..acquisition.credentials import ClientCredential
    from ..state import OboState

__all__ = ["build_token_cache", "check_token_cache"]

#: The backends known to keep entries in this process's memory, by exact type.
_IN_PROCESS = frozenset({SimpleCache, CachelibSimpleCache})
#: Backends that unpickle what they read (memcached clients unpickle by the flags the writer
#: chose; the others through cachelib's pickle serializers), their subclasses included.
_UNPICKLING: tuple[type, ...] = tuple(
    kind for kind in (getattr(cachelib, name, None) for name in (
        "MemcachedCache", "FileSystemCache", "UWSGICache", "DynamoDbCache", "MongoDbCache",
        "ValkeyCache")) if isinstance(kind, type))


def build_token_cache(app: Flask, config: OboConfig, cache: Any | None,
                      credential: ClientCredential | None = None, *,
                      clock: Callable[[], float] | None = None) -> OboTokenCache:
    """The app's token cache: over ``cache`` (a flask_caching.Cache or a backend), else a
    backend built from ``OBO_CACHE``, else an in-process ``SimpleCache``. A backend not known to
    be in-process encrypts (a key derived from ``credential`` unless keys are configured); Redis
    also locks."""
    backend = _resolve_backend(app, config, cache)
    name = type(backend).__name__
    if isinstance(backend, _UNPICKLING):
        raise _unpickling(name)
    lock_factory = None
    clock = clock or time.time
    if is_redis_backend(backend):
        backend = RedisEntryStore(backend, clock=clock)
        lock_factory = RedisLocks(backend, ttl=config.cache_lock_timeout)
    shared = type(backend) not in _IN_PROCESS
    return OboTokenCache(
        backend,
        encryption_keys=encryption_keys_for(config, credential, name, shared),
        lock_factory=lock_factory,
        shared=shared,
        prefix=config.cache_key_prefix,
        expiry_margin=config.cache_expiry_margin,
        refresh_ahead=config.cache_refresh_ahead,
        # Outlast the leader's worst case: the Redis lock wait (lock timeout + 1 s), then MSAL's
        # discovery and the token call, each bounded by the HTTP timeout, plus one retry.
        wait_timeout=config.cache_lock_timeout + 1 + 3 * config.http_timeout,
        local_size=config.cache_local_size,
        clock=clock,
    )


def _resolve_backend(app: Flask, config: OboConfig, cache: Any | None) -> Any:
    if cache is not None:
        if isinstance(cache, Cache):
            backend = app.extensions.get("cache", {}).get(cache)
            if backend is None:
                raise ConfigError(
                    "FlaskOBO(cache=...) got a flask_caching.Cache that is not initialised on "
                    "this app: call cache.init_app(app) (or Cache(app)) before FlaskOBO.init_app."
                )
            return backend
        if all(callable(getattr(cache, op, None)) for op in ("get", "set", "delete")):
            return cache
        raise ConfigError("FlaskOBO(cache=...) must be a flask_caching.Cache or a Flask-Caching "
                          f"backend, not {type(cache).__name__}.")
    if config.cache is not None:
        settings = with_redis_defaults(config.cache)  # short Redis timeouts unless set
        if not settings.get("CACHE_TYPE"):
            raise ConfigError("OBO_CACHE needs a CACHE_TYPE, e.g. {'CACHE_TYPE': 'RedisCache', "
                              "'CACHE_REDIS_URL': 'redis://localhost:6379/0'}.")
        if settings["CACHE_TYPE"] in ("NullCache", "null", "flask_caching.backends.NullCache"):
            raise ConfigError("OBO_CACHE with CACHE_TYPE NullCache would make every request "
                              "call the identity provider: leave OBO_CACHE unset for the "
                              "in-process cache, or name a real backend.")
        kind = _named_backend(str(settings["CACHE_TYPE"]))
        if kind is not None and issubclass(kind, _UNPICKLING):
            raise _unpickling(kind.__name__)  # before it is built (and connects, or mkdirs)
        private = Cache(with_jinja2_ext=False, config=settings)
        try:
            private.init_app(app, settings)
        except ImportError as exc:
            raise ConfigError(f"OBO_CACHE could not build its Flask-Caching backend: {exc}"
                              ) from None
        except (ValueError, TypeError) as exc:
            # Not the message: a URL parser quotes the part it choked on, and in a Redis URL
            # whose password holds a '/' or '#', that part is the password.
            raise ConfigError(
                f"OBO_CACHE could not build its Flask-Caching backend ({type(exc).__name__}): "
                "check CACHE_TYPE and CACHE_OPTIONS, and that CACHE_REDIS_URL is "
                "redis://[:password@]host:port/db with the password URL-encoded "
                "(urllib.parse.quote(password, safe=''))."
            ) from None
        return app.extensions["cache"][private]
    return SimpleCache(threshold=max(config.cache_local_size * 4, 10_000), default_timeout=300)


def _named_backend(cache_type: str) -> type | None:
    """The class ``CACHE_TYPE`` names, found as Flask-Caching finds it; None if it names none."""
    path = cache_type if "." in cache_type else f"flask_caching.backends.{cache_type}"
    try:
        found = import_string(path)
    except ImportError:
        return None  # Flask-Caching's own attempt says what is wrong
    return found if isinstance(found, type) else None


def _unpickling(name: str) -> ConfigError:
    return ConfigError(
        f"The token cache cannot be on {name}: it unpickles what it reads, so whoever can write "
        "to that store (memcached rarely asks for a password; a cache directory is as open as "
        "its permissions) could run code in this API. Use Redis, where flask-obo stores raw "
        "bytes: OBO_CACHE={'CACHE_TYPE': 'RedisCache', 'CACHE_REDIS_URL': "
        "'redis://host:6379/0'}, or hand FlaskOBO(cache=...) a Cache on RedisCache; or leave "
        "OBO_CACHE unset for the in-process cache."
    )


def check_token_cache(state: OboState) -> Iterator[CheckResult]:
    """``flask obo check``: where tokens are cached, whether encrypted, and Redis answering."""
    if state.acquirer is None:
        return
    cache = state.acquirer.cache
    backend = cache.backend
    name = getattr(backend, "backend_name", type(backend).__name__)
    if not cache.codec.encrypts:
        encryption = "not encrypted (in-process)"
    elif state.config.cache_encryption_keys:
        count = len(state.config.cache_encryption_keys)
        encryption = f"encrypted with OBO_CACHE_ENCRYPTION_KEY ({count} key(s))"
    else:
        encryption = "encrypted with a key derived from the credential"
    if not isinstance(backend, RedisEntryStore):
        yield CheckResult(True, "token cache", f"{name}, {encryption}")
        return
    probe = f"{state.config.cache_key_prefix}check:{secrets.token_hex(8)}"
    try:  # what the cache does: a write, a read, a delete
        backend.set(probe, b"flask obo check", 5)
        answered = backend.get(probe) == b"flask obo check"
        backend.delete(probe)
    except Exception as exc:
        yield CheckResult(False, "token cache", f"{name} did not answer ({type(exc).__name__}: "
                          f"{exc}): check OBO_CACHE's address, password and network. Requests "
                          "are still served meanwhile, each process calling the identity "
                          "provider for itself.")
        return
    if not answered:
        yield CheckResult(False, "token cache", f"{name} did not return what was just written "
                          "to it: entries would never be shared.")
        return
    yield CheckResult(True, "token cache", f"{name} answers (write, read, delete), {encryption}")
