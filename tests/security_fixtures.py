"""Shared helpers for the security and reliability suites (test_security_*, test_reliability_*).

Each of those modules builds its own module-scoped fixtures from these helpers (its own apps
and users on the session's emulator), so nothing here is a pytest plugin or clashes with
conftest.py.

Tokens are forged by hand (base64url of raw bytes, signatures computed with ``cryptography``
or ``hmac``) so that a hostile shape reaches flask-obo exactly as written, whatever a JOSE
library would refuse to produce. Tokens the authority really signed come from the emulator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.test import TestResponse

from flask_obo import (
    FlaskOBO,
    current_token,
    requires_downstream,
    requires_roles,
    requires_scopes,
)
from flask_obo.testing.tls import ServerTLS

__all__ = [
    "AttackerServer",
    "DownstreamBehaviour",
    "EcAuthority",
    "LoopbackApp",
    "assert_challenge",
    "assert_no_echo",
    "attacker_rsa_key",
    "authority_signing_key",
    "b64url",
    "b64url_json",
    "build_api",
    "build_downstream",
    "build_middle",
    "claims_of",
    "compose",
    "header_of",
    "leaked_fragment",
    "parse_challenge",
    "resign",
    "response_text",
    "rsa_public_jwk",
    "sign_with",
    "wait_for",
]

REALM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"')


# -- JOSE by hand -------------------------------------------------------------------------

def b64url(raw: bytes | str) -> str:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def header_of(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_unb64(token.split(".")[0]))
    return result


def claims_of(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_unb64(token.split(".")[1]))
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
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        der = key.sign(signing_input, ec.ECDSA(_HASHES[bits]()))
        r, s = decode_dss_signature(der)
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


# -- response checks -------------------------------------------------------------------------

def parse_challenge(header: str) -> dict[str, str]:
    assert header.startswith("Bearer "), header
    return dict(REALM_RE.findall(header[len("Bearer "):]))


def assert_challenge(response: TestResponse, status: int, error: str | None, *,
                     realm: str | None = None) -> dict[str, Any]:
    """The RFC 6750 challenge and RFC 9457 body flask-obo promises; returns the body."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/problem+json", response.headers
    challenge = response.headers.get("WWW-Authenticate", "")
    if error is None:
        assert re.fullmatch(r'Bearer realm="[^"]*"', challenge), challenge
    else:
        expected = rf'Bearer realm="[^"]*", error="{error}", error_description="[^"]+"'
        assert re.match(expected, challenge), challenge
    params = parse_challenge(challenge)
    if realm is not None:
        assert params["realm"] == realm, challenge
    body: dict[str, Any] = json.loads(response.get_data(as_text=True))
    assert body["status"] == status, body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert isinstance(body.get("type"), str) and body["type"], body
    if error is not None:
        assert body.get("error") == error, body
    return body


def _windows(text: str, size: int = 20) -> Iterator[str]:
    for start in range(0, max(0, len(text) - size + 1)):
        yield text[start:start + size]


def leaked_fragment(secret: str, haystack: str, size: int = 20) -> str | None:
    """A ``size``-character piece of ``secret`` found in ``haystack``, if any.

    Scans the haystack's windows against a set of the secret's: linear in both lengths.
    """
    if len(secret) < size:
        return secret if secret and secret in haystack else None
    pieces = set(_windows(secret, size))
    for window in _windows(haystack, size):
        if window in pieces:
            return window
    return None


def response_text(response: TestResponse) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return headers + "\n" + response.get_data(as_text=True)


def assert_no_echo(response: TestResponse, token: str) -> None:
    """Neither the token nor any 20-character piece of one of its segments comes back."""
    text = response_text(response)
    if len(token) >= 16:  # shorter junk ("a.b.c") is too short to tell an echo from chance
        assert token not in text
    for segment in token.split("."):
        if len(segment) < 20:
            continue
        found = leaked_fragment(segment, text)
        assert found is None, f"the response echoes a piece of the token: {found!r}"


