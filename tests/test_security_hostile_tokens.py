"""Hostile tokens across the known JWT attack families: each is refused, cleanly.

Every case asserts the status (401 for a bad token, 403 for a good token without the
permission, 400 for a malformed Authorization header), the RFC 6750 ``WWW-Authenticate``
header (the exact one, with the reason's fixed description, for a 401 whose reason is known),
the RFC 9457 problem+json body, and that nothing of the token comes back. Positive controls
prove each app configuration accepts a genuine token, so a refusal means something.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask.testing import FlaskClient
from support.apps import build_api
from support.checks import assert_challenge, assert_no_echo
from support.jose import (
    attacker_rsa_key,
    authority_signing_key,
    b64url,
    b64url_json,
    claims_of,
    compose,
    header_of,
    rsa_public_jwk,
    sign_with,
)
from support.servers import AttackerServer, EcAuthority

from flask_obo.testing.tls import self_signed_rsa_cert
from flask_obo.validation import REASONS

ANY_AUTH_ERROR = "401-or-403"


# -- the attack: an emulator tenant, an API, a genuine token and an attacker's kit ------------

@dataclass
class Attack:
    emu: Any
    api: Any
    other: Any
    client: Any
    user: Any
    tenant_a: str
    tenant_b: str
    tenant_c: str
    token: str
    v1_token: str
    app_token: str
    id_token: str
    signer: rsa.RSAPrivateKey  # the authority's own current signing key
    kid: str
    jwk: dict[str, Any]
    attacker: rsa.RSAPrivateKey
    attacker_cert: x509.Certificate
    server: AttackerServer
    clients: dict[str, FlaskClient] = field(default_factory=dict)

    @property
    def claims(self) -> dict[str, Any]:
        return claims_of(self.token)

    @property
    def header(self) -> dict[str, Any]:
        return header_of(self.token)

    def sign(self, claims: dict[str, Any] | str, header: dict[str, Any] | str | None = None,
             alg: str = "RS256") -> str:
        """Sign with the authority's real key: only the content is hostile."""
        if header is None:
            header = {"typ": "JWT", "alg": alg, "kid": self.kid, "x5t": self.kid}
        return sign_with(self.signer, alg, header, claims)

    def resign(self, **changes: Any) -> str:
        """The genuine claims with ``changes`` (a value of ``...`` removes the claim), re-signed."""
        claims = self.claims
        for name, value in changes.items():
            if value is ...:
                claims.pop(name, None)
            else:
                claims[name] = value
        return self.sign(claims)

    def forge(self, header: dict[str, Any], claims: dict[str, Any] | None = None,
              alg: str = "RS256") -> str:
        """Sign with the attacker's key."""
        return sign_with(self.attacker, alg, {"typ": "JWT", "alg": alg, **header},
                         claims if claims is not None else self.claims)

    @property
    def issuer_v1(self) -> str:
        return claims_of(self.v1_token)["iss"]

    @property
    def issuer_v2(self) -> str:
        return self.claims["iss"]

    @property
    def base(self) -> str:
        return self.issuer_v2.rsplit("/", 2)[0]


@pytest.fixture(scope="module")
def attack(entra_emulator: Any) -> Iterator[Attack]:
    emu = entra_emulator
    tag = uuid.uuid4().hex[:8]
    api = emu.register_app(f"hostile-api-{tag}", scopes=["access_as_user"], roles=["Reader"])
    other = emu.register_app(f"other-api-{tag}", scopes=["access_as_user"])
    client = emu.register_app(f"hostile-daemon-{tag}", secret=uuid.uuid4().hex)
    emu.grant_consent(client=client, resource=api, roles=["Reader"])
    user = emu.add_user(f"mallory-{tag}@contoso.test", password=uuid.uuid4().hex)
    tenant_b = emu.add_tenant()
    tenant_c = str(uuid.uuid4())
    token = emu.issue_user_token(user, resource=api, scopes=["access_as_user"])
    v1_token = emu.issue_user_token(user, resource=api, scopes=["access_as_user"], version=1)
    app_token = emu.issue_app_token(client, resource=api)
    id_token = emu.issue_id_token(user, api)
    signer, kid = authority_signing_key(emu)
    assert header_of(token)["kid"] == kid
    jwk = next(k for k in emu.jwks()["keys"] if k["kid"] == kid)
    attacker = attacker_rsa_key()
    attacker_cert = self_signed_rsa_cert(attacker, "attacker")
    cert_pem = attacker_cert.public_bytes(serialization.Encoding.PEM)
    attacker_jwks = json.dumps({"keys": [rsa_public_jwk(attacker.public_key(), "attacker")]})
    routes = {
        "/jwks.json": ("application/json", attacker_jwks.encode()),
        "/cert.pem": ("application/x-pem-file", cert_pem),
    }
    with AttackerServer(routes) as server:
        attack = Attack(
            emu=emu, api=api, other=other, client=client, user=user,
            tenant_a=emu.tenant_id, tenant_b=tenant_b, tenant_c=tenant_c,
            token=token, v1_token=v1_token, app_token=app_token, id_token=id_token,
            signer=signer, kid=kid, jwk=jwk, attacker=attacker, attacker_cert=attacker_cert,
            server=server,
        )
        apps = {
            "default": {},
            "es256": {"OBO_ALGORITHMS": ["RS256", "ES256"]},
            "v2only": {"OBO_ACCEPTED_TOKEN_VERSIONS": ["2.0"]},
            "small": {"OBO_MAX_TOKEN_BYTES": 1024},
            "big": {"OBO_MAX_TOKEN_BYTES": 4_000_000},
            "multi": {"OBO_AUTHORITY": emu.authority("organizations"),
                      "OBO_ALLOWED_TENANTS": [emu.tenant_id, tenant_b]},
        }
        for name, config in apps.items():
            attack.clients[name] = build_api(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=0,
                                             **config).test_client()
        yield attack


