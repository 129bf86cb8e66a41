"""JOSE by hand: base64url, JWT segments, and tokens signed with any key under any algorithm.

Tokens are forged by hand (base64url of raw bytes, signatures computed with ``cryptography`` or
``hmac``) so that a hostile shape reaches flask-obo exactly as written, whatever a JOSE library
would refuse to produce. Tokens the authority really signed come from the emulator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from flask_obo.testing import EntraEmulator

__all__ = [
    "attacker_rsa_key",
    "authority_signing_key",
    "b64url",
    "b64url_json",
    "claims_of",
    "compose",
    "header_of",
    "resign",
    "rsa_public_jwk",
    "sign_with",
    "unb64url",
]


def b64url(raw: bytes | str) -> str:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def unb64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def header_of(token: str) -> dict[str, Any]:
    """A JWT's header, unverified."""
    result: dict[str, Any] = json.loads(unb64url(token.split(".")[0]))
    return result


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (tests verify separately where it matters)."""
    result: dict[str, Any] = json.loads(unb64url(token.split(".")[1]))
    return result


def compose(header: Mapping[str, Any] | str, payload: Mapping[str, Any] | str,
            signature: bytes | str = b"") -> str:
    """``header.payload.signature``; dicts are JSON-encoded, str segments are used verbatim."""
    h = header if isinstance(header, str) else b64url_json(header)
    p = payload if isinstance(payload, str) else b64url_json(payload)
    s = signature if isinstance(signature, str) else b64url(signature)
    return f"{h}.{p}.{s}"


_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_HMAC = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def sign_with(key: Any, alg: str, header: Mapping[str, Any] | str,
              payload: Mapping[str, Any] | str) -> str:
    """A compact JWS of ``header``/``payload`` signed with ``key`` under ``alg`` (not checked).

    ``key`` is bytes for HS*, an RSA private key for RS*/PS*, an EC private key for ES*.
    """
    h = header if isinstance(header, str) else b64url_json(header)
    p = payload if isinstance(payload, str) else b64url_json(payload)
    signing_input = f"{h}.{p}".encode("ascii")
    family, bits = alg[:2], alg[2:]
    if family == "HS":
        signature = hmac.new(key, signing_input, _HMAC[bits]).digest()
    elif family == "RS":
        signature = key.sign(signing_input, padding.PKCS1v15(), _HASHES[bits]())
    elif family == "PS":
        signature = key.sign(signing_input, padding.PSS(padding.MGF1(_HASHES[bits]()),
                                                        _HASHES[bits]().digest_size),
                             _HASHES[bits]())
    elif family == "ES":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(_HASHES[bits]())))
        size = (key.curve.key_size + 7) // 8
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        raise ValueError(alg)
    return f"{h}.{p}.{b64url(signature)}"


def attacker_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_public_jwk(key: rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    numbers = key.public_numbers()
    return {
        "kty": "RSA", "use": "sig", "kid": kid, "alg": "RS256",
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
    }


def authority_signing_key(emu: EntraEmulator) -> tuple[rsa.RSAPrivateKey, str]:
    """The emulator's current signing key and kid: hostile *content* signed by the real key."""
    key = emu.keyring.current
    return key.private.private_key, key.kid


def resign(signer: rsa.RSAPrivateKey, token: str, **changes: Any) -> str:
    """``token``'s claims with ``changes`` (``...`` removes a claim), signed with ``signer``."""
    header = header_of(token)
    claims = claims_of(token)
    for name, value in changes.items():
        if value is ...:
            claims.pop(name, None)
        else:
            claims[name] = value
    return sign_with(signer, header.get("alg", "RS256"), header, claims)