# -- apps --------------------------------------------------------------------------------------

def build_api(emu: Any, api: Any, **config: Any) -> Flask:
    """A FlaskOBO-protected API with a plain view, a scope-only view and a role-only view.

    ``emu``/``api`` give the authority, CA and client id; ``emu=None`` when ``config`` does.
    """
    app = Flask(f"secured-{uuid.uuid4().hex[:8]}")
    app.config.update(TESTING=True, OBO_JWKS_MIN_REFETCH_INTERVAL=0)
    if emu is not None:
        app.config.update(OBO_AUTHORITY=emu.authority(), OBO_CLIENT_ID=api.client_id,
                          OBO_CA_BUNDLE=str(emu.ca_bundle))
    app.config.update(config)
    FlaskOBO(app)

    def me() -> Any:
        return jsonify(oid=current_token.get("oid"), tid=current_token.get("tid"))

    app.add_url_rule("/me", "me", me)
    app.add_url_rule("/scoped", "scoped", requires_scopes("access_as_user")(me))
    app.add_url_rule("/roles", "roles", requires_roles("Reader")(me))
    return app


# -- loopback servers --------------------------------------------------------------------------

class AttackerServer:
    """A loopback HTTP server that counts every request (jku/x5u targets must get none)."""

    def __init__(self, routes: Mapping[str, tuple[str, bytes]]) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                content_type, body = routes.get(self.path, ("text/plain", b"nope"))
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> AttackerServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class LoopbackApp:
    """A WSGI app served on 127.0.0.1 by werkzeug in a thread (a real downstream API).

    ``stop()`` closes the port (connections are refused); ``start()`` serves it again on the
    same port.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._server: BaseWSGIServer | None = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread: threading.Thread | None = None

    def start(self) -> LoopbackApp:
        if self._server is None:
            self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> LoopbackApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def authority_signing_key(emu: Any) -> tuple[rsa.RSAPrivateKey, str]:
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




class EcAuthority:
    """A minimal HTTPS OpenID authority on loopback that publishes one EC P-256 key.

    The emulator signs with RSA only; this stands in for an authority with an EC key, so that
    the ECDSA "psychic signature" (CVE-2022-21449) is checked against a real EC public key.
    """

    def __init__(self, directory: str) -> None:
        self.tls = ServerTLS(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = "ec-" + uuid.uuid4().hex[:12]
        self.tenant_id = str(uuid.uuid4())
        numbers = self.key.public_key().public_numbers()
        jwks = {"keys": [{"kty": "EC", "use": "sig", "kid": self.kid, "crv": "P-256",
                          "x": b64url(numbers.x.to_bytes(32, "big")),
                          "y": b64url(numbers.y.to_bytes(32, "big"))}]}
        routes: dict[str, bytes] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = routes.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = self.tls.server_context().wrap_socket(self._server.socket,
                                                                    server_side=True)
        self.base = f"https://127.0.0.1:{self._server.server_address[1]}"
        root = f"{self.base}/{self.tenant_id}"
        routes[f"/{self.tenant_id}/v2.0/.well-known/openid-configuration"] = json.dumps(
            {"issuer": f"{root}/v2.0", "jwks_uri": f"{root}/discovery/v2.0/keys",
             "token_endpoint": f"{root}/oauth2/v2.0/token"}).encode()
        routes[f"/{self.tenant_id}/.well-known/openid-configuration"] = json.dumps(
            {"issuer": f"{root}/", "jwks_uri": f"{root}/discovery/keys",
             "token_endpoint": f"{root}/oauth2/token"}).encode()
        routes[f"/{self.tenant_id}/discovery/v2.0/keys"] = json.dumps(jwks).encode()
        self.authority = root
        self.issuer = f"{root}/v2.0"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def token(self, audience: str, **changes: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience, "iss": self.issuer, "tid": self.tenant_id, "ver": "2.0",
            "iat": now, "nbf": now, "exp": now + 3600, "scp": "access_as_user",
            "oid": str(uuid.uuid4()), "sub": "ec-subject", "azp": str(uuid.uuid4()),
        }
        claims.update(changes)
        return sign_with(self.key, "ES256", {"typ": "JWT", "alg": "ES256", "kid": self.kid},
                         claims)

    def __enter__(self) -> EcAuthority:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# -- an on-behalf-of stack: a middle-tier API and a real downstream API ---------------------------

class DownstreamBehaviour:
    """What the downstream API does next: answer normally, fail with a status, stall, garble."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: int | None = None
        self.delay = 0.0
        self.malformed_challenge = False
        self.hits = 0
        self.seen: list[str] = []  # raw Authorization header values, in arrival order

    def reset(self) -> None:
        with self.lock:
            self.status, self.delay, self.malformed_challenge, self.hits = None, 0.0, False, 0


