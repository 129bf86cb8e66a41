"""Entra's documented behaviour as clients nobody here wrote see it (authlib, PyJWT,
azure-identity), and the details of Entra's responses those clients rely on."""

from __future__ import annotations

import base64
import ssl
from typing import Any
from urllib.parse import quote_plus

import msal
import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from support.checks import assert_entra_error
from support.jose import claims_of
from support.world import World, post_token, session_for

from flask_obo.testing import EntraEmulator, make_client_certificate

pytestmark = pytest.mark.filterwarnings("ignore:This API has been deprecated:DeprecationWarning")
JSON_UTF8 = "application/json; charset=utf-8"


def get(emu: EntraEmulator, url: str, **kwargs: Any) -> requests.Response:
    with session_for(emu) as session:
        return session.get(url, timeout=10, **kwargs)


def app_grant(world: World, **extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": world.api.client_id,
            "client_secret": world.secret, "scope": f"{world.down.app_id_uri}/.default", **extra}


# discovery ---------------------------------------------------------------------------------
def test_discovery_has_userinfo_and_entras_metadata_headers(entra_emulator: EntraEmulator) -> None:
    emu = entra_emulator
    response = get(emu, emu.discovery_url())
    doc = response.json()
    assert doc["userinfo_endpoint"] == f"{emu.base_url}/oidc/userinfo"
    assert doc["tenant_region_scope"] == "NA"
    assert response.headers["Content-Type"] == JSON_UTF8
    assert response.headers["Cache-Control"] == "max-age=86400, private"
    assert response.headers["Access-Control-Allow-Origin"] == "*"  # MSAL.js reads it
    v1 = get(emu, emu.discovery_url(version=1)).json()
    assert v1["userinfo_endpoint"] == f"{emu.authority()}/openid/userinfo"
    keys = get(emu, emu.jwks_uri())
    assert keys.headers["Access-Control-Allow-Origin"] == "*"
    assert keys.headers["Content-Type"] == JSON_UTF8


@pytest.mark.parametrize("segment", ["common", "organizations"])
def test_multi_tenant_discovery_has_no_region(entra_emulator: EntraEmulator,
                                              segment: str) -> None:
    emu = entra_emulator
    doc = get(emu, f"{emu.base_url}/{segment}/v2.0/.well-known/openid-configuration").json()
    assert "tenant_region_scope" in doc and doc["tenant_region_scope"] is None
    assert doc["token_endpoint"] == f"{emu.base_url}/{segment}/oauth2/v2.0/token"


# userinfo ----------------------------------------------------------------------------------
def test_userinfo_answers_the_id_token_subject(world: World) -> None:
    emu = world.emu
    result = world.pca().acquire_token_by_username_password(
        world.bob.username, "bob-pw", [world.api_scope()])
    url = get(emu, emu.discovery_url()).json()["userinfo_endpoint"]
    response = get(emu, url, headers={"Authorization": f"Bearer {result['access_token']}"})
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["sub"] == result["id_token_claims"]["sub"]
    assert info["name"] == world.bob.name
    assert info["email"] == world.bob.username


def test_userinfo_refuses_app_tokens_and_garbage(world: World) -> None:
    emu = world.emu
    url = f"{emu.base_url}/oidc/userinfo"
    app_token = emu.issue_app_token(world.api, resource=world.down)
    expired = world.user_token(lifetime=-10)
    for headers in ({}, {"Authorization": "Bearer not.a.jwt"},
                    {"Authorization": f"Bearer {app_token}"},
                    {"Authorization": f"Bearer {expired}"}):
        response = get(emu, url, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


# token endpoint ------------------------------------------------------------------------------
def test_resource_parameter_is_refused_on_v2(world: World) -> None:
    response = post_token(world.emu, app_grant(world, resource=world.down.app_id_uri))
    assert_entra_error(response, 400, "invalid_request", 901002)


def test_token_responses_have_entras_headers(world: World) -> None:
    ok = post_token(world.emu, app_grant(world))
    bad = post_token(world.emu, app_grant(world, client_secret="wrong"))
    assert ok.status_code == 200 and bad.status_code == 401
    for response in (ok, bad):
        assert response.headers["Content-Type"] == JSON_UTF8
        assert response.headers["Cache-Control"] == "no-store, no-cache"
        assert response.headers["Pragma"] == "no-cache"
    body = ok.json()
    assert isinstance(body["expires_in"], int) and isinstance(body["ext_expires_in"], int)
    assert get(world.emu, bad.json()["error_uri"]).status_code == 200


def test_basic_credentials_are_form_url_decoded(entra: Any, world: World) -> None:
    """RFC 6749 2.3.1: id and secret are form-urlencoded before base64, and Entra decodes
    them, so a secret with reserved characters sent raw is refused."""
    secret = "a+b/c=d%e~f g"
    app = entra.register_app("basic-client", secret=secret)
    entra.grant_consent(client=app, resource=world.down, roles=["Reader"])
    form = {"grant_type": "client_credentials", "scope": f"{world.down.app_id_uri}/.default"}

    def basic(user: str, password: str) -> dict[str, str]:
        raw = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    encoded = post_token(world.emu, form, headers=basic(quote_plus(app.client_id),
                                                          quote_plus(secret)))
    assert encoded.status_code == 200, encoded.text
    raw = post_token(world.emu, form, headers=basic(app.client_id, secret))
    assert_entra_error(raw, 401, "invalid_client", 7000215)


# third-party clients ------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_oauth2_session_client_credentials(world: World, method: str) -> None:
    with OAuth2Session(world.api.client_id, world.secret, token_endpoint_auth_method=method,
                       scope=f"{world.down.app_id_uri}/.default") as session:
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = world.emu.ca_bundle
        token = session.fetch_token(world.emu.token_endpoint(), grant_type="client_credentials")
    assert token["token_type"] == "Bearer" and token["expires_at"] > 0
    assert claims_of(token["access_token"])["roles"] == ["Reader"]
    assert world.entra.calls("client_credentials")[-1]["client_auth"] == method


def test_pyjwt_jwks_client_verifies_emulator_tokens(world: World) -> None:
    jwt = pytest.importorskip("jwt")
    emu = world.emu
    emu.rotate_keys()
    token = emu.issue_app_token(world.api, resource=world.down)
    client = jwt.PyJWKClient(emu.jwks_uri(), cache_keys=False,
                             ssl_context=ssl.create_default_context(cafile=emu.ca_bundle))
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=world.down.client_id,
                        issuer=emu.issuer())
    assert claims["azp"] == world.api.client_id
    assert len(client.get_signing_keys()) == 2  # old and new keys both published


