"""A refused request explains itself in the server log (which check, the values compared),
never with the token, and a flood of bad tokens cannot flood the log."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from flask import Flask
from support.apps import build_api
from support.checks import bearer, leaked_fragment
from support.jose import authority_signing_key, b64url_json, resign

from flask_obo import FlaskOBO, requires_scopes
from flask_obo.testing import App, User
from flask_obo.testing.pytest_plugin import EntraTestHelper
from flask_obo.validation import REASONS


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("flask-obo: refused")]


def call(app: Flask, token: str | None, path: str = "/me") -> Any:
    headers = bearer(token) if token else {}
    return app.test_client().get(path, headers=headers)


@pytest.fixture
def caplog_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="flask_obo")
    return caplog


def assert_explained(caplog: pytest.LogCaptureFixture, token: str, level: int,
                     *expected: str) -> str:
    [record] = refusals(caplog)
    message = record.getMessage()
    assert record.levelno == level, message
    for text in expected:
        assert text in message, message
    assert leaked_fragment(token, caplog.text) is None
    return message


def test_a_token_for_another_api_logs_the_audience_received_and_expected(
        emulator: EntraTestHelper, api_registration: App, user: User,
        caplog_debug: pytest.LogCaptureFixture) -> None:
    other = emulator.register_app("other", scopes=["access_as_user"])
    token = emulator.issue_user_token(user, resource=other)
    response = call(build_api(emulator, api_registration), token)
    assert response.json["detail"] == REASONS["audience"]  # the client's phrase stays short
    cid = api_registration.client_id
    accepted = ", ".join(sorted([cid, f"api://{cid}"]))
    assert_explained(caplog_debug, token, logging.WARNING,
                     "refused GET /me: 401 invalid_token (audience): ",
                     f"aud '{other.client_id}' is not this API; accepted: {accepted} "
                     "(OBO_CLIENT_ID, OBO_AUDIENCES)", "token sha256:")


def test_a_foreign_issuer_is_logged_with_the_issuer_expected(
        emulator: EntraTestHelper, api_registration: App, user: User,
        caplog_debug: pytest.LogCaptureFixture) -> None:
    key, _ = authority_signing_key(emulator)
    genuine = emulator.issue_user_token(user, resource=api_registration)
    token = resign(key, genuine, iss="https://sts.example.test/evil/v2.0")
    call(build_api(emulator, api_registration), token)
    assert_explained(caplog_debug, token, logging.WARNING, "(issuer): ",
                     "iss 'https://sts.example.test/evil/v2.0' is not the issuer expected of a "
                     f"v2.0 token of tenant {user.tenant_id}: "
                     f"'{emulator.issuer(version=2)}' (the authority is OBO_AUTHORITY=")


def test_a_tenant_not_allowed_is_logged_with_the_allow_list(
        emulator: EntraTestHelper, caplog_debug: pytest.LogCaptureFixture) -> None:
    api = emulator.register_app("saas", scopes=["access_as_user"], multi_tenant=True)
    other_tenant = emulator.add_tenant()
    outsider = emulator.add_user("olga", tenant=other_tenant)
    token = emulator.issue_user_token(outsider, resource=api)
    app = build_api(emulator, api, OBO_AUTHORITY=emulator.authority("organizations"),
                    OBO_ALLOWED_TENANTS=[emulator.tenant_id])
    call(app, token)
    assert_explained(caplog_debug, token, logging.WARNING, "(tenant): ",
                     f"tid {other_tenant} is not in OBO_ALLOWED_TENANTS "
                     f"['{emulator.tenant_id}']")


def test_a_missing_scope_is_logged_with_the_scopes_the_token_has(
        emulator: EntraTestHelper, api_registration: App, user: User,
        caplog_debug: pytest.LogCaptureFixture) -> None:
    app = build_api(emulator, api_registration)

    @app.get("/write")
    @requires_scopes("write")
    def write() -> Any:
        return {}

    token = emulator.issue_user_token(user, resource=api_registration, scopes=["read"])
    assert call(app, token, "/write").status_code == 403
    assert_explained(caplog_debug, token, logging.WARNING,
                     "refused GET /write: 403 insufficient_scope (missing_scope): needs scopes "
                     "write; the token of client ", "has scp read and roles (none)")


def test_an_expired_token_is_logged_at_info_and_no_token_at_debug(
        emulator: EntraTestHelper, api_registration: App, user: User,
        caplog_debug: pytest.LogCaptureFixture) -> None:
    token = emulator.issue_user_token(user, resource=api_registration, lifetime=-3600)
    app = build_api(emulator, api_registration)
    call(app, token)
    assert_explained(caplog_debug, token, logging.INFO, "(expired): exp ",
                     "s ago, more than OBO_CLOCK_SKEW=300")
    caplog_debug.clear()
    call(app, None)
    [record] = refusals(caplog_debug)
    assert record.levelno == logging.DEBUG
    assert "(missing): no bearer token in the Authorization header" in record.getMessage()


def test_a_flood_of_bad_tokens_logs_a_few_lines_then_counts_the_rest(
        emulator: EntraTestHelper, api_registration: App, user: User,
        caplog_debug: pytest.LogCaptureFixture) -> None:
    offset = [0.0]
    app = build_api(emulator, api_registration,
                    obo=FlaskOBO(clock=lambda: time.time() + offset[0]))
    other = emulator.register_app("other", scopes=["access_as_user"])
    token = emulator.issue_user_token(user, resource=other)
    for _ in range(20):
        assert call(app, token).status_code == 401
    assert len(refusals(caplog_debug)) == 5
    call(app, "not-a-jwt")  # another reason has its own allowance
    assert len(refusals(caplog_debug)) == 6
    caplog_debug.clear()
    offset[0] = 61.0  # the next minute
    call(app, token)
    [record] = refusals(caplog_debug)
    assert record.getMessage().endswith(
        "(and 15 more refusals for audience left out of the log)")


def test_a_kid_from_the_request_is_logged_on_one_line(
        emulator: EntraTestHelper, api_registration: App, user: User,
        caplog_debug: pytest.LogCaptureFixture) -> None:
    key, _ = authority_signing_key(emulator)
    genuine = emulator.issue_user_token(user, resource=api_registration)
    token = resign(key, genuine)
    header = b64url_json({"alg": "RS256", "typ": "JWT", "kid": "k1\nforged line"})
    header_token = ".".join([header, *token.split(".")[1:]])
    call(build_api(emulator, api_registration), header_token)
    [record] = refusals(caplog_debug)
    assert "\n" not in record.getMessage()
    assert "kid 'k1\\nforged line'" in record.getMessage()