def _get(client: FlaskClient, path: str, authorization: str | None) -> Any:
    """GET with the header as a real server hands it over (WSGI: bytes decoded as latin-1)."""
    environ = {}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization.encode("utf-8", "surrogatepass").decode(
            "latin-1")
    return client.get(path, environ_overrides=environ)


# -- positive controls: each configuration accepts what the authority really issued --------------

@pytest.mark.parametrize("app", ["default", "es256", "v2only", "big", "multi"])
def test_control_genuine_token_accepted(attack: Attack, app: str) -> None:
    response = _get(attack.clients[app], "/scoped", f"Bearer {attack.token}")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["oid"] == attack.user.oid


def test_control_hand_signed_token_accepted(attack: Attack) -> None:
    """The hand-signing below is right: re-signing the genuine claims yields a good token."""
    for token in (attack.resign(), attack.sign(attack.claims)):
        response = _get(attack.clients["default"], "/scoped", f"Bearer {token}")
        assert response.status_code == 200, response.get_data(as_text=True)


def test_control_v1_and_app_tokens_accepted(attack: Attack) -> None:
    client = attack.clients["default"]
    assert _get(client, "/scoped", f"Bearer {attack.v1_token}").status_code == 200
    assert _get(client, "/roles", f"Bearer {attack.app_token}").status_code == 200


def test_control_tenant_b_accepted_by_multi_tenant_app(attack: Attack) -> None:
    base = attack.base
    token = attack.resign(tid=attack.tenant_b, iss=f"{base}/{attack.tenant_b}/v2.0")
    response = _get(attack.clients["multi"], "/me", f"Bearer {token}")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["tid"] == attack.tenant_b


# -- the hostile cases ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Attack], str]
    status: int | str = 401
    app: str = "default"
    path: str = "/me"
    raw_header: bool = False  # build returns the whole Authorization header value
    #: the problem body's reason code: proves the intended check refused it (None: any)
    reason: str | None = None


CASES: list[Case] = []


def case(id: str, status: int | str = 401, app: str = "default", path: str = "/me",
         raw_header: bool = False, reason: str | None = None,
         ) -> Callable[[Callable[[Attack], str]], Callable[[Attack], str]]:
    def register(build: Callable[[Attack], str]) -> Callable[[Attack], str]:
        CASES.append(Case(id, build, status, app, path, raw_header, reason))
        return build
    return register


def _now() -> int:
    return int(time.time())


def _sig(token: str) -> str:
    return token.split(".")[2]


# alg none and its case variants, with an empty, a genuine and a random signature ---------------
for _alg in ("none", "None", "NONE", "nOnE"):
    for _variant in ("empty", "genuine", "random"):
        def _none(w: Attack, alg: str = _alg, variant: str = _variant) -> str:
            signature = {"empty": "", "genuine": _sig(w.token), "random": b64url(b"x" * 256)}
            return compose({"typ": "JWT", "alg": alg, "kid": w.kid}, w.claims, signature[variant])
        case(f"alg-{_alg}-{_variant}-signature", reason="algorithm")(_none)


@case("alg-none-no-kid", reason="algorithm")
def _(w: Attack) -> str:
    return compose({"alg": "none"}, w.claims, "")


@case("alg-missing-genuine-signature", reason="algorithm")
def _(w: Attack) -> str:
    return w.sign(w.claims, {"typ": "JWT", "kid": w.kid})


@case("alg-list-genuine-signature", reason="algorithm")
def _(w: Attack) -> str:
    return sign_with(w.signer, "RS256", {"alg": ["RS256"], "kid": w.kid}, w.claims)


@case("alg-null", reason="algorithm")
def _(w: Attack) -> str:
    return sign_with(w.signer, "RS256", {"alg": None, "kid": w.kid}, w.claims)


@case("alg-RS512-not-allowed-genuine-key", reason="algorithm")
def _(w: Attack) -> str:
    return w.sign(w.claims, alg="RS512")


@case("alg-PS256-not-allowed-genuine-key", reason="algorithm")
def _(w: Attack) -> str:
    return w.sign(w.claims, alg="PS256")


# HS/RS key confusion: HMAC keyed with the authority's public key in every common form ---------
def _public_key_forms(w: Attack) -> dict[str, bytes]:
    public = w.signer.public_key()
    return {
        "pem-spki": public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo),
        "pem-pkcs1": public.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.PKCS1),
        "der-spki": public.public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk-json": json.dumps(w.jwk).encode(),
        "jwk-json-compact": json.dumps(w.jwk, separators=(",", ":")).encode(),
        "jwk-n": base64.urlsafe_b64decode(w.jwk["n"] + "=="),
    }


for _hs in ("HS256", "HS384", "HS512"):
    for _form in ("pem-spki", "pem-pkcs1", "der-spki", "jwk-json", "jwk-json-compact", "jwk-n"):
        def _confused(w: Attack, alg: str = _hs, form: str = _form) -> str:
            secret = _public_key_forms(w)[form]
            return sign_with(secret, alg, {"typ": "JWT", "alg": alg, "kid": w.kid}, w.claims)
        case(f"key-confusion-{_hs}-{_form}", reason="algorithm")(_confused)
        case(f"key-confusion-{_hs}-{_form}-es256-app", app="es256", reason="algorithm")(_confused)


