"""Fixtures shared by the suites: the emulator, an API registration, a user, an app factory.

The emulator is the plugin's session-wide ``entra_emulator``; ``emulator`` is the per-test
``entra`` helper over it (names unique to the test, faults cleared after it). Tests that
change the whole emulator (key rotation, outages) start their own with ``private_emulator``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, jsonify

from flask_obo.context import current_token
from flask_obo.extension import FlaskOBO
from flask_obo.testing import App, EntraEmulator, User
from flask_obo.testing.pytest_plugin import EntraTestHelper

API_SCOPES = ("access_as_user", "read", "write")
API_ROLES = ("Reader", "Writer")

MakeApp = Callable[..., Flask]


def bearer(token: str) -> dict[str, str]:
    """Request headers carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def emulator(entra: EntraTestHelper) -> EntraTestHelper:
    return entra


@pytest.fixture
def api_registration(emulator: EntraTestHelper) -> App:
    """The protected API's app registration (v2 tokens; scopes and app roles)."""
    return emulator.register_app("api", scopes=API_SCOPES, roles=API_ROLES)


@pytest.fixture
def user(emulator: EntraTestHelper) -> User:
    return emulator.add_user("alice", password="pw")


def obo_config(emu: EntraEmulator | EntraTestHelper, api: App, **config: Any) -> dict[str, Any]:
    """The OBO_ settings of an API protected against ``emu`` (overridable)."""
    settings: dict[str, Any] = {
        "OBO_AUTHORITY": emu.authority(),
        "OBO_CLIENT_ID": api.client_id,
        "OBO_CA_BUNDLE": emu.ca_bundle,
    }
    settings.update(config)
    return settings


def build_app(emu: EntraEmulator | EntraTestHelper, api: App, *, obo: FlaskOBO | None = None,
              **config: Any) -> Flask:
    """A Flask app protected by FlaskOBO with one route, ``GET /me`` (who called)."""
    app = Flask(f"api-{api.client_id[:8]}")
    app.config.update(TESTING=True, **obo_config(emu, api, **config))
    (obo or FlaskOBO()).init_app(app)

    @app.get("/me")
    def me() -> Any:
        return jsonify(oid=current_token.oid, tid=current_token.tid,
                       version=current_token.version, scopes=sorted(current_token.scopes),
                       roles=sorted(current_token.roles), app_only=current_token.is_app_only)

    return app


@pytest.fixture
def make_app(emulator: EntraTestHelper, api_registration: App) -> MakeApp:
    """``make_app(**OBO_config) -> Flask``: the API of ``api_registration``, with ``/me``."""

    def factory(*, obo: FlaskOBO | None = None, **config: Any) -> Flask:
        return build_app(emulator, api_registration, obo=obo, **config)

    return factory


@pytest.fixture(scope="module")
def private_emulator() -> Iterator[EntraEmulator]:
    """An emulator of this module's own, for tests that rotate keys or take it down."""
    with EntraEmulator() as emu:
        yield emu
