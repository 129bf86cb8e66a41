"""On-behalf-of through real MSAL: the issued token, consent, MFA, and refused assertions."""

from __future__ import annotations

import base64
import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey
from support.checks import assert_entra_error
from support.jose import claims_of, header_of
from support.world import World, post_token, session_for, verify_with_jwks

from flask_obo.testing import EntraEmulator, make_client_certificate


def obo(world: World, assertion: str, scopes: list[str] | None = None, **kwargs: Any) -> Any:
    return world.cca(**kwargs).acquire_token_on_behalf_of(
        assertion, scopes or [world.down_scope("read")])


def test_obo_issues_a_downstream_token_for_the_same_user(world: World) -> None:
    assertion = world.user_token(world.bob)
    incoming = claims_of(assertion)
    result = obo(world, assertion)
    assert "access_token" in result, result
    claims = verify_with_jwks(world.emu, result["access_token"])
    assert claims["aud"] == world.down.client_id
    assert claims["iss"] == world.emu.issuer()
    assert claims["scp"] == "read"
    assert (claims["oid"], claims["tid"]) == (incoming["oid"], incoming["tid"])
    assert claims["sub"] != incoming["sub"]  # pairwise per app
    assert (claims["azp"], claims["azpacr"], claims["ver"]) == (world.api.client_id, "1", "2.0")
    assert claims["preferred_username"] == world.bob.username
    assert claims["amr"] == ["pwd"]
    assert claims["uti"] != incoming["uti"]
    assert claims["nbf"] <= time.time() < claims["exp"]
    assert "roles" not in claims
    assert result["scope"] == world.down_scope("read")
    # What MSAL asked for on its own: a refresh token, an ID token and client_info.
    assert result["refresh_token"] and result["id_token_claims"]["aud"] == world.api.client_id
    info = json.loads(base64.urlsafe_b64decode(result["client_info"] + "=="))
    assert info == {"uid": incoming["oid"], "utid": incoming["tid"]}
    [call] = world.entra.calls("on_behalf_of")
    assert call["status"] == 200 and call["user"] == world.bob.username
    assert call["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert call["assertion"].startswith("sha256:")
    assert assertion not in json.dumps(world.emu.calls())


def test_default_scope_gives_every_granted_scope(world: World) -> None:
    world.emu.grant_consent(client=world.api, resource=world.down, scopes=["write"])
    result = obo(world, world.user_token(), [f"{world.down.app_id_uri}/.default"])
    assert claims_of(result["access_token"])["scp"] == "read write"


def test_user_app_roles_reach_the_downstream_token(world: World) -> None:
    world.emu.assign_app_role(world.bob, world.down, "Reader")
    result = obo(world, world.user_token())
    assert claims_of(result["access_token"])["roles"] == ["Reader"]


def test_missing_consent_is_consent_required(world: World) -> None:
    result = obo(world, world.user_token(), [world.down_scope("write")])
    body = assert_entra_error(result, None, "invalid_grant", 65001)
    assert body["suberror"] == "consent_required"


def test_pre_authorized_client_needs_no_consent(entra: Any) -> None:
    api = entra.register_app("api", secret="s", scopes=["access_as_user"])
    down = entra.register_app("down", scopes=["read"], pre_authorized=[api])
    user = entra.add_user("dave", password="pw")
    token = entra.issue_user_token(user, resource=api)
    result = entra.confidential_client(api, "s").acquire_token_on_behalf_of(
        token, [f"{down.app_id_uri}/read"])
    assert claims_of(result["access_token"])["scp"] == "read"


def test_mfa_policy_challenges_then_accepts_an_mfa_token(world: World) -> None:
    result = obo(world, world.user_token(world.alice))
    body = assert_entra_error(result, None, "interaction_required", 50079)
    challenge = json.loads(body["claims"])
    policy = challenge["access_token"]["capolids"]
    assert policy["essential"] is True and len(policy["values"]) == 1
    # The client signs the user in again with the claims challenge: the token now says mfa.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        signin = world.pca().acquire_token_by_username_password(
            world.alice.username, "alice-pw", [world.api_scope()], claims_challenge=body["claims"])
    assert claims_of(signin["access_token"])["amr"] == ["pwd", "mfa"]
    result = obo(world, signin["access_token"])
    assert claims_of(result["access_token"])["amr"] == ["pwd", "mfa"]
    assert "access_token" in obo(world, world.user_token(world.alice, mfa=True))


