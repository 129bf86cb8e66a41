"""Signing keys, their rotation, and the tokens the emulator mints (and later verifies).

Every token is a real RS256 JWT signed with a published RSA-2048 key whose ``kid`` equals its
``x5t`` (as in Entra). Signing and verification use ``joserfc``.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from joserfc.jws import JWSRegistry

from .tls import self_signed_rsa_cert

__all__ = ["KeyRing", "SigningKey", "TokenRejected", "TokenService", "opaque"]

_RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
_MAX_ISSUED = 200_000  # bookkeeping of issuance instants, for session revocation


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def opaque(nbytes: int = 16) -> str:
    """An opaque base64url value, like Entra's ``uti``, ``rh`` and ``aio``."""
    return _b64url(secrets.token_bytes(nbytes))


def lenient_registry(max_header: int = 4096) -> JWSRegistry:
    """A JWS registry that accepts RSA algorithms, unknown headers and headers up to ``max_header``.

    joserfc refuses protected headers over 512 bytes by default; certificate assertions carry
    the certificate (``x5c``) in the header, so the client-assertion check needs more room.
    """
    registry = JWSRegistry(algorithms=_RSA_ALGS, strict_check_header=False)
    registry.max_header_length = max_header
    return registry


@dataclass(frozen=True)
class SigningKey:
    """One RSA signing key, with its self-signed certificate for ``x5c``."""

    kid: str
    private: RSAKey
    public: RSAKey
    x5c: str
    created_at: float

    def jwk(self) -> dict[str, Any]:
        data = self.public.as_dict(private=False)
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": data["n"],
            "e": data["e"],
            "x5c": [self.x5c],
            "cloud_instance_name": "microsoftonline.com",
        }


def _new_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed_rsa_cert(key, "flask-obo Entra emulator token signing")
    kid = _b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - Entra's kid is the SHA-1 x5t
    der = cert.public_bytes(serialization.Encoding.DER)
    return SigningKey(
        kid=kid,
        private=RSAKey.import_key(key),
        public=RSAKey.import_key(key.public_key()),
        x5c=base64.b64encode(der).decode("ascii"),
        created_at=time.time(),
    )


class KeyRing:
    """The published keys; the newest signs. ``rotate`` keeps the old ones published."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = [_new_key()]

    @property
    def current(self) -> SigningKey:
        with self._lock:
            return self._keys[-1]

    def published(self) -> list[SigningKey]:
        with self._lock:
            return list(reversed(self._keys))  # newest first, as Entra lists the active key

    def find(self, kid: str) -> SigningKey | None:
        with self._lock:
            return next((k for k in self._keys if k.kid == kid), None)

    def rotate(self) -> SigningKey:
        key = _new_key()
        with self._lock:
            self._keys.append(key)
        return key

    def retire_old(self) -> list[str]:
        with self._lock:
            retired = [k.kid for k in self._keys[:-1]]
            self._keys = self._keys[-1:]
        return retired

    def jwks(self, issuer: str | None) -> dict[str, Any]:
        keys = []
        for key in self.published():
            entry = key.jwk()
            if issuer is not None:
                entry["issuer"] = issuer
            keys.append(entry)
        return {"keys": keys}


class TokenRejected(Exception):
    """A token this emulator did not sign, or cannot read. ``reason`` says which."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # "malformed" | "unknown_key" | "bad_signature"
        self.detail = detail


class TokenService:
    """Signs claims, mints timed tokens, and verifies tokens it signed."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._registry = lenient_registry()
        self._lock = threading.Lock()
        self._issued: OrderedDict[str, float] = OrderedDict()

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign ``claims`` with the current key. ``headers`` override or add (None removes)."""
        key = self.keyring.current
        header: dict[str, Any] = {"typ": "JWT", "alg": "RS256", "kid": key.kid, "x5t": key.kid}
        for name, value in (headers or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return jwt.encode(header, dict(claims), key.private, algorithms=_RSA_ALGS,
                          registry=self._registry, default_type=None)

    def mint(
        self,
        claims: Mapping[str, Any],
        *,
        lifetime: int,
        extra_claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Add ``iat``/``nbf``/``exp``/``uti`` to ``claims`` and sign.

        A ``lifetime`` of zero or less makes a token that has already expired. ``extra_claims``
        override claims; a value of ``None`` removes the claim.
        """
        now = time.time()
        start = int(now) if lifetime > 0 else int(now + lifetime - 300)
        body: dict[str, Any] = {"iat": start, "nbf": start, "exp": int(now + lifetime)}
        body.update(claims)
        body.setdefault("uti", opaque())
        for name, value in (extra_claims or {}).items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        uti = body.get("uti")
        if isinstance(uti, str):
            with self._lock:
                self._issued[uti] = now
                while len(self._issued) > _MAX_ISSUED:
                    self._issued.popitem(last=False)
        return self.sign(body, headers), body

    def issued_at(self, claims: Mapping[str, Any]) -> float | None:
        """The precise instant this emulator minted the token, else its ``iat``."""
        uti = claims.get("uti")
        if isinstance(uti, str):
            with self._lock:
                found = self._issued.get(uti)
            if found is not None:
                return found
        iat = claims.get("iat")
        return float(iat) if isinstance(iat, (int, float)) else None

    def verify(self, raw: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check that ``raw`` is a JWT signed by one of the published keys; return header, claims.

        Timing and audience are the caller's business (Entra reports them with other codes).
        """
        try:
            obj = jws.extract_compact(raw.encode("ascii"), registry=self._registry)
            header = obj.headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise TokenRejected("malformed", "JWT token is invalid or malformed.") from exc
        if header.get("alg") != "RS256":
            raise TokenRejected("bad_signature",
                                f"Unsupported signing algorithm {header.get('alg')!r}.")
        kid = header.get("kid") or header.get("x5t")
        key = self.keyring.find(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenRejected("unknown_key", "Assertion failed signature validation. "
                                "[Reason - The key was not found.]")
        try:
            token = jwt.decode(raw, key.public, algorithms=["RS256"], registry=self._registry)
        except JoseError as exc:
            raise TokenRejected(
                "bad_signature",
                "Assertion failed signature validation. [Reason - The provided signature value "
                "did not match the expected signature value.]",
            ) from exc
        return dict(token.header), dict(token.claims)


def amr_for(mfa: bool) -> list[str]:
    return ["pwd", "mfa"] if mfa else ["pwd"]


def scopes_claim(scopes: Sequence[str]) -> str:
    return " ".join(scopes)
