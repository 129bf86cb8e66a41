"""The token cache's encryption keys: configured, or derived from the app's own credential.

Entries in a backend that other processes and hosts may share (Redis, and any backend not
known to live in this process) are always encrypted. With no ``OBO_CACHE_ENCRYPTION_KEY``, the
key is derived with HKDF-SHA256 from secret material this app alone holds (the client secret,
or the certificate's private key), bound to the client id, so every instance of the same app
derives the same key with no setup.
A client-assertion credential holds no such secret: a shared backend then needs a configured
key, and init_app says so. An in-process backend is not encrypted unless keys are configured.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..config import OboConfig
from ..errors import ConfigError
from ._codec import key_id

if TYPE_CHECKING:
    from ..acquisition.credentials import ClientCredential

__all__ = ["derive_cache_key", "encryption_keys_for"]

log = logging.getLogger("flask_obo.cache")

# Fixed and public: HKDF's secrecy comes from the input key material. Changing either string
# changes every derived key (every shared entry becomes a miss once, then is refilled).
_SALT = b"flask-obo token cache encryption v1"
_INFO = b"flask-obo AES-256-GCM cache key\x00"

_MAKE_KEY = ('python -c "import os,base64;print(base64.urlsafe_b64encode(os.urandom(32))'
             '.decode())"')


def derive_cache_key(material: bytes, client_id: str) -> bytes:
    """32 bytes from ``material`` (a client secret or a private key in DER) for ``client_id``."""
    if not material:
        raise ValueError("no key material to derive a cache key from")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT,
                info=_INFO + client_id.lower().encode()).derive(material)


def encryption_keys_for(config: OboConfig, credential: ClientCredential | None,
                        backend_name: str, shared: bool) -> tuple[bytes, ...]:
    """The keys the cache uses: configured ones, else a derived one for a shared backend.

    Raises ``ConfigError`` for a shared backend with neither a configured key nor a credential
    to derive one from.
    """
    if config.cache_encryption_keys or not shared:
        return config.cache_encryption_keys
    material = credential.key_material if credential is not None else None
    if not material:
        source = credential.description if credential is not None else "no credential"
        raise ConfigError(
            f"The token cache is on {backend_name}, which other processes may share (only "
            "SimpleCache is known to live in-process), so its entries must be encrypted, and "
            f"the app's credential ({source}) holds no secret "
            "to derive a key from: set OBO_CACHE_ENCRYPTION_KEY to a key made with  "
            f"{_MAKE_KEY}  (the same on every instance; a list rotates keys)."
        )
    assert credential is not None
    key = derive_cache_key(material, config.client_id)
    source = "client secret" if credential.kind == "secret" else "certificate's private key"
    log.info("flask-obo: token cache on %s: entries encrypted (AES-GCM) with a key derived "
             "(HKDF-SHA256) from the %s, key id %s; set OBO_CACHE_ENCRYPTION_KEY to use your "
             "own", backend_name, source, key_id(key).hex())
    return (key,)
