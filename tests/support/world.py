"""The emulator suites' cast, and their ways of talking to the emulator without MSAL.

``World``: a middle-tier API (with a secret) calling a downstream API, a public CLI, Alice (MFA
required for the downstream API) and Bob, registered for one test through ``entra``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from flask_obo import build_session
from flask_obo.testing import App, EntraEmulator, User
from flask_obo.testing.pytest_plugin import EntraTestHelper

__all__ = ["World", "build_world", "post_token", "session_for", "verify_with_jwks"]


def session_for(emu: EntraEmulator) -> requests.Session:
    """A requests session that trusts the emulator whatever REQUESTS_CA_BUNDLE says."""
    return build_session(emu.ca_bundle)


def post_token(emu: EntraEmulator, data: Any = None, *, tenant: str | None = None,
               **kwargs: Any) -> requests.Response:
    """POST straight to the token endpoint, bypassing MSAL (for malformed requests)."""
    with session_for(emu) as session:
        return session.post(emu.token_endpoint(tenant), data=data, timeout=10, **kwargs)


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


def build_world(entra: EntraTestHelper) -> World:
    secret = f"secret-{uuid.uuid4().hex}"
    api = entra.register_app("middle-tier", secret=secret, scopes=["access_as_user"])
    down = entra.register_app("downstream", scopes=["read", "write"], roles=["Reader"])
    cli = entra.register_app("cli")
    entra.grant_consent(client=api, resource=down, scopes=["read"], roles=["Reader"])
    alice = entra.add_user("alice", password="alice-pw", mfa_required_for=[down])
    bob = entra.add_user("bob", password="bob-pw")
    return World(entra, api, down, cli, alice, bob, secret)
