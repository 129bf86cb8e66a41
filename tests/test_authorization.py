"""@requires_scopes, @requires_roles, @requires_scopes_or_roles, their public functions, the
request-state accessors and the signals."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request
from support.apps import MakeApp
from support.checks import bearer

from flask_obo.authorization import (
    requires_roles,
    requires_scopes,
    requires_scopes_or_roles,
    verify_scopes,
)
from flask_obo.context import current_token, get_assertion, get_current_token
from flask_obo.extension import public
from flask_obo.signals import token_rejected, token_validated
from flask_obo.testing import App, User
from flask_obo.testing.pytest_plugin import EntraTestHelper


@pytest.fixture
def app(make_app: MakeApp) -> Flask:
    app = make_app()

    @app.get("/read")
    @requires_scopes("read", "access_as_user")
    def read() -> str:
        return "read"

    @app.get("/read-and-write")
    @requires_scopes("read", "write", require_all=True)
    def read_and_write() -> str:
        return "read-and-write"

    @app.get("/reader")
    @requires_roles("Reader")
    def reader() -> str:
        return "reader"

    @app.get("/either")
    @requires_scopes_or_roles(scopes=["read"], roles=["Reader"])
    def either() -> str:
        return "either"

    @app.get("/public-but-scoped")
    @public
    @requires_scopes("read")
    def public_but_scoped() -> str:
        return "public-but-scoped"

    @app.get("/async-scoped")
    @requires_scopes("read")
    async def async_scoped() -> str:
        return f"async {current_token.oid}"

    @app.get("/function")
    def function() -> str:
        claims = verify_scopes("write")
        return f"function {claims.oid}"

    return app


@pytest.fixture
def daemon(emulator: EntraTestHelper, api_registration: App) -> App:
    client = emulator.register_app("daemon", secret="s3cret")
    emulator.grant_consent(client=client, resource=api_registration, roles=["Reader"])
    return client


def forbidden(api: App, description: str, scope: str | None) -> str:
    value = (f'Bearer realm="api://{api.client_id}", error="insufficient_scope", '
             f'error_description="{description}"')
    return value + (f', scope="{scope}"' if scope else "")


def test_any_listed_scope_is_enough(app: Flask, emulator: EntraTestHelper,
                                    api_registration: App, user: User) -> None:
    client = app.test_client()
    token = emulator.issue_user_token(user, resource=api_registration, scopes=["access_as_user"])
    assert client.get("/read", headers=bearer(token)).text == "read"
    token = emulator.issue_user_token(user, resource=api_registration, scopes=["write"])
    response = client.get("/read", headers=bearer(token))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == forbidden(
        api_registration, "This resource needs one of the scopes: read access_as_user.",
        "read access_as_user")
    assert response.json["required_scopes"] == ["read", "access_as_user"]


def test_require_all_scopes(app: Flask, emulator: EntraTestHelper, api_registration: App,
                            user: User) -> None:
    client = app.test_client()
    both = emulator.issue_user_token(user, resource=api_registration, scopes=["read", "write"])
    assert client.get("/read-and-write", headers=bearer(both)).status_code == 200
    one = emulator.issue_user_token(user, resource=api_registration, scopes=["read"])
    response = client.get("/read-and-write", headers=bearer(one))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == forbidden(
        api_registration, "This resource needs all of the scopes: read write.", "read write")


def test_roles(app: Flask, emulator: EntraTestHelper, api_registration: App, user: User,
               daemon: App) -> None:
    client = app.test_client()
    app_token = emulator.issue_app_token(daemon, resource=api_registration)
    assert client.get("/reader", headers=bearer(app_token)).status_code == 200
    emulator.assign_app_role(user, api_registration, "Reader")
    user_with_role = emulator.issue_user_token(user, resource=api_registration)
    assert client.get("/reader", headers=bearer(user_with_role)).status_code == 200
    no_role = emulator.issue_user_token(user, resource=api_registration, roles=[])
    response = client.get("/reader", headers=bearer(no_role))
    assert response.status_code == 403
    # Roles are not OAuth scopes: no scope attribute, the roles are in the body.
    assert response.headers["WWW-Authenticate"] == forbidden(
        api_registration, "This resource needs one of the roles: Reader.", None)
    assert response.json["required_roles"] == ["Reader"]


def test_app_only_token_has_no_scopes(app: Flask, emulator: EntraTestHelper,
                                      api_registration: App, daemon: App) -> None:
    app_token = emulator.issue_app_token(daemon, resource=api_registration)
    assert app.test_client().get("/read", headers=bearer(app_token)).status_code == 403


def test_scopes_or_roles(app: Flask, emulator: EntraTestHelper, api_registration: App,
                         user: User, daemon: App) -> None:
    client = app.test_client()
    delegated = emulator.issue_user_token(user, resource=api_registration, scopes=["read"])
    assert client.get("/either", headers=bearer(delegated)).status_code == 200
    app_token = emulator.issue_app_token(daemon, resource=api_registration)
    assert client.get("/either", headers=bearer(app_token)).status_code == 200
    neither = emulator.issue_user_token(user, resource=api_registration, scopes=["write"],
                                        roles=["Writer"])
    response = client.get("/either", headers=bearer(neither))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == forbidden(
        api_registration, "This resource needs one of the scopes or app roles: read Reader.",
        "read")


def test_decorator_validates_where_the_guard_did_not(app: Flask, emulator: EntraTestHelper,
                                                     api_registration: App,
                                                     user: User) -> None:
    client = app.test_client()
    response = client.get("/public-but-scoped")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == f'Bearer realm="api://{api_registration.client_id}"'
    token = emulator.issue_user_token(user, resource=api_registration, scopes=["read"])
    assert client.get("/public-but-scoped", headers=bearer(token)).status_code == 200


def test_async_view_behind_a_decorator(app: Flask, emulator: EntraTestHelper,
                                       api_registration: App, user: User) -> None:
    client = app.test_client()
    token = emulator.issue_user_token(user, resource=api_registration, scopes=["read"])
    assert client.get("/async-scoped", headers=bearer(token)).text == f"async {user.oid}"
    token = emulator.issue_user_token(user, resource=api_registration, scopes=["write"])
    assert client.get("/async-scoped", headers=bearer(token)).status_code == 403


def test_check_functions_work_without_a_decorator(app: Flask, emulator: EntraTestHelper,
                                                  api_registration: App, user: User) -> None:
    client = app.test_client()
    token = emulator.issue_user_token(user, resource=api_registration, scopes=["write"])
    assert client.get("/function", headers=bearer(token)).text == f"function {user.oid}"
    token = emulator.issue_user_token(user, resource=api_registration, scopes=["read"])
    assert client.get("/function", headers=bearer(token)).status_code == 403


@pytest.mark.parametrize("bad", [(), ("",), ("two words",)])
def test_decorator_arguments_are_checked(bad: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        requires_scopes(*bad)
    with pytest.raises(ValueError):
        requires_roles(*bad)


def test_scopes_or_roles_needs_something() -> None:
    with pytest.raises(ValueError):
        requires_scopes_or_roles()


def test_accessors_and_their_errors(make_app: MakeApp, emulator: EntraTestHelper,
                                    api_registration: App, user: User) -> None:
    app = make_app()
    seen: dict[str, Any] = {}

    @app.get("/inspect")
    def inspect() -> str:
        # What flask-obo keeps for the request, on the request object (a private name).
        kept = request._get_current_object().__dict__["_flask_obo_verified"]
        seen.update(claims=get_current_token(), assertion=get_assertion(),
                    proxy_repr=repr(current_token), proxy_str=str(current_token),
                    kept_repr=repr(kept))
        return "ok"

    @app.get("/open")
    @public
    def open_view() -> str:
        for accessor in (get_current_token, get_assertion, lambda: current_token.oid):
            with pytest.raises(RuntimeError, match="No validated access token"):
                accessor()
        return "ok"

    token = emulator.issue_user_token(user, resource=api_registration)
    client = app.test_client()
    assert client.get("/inspect", headers=bearer(token)).status_code == 200
    assert seen["assertion"] == token
    assert seen["claims"].oid == user.oid and seen["claims"]["oid"] == user.oid
    for text in (seen["proxy_repr"], seen["proxy_str"], seen["kept_repr"]):
        assert user.oid in text or "verified" in text
        assert token not in text and token.split(".")[2] not in text
    assert client.get("/open").text == "ok"
    with app.app_context(), pytest.raises(RuntimeError):
        get_current_token()


def test_claims_are_immutable(make_app: MakeApp, emulator: EntraTestHelper,
                              api_registration: App, user: User) -> None:
    emulator.assign_app_role(user, api_registration, "Reader")
    token = emulator.issue_user_token(user, resource=api_registration)
    app = make_app()
    claims = app.extensions["obo"].validator.validate(token)
    with pytest.raises((TypeError, AttributeError)):
        claims["oid"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        claims.oid = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        claims["roles"].append("Admin")
    assert claims.roles == frozenset({"Reader"})
    assert claims.token_hash not in repr(claims) and token not in repr(claims)


def test_signals(make_app: MakeApp, emulator: EntraTestHelper, api_registration: App,
                 user: User) -> None:
    app = make_app()
    validated: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    token = emulator.issue_user_token(user, resource=api_registration)
    expired = emulator.issue_user_token(user, resource=api_registration, lifetime=-3600)
    with token_validated.connected_to(lambda s, **kw: validated.append(kw), app), \
            token_rejected.connected_to(lambda s, **kw: rejected.append(kw), app):
        client = app.test_client()
        client.get("/me", headers=bearer(token))
        client.get("/me", headers=bearer(expired))
        client.get("/me")
    assert [(kw["claims"].oid, kw["cached"]) for kw in validated] == [(user.oid, False)]
    assert rejected == [{"reason": "expired", "status": 401}, {"reason": "missing", "status": 401}]
