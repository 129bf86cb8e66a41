"""Certificate material in every form it is stored in, and never in an error message.

Key Vault keeps a certificate with its key as a base64 PKCS#12 (PFX) secret: that text is a
credential form of its own, not a file path. A value that is neither a readable path nor a
form flask-obo takes (a key without its PEM armour, a secret in the wrong key) is refused at
init_app in words that say what to fix, without quoting the value: it may be key material,
and a startup error ends up in crash logs.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from flask import Flask
from support.apps import MakeMiddle, obo_config
from support.checks import leaked_fragment

from flask_obo import FlaskOBO
from flask_obo.errors import ConfigError
from flask_obo.testing import ClientCertificate, make_client_certificate
from flask_obo.testing.pytest_plugin import EntraTestHelper

SECRET_LIKE = "Xq48Q~k2vJ0bqH7uYyD1fW9cN3sT6pL5mR8eZ0aB"  # the shape of an Entra client secret


@pytest.fixture(scope="module")
def cert() -> ClientCertificate:
    return make_client_certificate("flask-obo certificate inputs")


def _pfx(cert: ClientCertificate, password: bytes | None) -> bytes:
    key = serialization.load_pem_private_key(cert.key_pem.encode(), None)
    certificate = x509.load_pem_x509_certificate(cert.cert_pem.encode())
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(b"app", key, certificate,  # type: ignore[arg-type]
                                                 None, encryption)


def _refused(entra: EntraTestHelper, **config: Any) -> str:
    app = Flask("certificate-inputs")
    app.config.update(obo_config(entra, entra.register_app("api"), **config))
    with pytest.raises(ConfigError) as raised:
        FlaskOBO(app)
    return str(raised.value)


def _assert_not_quoted(message: str, value: str) -> None:
    assert leaked_fragment(value, message) is None, f"the error quotes the value: {message}"


@pytest.mark.parametrize("password", [None, "pfx-pass"])
def test_a_base64_pfx_from_key_vault_is_a_credential(make_middle: MakeMiddle,
                                                     entra: EntraTestHelper,
                                                     cert: ClientCertificate,
                                                     password: str | None) -> None:
    content = base64.b64encode(_pfx(cert, password.encode() if password else None)).decode()
    spec: dict[str, Any] = {"pfx": content}
    if password:
        spec["password"] = password
    api = entra.register_app("middle", certificate=cert, scopes=["access_as_user"])
    middle = make_middle(api=api, secret=None, OBO_CLIENT_CERTIFICATE=spec)
    alice = entra.add_user("alice")
    answer = middle.get("/profile", middle.token_for(alice))
    assert answer.status_code == 200, answer.get_json()
    assert middle.obo_calls()[0]["client_auth"] == "private_key_jwt"
    assert middle.acquirer.credential.thumbprint == cert.thumbprint_sha256


def test_a_base64_pfx_with_the_wrong_password_is_refused_unquoted(entra: EntraTestHelper,
                                                                  cert: ClientCertificate) -> None:
    content = base64.b64encode(_pfx(cert, b"right-pass")).decode()
    message = _refused(entra, OBO_CLIENT_CERTIFICATE={"pfx": content, "password": "Wr0ng-pass"})
    assert "password" in message
    _assert_not_quoted(message, content)
    assert "Wr0ng-pass" not in message


def test_a_key_without_its_pem_armour_is_not_taken_for_a_path(entra: EntraTestHelper,
                                                              cert: ClientCertificate) -> None:
    body = "".join(cert.key_pem.strip().splitlines()[1:-1])  # base64 DER, armour stripped
    for value in (body, "\n".join(cert.key_pem.strip().splitlines()[1:-1])):
        message = _refused(entra, OBO_CLIENT_CERTIFICATE={"private_key": value,
                                                          "certificate": cert.cert_pem})
        assert "PEM" in message and "cannot read" not in message
        _assert_not_quoted(message, body)


@pytest.mark.parametrize(("setting", "value"), [
    ("OBO_CLIENT_CERTIFICATE", {"pfx": SECRET_LIKE}),
    ("OBO_CLIENT_CERTIFICATE", {"private_key": SECRET_LIKE, "certificate": "cert.pem"}),
    ("OBO_CLIENT_ASSERTION", SECRET_LIKE),
])
def test_a_secret_in_the_wrong_setting_is_never_quoted(entra: EntraTestHelper, setting: str,
                                                       value: Any) -> None:
    message = _refused(entra, **{setting: value})
    assert SECRET_LIKE[:12] not in message and SECRET_LIKE[-12:] not in message


@pytest.mark.parametrize("path", ["/nonexistent/dir/client.pfx", "certs/missing-client.pfx"])
def test_a_missing_file_is_named_by_its_path(entra: EntraTestHelper, path: str) -> None:
    message = _refused(entra, OBO_CLIENT_CERTIFICATE={"pfx": path, "password": "p"})
    assert path in message and "cannot read" in message


def test_a_truncated_base64_pfx_is_refused_unquoted(entra: EntraTestHelper,
                                                   cert: ClientCertificate) -> None:
    content = base64.b64encode(_pfx(cert, None)).decode()
    truncated = content[: len(content) // 2 // 4 * 4]
    message = _refused(entra, OBO_CLIENT_CERTIFICATE={"pfx": truncated})
    assert "PKCS#12" in message
    _assert_not_quoted(message, truncated)
