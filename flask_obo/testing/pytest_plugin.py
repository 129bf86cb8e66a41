"""pytest fixtures for testing against the Entra emulator, registered automatically.

Installing flask-obo registers this plugin (entry point ``pytest11``: ``flask_obo``), so a
test suite gets two fixtures with no conftest code:

``entra_emulator`` (session scope)
    A running :class:`~flask_obo.testing.EntraEmulator`, shared by every test of the session.

``entra`` (function scope)
    An :class:`EntraTestHelper`: the same emulator, seen from one test. Apps and users it
    creates get names unique to the test (``alice`` becomes ``alice.t7@contoso.test``), so
    tests never collide; ``entra.calls()`` lists only this test's token calls; faults the test
    injected are cleared when it ends, and an internal error of the emulator fails the test.

Example::

    def test_obo(entra):
        api = entra.register_app("api", secret="s3cret", scopes=["access_as_user"])
        down = entra.register_app("down", scopes=["read"])
        entra.grant_consent(client=api, resource=down, scopes=["read"])
        alice = entra.add_user("alice", password="pw")
        token = entra.issue_user_token(alice, resource=api)
        result = entra.confidential_client(api, "s3cret").acquire_token_on_behalf_of(
            token, [f"{down.app_id_uri}/read"])
        assert "access_token" in result
        assert len(entra.calls("on_behalf_of")) == 1

Something that changes the whole emulator (``rotate_keys``, lifetimes) affects every later test
of the session: such tests should start their own ``EntraEmulator()``. To configure the shared
one, override ``entra_emulator`` in your ``conftest.py``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .directory import App, User
from .emulator import AppRef, EntraEmulator

__all__ = ["EntraTestHelper", "entra", "entra_emulator"]

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
