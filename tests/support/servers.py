"""Loopback servers of the security suites, each a WSGI app on flask-obo's ``LoopbackServer``:
an attacker's server that counts every request, and an OpenID authority with an EC key; and a
port nobody listens on."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from flask_obo.testing import LoopbackServer
from flask_obo.testing.tls import ServerTLS

from .jose import b64url, sign_with

__all__ = ["AttackerServer", "EcAuthority", "free_port", "static_app"]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def free_port() -> int:
    """A port nothing listens on (for a server that is down, or about to start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def static_app(routes: Mapping[str, tuple[str, bytes]], *, hits: list[str] | None = None,
               missing: tuple[str, bytes] | None = None) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering ``routes`` (path -> (content type, body)); ``missing`` for any other
    path (default: 404), and each request's path appended to ``hits``."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if hits is not None:
            hits.append(path)
        found = routes.get(path, missing)
        status = "200 OK" if found is not None else "404 Not Found"
        content_type, body = found or ("application/json", b"")
        start_response(status, [("Content-Type", content_type),
                                ("Content-Length", str(len(body)))])
        return [body]

    return app


class AttackerServer(LoopbackServer):
    """An attacker's HTTP server that counts every request (jku/x5u targets must get none)."""

    def __init__(self, routes: Mapping[str, tuple[str, bytes]]) -> None:
        self.hits: list[str] = []
        super().__init__(static_app(routes, hits=self.hits, missing=("text/plain", b"nope")))

    def url_of(self, path: str) -> str:
        return self.url.rstrip("/") + path


class EcAuthority(LoopbackServer):
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
        routes: dict[str, tuple[str, bytes]] = {}
        super().__init__(static_app(routes), ssl_context=self.tls.server_context())
        root = f"{self.url.rstrip('/')}/{self.tenant_id}"
        tid = self.tenant_id

        def document(value: Any) -> tuple[str, bytes]:
            return "application/json", json.dumps(value).encode()

        routes[f"/{tid}/v2.0/.well-known/openid-configuration"] = document(
            {"issuer": f"{root}/v2.0", "jwks_uri": f"{root}/discovery/v2.0/keys",
             "token_endpoint": f"{root}/oauth2/v2.0/token"})
        routes[f"/{tid}/.well-known/openid-configuration"] = document(
            {"issuer": f"{root}/", "jwks_uri": f"{root}/discovery/keys",
             "token_endpoint": f"{root}/oauth2/token"})
        routes[f"/{tid}/discovery/v2.0/keys"] = document(jwks)
        self.authority = root
        self.issuer = f"{root}/v2.0"

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
