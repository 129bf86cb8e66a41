"""Access tokens only: an ID token, or any token that names no client, never passes for one.

Entra puts ``roles`` in ID tokens whenever the user holds app roles of the app, and one app
registration for a SPA and its API is common, so "has scp or roles" cannot tell an ID token
from an access token. An access token always names the client that requested it (``azp`` in
v2.0, ``appid`` in v1.0); an ID token never does.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from support.apps import MakeApp
from support.checks import bearer
from support.jose import claims_of

from flask_obo import TokenClaims


def _refused(app: Flask, path: str, token: str) -> dict[str, Any]:
    response = app.test_client().get(path, headers=bearer(token))
    assert response.status_code == 401, response.get_data(as_text=True)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    body: dict[str, Any] = response.json
    return body


def test_the_emulator_puts_the_users_app_roles_in_id_tokens(entra: Any, api_registration: Any,
                                                            user: Any) -> None:
    entra.assign_app_role(user, api_registration, "Reader")
    claims = claims_of(entra.issue_id_token(user, api_registration))
    assert claims["roles"] == ["Reader"]
    assert claims["aud"] == api_registration.client_id
    assert "azp" not in claims and "appid" not in claims


def test_an_id_token_carrying_roles_is_refused_everywhere(entra: Any, make_app: MakeApp,
                                                         api_registration: Any,
                                                         user: Any) -> None:
    entra.assign_app_role(user, api_registration, "Reader")
    id_token = entra.issue_id_token(user, api_registration)
    app = make_app()
    for path in ("/me", "/roles"):  # /roles needs the Reader role
        assert _refused(app, path, id_token)["reason"] == "not_access_token"


@pytest.mark.parametrize(("version", "client_claim"), [(2, "azp"), (1, "appid")])
def test_an_access_token_without_its_client_claim_is_refused(entra: Any, make_app: MakeApp,
                                                             api_registration: Any, user: Any,
                                                             version: int,
                                                             client_claim: str) -> None:
    entra.assign_app_role(user, api_registration, "Reader")
    token = entra.issue_user_token(user, resource=api_registration, version=version,
                                   extra_claims={client_claim: None})
    assert client_claim not in claims_of(token) and claims_of(token)["roles"] == ["Reader"]
    assert _refused(make_app(), "/roles", token)["reason"] == "not_access_token"


@pytest.mark.parametrize(("version", "other_claim"), [(2, "appid"), (1, "azp")])
def test_the_other_versions_client_claim_does_not_stand_in(entra: Any, make_app: MakeApp,
                                                          api_registration: Any, user: Any,
                                                          version: int, other_claim: str) -> None:
    own = "azp" if version == 2 else "appid"
    token = entra.issue_user_token(user, resource=api_registration, version=version,
                                   extra_claims={own: None, other_claim: entra.default_client
                                                 .client_id})
    assert _refused(make_app(), "/me", token)["reason"] == "not_access_token"


@pytest.mark.parametrize("version", [1, 2])
def test_app_and_user_tokens_that_name_their_client_still_pass(entra: Any, make_app: MakeApp,
                                                               api_registration: Any, user: Any,
                                                               version: int) -> None:
    daemon = entra.register_app("daemon", secret="s3cret")
    entra.grant_consent(client=daemon, resource=api_registration, roles=["Reader"])
    app = make_app()
    client = app.test_client()
    app_token = entra.issue_app_token(daemon, resource=api_registration, version=version)
    user_token = entra.issue_user_token(user, resource=api_registration, version=version)
    mine = client.get("/me", headers=bearer(app_token))
    theirs = client.get("/me", headers=bearer(user_token))
    assert mine.status_code == 200 and mine.json["app_only"] is True
    assert theirs.status_code == 200 and theirs.json["app_only"] is False


@pytest.mark.parametrize("claims", [
    # An ID token's claims: roles, no scp, no client.
    {"ver": "2.0", "oid": "o", "tid": "t", "roles": ["Reader"], "exp": 1},
    {"ver": "1.0", "oid": "o", "tid": "t", "roles": ["Reader"], "exp": 1},
    # Even one that says idtyp=app: without a client there is no app.
    {"ver": "2.0", "oid": "o", "tid": "t", "roles": ["Reader"], "idtyp": "app", "exp": 1},
    # The other version's claim does not count.
    {"ver": "2.0", "oid": "o", "tid": "t", "roles": ["Reader"], "appid": "c", "exp": 1},
])
def test_claims_without_a_client_are_never_app_only(claims: dict[str, Any]) -> None:
    assert TokenClaims(claims, token_hash="0" * 64).is_app_only is False


@pytest.mark.parametrize(("claims", "client_id"), [
    ({"ver": "2.0", "roles": ["Reader"], "azp": "c2", "exp": 1}, "c2"),
    ({"ver": "1.0", "roles": ["Reader"], "appid": "c1", "exp": 1}, "c1"),
    ({"ver": "2.0", "roles": ["Reader"], "azp": "c2", "idtyp": "app", "exp": 1}, "c2"),
])
def test_claims_of_an_app_token_are_app_only(claims: dict[str, Any], client_id: str) -> None:
    token = TokenClaims(claims, token_hash="0" * 64)
    assert token.is_app_only is True and token.client_id == client_id
