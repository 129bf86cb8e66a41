"""pytest fixtures for testing against the Entra emulator, registered automatically.

Installing flask-obo registers this plugin (entry point ``pytest11``: ``flask_obo``), so a
test suite gets three fixtures with no conftest code:

``entra_emulator`` (session scope)
    A running :class:`~flask_obo.testing.EntraEmulator`, shared by every test of the session.

``entra`` (function scope)
    An :class:`EntraTestHelper`: the same emulator, seen from one test. Apps and users it
    creates get names unique to the test (``alice`` becomes ``alice.t7@contoso.test``), so
    tests never collide; ``entra.calls()`` lists only this test's token calls; faults the test
    injected are cleared when it ends, and an internal error of the emulator fails the test.
    ``entra.auth_header(user, api, scopes=[...])`` is ``{"Authorization": "Bearer <token>"}``
    with a fresh user token for ``api``, ready for a test client's ``headers=``.

``downstream_api`` (function scope)
    A :class:`~flask_obo.testing.DownstreamStandIn`: a downstream API registered for this test
    (``registration``: scopes ``read`` and ``write``, app role ``Reader``) and served over real
    HTTP on 127.0.0.1 (``url``), so your middle tier's requests reach it. It validates every
    token it receives against the emulator as a real resource would (signature, issuer,
    audience, expiry, one of its scopes or roles), answers with the caller's identity as JSON,
    and records each call with the caller's claims (``calls[i].claims``, never the token).
    ``answer_next(status=..., headers=..., body=..., delay=...)`` scripts its next answers.

Example::

    def test_profile_calls_downstream_as_the_user(entra, downstream_api):
        api = entra.register_app("api", secret="s3cret", scopes=["access_as_user"])
        entra.grant_consent(client=api, resource=downstream_api.registration, scopes=["read"])
        alice = entra.add_user("alice")
        app = create_app({
            "OBO_AUTHORITY": entra.authority(), "OBO_CLIENT_ID": api.client_id,
            "OBO_CLIENT_SECRET": "s3cret", "OBO_CA_BUNDLE": entra.ca_bundle,
            "OBO_DOWNSTREAM_APIS": {"graph": {"base_url": downstream_api.url,
                                              "scopes": [downstream_api.scope("read")]}},
        })
        response = app.test_client().get("/me", headers=entra.auth_header(alice, api))
        assert response.status_code == 200
        (call,) = downstream_api.calls
        assert call.claims["oid"] == alice.oid             # the user's own token, downstream
        assert call.claims["azp"] == api.client_id         # obtained by the middle tier (OBO)
        assert len(entra.calls("on_behalf_of")) == 1

Something that changes the whole emulator (``rotate_keys``, lifetimes) affects every later test
of the session: such tests should start their own ``EntraEmulator()``. To configure the shared
one, override ``entra_emulator`` in your ``conftest.py``.

Outside pytest (curl, a browser app, another language), run the emulator on its own::

    python -m flask_obo.testing serve [--port N] [--config directory.json] --print-env

``--print-env`` prints ``KEY=value`` lines (shell-quoted, so ``set -a; . ./emulator.env``
works) instead of the description: ``OBO_AUTHORITY``, ``OBO_CA_BUNDLE``, ``OBO_CLIENT_ID`` and
``OBO_CLIENT_SECRET`` (of the first app with a secret), then ``EMULATOR_*`` lines for the
tenant, the token endpoint, every app (``EMULATOR_APP_<NAME>_CLIENT_ID``, ``..._APP_ID_URI``,
``..._SCOPES``, ``..._ROLES``, ``..._SECRET``) and every user (``EMULATOR_USER_<NAME>`` and
``..._PASSWORD``), ``EMULATOR_PUBLIC_CLIENT_ID`` and ``EMULATOR_SCOPE`` (what a user token for
the first API is asked with), and last ``EMULATOR_READY=1``. While serving, each request is
logged on stderr, one line each (method, path, grant, client id, status; never a secret or a
token). A user token for curl, from a shell where those lines were sourced::

    TOKEN=$(python -m flask_obo.testing token alice@contoso.test)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/api/profile

``token`` asks the running emulator with the password grant (its options: ``--password``,
``--scope``, ``--client-id``, ``--env FILE`` to read the lines from a file).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .directory import App, User
from .downstream import DownstreamStandIn
from .emulator import AppRef, EntraEmulator

__all__ = ["EntraTestHelper", "downstream_api", "entra", "entra_emulator"]

_COUNTER = itertools.count(1)


class EntraTestHelper:
    """One test's view of the shared emulator. Unknown attributes go to the emulator."""

    def __init__(self, emulator: EntraEmulator, tag: str) -> None:
        self.emulator = emulator
        self.tag = tag
        self.started_at = time.time()
        self.client_ids: set[str] = set()
        self._errors_before = len(emulator.internal_errors)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.emulator, name)

    def register_app(self, name: str, **kwargs: Any) -> App:
        """``emulator.register_app`` with the name tagged for this test."""
        app = self.emulator.register_app(f"{name} [{self.tag}]", **kwargs)
        self.client_ids.add(app.client_id)
        return app

    def add_user(self, username: str, **kwargs: Any) -> User:
        """``emulator.add_user`` with a UPN unique to this test (``alice.t7@contoso.test``)."""
        local, at, domain = username.partition("@")
        unique = f"{local}.{self.tag}{at}{domain}"
        kwargs.setdefault("name", local.replace(".", " ").title())
        return self.emulator.add_user(unique, **kwargs)

    def grant_consent(self, *, client: AppRef, resource: AppRef, **kwargs: Any) -> None:
        self.emulator.grant_consent(client=client, resource=resource, **kwargs)

    def calls(self, grant: str | None = None, *,
              endpoint: str | None = "token") -> list[dict[str, Any]]:
        """Calls made during this test; token calls only those of this test's apps."""
        records = self.emulator.calls(grant, endpoint=endpoint)
        mine = [r for r in records if r.get("timestamp", 0) >= self.started_at]
        return [r for r in mine
                if r.get("endpoint") != "token" or r.get("client_id") in self.client_ids]

    def check_no_internal_errors(self) -> None:
        errors = self.emulator.internal_errors[self._errors_before:]
        if errors:
            pytest.fail("the Entra emulator hit internal errors: " + "; ".join(errors))


@pytest.fixture(scope="session")
def entra_emulator() -> Iterator[EntraEmulator]:
    """A running EntraEmulator shared by the whole test session."""
    with EntraEmulator() as emulator:
        yield emulator


@pytest.fixture
def entra(entra_emulator: EntraEmulator) -> Iterator[EntraTestHelper]:
    """The session's emulator, with per-test names, calls and fault cleanup."""
    helper = EntraTestHelper(entra_emulator, f"t{next(_COUNTER)}")
    try:
        yield helper
    finally:
        entra_emulator.faults.clear()
    helper.check_no_internal_errors()


@pytest.fixture
def downstream_api(entra: EntraTestHelper) -> Iterator[DownstreamStandIn]:
    """A downstream API stand-in registered for this test, served on loopback."""
    registration = entra.register_app("downstream", scopes=["read", "write"], roles=["Reader"])
    with DownstreamStandIn(entra.emulator, registration) as stand_in:
        yield stand_in
