"""How a cached token becomes bytes in a cache backend, and back: JSON, optionally AES-GCM.

An encrypted entry is ``0x01 | key id (4) | nonce (12) | ciphertext``; the cache key is the
associated data, so an entry copied under another user's key fails to decrypt instead of
handing that user someone else's token. Anything that does not decode is ``None`` (a miss).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["EntryCodec"]

_PLAIN = b"\x00"
_SEALED = b"\x01"
_KID_LEN = 4
_NONCE_LEN = 12


def key_id(key: bytes) -> bytes:
    """A short public label of a key, so a reader picks the right key without trying each."""
    return hashlib.sha256(b"flask-obo cache key id\x00" + key).digest()[:_KID_LEN]


def _binding(cache_key: str) -> str:
    return cache_key[-16:]


Entry = tuple[str, float, float, tuple[str, ...]]  # token, expires_on, refresh_on, scopes


class EntryCodec:
    """Encodes entries; with keys, the first encrypts and every key can decrypt (rotation)."""

    def __init__(self, keys: Sequence[bytes] = ()) -> None:
        self._ciphers = [(key_id(k), AESGCM(k)) for k in keys]

    @property
    def encrypts(self) -> bool:
        return bool(self._ciphers)

    def encode(self, cache_key: str, entry: Entry) -> bytes:
        token, expires_on, refresh_on, scopes = entry
        plain = json.dumps(
            {"v": 1, "k": _binding(cache_key), "t": token, "e": expires_on, "r": refresh_on,
             "s": list(scopes)},
            separators=(",", ":"),
        ).encode()
        return self.seal(cache_key, plain)

    def decode(self, cache_key: str, raw: object) -> Entry | None:
        plain = self.open(cache_key, raw)
        if plain is None:
            return None
        try:
            data = json.loads(plain)
            token, expires_on, refresh_on = data["t"], float(data["e"]), float(data["r"])
            scopes = tuple(data["s"])
        except (ValueError, KeyError, TypeError):
            return None
        if data.get("v") != 1 or data.get("k") != _binding(cache_key):
            return None  # not written for this key (plaintext entries are bound to it too)
        if not isinstance(token, str) or not token:
            return None
        if not (math.isfinite(expires_on) and math.isfinite(refresh_on)):
            return None  # a NaN expiry compares false with every clock: it would never expire
        if not all(isinstance(s, str) for s in scopes):
            return None
        return token, expires_on, refresh_on, scopes

    def seal(self, cache_key: str, plain: bytes) -> bytes:
        """``plain`` as stored under ``cache_key``: encrypted and bound to it, when keyed."""
        if not self._ciphers:
            return _PLAIN + plain
        kid, cipher = self._ciphers[0]
        nonce = os.urandom(_NONCE_LEN)
        return _SEALED + kid + nonce + cipher.encrypt(nonce, plain, cache_key.encode())

    def open(self, cache_key: str, raw: object) -> bytes | None:
        """What ``seal`` was given for ``cache_key``; None for anything else."""
        if not isinstance(raw, bytes) or not raw:
            return None
        marker, body = raw[:1], raw[1:]
        if marker == _SEALED:
            return self._open(cache_key, body)
        if marker == _PLAIN and not self._ciphers:
            # With encryption on, a plaintext entry (planted, or from before) is never trusted.
            return body
        return None

    def _open(self, cache_key: str, body: bytes) -> bytes | None:
        if len(body) < _KID_LEN + _NONCE_LEN + 16:
            return None
        kid, nonce, sealed = body[:_KID_LEN], body[_KID_LEN:_KID_LEN + _NONCE_LEN], \
            body[_KID_LEN + _NONCE_LEN:]
        for candidate, cipher in self._ciphers:
            if candidate != kid:
                continue
            try:
                return cipher.decrypt(nonce, sealed, cache_key.encode())
            except InvalidTag:
                return None
        return None