def test_expired_assertion_is_invalid_grant(world: World) -> None:
    result = obo(world, world.user_token(lifetime=-60))
    assert_entra_error(result, None, "invalid_grant", 500133)


def test_foreign_signed_assertion_is_invalid_grant(world: World) -> None:
    genuine = world.user_token()
    attacker = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    forged = jwt.encode(header_of(genuine) | {"kid": "attacker", "x5t": "attacker"},
                        claims_of(genuine), attacker)
    assert_entra_error(obo(world, forged), None, "invalid_grant", 50013)
    # Same kid as the real key, wrong key: still refused.
    forged = jwt.encode(header_of(genuine), claims_of(genuine), attacker)
    assert_entra_error(obo(world, forged), None, "invalid_grant", 50013)


def test_tampered_assertion_is_invalid_grant(world: World) -> None:
    head, _, sig = world.user_token().split(".")
    claims = claims_of(world.user_token()) | {"scp": "access_as_user admin"}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_entra_error(obo(world, f"{head}.{body}.{sig}"), None, "invalid_grant", 50013)


def test_assertion_for_another_audience_is_invalid_grant(world: World) -> None:
    other = world.emu.issue_user_token(world.bob, resource=world.down, scopes=["read"])
    body = assert_entra_error(obo(world, other), None, "invalid_grant", 50013)
    assert "audience" in body["error_description"]


def test_app_only_and_id_tokens_cannot_be_exchanged(world: World) -> None:
    daemon = world.entra.register_app("daemon", secret="d")
    app_token = world.emu.issue_app_token(daemon, resource=world.api)
    assert_entra_error(obo(world, app_token), None, "invalid_grant", 90083)
    id_token = world.emu.issue_id_token(world.bob, world.api)
    assert_entra_error(obo(world, id_token), None, "invalid_grant", 90083)


def test_revoked_sessions_refuse_older_assertions(world: World) -> None:
    before = world.user_token()
    world.emu.revoke_user_sessions(world.bob)
    assert_entra_error(obo(world, before), None, "invalid_grant", 50173)
    assert "access_token" in obo(world, world.user_token())


def test_assertion_v1_and_v1_downstream(entra: Any) -> None:
    api = entra.register_app("api-v1", secret="s", scopes=["access_as_user"],
                             access_token_version=1)
    down = entra.register_app("down-v1", scopes=["read"], access_token_version=1)
    entra.grant_consent(client=api, resource=down, scopes=["read"])
    user = entra.add_user("erin", password="pw")
    assertion = entra.issue_user_token(user, resource=api)
    incoming = claims_of(assertion)
    assert (incoming["ver"], incoming["aud"], incoming["iss"]) == (
        "1.0", api.app_id_uri, entra.issuer(version=1))
    assert incoming["upn"] == user.username and "appid" in incoming
    result = entra.confidential_client(api, "s").acquire_token_on_behalf_of(
        assertion, [f"{down.app_id_uri}/read"])
    claims = claims_of(result["access_token"])
    assert (claims["ver"], claims["aud"]) == ("1.0", down.app_id_uri)
    assert (claims["appid"], claims["appidacr"]) == (api.client_id, "1")


def test_obo_token_lifetime_is_settable() -> None:
    with EntraEmulator(obo_token_lifetime=2) as emu:
        api = emu.register_app("api", secret="s", scopes=["access_as_user"])
        down = emu.register_app("down", scopes=["read"])
        emu.grant_consent(client=api, resource=down, scopes=["read"])
        user = emu.add_user("frank", password="pw")
        result = emu.confidential_client(api, "s").acquire_token_on_behalf_of(
            emu.issue_user_token(user, resource=api), [f"{down.app_id_uri}/read"])
        claims = claims_of(result["access_token"])
        assert claims["exp"] - claims["iat"] == 2 == result["expires_in"]


