"""Discovery, keys, TLS trust, the user realm and key rotation."""

from __future__ import annotations

import base64

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from joserfc.jwk import RSAKey
from support.checks import assert_entra_error
from support.jose import b64url, claims_of, header_of
from support.world import session_for

from flask_obo.testing import EntraEmulator
from flask_obo.testing.pytest_plugin import EntraTestHelper

V2_FIELDS = {
    "issuer", "token_endpoint", "jwks_uri", "authorization_endpoint",
    "device_authorization_endpoint", "end_session_endpoint", "response_types_supported",
    "response_modes_supported", "subject_types_supported",
    "id_token_signing_alg_values_supported", "scopes_supported", "claims_supported",
    "token_endpoint_auth_methods_supported", "tenant_region_scope", "cloud_instance_name",
    "msgraph_host", "http_logout_supported", "frontchannel_logout_supported",
    "request_uri_parameter_supported", "kerberos_endpoint",
}


def get(emu: EntraEmulator, url: str) -> requests.Response:
    with session_for(emu) as session:
        return session.get(url, timeout=10)


def test_v2_discovery_has_entras_fields(entra_emulator: EntraEmulator) -> None:
    emu = entra_emulator
    doc = get(emu, emu.discovery_url()).json()
    assert V2_FIELDS <= set(doc)
    root = f"{emu.base_url}/{emu.tenant_id}"
    assert doc["issuer"] == f"{root}/v2.0"
    assert doc["token_endpoint"] == f"{root}/oauth2/v2.0/token"
    assert doc["jwks_uri"] == f"{root}/discovery/v2.0/keys"
    assert doc["authorization_endpoint"] == f"{root}/oauth2/v2.0/authorize"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["subject_types_supported"] == ["pairwise"]
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]


def test_v1_discovery_uses_the_sts_issuer_shape(entra_emulator: EntraEmulator) -> None:
    emu = entra_emulator
    doc = get(emu, emu.discovery_url(version=1)).json()
    assert doc["issuer"] == f"https://sts.windows.net/{emu.tenant_id}/" == emu.issuer(version=1)
    assert doc["token_endpoint"].endswith(f"/{emu.tenant_id}/oauth2/token")
    assert doc["jwks_uri"] == emu.jwks_uri(version=1)


@pytest.mark.parametrize("segment", ["common", "organizations"])
def test_multi_tenant_discovery_has_tenantid_placeholder(entra_emulator: EntraEmulator,
                                                          segment: str) -> None:
    emu = entra_emulator
    doc = get(emu, emu.discovery_url(segment)).json()
    assert doc["issuer"] == f"{emu.base_url}/{{tenantid}}/v2.0"
    assert doc["token_endpoint"] == f"{emu.base_url}/{segment}/oauth2/v2.0/token"
    v1 = get(emu, emu.discovery_url(segment, version=1)).json()
    assert v1["issuer"] == "https://sts.windows.net/{tenantid}/"


def test_domain_name_resolves_to_the_tenant_guid(entra_emulator: EntraEmulator) -> None:
    emu = entra_emulator
    doc = get(emu, f"{emu.base_url}/contoso.test/v2.0/.well-known/openid-configuration").json()
    assert doc["issuer"] == emu.issuer()
    assert emu.tenant_id in doc["token_endpoint"]


def test_unknown_tenant_is_refused_in_entras_shape(entra_emulator: EntraEmulator) -> None:
    emu = entra_emulator
    response = get(emu, f"{emu.base_url}/no-such-tenant/v2.0/.well-known/openid-configuration")
    assert_entra_error(response, 400, "invalid_tenant", 90002)
    assert get(emu, f"{emu.base_url}/consumers/discovery/v2.0/keys").status_code == 400


def test_jwks_publishes_entra_key_fields_and_a_matching_certificate(
        entra_emulator: EntraEmulator) -> None:
    emu = entra_emulator
    keys = get(emu, emu.jwks_uri()).json()["keys"]
    assert keys and keys == emu.jwks()["keys"]
    for key in keys:
        assert {"kty", "use", "kid", "x5t", "n", "e", "x5c", "issuer"} <= set(key)
        assert (key["kty"], key["use"], key["issuer"]) == ("RSA", "sig", emu.issuer())
        cert = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
        assert key["x5t"] == key["kid"] == b64url(cert.fingerprint(hashes.SHA1()))
        numbers = RSAKey.import_key(cert.public_key()).as_dict()  # type: ignore[arg-type]
        assert (numbers["n"], numbers["e"]) == (key["n"], key["e"])
    v1_keys = get(emu, emu.jwks_uri(version=1)).json()["keys"]
    assert [k["kid"] for k in v1_keys] == [k["kid"] for k in keys]
    assert all("issuer" not in k for k in v1_keys)


def test_jwks_fetches_are_counted(entra: EntraTestHelper,
                                  entra_emulator: EntraEmulator) -> None:
    emu = entra_emulator
    before = emu.call_count("jwks")
    for _ in range(3):
        get(emu, emu.jwks_uri())
    assert emu.call_count("jwks") == before + 3
    assert len(entra.calls(endpoint="jwks")) == 3


def test_trust_is_pinned_even_with_requests_ca_bundle(entra_emulator: EntraEmulator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    emu = entra_emulator
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert get(emu, emu.discovery_url()).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(emu.discovery_url(), timeout=10)  # the system store knows nothing of it


def test_userrealm_answers_managed_for_known_domains(entra_emulator: EntraEmulator) -> None:
    emu = entra_emulator
    known = get(emu, f"{emu.base_url}/common/userrealm/someone@contoso.test?api-version=1.0")
    assert known.json()["account_type"] == "Managed"
    unknown = get(emu, f"{emu.base_url}/common/userrealm/x@elsewhere.example?api-version=1.0")
    assert unknown.json()["account_type"] == "Unknown"


def test_key_rotation_publishes_both_keys_then_retires_the_old() -> None:
    with EntraEmulator() as emu:
        app = emu.register_app("api", scopes=["access_as_user"])
        user = emu.add_user("carol", password="pw")
        old_token = emu.issue_user_token(user, resource=app)
        old_kid = header_of(old_token)["kid"]
        new_kid = emu.rotate_keys()
        assert new_kid != old_kid == header_of(old_token)["x5t"]
        published = [k["kid"] for k in get(emu, emu.jwks_uri()).json()["keys"]]
        assert published == [new_kid, old_kid]
        new_token = emu.issue_user_token(user, resource=app)
        assert header_of(new_token)["kid"] == new_kid == emu.signing_kid
        assert emu.retire_old_keys() == [old_kid]
        assert [k["kid"] for k in get(emu, emu.jwks_uri()).json()["keys"]] == [new_kid]
        assert claims_of(new_token)["aud"] == app.client_id


def test_a_busy_port_raises_oserror(entra_emulator: EntraEmulator) -> None:
    with pytest.raises(OSError):
        EntraEmulator(port=entra_emulator.port)
