"""What a backend shared across processes changes in the token cache, decided at init_app.

- A Redis backend is reached through ``RedisEntryStore`` (raw bytes on the primary) and gets a
  cross-process lock per key (``RedisLocks``), so N processes make one identity-provider call
  per key between them.
- A shared backend (Redis, memcached, a shared directory) always encrypts its entries: with the
  configured keys, or with one derived from the app's credential (``_key_derivation``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._key_derivation import encryption_keys_for
from ._redis_lock import RedisLocks
from ._redis_store import RedisEntryStore, is_redis_backend
from .config import OboConfig

if TYPE_CHECKING:
    from .credentials import ClientCredential

__all__ = ["shared_cache_parts"]


def shared_cache_parts(config: OboConfig, backend: Any,
                       credential: ClientCredential | None) -> dict[str, Any]:
    """``backend``, ``encryption_keys`` and ``lock_factory`` arguments of ``OboTokenCache``."""
    from .token_cache import SHARED_BACKENDS

    name = type(backend).__name__
    lock_factory = None
    if is_redis_backend(backend):
        backend = RedisEntryStore(backend)
        lock_factory = RedisLocks(backend, ttl=config.cache_lock_timeout)
    shared = getattr(backend, "shared", False) is True or name in SHARED_BACKENDS
    return {
        "backend": backend,
        "encryption_keys": encryption_keys_for(config, credential, name, shared),
        "lock_factory": lock_factory,
    }
