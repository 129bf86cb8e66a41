"""Username/password sign-in through a real msal.PublicClientApplication."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.checks import assert_entra_error
from support.jose import claims_of
from support.world import World, verify_with_jwks

from flask_obo.testing import EntraEmulator

pytestmark = pytest.mark.filterwarnings("ignore:This API has been deprecated:DeprecationWarning")


def sign_in(world: World, username: str, password: str, **kwargs: Any) -> Any:
    return world.pca().acquire_token_by_username_password(
        username, password, [world.api_scope()], **kwargs)


def test_public_client_gets_a_user_token_for_the_middle_tier(world: World) -> None:
    result = sign_in(world, world.bob.username, "bob-pw")
    assert "access_token" in result, result
    claims = verify_with_jwks(world.emu, result["access_token"])
    assert claims["aud"] == world.api.client_id
    assert claims["scp"] == "access_as_user"
    assert (claims["azp"], claims["azpacr"]) == (world.cli.client_id, "0")
    assert (claims["oid"], claims["tid"]) == (world.bob.oid, world.emu.tenant_id)
    assert claims["amr"] == ["pwd"]
    assert result["id_token_claims"]["preferred_username"] == world.bob.username
    assert result["refresh_token"]
    # MSAL's user-realm lookup (port 443 on the authority's host) reached the emulator.
    realm = world.entra.calls(endpoint="userrealm")
    assert realm and realm[-1]["status"] == 200
    [call] = world.entra.calls("password")
    assert call["client_auth"] == "none"
    assert "bob-pw" not in json.dumps(world.emu.calls())


def test_the_token_works_for_obo(world: World) -> None:
    signin = sign_in(world, world.bob.username, "bob-pw")
    result = world.cca().acquire_token_on_behalf_of(signin["access_token"],
                                                    [world.down_scope()])
    assert claims_of(result["access_token"])["azp"] == world.api.client_id


def test_wrong_password_and_unknown_user(world: World) -> None:
    assert_entra_error(sign_in(world, world.bob.username, "nope"), None, "invalid_grant", 50126)
    assert_entra_error(sign_in(world, "nobody@contoso.test", "pw"), None, "invalid_grant", 50034)


def test_silent_refresh_uses_the_refresh_token(world: World) -> None:
    pca = world.pca()
    sign_in_result = pca.acquire_token_by_username_password(
        world.bob.username, "bob-pw", [world.api_scope()])
    [account] = pca.get_accounts()
    refreshed = pca.acquire_token_silent([world.api_scope()], account, force_refresh=True)
    assert refreshed["access_token"] != sign_in_result["access_token"]
    assert claims_of(refreshed["access_token"])["oid"] == world.bob.oid
    assert len(world.entra.calls("refresh_token")) == 1


def test_mfa_for_the_api_itself_needs_the_claims_challenge(entra: Any) -> None:
    api = entra.register_app("strict-api", scopes=["access_as_user"])
    cli = entra.register_app("strict-cli")
    user = entra.add_user("gina", password="pw", mfa_required_for=[api])
    lazy = entra.add_user("hank", password="pw", mfa_required_for=[api], mfa_passes=False)
    pca = entra.public_client(cli)
    scope = [f"{api.app_id_uri}/access_as_user"]
    first = pca.acquire_token_by_username_password(user.username, "pw", scope)
    body = assert_entra_error(first, None, "interaction_required", 50079)
    second = pca.acquire_token_by_username_password(user.username, "pw", scope,
                                                    claims_challenge=body["claims"])
    assert claims_of(second["access_token"])["amr"] == ["pwd", "mfa"]
    failed = pca.acquire_token_by_username_password(lazy.username, "pw", scope,
                                                    claims_challenge=body["claims"])
    assert_entra_error(failed, None, "invalid_grant", 500121)


def test_confidential_client_ropc_needs_its_credential(world: World) -> None:
    result = world.cca().acquire_token_by_username_password(
        world.bob.username, "bob-pw", [world.down_scope()])
    assert claims_of(result["access_token"])["azpacr"] == "1"


def test_multi_tenant_app_used_from_another_tenant() -> None:
    with EntraEmulator() as emu:
        fabrikam = emu.add_tenant(domain="fabrikam.test")
        api = emu.register_app("saas-api", scopes=["access_as_user"], multi_tenant=True)
        cli = emu.register_app("saas-cli", multi_tenant=True)
        home_only = emu.register_app("home-only-cli")
        ivan = emu.add_user("ivan@fabrikam.test", password="pw")
        assert ivan.tenant_id == fabrikam
        scope = [f"{api.app_id_uri}/access_as_user"]
        pca = emu.public_client(cli, tenant="organizations")
        result = pca.acquire_token_by_username_password(ivan.username, "pw", scope)
        claims = claims_of(result["access_token"])
        assert claims["tid"] == fabrikam and claims["iss"] == emu.issuer(fabrikam)
        refused = emu.public_client(home_only, tenant=fabrikam)\
            .acquire_token_by_username_password(ivan.username, "pw", scope)
        assert_entra_error(refused, None, "unauthorized_client", 700016)
        wrong_tenant = emu.public_client(cli).acquire_token_by_username_password(
            ivan.username, "pw", scope)
        assert_entra_error(wrong_tenant, None, "invalid_grant", 50034)
