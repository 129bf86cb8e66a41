"""Client credentials through real MSAL: secrets, PEM and PFX certificates, assertion checks."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from support.checks import assert_entra_error
from support.jose import claims_of, header_of
from support.world import World, post_token, verify_with_jwks

from flask_obo.testing import ClientCertificate, EntraEmulator, make_client_certificate

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def cert() -> ClientCertificate:
    return make_client_certificate("middle-tier")


def app_token_claims(result: dict[str, Any]) -> dict[str, Any]:
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    return claims_of(result["access_token"])


def test_secret_gives_an_app_token_with_granted_roles(world: World) -> None:
    result = world.cca().acquire_token_for_client([f"{world.down.app_id_uri}/.default"])
    claims = app_token_claims(result)
    emu = world.emu
    assert verify_with_jwks(emu, result["access_token"]) == claims
    assert claims["aud"] == world.down.client_id
    assert claims["iss"] == emu.issuer()
    assert (claims["azp"], claims["azpacr"], claims["ver"]) == (world.api.client_id, "1", "2.0")
    assert claims["roles"] == ["Reader"]
    assert claims["idtyp"] == "app"
    assert claims["oid"] == claims["sub"] == world.api.service_principal_id(emu.tenant_id)
    assert "scp" not in claims
    assert claims["exp"] - claims["iat"] == emu.token_lifetime
    header = header_of(result["access_token"])
    assert (header["typ"], header["alg"], header["kid"]) == ("JWT", "RS256", emu.signing_kid)
    [call] = world.entra.calls("client_credentials")
    assert call["client_auth"] == "client_secret_post" and call["status"] == 200


def test_client_id_form_of_default_scope(world: World) -> None:
    result = world.cca().acquire_token_for_client([f"{world.down.client_id}/.default"])
    assert app_token_claims(result)["aud"] == world.down.client_id


def test_secret_in_basic_authentication(world: World) -> None:
    basic = base64.b64encode(f"{world.api.client_id}:{world.secret}".encode()).decode()
    response = post_token(world.emu, {"grant_type": "client_credentials",
                                      "scope": f"{world.down.app_id_uri}/.default"},
                          headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200, response.text
    assert world.entra.calls("client_credentials")[-1]["client_auth"] == "client_secret_basic"


def test_pem_certificate_ps256_with_x5c_header(world: World, cert: ClientCertificate) -> None:
    world.emu.register_certificate(world.api, cert.cert_pem)
    result = world.cca(cert.msal_credential()).acquire_token_for_client(
        [f"{world.down.app_id_uri}/.default"])
    assert app_token_claims(result)["azpacr"] == "2"
    [call] = world.entra.calls("client_credentials")
    assert call["client_auth"] == "private_key_jwt"
    assert call["params"]["client_assertion"].startswith("sha256:")


def test_pem_certificate_rs256_with_sha1_thumbprint(world: World, cert: ClientCertificate) -> None:
    world.emu.register_certificate(world.api, cert)
    result = world.cca(cert.msal_credential(sha1=True)).acquire_token_for_client(
        [f"{world.down.app_id_uri}/.default"])
    assert app_token_claims(result)["azpacr"] == "2"


def test_pfx_certificate(world: World, cert: ClientCertificate, tmp_path: Path) -> None:
    world.emu.register_certificate(world.api, cert)
    credential = {"private_key_pfx_path": cert.write_pfx(tmp_path),
                  "passphrase": cert.pfx_passphrase}
    result = world.cca(credential).acquire_token_for_client([f"{world.down.app_id_uri}/.default"])
    assert app_token_claims(result)["roles"] == ["Reader"]
    # And with the certificate sent in the header (subject name/issuer authentication).
    credential["public_certificate"] = True  # type: ignore[assignment]
    result = world.cca(credential).acquire_token_for_client([f"{world.down.app_id_uri}/.default"])
    assert "access_token" in result, result


def test_unregistered_certificate_is_invalid_client(world: World) -> None:
    stranger = make_client_certificate("stranger")
    result = world.cca(stranger).acquire_token_for_client([f"{world.down.app_id_uri}/.default"])
    assert_entra_error(result, None, "invalid_client", 700027)


def test_v1_resource_gets_a_v1_app_token(entra: Any) -> None:
    daemon = entra.register_app("daemon", secret="d")
    legacy = entra.register_app("legacy", roles=["Writer"], access_token_version=1)
    entra.grant_consent(client=daemon, resource=legacy, roles=["Writer"])
    result = entra.confidential_client(daemon, "d").acquire_token_for_client(
        [f"{legacy.app_id_uri}/.default"])
    claims = app_token_claims(result)
    assert claims["ver"] == "1.0"
    assert claims["iss"] == entra.issuer(version=1)
    assert claims["aud"] == legacy.app_id_uri
    assert (claims["appid"], claims["appidacr"]) == (daemon.client_id, "1")
    assert "azp" not in claims


def test_scope_without_default_is_refused(world: World) -> None:
    result = world.cca().acquire_token_for_client([world.down_scope("read")])
    assert_entra_error(result, None, "invalid_scope", 1002012)


def test_public_client_cannot_use_client_credentials(world: World) -> None:
    response = post_token(world.emu, {"grant_type": "client_credentials",
                                      "client_id": world.cli.client_id,
                                      "scope": f"{world.down.app_id_uri}/.default"})
    assert_entra_error(response, 401, "invalid_client", 7000218)


# hand-made assertions ----------------------------------------------------------------------
def assertion(emu: EntraEmulator, client_id: str, cert: ClientCertificate, **changes: Any) -> str:
    now = time.time()
    claims: dict[str, Any] = {"aud": emu.token_endpoint(), "iss": client_id, "sub": client_id,
                              "jti": str(uuid.uuid4()), "iat": int(now), "nbf": int(now),
                              "exp": int(now) + 600}
    claims.update(changes)
    header = {"alg": "PS256", "typ": "JWT",
              "x5t#S256": base64.urlsafe_b64encode(bytes.fromhex(cert.thumbprint_sha256)).decode()}
    return jwt.encode(header, claims, RSAKey.import_key(cert.key_pem), algorithms=["PS256"])


def post_assertion(world: World, value: str) -> Any:
    return post_token(world.emu, {
        "grant_type": "client_credentials", "client_id": world.api.client_id,
        "scope": f"{world.down.app_id_uri}/.default", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": value})


@pytest.mark.parametrize(("changes", "code"), [
    ({"exp": int(time.time()) - 60}, 700024),
    ({"nbf": int(time.time()) + 3600}, 700024),
    ({"aud": "https://login.microsoftonline.com/common/oauth2/v2.0/token"}, 700027),
    ({"iss": "someone-else"}, 700021),
    ({"sub": "someone-else"}, 700021),
    ({"jti": None}, 90014),
])
def test_assertion_claims_are_checked(world: World, cert: ClientCertificate,
                                      changes: dict[str, Any], code: int) -> None:
    world.emu.register_certificate(world.api, cert)
    value = assertion(world.emu, world.api.client_id, cert, **changes)
    if changes.get("jti", "") is None:
        claims = claims_of(value)
        claims.pop("jti")
        value = jwt.encode(header_of(value), claims, RSAKey.import_key(cert.key_pem),
                           algorithms=["PS256"])
    assert_entra_error(post_assertion(world, value), 401, "invalid_client", code)


def test_assertion_with_a_forged_signature_is_refused(world: World,
                                                      cert: ClientCertificate) -> None:
    world.emu.register_certificate(world.api, cert)
    value = assertion(world.emu, world.api.client_id, cert)
    head, body, sig = value.split(".")
    forged = f"{head}.{body}.{sig[:-6]}AAAAAA"
    assert_entra_error(post_assertion(world, forged), 401, "invalid_client", 700027)


def test_same_assertion_may_be_reused_but_a_replayed_jti_is_refused(
        world: World, cert: ClientCertificate) -> None:
    world.emu.register_certificate(world.api, cert)
    jti = str(uuid.uuid4())
    first = assertion(world.emu, world.api.client_id, cert, jti=jti)
    assert post_assertion(world, first).status_code == 200
    assert post_assertion(world, first).status_code == 200  # MSAL reuses its assertion
    replay = assertion(world.emu, world.api.client_id, cert, jti=jti, exp=int(time.time()) + 500)
    assert_entra_error(post_assertion(world, replay), 401, "invalid_client", 700027)


def test_strict_mode_refuses_any_reuse(cert: ClientCertificate) -> None:
    with EntraEmulator(reject_assertion_reuse=True) as emu:
        api = emu.register_app("api", certificate=cert)
        down = emu.register_app("down", roles=["Reader"])
        value = assertion(emu, api.client_id, cert)
        data = {"grant_type": "client_credentials", "client_id": api.client_id,
                "scope": f"{down.app_id_uri}/.default", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": value}
        assert post_token(emu, data).status_code == 200
        body = assert_entra_error(post_token(emu, data), 401, "invalid_client", 700027)
        assert "replayed" in body["error_description"]


def test_instance_discovery_can_point_at_the_emulator(world: World) -> None:
    import msal

    app = msal.ConfidentialClientApplication(
        world.api.client_id, client_credential=world.secret, authority=world.emu.authority(),
        instance_discovery=f"{world.emu.base_url}/common/discovery/instance",
        http_client=world.emu.http_client())
    result = app.acquire_token_for_client([f"{world.down.app_id_uri}/.default"])
    assert "access_token" in result, result
    assert world.entra.calls(endpoint="discovery")[0]["path"] == "/common/discovery/instance"