# embedded jwk, jku, x5u, x5c: the token names its own key ----------------------------------------
@case("jwk-embedded-attacker-kid", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.forge({"kid": "attacker", "jwk": rsa_public_jwk(w.attacker.public_key(), "attacker")})


@case("jwk-embedded-real-kid", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.forge({"kid": w.kid, "jwk": rsa_public_jwk(w.attacker.public_key(), w.kid)})


@case("jwk-embedded-no-kid", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.forge({"jwk": rsa_public_jwk(w.attacker.public_key(), "attacker")})


@case("jku-attacker-url", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.forge({"kid": "attacker", "jku": w.server.url_of("/jwks.json")})


@case("jku-attacker-url-real-kid", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.forge({"kid": w.kid, "jku": w.server.url_of("/jwks.json")})


@case("x5u-attacker-url", reason="forbidden_header")
def _(w: Attack) -> str:
    thumb = b64url(w.attacker_cert.fingerprint(hashes.SHA1()))
    return w.forge({"x5u": w.server.url_of("/cert.pem"), "x5t": thumb, "kid": thumb})


@case("x5u-attacker-url-real-kid", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.forge({"x5u": w.server.url_of("/cert.pem"), "kid": w.kid})


def _attacker_x5c(w: Attack) -> str:
    return base64.b64encode(w.attacker_cert.public_bytes(serialization.Encoding.DER)).decode()


@case("x5c-attacker-cert", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.forge({"x5c": [_attacker_x5c(w)]})


@case("x5c-attacker-cert-with-thumbprint-kid", reason="forbidden_header")
def _(w: Attack) -> str:
    thumb = b64url(w.attacker_cert.fingerprint(hashes.SHA1()))
    return w.forge({"x5c": [_attacker_x5c(w)], "x5t": thumb, "kid": thumb})


@case("x5c-attacker-cert-real-kid", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.forge({"x5c": [_attacker_x5c(w)], "kid": w.kid, "x5t": w.kid})


@case("x5c-chain-ending-in-authority-cert")
def _(w: Attack) -> str:
    return w.forge({"x5c": [_attacker_x5c(w), *w.jwk.get("x5c", [])], "kid": w.kid})


@case("x5c-authority-cert-attacker-signature", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.forge({"x5c": w.jwk.get("x5c", []), "kid": w.kid, "x5t": w.kid})


# the same headers on a token the authority really signed: refused for naming a key, whatever
# the signature
@case("jwk-embedded-authority-key-genuine-signature", app="es256", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {**w.header, "jwk": {k: w.jwk[k] for k in ("kty", "kid", "n", "e")}})


@case("jku-attacker-url-genuine-signature", app="es256", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {**w.header, "jku": w.server.url_of("/jwks.json")})


@case("x5u-attacker-url-genuine-signature", app="es256", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {**w.header, "x5u": w.server.url_of("/cert.pem")})


@case("x5c-authority-cert-genuine-signature", app="es256", reason="forbidden_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {**w.header, "x5c": w.jwk["x5c"]})


# kid injection ------------------------------------------------------------------------------
@case("kid-path-traversal-hs256-empty-key", reason="algorithm")
def _(w: Attack) -> str:
    return sign_with(b"", "HS256", {"alg": "HS256", "kid": "../../../../../../dev/null"}, w.claims)


@case("kid-path-traversal-rs256", reason="unknown_key")
def _(w: Attack) -> str:
    return w.forge({"kid": "../../../../../../dev/null"})


@case("kid-sql-injection", reason="unknown_key")
def _(w: Attack) -> str:
    return w.forge({"kid": "x' UNION SELECT 'attacker-key' -- "})


@case("kid-sql-injection-hs256", reason="algorithm")
def _(w: Attack) -> str:
    return sign_with(b"attacker-key", "HS256",
                     {"alg": "HS256", "kid": "x' UNION SELECT 'attacker-key' -- "}, w.claims)


@case("kid-command-injection", reason="unknown_key")
def _(w: Attack) -> str:
    return w.forge({"kid": "key|/usr/bin/touch /tmp/flask-obo-pwned"})


@case("kid-very-long", reason="unknown_key")
def _(w: Attack) -> str:
    return w.forge({"kid": "A" * 1500})


@case("kid-real-with-nul", reason="unknown_key")
def _(w: Attack) -> str:
    return w.forge({"kid": w.kid + "\x00attacker"})


@case("kid-unknown-attacker-key", reason="unknown_key")
def _(w: Attack) -> str:
    return w.forge({"kid": uuid.uuid4().hex})


@case("kid-real-attacker-signature", reason="signature")
def _(w: Attack) -> str:
    return w.forge({"kid": w.kid, "x5t": w.kid})


@case("kid-real-truncated-genuine-signature", reason="unknown_key")
def _(w: Attack) -> str:
    return w.sign(w.claims, {"alg": "RS256", "kid": w.kid[:-1]})


for _kid_value, _name in ((0, "int"), ([None], "list"), ({"$ne": None}, "object"), (True, "bool"),
                          (None, "null")):
    def _typed_kid(w: Attack, kid: Any = _kid_value) -> str:
        return w.forge({"kid": kid})
    case(f"kid-type-{_name}", reason="unknown_key")(_typed_kid)


# crit --------------------------------------------------------------------------------------------
@case("crit-unknown-extension-genuine-signature", reason="critical_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {"typ": "JWT", "alg": "RS256", "kid": w.kid,
                             "crit": ["x-flask-obo-unknown"], "x-flask-obo-unknown": True})


@case("crit-missing-parameter", reason="critical_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {"alg": "RS256", "kid": w.kid, "crit": ["x-absent"]})


@case("crit-as-string", reason="critical_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {"alg": "RS256", "kid": w.kid, "crit": "x-unknown", "x-unknown": 1})


@case("crit-b64-false", reason="critical_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {"alg": "RS256", "kid": w.kid, "crit": ["b64"], "b64": False})


@case("crit-names-a-registered-claim-genuine-signature", app="es256",
      reason="critical_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {**w.header, "crit": ["exp"], "exp": 1})


@case("b64-false-without-crit", reason="critical_header")
def _(w: Attack) -> str:
    return w.sign(w.claims, {"alg": "RS256", "kid": w.kid, "b64": False})


# ECDSA psychic signature (CVE-2022-21449) -----------------------------------------------------
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_PSYCHIC = {
    "zero-raw": b"\x00" * 64,
    "zero-der": base64.b64decode("MAYCAQACAQA="),
    "order-raw": _P256_ORDER.to_bytes(32, "big") * 2,
}
for _app in ("default", "es256"):
    # The emulator publishes RSA keys only: here ES256 meets an RSA kid. The EC authority
    # below checks the same signatures against a real EC key.
    _wrong_alg = "algorithm" if _app == "default" else None
    for _form, _signature in _PSYCHIC.items():
        def _psychic(w: Attack, signature: bytes = _signature) -> str:
            return compose({"typ": "JWT", "alg": "ES256", "kid": w.kid}, w.claims, signature)
        case(f"ecdsa-psychic-{_form}-{_app}", app=_app,
             reason=_wrong_alg or "signature")(_psychic)

    def _psychic_no_kid(w: Attack) -> str:
        return compose({"alg": "ES256"}, w.claims, b"\x00" * 64)
    case(f"ecdsa-psychic-no-kid-{_app}", app=_app,
         reason=_wrong_alg or "unknown_key")(_psychic_no_kid)

    def _attacker_ec(w: Attack) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "kid": "attacker-ec",
               "x": b64url(numbers.x.to_bytes(32, "big")),
               "y": b64url(numbers.y.to_bytes(32, "big"))}
        return sign_with(key, "ES256", {"alg": "ES256", "kid": "attacker-ec", "jwk": jwk},
                         w.claims)
    case(f"ecdsa-attacker-key-embedded-{_app}", app=_app,
         reason=_wrong_alg or "forbidden_header")(_attacker_ec)

    def _attacker_ec_real_kid(w: Attack) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        return sign_with(key, "ES256", {"alg": "ES256", "kid": w.kid}, w.claims)
    case(f"ecdsa-attacker-key-real-kid-{_app}", app=_app,
         reason=_wrong_alg or "signature")(_attacker_ec_real_kid)


# JWE-shaped --------------------------------------------------------------------------------------
@case("jwe-rsa-oaep", reason="encrypted")
def _(w: Attack) -> str:
    header = b64url_json({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": w.kid})
    return ".".join([header, b64url(b"k" * 256), b64url(b"i" * 12), b64url(b"c" * 64),
                     b64url(b"t" * 16)])


@case("jwe-dir", reason="encrypted")
def _(w: Attack) -> str:
    header = b64url_json({"alg": "dir", "enc": "A128CBC-HS256"})
    return ".".join([header, "", b64url(b"i" * 16), b64url(b"c" * 64), b64url(b"t" * 16)])


@case("jwe-enc-in-three-segments", reason="encrypted")
def _(w: Attack) -> str:
    return w.sign(w.claims, {"alg": "RS256", "kid": w.kid, "enc": "A256GCM"})


@case("five-segments-of-junk", reason="encrypted")
def _(w: Attack) -> str:
    return "a.b.c.d.e"


# oversized -------------------------------------------------------------------------------------
@case("oversized-genuine-signature", reason="too_large")
def _(w: Attack) -> str:
    claims = w.claims
    claims["padding"] = "x" * 17_000
    return w.sign(claims)


@case("oversized-over-configured-limit", app="small", reason="too_large")
def _(w: Attack) -> str:
    token = w.resign(padding="x" * 600)
    assert len(token) > 1024
    return token


@case("oversized-header-value-1mb", reason="too_large")
def _(w: Attack) -> str:
    return w.forge({"kid": "A" * 1_000_000})


@case("oversized-header-value-under-limit", reason="malformed")
def _(w: Attack) -> str:
    return w.forge({"kid": w.kid, "x-pad": "A" * 9000})


@case("oversized-header-value-big-limit", app="big", reason="malformed")
def _(w: Attack) -> str:
    return w.sign(w.claims, {"alg": "RS256", "kid": w.kid, "x-pad": "A" * 500_000})


# deeply nested JSON ------------------------------------------------------------------------------
@case("nested-payload-array", reason="malformed")
def _(w: Attack) -> str:
    return w.sign(b64url("[" * 5000 + "]" * 5000))


@case("nested-payload-object", reason="malformed")
def _(w: Attack) -> str:
    return w.sign(b64url('{"a":' * 1800 + "1" + "}" * 1800))


@case("nested-claim-in-genuine-claims", reason="malformed")
def _(w: Attack) -> str:
    body = json.dumps(w.claims)[:-1] + ',"x":' + "[" * 4000 + "]" * 4000 + "}"
    return w.sign(b64url(body))


@case("nested-header", reason="malformed")
def _(w: Attack) -> str:
    header = '{"alg":"RS256","kid":"' + w.kid + '","x":' + "[" * 1500 + "]" * 1500 + "}"
    return w.sign(w.claims, b64url(header))


@case("nested-payload-huge-depth", app="big", reason="malformed")
def _(w: Attack) -> str:
    # Deeper than any recursion limit, and under joserfc's own 128 kB payload cap.
    return w.sign(b64url("[" * 40_000 + "]" * 40_000))


# invalid UTF-8 -------------------------------------------------------------------------------
@case("utf8-invalid-header", reason="malformed")
def _(w: Attack) -> str:
    raw = b'{"alg":"RS256","kid":"' + w.kid.encode() + b'\xff\xfe"}'
    return w.sign(w.claims, b64url(raw))


@case("utf8-invalid-payload", reason="malformed")
def _(w: Attack) -> str:
    raw = json.dumps(w.claims).encode()[:-1] + b',"x":"\xc3\x28"}'
    return w.sign(b64url(raw))


@case("utf8-overlong-payload", reason="malformed")
def _(w: Attack) -> str:
    raw = json.dumps(w.claims).encode()[:-1] + b',"x":"\xc0\xaf"}'
    return w.sign(b64url(raw))


@case("utf8-lone-surrogate-tid", reason="tenant")
def _(w: Attack) -> str:
    return w.resign(tid=w.tenant_a + "\ud800")


@case("utf8-lone-surrogate-kid", reason="unknown_key")
def _(w: Attack) -> str:
    return w.forge({"kid": "\udc00" + w.kid})


@case("utf16-header", app="es256", reason="malformed")
def _(w: Attack) -> str:
    return f"{b64url(json.dumps(w.header).encode('utf-16'))}.e30.x"


@case("utf16-payload", reason="malformed")
def _(w: Attack) -> str:
    return w.sign(b64url(json.dumps(w.claims).encode("utf-16")))


# invalid base64 and JSON shape -----------------------------------------------------------------
@case("base64-illegal-characters", reason="malformed")
def _(w: Attack) -> str:
    return "!!!!.@@@@.####"


@case("base64-impossible-length", reason="malformed")
def _(w: Attack) -> str:
    return "eyJhb." + w.token.split(".", 1)[1]


@case("base64-padded-header", reason="malformed")
def _(w: Attack) -> str:
    header, rest = w.token.split(".", 1)
    return header + "==." + rest


@case("base64-standard-alphabet-header", reason="malformed")
def _(w: Attack) -> str:
    header = base64.b64encode(json.dumps({**w.header, "x": "???>>>"}).encode()).decode()
    return w.sign(w.claims, header)


@case("header-not-json", reason="malformed")
def _(w: Attack) -> str:
    return w.sign(w.claims, b64url(b"not json at all"))


for _shape in ("[]", '"RS256"', "null", "123", "true"):
    def _header_shape(w: Attack, shape: str = _shape) -> str:
        return w.sign(w.claims, b64url(shape))
    case(f"header-json-{_shape.strip(chr(34))}", reason="malformed")(_header_shape)

    def _payload_shape(w: Attack, shape: str = _shape) -> str:
        return w.sign(b64url(shape))
    case(f"payload-json-{_shape.strip(chr(34))}", reason="malformed")(_payload_shape)


@case("payload-nan-and-infinity", reason="malformed")
def _(w: Attack) -> str:
    return w.sign(b64url(json.dumps(w.claims)[:-1] + ',"exp2":NaN}'))


# structure: dots, empty segments -----------------------------------------------------------------
@case("two-segments", reason="malformed")
def _(w: Attack) -> str:
    return w.token.rsplit(".", 1)[0]


@case("four-segments", reason="malformed")
def _(w: Attack) -> str:
    return w.token + "." + _sig(w.token)


@case("trailing-dot", reason="malformed")
def _(w: Attack) -> str:
    return w.token + "."


@case("leading-dot", reason="malformed")
def _(w: Attack) -> str:
    return "." + w.token


@case("empty-payload-detached-genuine-signature", reason="malformed")
def _(w: Attack) -> str:
    return w.sign("", w.header)


@case("empty-signature", reason="signature")
def _(w: Attack) -> str:
    return w.token.rsplit(".", 1)[0] + "."


@case("empty-header", reason="malformed")
def _(w: Attack) -> str:
    return "." + w.token.split(".", 1)[1]


@case("only-dots", reason="malformed")
def _(w: Attack) -> str:
    return ".."


@case("tampered-payload-genuine-signature", app="es256", reason="signature")
def _(w: Attack) -> str:
    header, _, signature = w.token.split(".")
    return f"{header}.{b64url_json({**w.claims, 'scp': 'write'})}.{signature}"


@case("signature-of-another-token", reason="signature")
def _(w: Attack) -> str:
    other = w.resign(oid=str(uuid.uuid4()))
    return w.token.rsplit(".", 1)[0] + "." + _sig(other)


@case("signature-non-canonical-base64", reason="signature")
def _(w: Attack) -> str:
    # The last character of a 256-byte signature carries 2 bits of data and 4 padding bits:
    # another spelling of the same bytes is still not the token the authority issued.
    head, signature = w.token.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(signature[-1])
    return f"{head}.{signature[:-1]}{alphabet[index ^ 0x1]}"


@case("signature-truncated", reason="signature")
def _(w: Attack) -> str:
    return w.token[:-4]


# whitespace and unicode --------------------------------------------------------------------------
@case("newline-inside-token", reason="malformed")
def _(w: Attack) -> str:
    return w.token[:40] + "\n" + w.token[40:]


@case("nul-inside-token", reason="malformed")
def _(w: Attack) -> str:
    return w.token[:40] + "\x00" + w.token[40:]


@case("space-inside-token", status=400, reason="malformed_header")
def _(w: Attack) -> str:
    return w.token[:40] + " " + w.token[40:]


@case("tab-inside-token", status=400, reason="malformed_header")
def _(w: Attack) -> str:
    return w.token[:40] + "\t" + w.token[40:]


@case("two-tokens", status=400, reason="malformed_header")
def _(w: Attack) -> str:
    return w.token + " " + w.token


@case("comma-separated-tokens", status=400, reason="malformed_header")
def _(w: Attack) -> str:
    return w.token + "," + w.token


@case("fullwidth-first-character", reason="malformed")
def _(w: Attack) -> str:
    return chr(ord(w.token[0]) + 0xFEE0) + w.token[1:]


@case("fullwidth-dot-separators", reason="malformed")
def _(w: Attack) -> str:
    return w.token.replace(".", "\uff0e")


@case("one-dot-leader-separators", reason="malformed")
def _(w: Attack) -> str:
    return w.token.replace(".", "\u2024")


@case("zero-width-space-inside", reason="malformed")
def _(w: Attack) -> str:
    return w.token[:40] + "\u200b" + w.token[40:]


@case("non-ascii-junk", reason="malformed")
def _(w: Attack) -> str:
    return "é" * 40 + ".ü.ß"


@case("bearer-without-token", status=400, raw_header=True, reason="malformed_header")
def _(w: Attack) -> str:
    return "Bearer "


@case("bearer-glued-to-token", status=401, raw_header=True, reason="missing")
def _(w: Attack) -> str:
    return "Bearer" + w.token


# tenants and issuers: the same key signs for every tenant --------------------------------------
@case("other-tenant-same-key", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(tid=w.tenant_b, iss=f"{w.base}/{w.tenant_b}/v2.0")


@case("tid-a-iss-b", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=f"{w.base}/{w.tenant_b}/v2.0")


@case("tid-b-iss-a", reason="tenant")
def _(w: Attack) -> str:
    return w.resign(tid=w.tenant_b)


@case("multi-tenant-tid-a-iss-b", app="multi", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=f"{w.base}/{w.tenant_b}/v2.0")


@case("multi-tenant-tid-b-iss-a", app="multi", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(tid=w.tenant_b)


@case("multi-tenant-not-allowed", app="multi", reason="tenant")
def _(w: Attack) -> str:
    return w.resign(tid=w.tenant_c, iss=f"{w.base}/{w.tenant_c}/v2.0")


@case("multi-tenant-iss-template-literal", app="multi", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=f"{w.base}/{{tenantid}}/v2.0")


@case("multi-tenant-tid-missing", app="multi", reason="tenant")
def _(w: Attack) -> str:
    return w.resign(tid=...)


@case("multi-tenant-tid-uppercase", app="multi", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(tid=w.tenant_b.upper(), iss=f"{w.base}/{w.tenant_b}/v2.0")


@case("multi-tenant-tid-star", app="multi", reason="tenant")
def _(w: Attack) -> str:
    return w.resign(tid="*", iss=f"{w.base}/*/v2.0")


@case("multi-tenant-tid-common", app="multi", reason="tenant")
def _(w: Attack) -> str:
    return w.resign(tid="common", iss=f"{w.base}/common/v2.0")


@case("multi-tenant-tid-organizations", app="multi", reason="tenant")
def _(w: Attack) -> str:
    return w.resign(tid="organizations", iss=f"{w.base}/organizations/v2.0")


# ID token, time, audience, issuer ---------------------------------------------------------------
@case("id-token", reason="not_access_token")
def _(w: Attack) -> str:
    return w.id_token


@case("id-token-on-scoped-view", path="/scoped", reason="not_access_token")
def _(w: Attack) -> str:
    return w.id_token


@case("access-token-without-scp-or-roles", reason="not_access_token")
def _(w: Attack) -> str:
    return w.resign(scp=...)


@case("scp-blank", reason="not_access_token")
def _(w: Attack) -> str:
    return w.resign(scp="   ")


@case("expired", reason="expired")
def _(w: Attack) -> str:
    return w.resign(iat=_now() - 4000, nbf=_now() - 4000, exp=_now() - 600)


@case("expired-long-ago", reason="expired")
def _(w: Attack) -> str:
    return w.resign(iat=1000, nbf=1000, exp=2000)


@case("expired-issued-by-emulator", reason="expired")
def _(w: Attack) -> str:
    return w.emu.issue_user_token(w.user, resource=w.api, scopes=["access_as_user"],
                                  lifetime=-3600)


@case("not-yet-valid", reason="not_yet_valid")
def _(w: Attack) -> str:
    return w.resign(nbf=_now() + 900, exp=_now() + 4000)


@case("missing-exp", reason="no_expiry")
def _(w: Attack) -> str:
    return w.resign(exp=...)


for _exp_name, _exp_value in (("string", "99999999999"), ("null", None), ("bool", True),
                              ("list", [9999999999]), ("negative", -1), ("huge", 10**30),
                              ("float-huge", 1e308)):
    def _bad_exp(w: Attack, value: Any = _exp_value) -> str:
        return w.resign(exp=value)
    case(f"exp-{_exp_name}", reason="no_expiry")(_bad_exp)

for _special in ("NaN", "Infinity", "-Infinity"):
    def _special_exp(w: Attack, special: str = _special) -> str:
        claims = w.claims
        claims.pop("exp")
        return w.sign(b64url(json.dumps(claims)[:-1] + f',"exp":{special}}}'))
    # Not JSON at all (RFC 8259), and not a time either: refused as one or the other.
    case(f"exp-{_special}")(_special_exp)

    def _special_nbf(w: Attack, special: str = _special) -> str:
        claims = w.claims
        claims.pop("nbf", None)
        return w.sign(b64url(json.dumps(claims)[:-1] + f',"nbf":{special}}}'))
    if _special != "-Infinity":
        case(f"nbf-{_special}")(_special_nbf)


@case("nbf-string", reason="not_yet_valid")
def _(w: Attack) -> str:
    return w.resign(nbf=str(_now() + 900))


@case("aud-other-app", reason="audience")
def _(w: Attack) -> str:
    return w.resign(aud=w.other.client_id)


@case("aud-other-app-uri", reason="audience")
def _(w: Attack) -> str:
    return w.resign(aud=w.other.app_id_uri)


@case("aud-issued-for-other-app", reason="audience")
def _(w: Attack) -> str:
    return w.emu.issue_user_token(w.user, resource=w.other, scopes=["access_as_user"])


@case("aud-list-of-others", reason="audience")
def _(w: Attack) -> str:
    return w.resign(aud=[w.other.client_id, w.other.app_id_uri])


@case("aud-list-with-ours-and-another", reason="audience")
def _(w: Attack) -> str:
    # Entra access tokens carry one audience: a multi-audience token is also meant for someone
    # else, who could replay it here.
    return w.resign(aud=[w.other.client_id, w.api.client_id])


@case("aud-missing", reason="audience")
def _(w: Attack) -> str:
    return w.resign(aud=...)


@case("aud-object", reason="audience")
def _(w: Attack) -> str:
    return w.resign(aud={"aud": w.api.client_id})


@case("aud-prefix-of-ours", reason="audience")
def _(w: Attack) -> str:
    return w.resign(aud=w.api.client_id[:-1])


@case("aud-ours-with-suffix", reason="audience")
def _(w: Attack) -> str:
    return w.resign(aud=w.api.app_id_uri + "/extra")


@case("aud-graph", reason="audience")
def _(w: Attack) -> str:
    return w.resign(aud="00000003-0000-0000-c000-000000000000")


@case("ver2-with-v1-issuer", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=w.issuer_v1)


@case("ver1-with-v2-issuer", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(ver="1.0", aud=w.api.app_id_uri)


@case("ver1-app-id-uri-with-v2-issuer", reason="issuer")
def _(w: Attack) -> str:
    claims = claims_of(w.v1_token)
    claims["iss"] = w.issuer_v2
    return w.sign(claims)


@case("v1-token-on-v2-only-api", app="v2only", reason="version")
def _(w: Attack) -> str:
    return w.v1_token


@case("ver-unknown", reason="version")
def _(w: Attack) -> str:
    return w.resign(ver="3.0")


@case("ver-number", reason="version")
def _(w: Attack) -> str:
    return w.resign(ver=2.0)


@case("ver-missing", reason="version")
def _(w: Attack) -> str:
    return w.resign(ver=...)


@case("iss-v2-trailing-slash", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=w.issuer_v2 + "/")


@case("iss-v1-without-trailing-slash", reason="issuer")
def _(w: Attack) -> str:
    claims = claims_of(w.v1_token)
    claims["iss"] = w.issuer_v1.rstrip("/")
    return w.sign(claims)


@case("iss-http-instead-of-https", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=w.issuer_v2.replace("https://", "http://", 1))


@case("iss-other-host", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=f"https://login.microsoftonline.com/{w.tenant_a}/v2.0")


@case("iss-v1-shape-on-the-authority-host", reason="issuer")
def _(w: Attack) -> str:
    # The v1 issuer is Entra's (sts.windows.net), as the v1 discovery document says, not a
    # lookalike on the authority's own host.
    claims = claims_of(w.v1_token)
    claims["iss"] = f"{w.emu.base_url}/{w.tenant_a}/"
    return w.sign(claims)


@case("iss-sts-windows-net-of-another-tenant", reason="issuer")
def _(w: Attack) -> str:
    claims = claims_of(w.v1_token)
    claims["iss"] = f"https://sts.windows.net/{w.tenant_b}/"
    return w.sign(claims)


@case("iss-uppercase-tenant", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=w.issuer_v2.replace(w.tenant_a, w.tenant_a.upper()))


@case("iss-missing", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=...)


@case("iss-list", reason="issuer")
def _(w: Attack) -> str:
    return w.resign(iss=[w.issuer_v2])


@case("tid-list", reason="tenant")
def _(w: Attack) -> str:
    return w.resign(tid=[w.tenant_a])


@case("tid-number", reason="tenant")
def _(w: Attack) -> str:
    return w.resign(tid=1)


# authorization: a good token without the permission -----------------------------------------------
@case("app-token-on-scope-only-view", status=403, path="/scoped", reason="missing_scope")
def _(w: Attack) -> str:
    return w.app_token


@case("user-token-on-role-only-view", status=403, path="/roles", reason="missing_role")
def _(w: Attack) -> str:
    return w.token


@case("scp-with-suffix", status=403, path="/scoped", reason="missing_scope")
def _(w: Attack) -> str:
    return w.resign(scp="access_as_user_admin")


@case("scp-with-prefix", status=403, path="/scoped", reason="missing_scope")
def _(w: Attack) -> str:
    return w.resign(scp="xaccess_as_user")


@case("scp-other-scope-and-role-name", status=403, path="/scoped", reason="missing_scope")
def _(w: Attack) -> str:
    return w.resign(scp="Reader", roles=["access_as_user"])


@case("roles-with-suffix", status=403, path="/roles", reason="missing_role")
def _(w: Attack) -> str:
    return w.resign(scp=..., roles=["ReaderWriter"])


for _scp_name, _scp_value in (("list", ["access_as_user"]), ("number", 1),
                              ("object", {"access_as_user": True}), ("nested-list",
                              [["access_as_user"]]), ("bool", True), ("null", None)):
    def _typed_scp(w: Attack, value: Any = _scp_value) -> str:
        return w.resign(scp=value)
    case(f"scp-type-{_scp_name}", status=ANY_AUTH_ERROR, path="/scoped")(_typed_scp)

for _roles_name, _roles_value in (("string", "Reader"), ("string-superset", "ReaderWriter"),
                                  ("object", {"Reader": True}), ("nested-list", [["Reader"]]),
                                  ("number", 1), ("list-of-numbers", [1, 2])):
    def _typed_roles(w: Attack, value: Any = _roles_value) -> str:
        return w.resign(scp=..., roles=value)
    case(f"roles-type-{_roles_name}", status=ANY_AUTH_ERROR, path="/roles")(_typed_roles)


# -- the test --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_token_is_refused(attack: Attack, case: Case) -> None:
    value = case.build(attack)
    authorization = value if case.raw_header else f"Bearer {value}"
    hits_before = len(attack.server.hits)
    response = _get(attack.clients[case.app], case.path, authorization)

    assert response.status_code not in (200, 500), response.get_data(as_text=True)
    status = case.status
    if status == ANY_AUTH_ERROR:
        assert response.status_code in (401, 403), response.status_code
        status = response.status_code
    error = {400: "invalid_request", 401: "invalid_token", 403: "insufficient_scope"}[status]
    if case.reason == "missing":  # not a Bearer header at all: RFC 6750's bare challenge
        error = None
    body = assert_challenge(response, int(status), error,
                            realm=f"api://{attack.api.client_id}")
    if case.reason is not None:
        assert body.get("reason") == case.reason, body
    if status == 401 and case.reason in REASONS:
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer realm="api://{attack.api.client_id}", error="invalid_token", '
            f'error_description="{REASONS[case.reason]}"')
    assert "Traceback" not in json.dumps(body)
    assert_no_echo(response, value.strip())
    assert len(attack.server.hits) == hits_before, (
        f"flask-obo fetched an attacker-named URL: {attack.server.hits[hits_before:]}")


def test_attacker_urls_were_never_fetched(attack: Attack) -> None:
    """After every case (jku, x5u included) ran: zero requests reached the attacker's server."""
    for token in (w(attack) for w in (c.build for c in CASES if c.id.startswith(("jku", "x5u")))):
        _get(attack.clients["default"], "/me", f"Bearer {token}")
    assert attack.server.hits == []


def test_insufficient_scope_names_the_scope(attack: Attack) -> None:
    response = _get(attack.clients["default"], "/scoped", f"Bearer {attack.app_token}")
    assert_challenge(response, 403, "insufficient_scope")
    assert 'scope="access_as_user"' in response.headers["WWW-Authenticate"]


# -- ECDSA against a real EC key (CVE-2022-21449) -------------------------------------------------

@pytest.fixture(scope="module")
def ec_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EcAuthority, str, Any]]:
    with EcAuthority(str(tmp_path_factory.mktemp("ec-authority"))) as authority:
        client_id = str(uuid.uuid4())
        app = build_api(None, None, OBO_AUTHORITY=authority.authority, OBO_CLIENT_ID=client_id,
                        OBO_CA_BUNDLE=authority.tls.ca_bundle, OBO_JWKS_MIN_REFETCH_INTERVAL=0,
                        OBO_ALGORITHMS=["RS256", "ES256"])
        yield authority, client_id, app.test_client()


def test_ec_control_genuine_es256_token_accepted(ec_api: tuple[EcAuthority, str, Any]) -> None:
    authority, client_id, client = ec_api
    response = _get(client, "/scoped", f"Bearer {authority.token(client_id)}")
    assert response.status_code == 200, response.get_data(as_text=True)


_EC_FORGERIES: dict[str, Callable[[EcAuthority, str], str]] = {
    "psychic-zero-raw": lambda a, aud: compose(
        {"alg": "ES256", "kid": a.kid}, claims_of(a.token(aud)), b"\x00" * 64),
    "psychic-zero-der": lambda a, aud: compose(
        {"alg": "ES256", "kid": a.kid}, claims_of(a.token(aud)), _PSYCHIC["zero-der"]),
    "psychic-order-raw": lambda a, aud: compose(
        {"alg": "ES256", "kid": a.kid}, claims_of(a.token(aud)), _PSYCHIC["order-raw"]),
    "psychic-r-zero-s-genuine": lambda a, aud: _with_r(a.token(aud), 0),
    "psychic-r-order-s-genuine": lambda a, aud: _with_r(a.token(aud), _P256_ORDER),
    "signature-empty": lambda a, aud: a.token(aud).rsplit(".", 1)[0] + ".",
    "signature-short": lambda a, aud: a.token(aud)[:-10],
    "hs256-keyed-with-ec-public-pem": lambda a, aud: sign_with(
        a.key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo),
        "HS256", {"alg": "HS256", "kid": a.kid}, claims_of(a.token(aud))),
    "es384-with-p256-key": lambda a, aud: compose(
        {"alg": "ES384", "kid": a.kid}, claims_of(a.token(aud)), b"\x00" * 96),
    "attacker-ec-key-same-kid": lambda a, aud: sign_with(
        ec.generate_private_key(ec.SECP256R1()), "ES256", {"alg": "ES256", "kid": a.kid},
        claims_of(a.token(aud))),
}


def _with_r(token: str, r: int) -> str:
    head, signature = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(signature + "==")
    return head + "." + b64url(r.to_bytes(32, "big") + raw[32:])


@pytest.mark.parametrize("name", sorted(_EC_FORGERIES))
def test_ec_forgery_is_refused(ec_api: tuple[EcAuthority, str, Any], name: str) -> None:
    authority, client_id, client = ec_api
    token = _EC_FORGERIES[name](authority, client_id)
    response = _get(client, "/scoped", f"Bearer {token}")
    body = assert_challenge(response, 401, "invalid_token", realm=f"api://{client_id}")
    assert body["reason"] in ("signature", "algorithm"), body
    assert_no_echo(response, token)
