"""JOSE-level attacks: each refused with 401 and the exact challenge, never a 200 or a 500,
and never echoing the token. (The proof suite, test_security_*.py, has many more.)"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import bearer, build_app
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask
from test_validation_claims import assert_invalid

from flask_obo.testing import App, User
from flask_obo.testing.pytest_plugin import EntraTestHelper


def b64(raw: bytes | str) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value))


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (json.loads(base64.urlsafe_b64decode(pad(header))),
            json.loads(base64.urlsafe_b64decode(pad(payload))))


@functools.cache
def _attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _rs256(key: Any, header: dict[str, Any], claims: dict[str, Any],
           digest: hashes.HashAlgorithm | None = None) -> str:
    signing_input = f"{b64json(header)}.{b64json(claims)}".encode()
    signature = key.sign(signing_input, padding.PKCS1v15(), digest or hashes.SHA256())
    return f"{signing_input.decode()}.{b64(signature)}"


class World:
    """A genuine token and the pieces to forge variants of it."""

    def __init__(self, emu: EntraTestHelper, api: App, user: User) -> None:
        self.emu = emu
        self.api = api
        self.token = emu.issue_user_token(user, resource=api)
        self.header, self.claims = segments(self.token)
        self.attacker = _attacker_key()
        jwk = next(k for k in emu.jwks()["keys"] if k["kid"] == self.header["kid"])
        self.public_jwk = jwk

    def unsigned(self, header: dict[str, Any], signature: str = "") -> str:
        return f"{b64json(header)}.{b64json(self.claims)}.{signature}"

    def attacker_signed(self, header: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
        return _rs256(self.attacker, header, claims or self.claims)

    def authority_signed(self, headers: dict[str, Any]) -> str:
        """Signed by hand with the authority's real key (a JOSE library would refuse some)."""
        key = self.emu.keyring.current.private.get_op_key("sign")
        alg = headers.get("alg", "RS256")
        return _rs256(key, {**self.header, **headers}, self.claims,
                      hashes.SHA512() if alg == "RS512" else hashes.SHA256())

    def attacker_jwk(self, kid: str) -> dict[str, Any]:
        numbers = self.attacker.public_key().public_numbers()

        def enc(n: int) -> str:
            return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

        return {"kty": "RSA", "kid": kid, "n": enc(numbers.n), "e": enc(numbers.e)}


@pytest.fixture
def world(emulator: EntraTestHelper, api_registration: App, user: User) -> World:
    return World(emulator, api_registration, user)


@pytest.fixture
def app(emulator: EntraTestHelper, api_registration: App) -> Flask:
    return build_app(emulator, api_registration, OBO_ALGORITHMS=["RS256", "ES256"])


def _hs256_with_public_key(w: World) -> str:
    header = {**w.header, "alg": "HS256"}
    signing_input = f"{b64json(header)}.{b64json(w.claims)}".encode()
    secret = json.dumps(w.public_jwk).encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64(signature)}"


def _respelled_signature(w: World) -> str:
    # A 256-byte signature ends in a character with 4 unused bits: flipping one of them
    # decodes to the same bytes, but it is not the token the authority issued.
    head, signature = w.token.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return f"{head}.{signature[:-1]}{alphabet[alphabet.index(signature[-1]) ^ 1]}"


