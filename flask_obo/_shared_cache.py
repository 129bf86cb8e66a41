"""What a backend shared across processes changes in the token cache, decided at init_app,
and its line in ``flask obo check``.

- A Redis backend is reached through ``RedisEntryStore`` (raw bytes on the primary) and gets a
  cross-process lock per key (``RedisLocks``), so N processes make one identity-provider call
  per key between them.
- A shared backend (Redis, memcached, a shared directory) always encrypts its entries: with the
  configured keys, or with one derived from the app's credential (``_key_derivation``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._key_derivation import encryption_keys_for
from ._redis_lock import RedisLocks
from ._redis_store import RedisEntryStore, is_redis_backend
from .config import OboConfig

if TYPE_CHECKING:
    from .cli import CheckResult
    from .credentials import ClientCredential
    from .extension import OboState

__all__ = ["check_token_cache", "shared_cache_parts"]


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
    _register_check()
    return {
        "backend": backend,
        "encryption_keys": encryption_keys_for(config, credential, name, shared),
        "lock_factory": lock_factory,
    }


def check_token_cache(state: OboState) -> Iterator[CheckResult]:
    """``flask obo check``: where tokens are cached, whether encrypted, and Redis answering."""
    from .cli import CheckResult

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


def _register_check() -> None:
    from .cli import register_check

    register_check(check_token_cache)