def test_refresh_token_from_obo_is_redeemable_by_the_middle_tier(world: World) -> None:
    result = obo(world, world.user_token())
    response = post_token(world.emu, {
        "grant_type": "refresh_token", "client_id": world.api.client_id,
        "client_secret": world.secret, "refresh_token": result["refresh_token"],
        "scope": f"{world.down_scope('read')} offline_access"})
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["scp"] == "read"
    [call] = world.entra.calls("refresh_token")
    assert call["params"]["refresh_token"].startswith("sha256:")
    stolen = post_token(world.emu, {
        "grant_type": "refresh_token", "client_id": world.cli.client_id,
        "refresh_token": result["refresh_token"], "scope": world.down_scope("read")})
    assert_entra_error(stolen, 400, "invalid_grant", 70000)


@pytest.mark.parametrize("tenant", ["organizations", "common"])
def test_obo_at_a_multi_tenant_authority_uses_the_assertion_tenant(
        world: World, tenant: str) -> None:
    result = obo(world, world.user_token(), tenant=tenant)
    claims = claims_of(result["access_token"])
    assert claims["tid"] == world.emu.tenant_id and claims["iss"] == world.emu.issuer()


def test_obo_with_a_certificate_credential(world: World) -> None:
    cert = make_client_certificate("middle-tier")
    world.emu.register_certificate(world.api, cert)
    cca = world.cca(cert)
    for user in (world.bob, world.bob):  # MSAL reuses its client assertion: accepted
        result = cca.acquire_token_on_behalf_of(world.user_token(user), [world.down_scope()])
        assert claims_of(result["access_token"])["azpacr"] == "2"


def test_concurrent_obo_calls(world: World) -> None:
    cca = world.cca()
    tokens = [world.user_token() for _ in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(
            lambda t: cca.acquire_token_on_behalf_of(t, [world.down_scope()]), tokens))
    assert all("access_token" in r for r in results), results
    assert len(world.entra.calls("on_behalf_of")) == 16


def test_obo_for_a_user_of_another_tenant(entra: Any) -> None:
    fabrikam = entra.add_tenant()
    api = entra.register_app("saas-api", secret="s", scopes=["access_as_user"], multi_tenant=True)
    down = entra.register_app("saas-down", scopes=["read"], multi_tenant=True)
    single = entra.register_app("single-api", secret="s", scopes=["access_as_user"])
    user = entra.add_user("judy", password="pw", tenant=fabrikam)
    cca = entra.confidential_client(api, "s", tenant=fabrikam)
    token = entra.issue_user_token(user, resource=api)
    assert claims_of(token)["iss"] == entra.issuer(fabrikam)
    refused = cca.acquire_token_on_behalf_of(token, [f"{down.app_id_uri}/read"])
    assert_entra_error(refused, None, "invalid_grant", 65001)  # consent is per tenant
    entra.grant_consent(client=api, resource=down, scopes=["read"], tenant=fabrikam)
    # A new MSAL app: MSAL replays a 400 answer to an identical request for 60 s.
    cca = entra.confidential_client(api, "s", tenant=fabrikam)
    result = cca.acquire_token_on_behalf_of(token, [f"{down.app_id_uri}/read"])
    claims = claims_of(result["access_token"])
    assert (claims["tid"], claims["iss"]) == (fabrikam, entra.issuer(fabrikam))
    foreign = entra.confidential_client(single, "s", tenant=fabrikam).acquire_token_on_behalf_of(
        entra.issue_user_token(user, resource=single), [f"{down.app_id_uri}/read"])
    assert_entra_error(foreign, None, "unauthorized_client", 700016)


def test_v1_token_endpoint_accepts_resource(world: World) -> None:
    with session_for(world.emu) as session:
        response = session.post(f"{world.emu.authority()}/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": world.api.client_id,
            "client_secret": world.secret, "resource": world.down.app_id_uri}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert claims_of(body["access_token"])["aud"] == world.down.client_id
    assert body["resource"] == world.down.app_id_uri
    assert int(body["expires_on"]) - int(body["not_before"]) == int(body["expires_in"])
