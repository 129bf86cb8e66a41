"""Microsoft Graph and Azure Storage in every tenant of the emulator, with Entra's v1 tokens."""

from __future__ import annotations

import pytest
from support.checks import assert_entra_error
from support.world import World, verify_with_jwks

from flask_obo.testing import EntraEmulator
from flask_obo.testing.pytest_plugin import EntraTestHelper

GRAPH_ID = "00000003-0000-0000-c000-000000000000"
STORAGE_ID = "e406a681-f3d4-42a8-90b6-c2b029497af1"


def test_graph_and_storage_exist_with_their_ids_and_scopes(entra_emulator: EntraEmulator) -> None:
    graph, storage = entra_emulator.graph, entra_emulator.storage
    assert (graph.client_id, graph.app_id_uri) == (GRAPH_ID, "https://graph.microsoft.com")
    assert (storage.client_id, storage.app_id_uri) == (STORAGE_ID, "https://storage.azure.com")
    assert {"User.Read", "Mail.Read"} <= set(graph.scopes)
    assert storage.scopes == ("user_impersonation",)
    assert graph.access_token_version == storage.access_token_version == 1
    assert entra_emulator.get_app(GRAPH_ID) is graph
    assert entra_emulator.get_app("https://storage.azure.com/") is storage


def test_a_second_graph_cannot_be_registered(entra: EntraTestHelper) -> None:
    with pytest.raises(ValueError, match="built in"):
        entra.register_app("my graph", app_id_uri="https://graph.microsoft.com")


def test_storage_token_by_obo_is_v1_with_entras_issuer(world: World) -> None:
    world.entra.grant_consent(client=world.api, resource=world.emu.storage,
                              scopes=["user_impersonation"])
    result = world.cca().acquire_token_on_behalf_of(
        world.user_token(world.bob), ["https://storage.azure.com/.default"])
    claims = verify_with_jwks(world.emu, result["access_token"])
    assert claims["iss"] == f"https://sts.windows.net/{world.emu.tenant_id}/"
    assert claims["iss"] == world.emu.issuer(version=1)
    assert (claims["aud"], claims["ver"], claims["scp"]) == (
        "https://storage.azure.com", "1.0", "user_impersonation")
    assert (claims["appid"], claims["appidacr"], claims["upn"]) == (
        world.api.client_id, "1", world.bob.username)
    assert {"iat", "nbf", "exp"} <= set(claims)  # what Azurite's lifetime check reads
    assert result["scope"] == "https://storage.azure.com/user_impersonation"


def test_graph_bare_scopes_give_a_graph_token(world: World) -> None:
    world.entra.grant_consent(client=world.api, resource=world.emu.graph,
                              scopes=["User.Read", "Mail.Read"])
    result = world.cca().acquire_token_on_behalf_of(world.user_token(world.bob),
                                                    ["User.Read", "Mail.Read"])
    claims = verify_with_jwks(world.emu, result["access_token"])
    assert (claims["aud"], claims["ver"]) == ("https://graph.microsoft.com", "1.0")
    assert claims["scp"] == "User.Read Mail.Read"
    by_id = world.cca().acquire_token_on_behalf_of(world.user_token(world.bob),
                                                   [f"{GRAPH_ID}/User.Read"])
    assert verify_with_jwks(world.emu, by_id["access_token"])["aud"] == GRAPH_ID


def test_first_party_consent_works_as_for_other_resources(world: World) -> None:
    missing = world.cca().acquire_token_on_behalf_of(world.user_token(world.bob), ["Mail.Send"])
    assert_entra_error(missing, None, "invalid_grant", 65001)
    unknown = world.cca().acquire_token_on_behalf_of(world.user_token(world.bob),
                                                     ["Mail.Teleport"])
    assert_entra_error(unknown, None, "invalid_scope", 650053)


def test_first_party_resources_exist_in_every_tenant(entra: EntraTestHelper) -> None:
    fabrikam = entra.add_tenant()
    api = entra.register_app("multi", secret="s3cret", scopes=["access_as_user"],
                             multi_tenant=True)
    entra.grant_consent(client=api, resource=entra.graph, roles=["User.Read.All"],
                        tenant=fabrikam)
    result = entra.confidential_client(api, "s3cret", tenant=fabrikam).acquire_token_for_client(
        ["https://graph.microsoft.com/.default"])
    claims = verify_with_jwks(entra.emulator, result["access_token"])
    assert (claims["tid"], claims["iss"]) == (fabrikam, f"https://sts.windows.net/{fabrikam}/")
    assert (claims["idtyp"], claims["roles"], claims["appid"]) == (
        "app", ["User.Read.All"], api.client_id)
