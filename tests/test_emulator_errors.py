"""Malformed token requests get Entra-shaped 400/401 answers, never a 500."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.checks import assert_entra_error
from support.world import World, post_token, session_for

from flask_obo.testing import EntraEmulator
from flask_obo.testing.pytest_plugin import EntraTestHelper


def test_missing_grant_type(world: World) -> None:
    assert_entra_error(post_token(world.emu, {"client_id": world.api.client_id}),
                       400, "invalid_request", 900144)


@pytest.mark.parametrize(("data", "missing"), [
    ({"grant_type": "client_credentials", "client_secret": "x"}, "client_id"),
    ({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
      "requested_token_use": "on_behalf_of", "scope": "x"}, "assertion"),
    ({"grant_type": "password", "password": "pw"}, "username"),
    ({"grant_type": "refresh_token"}, "refresh_token"),
    ({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "a.b.c"},
     "requested_token_use"),
])
def test_missing_parameters(world: World, data: dict[str, str], missing: str) -> None:
    if missing != "client_id":
        data = {"client_id": world.api.client_id, "client_secret": world.secret, **data}
    body = assert_entra_error(post_token(world.emu, data), 400, "invalid_request", 900144)
    assert f"'{missing}'" in body["error_description"]


def test_missing_scope_for_client_credentials(world: World) -> None:
    response = post_token(world.emu, {"grant_type": "client_credentials",
                                      "client_id": world.api.client_id,
                                      "client_secret": world.secret})
    assert_entra_error(response, 400, "invalid_request", 900144)


def test_unknown_client(world: World) -> None:
    response = post_token(world.emu, {"grant_type": "client_credentials",
                                      "client_id": "00000000-0000-0000-0000-000000000000",
                                      "client_secret": "x", "scope": "api://x/.default"})
    assert_entra_error(response, 400, "unauthorized_client", 700016)


def test_wrong_secret_is_401_invalid_client(world: World) -> None:
    result = world.cca("not-the-secret").acquire_token_for_client(
        [f"{world.down.app_id_uri}/.default"])
    assert_entra_error(result, None, "invalid_client", 7000215)
    response = post_token(world.emu, {"grant_type": "client_credentials",
                                      "client_id": world.api.client_id, "client_secret": "nope",
                                      "scope": f"{world.down.app_id_uri}/.default"})
    assert_entra_error(response, 401, "invalid_client", 7000215)
    assert "nope" not in json.dumps(world.emu.calls())


def test_unsupported_grant(world: World) -> None:
    for grant in ("urn:ietf:params:oauth:grant-type:device_code", "magic"):
        response = post_token(world.emu, {"grant_type": grant, "client_id": world.cli.client_id})
        assert_entra_error(response, 400, "unsupported_grant_type", 70003)


def test_unknown_resource_and_scope(world: World) -> None:
    base = {"grant_type": "client_credentials", "client_id": world.api.client_id,
            "client_secret": world.secret}
    unknown = post_token(world.emu, {**base, "scope": "api://no-such-api/.default"})
    assert_entra_error(unknown, 400, "invalid_resource", 500011)
    # Microsoft Graph exists in every tenant; client credentials need its /.default.
    graph = post_token(world.emu, {**base, "scope": "User.Read"})
    assert_entra_error(graph, 400, "invalid_scope", 1002012)
    oidc_only = post_token(world.emu, {**base, "scope": "openid profile"})
    assert_entra_error(oidc_only, 400, "invalid_scope", 1002012)
    two = post_token(world.emu, {**base, "scope": f"{world.down.app_id_uri}/.default "
                                                  f"{world.api.app_id_uri}/.default"})
    assert_entra_error(two, 400, "invalid_scope", 28000)


def test_garbage_bodies(world: World) -> None:
    emu = world.emu
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body in (b"\x00\xff\xfe garbage \x89PNG", b"%%%=&&&=%zz", b"=" * 5000, b"grant_type"):
        assert_entra_error(post_token(emu, body, headers=form), 400, "invalid_request", 900144)
    as_json = post_token(emu, json.dumps({"grant_type": "client_credentials"}),
                         headers={"Content-Type": "application/json"})
    assert_entra_error(as_json, 400, "invalid_request", 900144)
    no_type = post_token(emu, b"grant_type=client_credentials", headers={"Content-Type": ""})
    assert no_type.status_code == 400


def test_duplicate_parameter(world: World) -> None:
    response = post_token(world.emu, [("grant_type", "password"), ("grant_type", "password")])
    assert_entra_error(response, 400, "invalid_request", 9000411)


def test_get_on_the_token_endpoint(entra_emulator: EntraEmulator) -> None:
    with session_for(entra_emulator) as session:
        response = session.get(entra_emulator.token_endpoint(), timeout=10)
    assert_entra_error(response, 400, "invalid_request", 900561)


def test_huge_body_is_refused_cleanly(entra_emulator: EntraEmulator) -> None:
    response = post_token(entra_emulator, {"grant_type": "password", "x": "a" * 2_000_000})
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


def test_malformed_basic_header(world: World) -> None:
    for value in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        response = post_token(world.emu, {"grant_type": "client_credentials"},
                              headers={"Authorization": value})
        assert_entra_error(response, 400, "invalid_request", 9002313)


def test_unknown_tenant_at_the_token_endpoint(entra_emulator: EntraEmulator) -> None:
    url = f"{entra_emulator.base_url}/nonexistent.example/oauth2/v2.0/token"
    with session_for(entra_emulator) as session:
        response = session.post(url, data={"grant_type": "client_credentials"}, timeout=10)
    assert_entra_error(response, 400, "invalid_request", 90002)


def test_client_credentials_at_organizations_is_refused(world: World) -> None:
    response = post_token(world.emu, {"grant_type": "client_credentials",
                                      "client_id": world.api.client_id,
                                      "client_secret": world.secret,
                                      "scope": f"{world.down.app_id_uri}/.default"},
                          tenant="organizations")
    assert_entra_error(response, 400, "invalid_request", 50059)


def test_correlation_id_is_echoed(world: World) -> None:
    response = post_token(world.emu, {"grant_type": "nope"},
                          headers={"client-request-id": "1234-abcd"})
    assert response.json()["correlation_id"] == "1234-abcd"
    assert response.headers["client-request-id"] == "1234-abcd"
    assert response.json()["error_uri"].endswith("/error?code=70003")


GRANTS = st.sampled_from(["client_credentials", "password", "refresh_token",
                          "urn:ietf:params:oauth:grant-type:jwt-bearer", "", "x"])
VALUES = st.one_of(st.text(max_size=40), st.just("a.b.c"), st.just("api://x/.default"),
                   st.just("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                   st.just("on_behalf_of"))
KEYS = st.sampled_from(["client_id", "client_secret", "scope", "assertion", "username",
                        "password", "refresh_token", "client_assertion", "requested_token_use",
                        "client_assertion_type", "claims", "client_info"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grant=GRANTS, params=st.dictionaries(KEYS, VALUES, max_size=8))
def test_fuzzed_requests_never_get_a_500(entra: EntraTestHelper, grant: str,
                                         params: dict[str, str]) -> None:
    response = post_token(entra.emulator, {"grant_type": grant, **params})
    assert response.status_code in (400, 401), response.text
    body = response.json()
    assert body["error_description"].startswith("AADSTS")
