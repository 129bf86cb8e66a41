"""Each token is validated with the metadata of its own version, so one discovery document that
cannot be had (an outage, or an authority without v1.0, such as a B2C or External ID tenant)
takes down only the tokens that need it.

v2.0 discovery names the keys; v1.0 discovery only names the v1.0 issuer. Without it, v2.0
tokens pass and v1.0 tokens get a 503 (with Retry-After) while it is fetched again, at most
every few seconds, on demand; ``flask obo check`` says which setting ends the failure.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from support.apps import build_api
from support.checks import bearer
from support.timing import Clock

from flask_obo import FlaskOBO
from flask_obo.testing import App, User
from flask_obo.testing.pytest_plugin import EntraTestHelper


def _api(entra: EntraTestHelper, api: App, clock: Clock | None = None, **config: Any) -> Flask:
    """The API of ``api`` (its ``/me`` answers the token's version) on ``clock``."""
    return build_api(entra, api, obo=FlaskOBO(clock=clock), **config)


def _v1_fetches(entra: EntraTestHelper) -> int:
    return len([c for c in entra.calls(endpoint="discovery")
                if c["path"].endswith("/.well-known/openid-configuration")
                and "/v2.0/" not in c["path"]])


def test_v2_tokens_pass_while_v1_metadata_cannot_be_had(entra: EntraTestHelper,
                                                        api_registration: App, user: User,
                                                        clock: Clock) -> None:
    entra.faults.inject("discovery_v1", "status", status=404, count=2)
    client = _api(entra, api_registration, clock).test_client()
    v2 = entra.issue_user_token(user, resource=api_registration, version=2)
    v1 = entra.issue_user_token(user, resource=api_registration, version=1)

    def get(token: str) -> Any:
        return client.get("/me", headers=bearer(token))

    assert get(v2).status_code == 200 and get(v2).json["version"] == "2.0"
    assert _v1_fetches(entra) == 1
    refused = get(v1)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "WWW-Authenticate" not in refused.headers  # not the token's fault: no challenge
    assert _v1_fetches(entra) == 1  # not again within a few seconds
    clock.advance(6)
    assert get(v1).status_code == 503 and _v1_fetches(entra) == 2  # tried again: still down
    assert get(v2).status_code == 200
    clock.advance(6)
    answer = get(v1)  # the document is back
    assert answer.status_code == 200 and answer.json["version"] == "1.0"
    assert _v1_fetches(entra) == 3


def test_flask_obo_check_names_the_version_and_the_setting(entra: EntraTestHelper,
                                                           api_registration: App) -> None:
    entra.faults.inject("discovery_v1", "status", status=404, count=5)
    app = _api(entra, api_registration)
    result = app.test_cli_runner().invoke(args=["obo", "check"])
    assert result.exit_code == 1
    assert "[ok] issuer (v2.0 tokens)" in result.output
    assert "[ok] signing keys" in result.output
    failed = [line for line in result.output.splitlines()
              if line.startswith("[FAIL] issuer (v1.0 tokens)")]
    assert failed and "OBO_ACCEPTED_TOKEN_VERSIONS=['2.0']" in failed[0], result.output


def test_an_api_taking_v2_tokens_only_never_asks_for_v1(entra: EntraTestHelper,
                                                        api_registration: App,
                                                        user: User) -> None:
    app = _api(entra, api_registration, OBO_ACCEPTED_TOKEN_VERSIONS=["2.0"])
    token = entra.issue_user_token(user, resource=api_registration)
    response = app.test_client().get("/me", headers=bearer(token))
    assert response.status_code == 200 and response.json["version"] == "2.0"
    assert _v1_fetches(entra) == 0
    assert "[FAIL]" not in app.test_cli_runner().invoke(args=["obo", "check"]).output