CASES: dict[str, tuple[Callable[[World], str], str]] = {
    "alg-none": (lambda w: w.unsigned({"alg": "none", "typ": "JWT"}), "algorithm"),
    "alg-None-with-kid": (lambda w: w.unsigned({**w.header, "alg": "None"}), "algorithm"),
    "alg-none-genuine-signature": (
        lambda w: w.unsigned({**w.header, "alg": "none"}, w.token.split(".")[2]), "algorithm"),
    "alg-missing": (lambda w: w.unsigned({"kid": w.header["kid"]}, "x"), "algorithm"),
    "alg-RS512-not-allowed": (
        lambda w: w.authority_signed({"alg": "RS512"}), "algorithm"),
    "hs256-keyed-with-public-key": (_hs256_with_public_key, "algorithm"),
    "embedded-jwk": (lambda w: w.attacker_signed(
        {**w.header, "kid": "evil", "jwk": w.attacker_jwk("evil")}), "forbidden_header"),
    "embedded-jwk-authority-signed": (lambda w: w.authority_signed(
        {"jwk": {k: w.public_jwk[k] for k in ("kty", "kid", "n", "e")}}), "forbidden_header"),
    "jku": (lambda w: w.authority_signed({"jku": "https://127.0.0.1:1/keys"}),
            "forbidden_header"),
    "x5u": (lambda w: w.authority_signed({"x5u": "https://127.0.0.1:1/cert"}),
            "forbidden_header"),
    "x5c": (lambda w: w.authority_signed({"x5c": w.public_jwk["x5c"]}), "forbidden_header"),
    "unknown-crit": (lambda w: w.authority_signed({"crit": ["exp"], "exp": 1}),
                     "critical_header"),
    "b64-false": (lambda w: w.authority_signed({"b64": False, "crit": ["b64"]}),
                  "critical_header"),
    "kid-path-traversal": (lambda w: w.attacker_signed({**w.header, "kid": "../../dev/null"}),
                           "unknown_key"),
    "kid-sql": (lambda w: w.attacker_signed({**w.header, "kid": "' OR '1'='1"}),
                "unknown_key"),
    "kid-not-a-string": (lambda w: w.attacker_signed({**w.header, "kid": [w.header["kid"]]}),
                         "unknown_key"),
    "kid-huge": (lambda w: w.attacker_signed({**w.header, "kid": "k" * 1000}), "unknown_key"),
    "attacker-key-real-kid": (lambda w: w.attacker_signed(w.header), "signature"),
    "ecdsa-psychic-signature": (
        lambda w: w.unsigned({**w.header, "alg": "ES256"}, b64(bytes(64))), "signature"),
    "tampered-payload": (lambda w: ".".join([
        w.token.split(".")[0], b64json({**w.claims, "scp": "write"}), w.token.split(".")[2]]),
        "signature"),
    "signature-other-spelling": (_respelled_signature, "signature"),
    "signature-stripped": (lambda w: w.token.rsplit(".", 1)[0] + ".", "signature"),
    "jwe-shaped": (lambda w: f"{b64json({'alg': 'RSA-OAEP', 'enc': 'A256GCM'})}.a.b.c.d",
                   "encrypted"),
    "enc-header-jws": (lambda w: w.authority_signed({"enc": "A256GCM"}), "encrypted"),
    "oversized": (lambda w: w.token + "A" * 20000, "too_large"),
    "deeply-nested-header": (lambda w: f"{b64('[' * 1200 + ']' * 1200)}.e30.x", "malformed"),
    "header-not-object": (lambda w: f"{b64json(['RS256'])}.e30.x", "malformed"),
    "invalid-utf8-header": (lambda w: f"{b64(bytes([0xff, 0xfe, 0x7b]))}.e30.x", "malformed"),
    "utf16-header": (lambda w: f"{b64(json.dumps(w.header).encode('utf-16'))}.e30.x",
                     "malformed"),
    "padding-in-segment": (lambda w: w.token.replace(".", "=.", 1), "malformed"),
    "standard-base64-chars": (lambda w: "+/" + w.token, "malformed"),
    "two-segments": (lambda w: w.token.rsplit(".", 1)[0], "malformed"),
    "four-segments": (lambda w: w.token + ".x", "malformed"),
    "non-ascii": (lambda w: w.token[:-2] + "é", "malformed"),
    "empty-header": (lambda w: "." + w.token.split(".", 1)[1], "malformed"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_token_is_refused(app: Flask, world: World, api_registration: App,
                                  name: str) -> None:
    build, reason = CASES[name]
    token = build(world)
    response = app.test_client().get("/me", headers=bearer(token))
    assert_invalid(response, api_registration, reason)
    text = response.get_data(as_text=True) + str(response.headers)
    assert world.token.split(".")[2][:20] not in text
    assert token[:40] not in text


def test_control_the_genuine_token_is_accepted(app: Flask, world: World) -> None:
    assert app.test_client().get("/me", headers=bearer(world.token)).status_code == 200
