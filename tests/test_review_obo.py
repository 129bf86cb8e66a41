"""Review findings in the acquirer: bounded per-tenant state, and Retry-After parsing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from flask_obo import FlaskOBO, IdentityProviderUnavailable
from flask_obo.acquisition._msal import _retry_after


def test_msal_apps_per_tenant_are_bounded_for_an_api_open_to_any_tenant(entra: Any) -> None:
    api = entra.register_app("any-tenant-middle", secret="s3cret", scopes=["access_as_user"],
                             multi_tenant=True)
    app = Flask("any-tenant")
    app.config.update(OBO_AUTHORITY=entra.authority("organizations"),
                      OBO_CLIENT_ID=api.client_id, OBO_CLIENT_SECRET="s3cret",
                      OBO_ALLOWED_TENANTS="*", OBO_CA_BUNDLE=entra.ca_bundle)
    FlaskOBO(app)
    acquirer = app.extensions["obo"].acquirer
    acquirer.max_clients = 2
    tenants = [entra.tenant_id, entra.add_tenant(), entra.add_tenant(), entra.add_tenant()]
    for tid in tenants:
        assert acquirer.client(tid) is acquirer.client(tid)  # built once while kept
    assert list(acquirer._clients) == tenants[-2:]  # the oldest went first
    assert acquirer.client(tenants[0]) is not None  # an evicted tenant is simply rebuilt


def test_retry_after_is_bounded_whatever_the_identity_provider_sends() -> None:
    assert _retry_after("7") == 7
    assert _retry_after("100000") == 300
    assert _retry_after("9" * 5000) == 300  # int() of > 4300 digits raises ValueError
    assert _retry_after("\u0663") == 5  # a non-ASCII digit is not a delay
    assert _retry_after("soon") == 5


def test_aadsts_codes_from_any_error_description_never_raise() -> None:
    from flask_obo.acquisition._msal import error_codes, result_error

    garbage = {"error": "invalid_grant", "error_description": "AADSTS" + "9" * 5000}
    assert error_codes(garbage) == frozenset({999999999})
    assert error_codes({"error_description": "AADSTS50013: assertion expired"}) == {50013}
    error = result_error(garbage, authority="https://login.example/t", client_id="c",
                         scopes=("api://x/read",), app_only=False)
    assert error.code == 401 and error.reason == "invalid_grant"


def _acquirer(entra: Any) -> Any:
    api = entra.register_app("expiry-middle", secret="s3cret", scopes=["access_as_user"])
    app = Flask("expiry")
    app.config.update(OBO_AUTHORITY=entra.authority(), OBO_CLIENT_ID=api.client_id,
                      OBO_CLIENT_SECRET="s3cret", OBO_CA_BUNDLE=entra.ca_bundle)
    FlaskOBO(app)
    return app.extensions["obo"].acquirer


@pytest.mark.parametrize("expires_in", [float("inf"), float("nan"), "soon", -5, 0])
def test_a_token_answer_without_a_usable_lifetime_is_a_503_not_a_500(
        entra: Any, expires_in: Any) -> None:
    acquirer = _acquirer(entra)
    with pytest.raises(IdentityProviderUnavailable) as caught:
        acquirer._token({"access_token": "eyJ.x.y", "token_type": "Bearer",
                         "expires_in": expires_in}, time.time(), "on_behalf_of",
                        entra.tenant_id, ("api://x/read",), "someone")
    assert caught.value.reason == "malformed_response"


def test_an_absurd_token_lifetime_is_cached_for_a_day_at_most(entra: Any) -> None:
    started = time.time()
    token = _acquirer(entra)._token(
        {"access_token": "eyJ.x.y", "token_type": "Bearer", "expires_in": 10**15}, started,
        "on_behalf_of", entra.tenant_id, ("api://x/read",), "someone")
    assert token.expires_on == started + 86_400