def test_azure_identity_credentials(world: World) -> None:
    identity = pytest.importorskip("azure.identity")
    emu = world.emu
    cert = make_client_certificate("azure-identity")
    emu.register_certificate(world.api, cert.cert_pem)
    pem = (cert.key_pem + cert.cert_pem).encode()
    options: dict[str, Any] = {"authority": emu.base_url.removeprefix("https://"),
                               "disable_instance_discovery": True,
                               "connection_verify": emu.ca_bundle}
    tid, cid = emu.tenant_id, world.api.client_id
    app_scope = f"{world.down.app_id_uri}/.default"
    secret = identity.ClientSecretCredential(tid, cid, world.secret, **options)
    assert claims_of(secret.get_token(app_scope).token)["azpacr"] == "1"
    certificate = identity.CertificateCredential(tid, cid, certificate_data=pem,
                                                 send_certificate_chain=True, **options)
    assert claims_of(certificate.get_token(app_scope).token)["azpacr"] == "2"
    obo = identity.OnBehalfOfCredential(tid, cid, client_secret=world.secret,
                                        user_assertion=world.user_token(), **options)
    claims = claims_of(obo.get_token(world.down_scope()).token)
    assert (claims["oid"], claims["scp"], claims["azp"]) == (world.bob.oid, "read", cid)


def test_client_id_is_matched_whatever_its_case(world: World) -> None:
    """Client ids are GUIDs; an app configured with an upper-case id still authenticates."""
    emu = world.emu
    cert = make_client_certificate("upper-case")
    emu.register_certificate(world.api, cert.cert_pem)
    app = msal.ConfidentialClientApplication(
        world.api.client_id.upper(), client_credential=cert.msal_credential(),
        authority=emu.authority(), instance_discovery=False, http_client=emu.http_client())
    result = app.acquire_token_for_client([f"{world.down.app_id_uri}/.default"])
    assert "access_token" in result, result
    assert claims_of(result["access_token"])["azp"] == world.api.client_id


def test_authlib_private_key_jwt_needs_a_thumbprint_header(world: World) -> None:
    """Entra finds the certificate by ``x5t``/``x5t#S256``, never by ``kid`` or a JWKS: an
    assertion with neither is refused (authlib sends only ``kid``-less RS256 by default)."""
    emu = world.emu
    cert = make_client_certificate("authlib-jwt")
    emu.register_certificate(world.api, cert.cert_pem)
    endpoint = emu.token_endpoint()
    x5t = base64.urlsafe_b64encode(bytes.fromhex(cert.thumbprint_sha1)).rstrip(b"=").decode()

    def fetch(headers: dict[str, str] | None) -> dict[str, Any]:
        with OAuth2Session(world.api.client_id, cert.key_pem,
                           token_endpoint_auth_method=PrivateKeyJWT(endpoint, headers=headers),
                           scope=f"{world.down.app_id_uri}/.default") as session:
            session.trust_env = False
            session.verify = emu.ca_bundle
            token: dict[str, Any] = session.fetch_token(endpoint, grant_type="client_credentials")
            return token

    with pytest.raises(OAuthError) as refused:
        fetch(None)
    assert refused.value.error == "invalid_client"
    assert "AADSTS700027" in str(refused.value.description)
    token = fetch({"x5t": x5t})
    assert claims_of(token["access_token"])["azpacr"] == "2"