def build_downstream(emu: Any, down: Any, behaviour: DownstreamBehaviour) -> Flask:
    """A FlaskOBO-protected downstream API whose ``/echo`` returns the caller's identity."""
    app = Flask(f"downstream-{uuid.uuid4().hex[:8]}")
    app.config.update(OBO_AUTHORITY=emu.authority(), OBO_CLIENT_ID=down.client_id,
                      OBO_CA_BUNDLE=str(emu.ca_bundle))
    FlaskOBO(app)

    @app.before_request
    def misbehave() -> Any:
        with behaviour.lock:
            behaviour.hits += 1
            behaviour.seen.append(request.headers.get("Authorization", ""))
            status, delay, garble = (behaviour.status, behaviour.delay,
                                     behaviour.malformed_challenge)
        if delay:
            time.sleep(delay)
        if garble:
            return Response("{", 401, {"WWW-Authenticate": 'Bearer error="insufficient_claims", '
                                       'claims="%%%not-base64%%%"'})
        if status is not None:
            return Response("downstream failure", status, {"Content-Type": "text/plain"})
        return None

    @app.route("/echo", methods=["GET", "POST"])
    def echo() -> Any:
        return jsonify(oid=current_token.oid, azp=current_token.client_id,
                       scp=sorted(current_token.scopes))

    return app


def build_middle(emu: Any, middle: Any, secret: str | None, apis: Mapping[str, Any], *,
                 flask_class: type[Flask] = Flask, **config: Any) -> Flask:
    """A middle-tier API: ``/call/<api>`` calls that downstream API on behalf of the caller and
    passes its status and body through; ``/post/<api>`` does the same with POST."""
    cache = config.pop("_cache", None)  # a flask_caching.Cache or backend for FlaskOBO
    app = flask_class(f"middle-{uuid.uuid4().hex[:8]}")
    if cache is not None and hasattr(cache, "init_app"):
        cache.init_app(app)
    app.config.update(OBO_AUTHORITY=emu.authority(), OBO_CLIENT_ID=middle.client_id,
                      OBO_CA_BUNDLE=str(emu.ca_bundle), OBO_DOWNSTREAM_APIS=dict(apis))
    if secret is not None:
        app.config["OBO_CLIENT_SECRET"] = secret
    app.config.update(config)
    FlaskOBO(app, cache=cache)

    def relay(response: Any) -> Response:
        return Response(response.content, response.status_code,
                        {"Content-Type": response.headers.get("Content-Type", "text/plain")})

    @app.get("/me")
    @requires_scopes("access_as_user")
    def me() -> Any:
        return jsonify(oid=current_token.oid)

    for name in apis:
        def call(downstream: Any) -> Response:
            return relay(downstream.get("echo"))

        def post(downstream: Any) -> Response:
            return relay(downstream.post("echo", json={"x": 1}))

        app.add_url_rule(f"/call/{name}", f"call_{name}",
                         requires_downstream(api=name)(call))
        app.add_url_rule(f"/post/{name}", f"post_{name}",
                         requires_downstream(api=name)(post), methods=["POST"])
    return app
