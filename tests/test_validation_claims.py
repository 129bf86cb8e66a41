"""Claim rules against tokens the authority really signed: v1 and v2, issuer per version and
tenant, audience, tenant allow-list (multi-tenant), exp/nbf with skew, access tokens only.

Every refusal asserts the exact status, WWW-Authenticate header and reason code."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.apps import MakeApp, build_api
from support.checks import assert_invalid, bearer
from werkzeug.test import TestResponse

from flask_obo.testing import App, User
from flask_obo.testing.pytest_plugin import EntraTestHelper


def get_me(app_or_client: Any, token: str) -> TestResponse:
    client = app_or_client.test_client() if hasattr(app_or_client, "test_client") else app_or_client
    response: TestResponse = client.get("/me", headers=bearer(token))
    return response


# -- accepted -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2])
def test_user_tokens_of_both_versions_are_accepted(make_app: MakeApp, emulator: EntraTestHelper,
                                                   api_registration: App, user: User,
                                                   version: int) -> None:
    token = emulator.issue_user_token(user, resource=api_registration, version=version,
                                      scopes=["read"])
    response = get_me(make_app(), token)
    assert response.status_code == 200
    assert response.json == {"oid": user.oid, "tid": user.tenant_id, "version": f"{version}.0",
                             "scopes": ["read"], "roles": [], "app_only": False}


def test_api_registered_for_v1_tokens(emulator: EntraTestHelper, user: User) -> None:
    api = emulator.register_app("v1-api", scopes=["access_as_user"], access_token_version=1)
    token = emulator.issue_user_token(user, resource=api)  # aud is api://<client id>
    assert get_me(build_api(emulator, api), token).json["version"] == "1.0"


@pytest.mark.parametrize("version", [1, 2])
def test_app_only_tokens_are_accepted(make_app: MakeApp, emulator: EntraTestHelper,
                                      api_registration: App, version: int) -> None:
    daemon = emulator.register_app("daemon", secret="s3cret")
    emulator.grant_consent(client=daemon, resource=api_registration, roles=["Reader"])
    token = emulator.issue_app_token(daemon, resource=api_registration, version=version)
    response = get_me(make_app(), token)
    assert response.status_code == 200
    assert response.json["roles"] == ["Reader"] and response.json["app_only"] is True


def test_a_token_for_another_api_is_refused(emulator: EntraTestHelper, api_registration: App,
                                            user: User) -> None:
    other = emulator.register_app("other-api", scopes=["access_as_user"])
    token = emulator.issue_user_token(user, resource=other)
    app = build_api(emulator, api_registration, OBO_AUDIENCES=["api://something-else"])
    assert_invalid(get_me(app, token), api_registration, "audience")


def test_a_custom_app_id_uri_is_accepted_once_listed(emulator: EntraTestHelper,
                                                     user: User) -> None:
    uri = f"https://contoso.test/orders-{emulator.tag}"
    api = emulator.register_app("orders", scopes=["access_as_user"], app_id_uri=uri,
                                access_token_version=1)
    token = emulator.issue_user_token(user, resource=api)  # a v1 token: aud is the URI
    assert_invalid(get_me(build_api(emulator, api), token), api, "audience")
    assert get_me(build_api(emulator, api, OBO_AUDIENCES=[uri]), token).status_code == 200


# -- versions and issuers ---------------------------------------------------------------------

def test_a_version_not_accepted_is_refused(emulator: EntraTestHelper, api_registration: App,
                                           user: User) -> None:
    app = build_api(emulator, api_registration, OBO_ACCEPTED_TOKEN_VERSIONS=["2.0"])
    v1 = emulator.issue_user_token(user, resource=api_registration, version=1)
    assert_invalid(get_me(app, v1), api_registration, "version")
    v2 = emulator.issue_user_token(user, resource=api_registration, version=2)
    assert get_me(app, v2).status_code == 200


@pytest.mark.parametrize(("version", "claims"), [
    (2, {"ver": None}),
    (2, {"ver": "3.0"}),
])
def test_missing_or_unknown_version(make_app: MakeApp, emulator: EntraTestHelper,
                                    api_registration: App, user: User, version: int,
                                    claims: dict[str, Any]) -> None:
    token = emulator.issue_user_token(user, resource=api_registration, version=version,
                                      extra_claims=claims)
    assert_invalid(get_me(make_app(), token), api_registration, "version")


def test_issuer_must_match_the_token_version(make_app: MakeApp, emulator: EntraTestHelper,
                                             api_registration: App, user: User) -> None:
    app = make_app()
    v1_issuer = emulator.issuer(version=1)
    v2_issuer = emulator.issuer(version=2)
    # A v2 token with the v1 issuer, and the reverse: each issuer is exact per version.
    token = emulator.issue_user_token(user, resource=api_registration, version=2,
                                      extra_claims={"iss": v1_issuer})
    assert_invalid(get_me(app, token), api_registration, "issuer")
    token = emulator.issue_user_token(user, resource=api_registration, version=1,
                                      extra_claims={"iss": v2_issuer})
    assert_invalid(get_me(app, token), api_registration, "issuer")


@pytest.mark.parametrize("issuer", [
    "https://login.microsoftonline.com/{tid}/v2.0",
    "{base}/{tid}/v2.0/",
    "{base}/{tid}/V2.0",
    "{base}/{{tenantid}}/v2.0",
    None,
])
def test_issuer_is_exact(make_app: MakeApp, emulator: EntraTestHelper, api_registration: App,
                         user: User, issuer: str | None) -> None:
    iss = issuer.format(tid=user.tenant_id, base=emulator.base_url) if issuer else None
    token = emulator.issue_user_token(user, resource=api_registration, extra_claims={"iss": iss})
    assert_invalid(get_me(make_app(), token), api_registration, "issuer")


# -- audience ---------------------------------------------------------------------------------

def test_token_for_another_api_is_refused(make_app: MakeApp, emulator: EntraTestHelper,
                                          api_registration: App, user: User) -> None:
    other = emulator.register_app("other", scopes=["access_as_user"])
    token = emulator.issue_user_token(user, resource=other)
    assert_invalid(get_me(make_app(), token), api_registration, "audience")


@pytest.mark.parametrize("aud", [None, "", "api://other", ["{cid}"], "{cid} ", "API://{cid}"])
def test_audience_is_exact(make_app: MakeApp, emulator: EntraTestHelper, api_registration: App,
                           user: User, aud: Any) -> None:
    cid = api_registration.client_id
    value = [a.format(cid=cid) for a in aud] if isinstance(aud, list) else (
        aud.format(cid=cid) if isinstance(aud, str) else aud)
    token = emulator.issue_user_token(user, resource=api_registration,
                                      extra_claims={"aud": value})
    assert_invalid(get_me(make_app(), token), api_registration, "audience")


# -- tenants ----------------------------------------------------------------------------------

def test_single_tenant_api_refuses_another_tenant(make_app: MakeApp, emulator: EntraTestHelper,
                                                  api_registration: App) -> None:
    other_tid = emulator.add_tenant()
    mallory = emulator.add_user("mallory", tenant=other_tid)
    token = emulator.issue_user_token(mallory, resource=api_registration)
    assert_invalid(get_me(make_app(), token), api_registration, "issuer")
    # Even with the home tenant's issuer, the foreign tid is refused.
    token = emulator.issue_user_token(mallory, resource=api_registration, extra_claims={
        "iss": emulator.issuer(version=2)})
    response = get_me(make_app(), token)
    assert response.status_code == 401 and response.json["reason"] in ("issuer", "tenant")


def test_authority_named_by_domain_pins_the_tenant_through_discovery(
        emulator: EntraTestHelper, api_registration: App, user: User) -> None:
    # .../contoso.test: no tenant GUID in the config; discovery's issuer holds it.
    domain = emulator.directory.tenant(emulator.tenant_id).domain
    app = build_api(emulator, api_registration, OBO_AUTHORITY=f"{emulator.base_url}/{domain}")
    for version in (1, 2):
        token = emulator.issue_user_token(user, resource=api_registration, version=version)
        assert get_me(app, token).json["tid"] == emulator.tenant_id
    other_tid = emulator.add_tenant()
    outsider = emulator.add_user("outsider", tenant=other_tid)
    token = emulator.issue_user_token(outsider, resource=api_registration)
    assert_invalid(get_me(app, token), api_registration, "issuer")


@pytest.fixture
def multi_tenant(emulator: EntraTestHelper) -> dict[str, Any]:
    api = emulator.register_app("saas", scopes=["access_as_user"], multi_tenant=True)
    tid_b, tid_c = emulator.add_tenant(), emulator.add_tenant()
    users = {
        "a": emulator.add_user("ann"),
        "b": emulator.add_user("bea", tenant=tid_b),
        "c": emulator.add_user("cat", tenant=tid_c),
    }
    return {"api": api, "users": users, "tids": {"a": emulator.tenant_id, "b": tid_b,
                                                "c": tid_c}}


@pytest.mark.parametrize("version", [1, 2])
def test_multi_tenant_allow_list(emulator: EntraTestHelper, multi_tenant: dict[str, Any],
                                 version: int) -> None:
    api, users, tids = multi_tenant["api"], multi_tenant["users"], multi_tenant["tids"]
    app = build_api(emulator, api, OBO_AUTHORITY=emulator.authority("organizations"),
                    OBO_ALLOWED_TENANTS=[tids["a"], tids["b"].upper()])
    client = app.test_client()
    for name in ("a", "b"):
        token = emulator.issue_user_token(users[name], resource=api, version=version)
        response = get_me(client, token)
        assert response.status_code == 200, response.json
        assert response.json["tid"] == tids[name]
    token = emulator.issue_user_token(users["c"], resource=api, version=version)
    assert_invalid(get_me(client, token), api, "tenant")


def test_multi_tenant_issuer_follows_the_token_tid(emulator: EntraTestHelper,
                                                   multi_tenant: dict[str, Any]) -> None:
    api, users, tids = multi_tenant["api"], multi_tenant["users"], multi_tenant["tids"]
    app = build_api(emulator, api, OBO_AUTHORITY=emulator.authority("organizations"),
                    OBO_ALLOWED_TENANTS=["*"])
    client = app.test_client()
    token = emulator.issue_user_token(users["c"], resource=api)
    assert get_me(client, token).status_code == 200  # "*": any tenant
    # Tenant C's token claiming to come from tenant A's issuer: {tenantid} must be its own tid.
    token = emulator.issue_user_token(users["c"], resource=api, extra_claims={
        "iss": emulator.issuer(tids["a"])})
    assert_invalid(get_me(client, token), api, "issuer")
    token = emulator.issue_user_token(users["c"], resource=api, extra_claims={"tid": "x/v2.0"})
    assert_invalid(get_me(client, token), api, "tenant")


# -- time -------------------------------------------------------------------------------------

def test_expired_token_is_refused(make_app: MakeApp, emulator: EntraTestHelper,
                                  api_registration: App, user: User) -> None:
    token = emulator.issue_user_token(user, resource=api_registration, lifetime=-400)
    assert_invalid(get_me(make_app(), token), api_registration, "expired")


def test_clock_skew_applies_to_exp_and_nbf(emulator: EntraTestHelper, api_registration: App,
                                           user: User) -> None:
    lenient = build_api(emulator, api_registration, OBO_CLOCK_SKEW=120)
    strict = build_api(emulator, api_registration, OBO_CLOCK_SKEW=0)
    just_expired = emulator.issue_user_token(user, resource=api_registration, lifetime=-60)
    assert get_me(lenient, just_expired).status_code == 200
    assert_invalid(get_me(strict, just_expired), api_registration, "expired")
    soon = emulator.issue_user_token(user, resource=api_registration,
                                     extra_claims={"nbf": int(time.time()) + 60})
    assert get_me(lenient, soon).status_code == 200
    assert_invalid(get_me(strict, soon), api_registration, "not_yet_valid")


@pytest.mark.parametrize(("claims", "reason"), [
    ({"exp": None}, "no_expiry"),
    ({"exp": "4102444800"}, "no_expiry"),
    ({"exp": True}, "no_expiry"),
    ({"exp": 10**30}, "no_expiry"),
    ({"nbf": "0"}, "not_yet_valid"),
    ({"nbf": 4102444800}, "not_yet_valid"),
])
def test_time_claims_must_be_numbers(make_app: MakeApp, emulator: EntraTestHelper,
                                     api_registration: App, user: User,
                                     claims: dict[str, Any], reason: str) -> None:
    token = emulator.issue_user_token(user, resource=api_registration, extra_claims=claims)
    assert_invalid(get_me(make_app(), token), api_registration, reason)


# -- access tokens only -----------------------------------------------------------------------

def test_id_token_is_refused(make_app: MakeApp, emulator: EntraTestHelper,
                             api_registration: App, user: User) -> None:
    # An ID token issued to the API's own registration has the API's client id as aud.
    token = emulator.issue_id_token(user, api_registration)
    assert_invalid(get_me(make_app(), token), api_registration, "not_access_token")


@pytest.mark.parametrize("claims", [
    {"scp": None, "roles": None}, {"scp": "", "roles": []}, {"scp": " ", "roles": None},
])
def test_token_without_scp_or_roles_is_refused(make_app: MakeApp, emulator: EntraTestHelper,
                                               api_registration: App, user: User,
                                               claims: dict[str, Any]) -> None:
    token = emulator.issue_user_token(user, resource=api_registration, extra_claims=claims)
    assert_invalid(get_me(make_app(), token), api_registration, "not_access_token")


@pytest.mark.parametrize("claims", [{"scp": ["read"]}, {"roles": "Reader"}, {"roles": [1]}])
def test_wrongly_typed_scp_or_roles_is_refused(make_app: MakeApp, emulator: EntraTestHelper,
                                               api_registration: App, user: User,
                                               claims: dict[str, Any]) -> None:
    token = emulator.issue_user_token(user, resource=api_registration, extra_claims=claims)
    assert_invalid(get_me(make_app(), token), api_registration, "claims")


@pytest.mark.parametrize("tid", [None, "", "not-a-guid", 42])
def test_tid_is_required(make_app: MakeApp, emulator: EntraTestHelper, api_registration: App,
                         user: User, tid: Any) -> None:
    token = emulator.issue_user_token(user, resource=api_registration, extra_claims={"tid": tid})
    assert_invalid(get_me(make_app(), token), api_registration, "tenant")
