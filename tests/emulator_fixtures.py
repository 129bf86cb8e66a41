"""Shared helpers and fixtures for the emulator's own tests (``tests/test_emulator_*.py``).

The emulator itself comes from the pytest plugin (``entra_emulator``, ``entra``); ``world``
builds the usual cast on top of it: a middle-tier API, a downstream API, a public CLI, Alice
(MFA required for the downstream API) and Bob.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from flask_obo._http import build_session
from flask_obo.testing import App, EntraEmulator, User
from flask_obo.testing.pytest_plugin import EntraTestHelper

__all__ = [
    "ERROR_KEYS",
    "World",
    "assert_entra_error",
    "b64url",
    "claims_of",
    "header_of",
    "post_token",
    "session_for",
    "verify_with_jwks",
    "world_fixture",
]

ERROR_KEYS = {"error", "error_description", "error_codes", "timestamp", "trace_id",
              "correlation_id", "error_uri"}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _part(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return data


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (tests verify separately where it matters)."""
    return _part(token, 1)


def header_of(token: str) -> dict[str, Any]:
    return _part(token, 0)


def session_for(emu: EntraEmulator) -> requests.Session:
    """A requests session that trusts the emulator whatever REQUESTS_CA_BUNDLE says."""
    return build_session(emu.ca_bundle)


def post_token(emu: EntraEmulator, data: Any = None, *, tenant: str | None = None,
               **kwargs: Any) -> requests.Response:
    """POST straight to the token endpoint, bypassing MSAL (for malformed requests)."""
    with session_for(emu) as session:
        return session.post(emu.token_endpoint(tenant), data=data, timeout=10, **kwargs)


def assert_entra_error(response: requests.Response | dict[str, Any], status: int | None,
                       error: str, code: int) -> dict[str, Any]:
    """Check Entra's error shape, status, error and AADSTS code; return the body."""
    if isinstance(response, dict):
        body = response
    else:
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
    assert ERROR_KEYS <= set(body), body
    assert body["error"] == error, body
    assert body["error_codes"] == [code], body
    assert body["error_description"].startswith(f"AADSTS{code}: "), body
    for part in ("Trace ID: ", "Correlation ID: ", "Timestamp: "):
        assert part in body["error_description"]
    return body


def verify_with_jwks(emu: EntraEmulator, token: str) -> dict[str, Any]:
    """Verify ``token`` against the JWKS the emulator publishes over HTTPS; return claims."""
    with session_for(emu) as session:
        jwks = session.get(emu.jwks_uri(), timeout=10).json()
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    return dict(decoded.claims)


@dataclass
class World:
    """A middle tier calling a downstream API on behalf of users, plus a public CLI."""

    entra: EntraTestHelper
    api: App
    down: App
    cli: App
    alice: User
    bob: User
    secret: str

    @property
    def emu(self) -> EntraEmulator:
        return self.entra.emulator

    def cca(self, credential: Any = None, **kwargs: Any) -> Any:
        return self.emu.confidential_client(self.api, credential or self.secret, **kwargs)

    def pca(self, **kwargs: Any) -> Any:
        return self.emu.public_client(self.cli, **kwargs)

    def user_token(self, user: User | None = None, **kwargs: Any) -> str:
        kwargs.setdefault("scopes", ["access_as_user"])
        return self.emu.issue_user_token(user or self.bob, resource=self.api, **kwargs)

    def down_scope(self, name: str = "read") -> str:
        return f"{self.down.app_id_uri}/{name}"

    def api_scope(self) -> str:
        return f"{self.api.app_id_uri}/access_as_user"


@pytest.fixture(name="world")
def world_fixture(entra: EntraTestHelper) -> World:
    secret = f"secret-{uuid.uuid4().hex}"
    api = entra.register_app("middle-tier", secret=secret, scopes=["access_as_user"])
    down = entra.register_app("downstream", scopes=["read", "write"], roles=["Reader"])
    cli = entra.register_app("cli")
    entra.grant_consent(client=api, resource=down, scopes=["read"], roles=["Reader"])
    alice = entra.add_user("alice", password="alice-pw", mfa_required_for=[down])
    bob = entra.add_user("bob", password="bob-pw")
    return World(entra, api, down, cli, alice, bob, secret)


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
