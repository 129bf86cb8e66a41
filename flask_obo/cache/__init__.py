"""The downstream-token cache: hashed keys, TTLs, refresh-ahead, encryption, shared backends.

- ``token_cache.py``: ``OboTokenCache`` (the in-process front, the backend, single flight and
  refresh-ahead) and ``AccessToken``;
- ``backends.py``: which backend, whether it is shared (then sealed and, on Redis, locked);
- ``_codec.py`` (entries as bytes, AES-GCM), ``_keys.py`` (encryption keys),
  ``_redis_store.py`` and ``_redis_lock.py`` (Redis without pickle, and its lock).
"""

from ._redis_store import RedisEntryStore
from .backends import build_token_cache
from .token_cache import AccessToken, OboTokenCache, cache_key

__all__ = ["AccessToken", "OboTokenCache", "RedisEntryStore", "build_token_cache", "cache_key"]
