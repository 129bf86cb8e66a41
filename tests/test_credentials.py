"""The app's own credential: certificates (PEM, PFX, with x5c), client assertions (a callable, a
file re-read when it changes), and every unusable credential refused at init_app in words that
say what to fix, without echoing a secret. ``flask obo check`` proves the credential works.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from flask import Flask
from support.apps import MakeMiddle
from support.jose import b64url

from flask_obo.acquisition.credentials import load_credential
from flask_obo.errors import ConfigError
from flask_obo.extension import FlaskOBO
from flask_obo.testing import (
    ClientCertificate,
    DownstreamStandIn,
    fingerprint,
    make_client_certificate,
)


@pytest.fixture(scope="module")
def cert() -> ClientCertificate:
    return make_client_certificate("flask-obo tests")


@pytest.fixture
def cert_files(cert: ClientCertificate, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "key.pem").write_text(cert.key_pem)
    (tmp_path / "cert.pem").write_text(cert.cert_pem)
    return {"private_key": str(tmp_path / "key.pem"), "certificate": str(tmp_path / "cert.pem"),
            "pfx": cert.write_pfx(tmp_path)}


def _cert_middle(make_middle: MakeMiddle, entra: Any, cert: ClientCertificate,
                 credential: Any, *, key: str = "OBO_CLIENT_CERTIFICATE") -> Any:
    api = entra.register_app("middle", certificate=cert, scopes=["access_as_user"])
    return make_middle(api=api, secret=None, **{key: credential})


def _assert_obo_works(middle: Any, entra: Any) -> None:
    alice = entra.add_user("alice")
    answer = middle.get("/profile", middle.token_for(alice))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["downstream"]["oid"] == alice.oid
    calls = middle.obo_calls()
    assert len(calls) == 1
    assert calls[0]["client_auth"] == "private_key_jwt"


@pytest.mark.parametrize("form", ["pem-paths", "pem-text-x5c", "pfx-path", "pfx-bytes"])
def test_certificate_credentials_acquire_tokens(make_middle: MakeMiddle, entra: Any,
                                                cert: ClientCertificate,
                                                cert_files: dict[str, str], form: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    credential: dict[str, Any] = {
        "pem-paths": {"private_key": cert_files["private_key"],
                      "certificate": cert_files["certificate"]},
        "pem-text-x5c": {"private_key": cert.key_pem, "certificate": cert.cert_pem,
                         "send_x5c": True},
        "pfx-path": {"pfx": cert_files["pfx"], "password": cert.pfx_passphrase},
        "pfx-bytes": {"pfx": cert.pfx, "password": cert.pfx_passphrase},
    }[form]
    with caplog.at_level(logging.INFO, logger="flask_obo"):
        middle = _cert_middle(make_middle, entra, cert, credential)
    _assert_obo_works(middle, entra)
    assert cert.thumbprint_sha256 in caplog.text  # logged by thumbprint...
    assert "PRIVATE KEY" not in caplog.text  # ...never by key
    assert "PRIVATE KEY" not in repr(middle.acquirer.credential)


def test_encrypted_pem_key_with_its_password(make_middle: MakeMiddle, entra: Any,
                                             cert: ClientCertificate) -> None:
    key = serialization.load_pem_private_key(cert.key_pem.encode(), None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"k3y-pass")).decode()
    middle = _cert_middle(make_middle, entra, cert, {
        "private_key": encrypted, "certificate": cert.cert_pem, "password": "k3y-pass"})
    _assert_obo_works(middle, entra)


def _signed_assertion(cert: ClientCertificate, client_id: str, audience: str) -> str:
    now = int(time.time())
    return jwt.encode(
        {"aud": audience, "iss": client_id, "sub": client_id, "jti": str(uuid.uuid4()),
         "iat": now, "nbf": now, "exp": now + 600},
        cert.key_pem, algorithm="RS256", headers={"x5t": b64url(bytes.fromhex(
            cert.thumbprint_sha1))})


def test_client_assertion_callable(make_middle: MakeMiddle, entra: Any,
                                   cert: ClientCertificate) -> None:
    api = entra.register_app("middle", certificate=cert, scopes=["access_as_user"])
    made: list[str] = []

    def federated_token() -> str:
        made.append(_signed_assertion(cert, api.client_id, entra.token_endpoint()))
        return made[-1]

    middle = make_middle(api=api, secret=None, OBO_CLIENT_ASSERTION=federated_token)
    _assert_obo_works(middle, entra)
    assert len(made) == 1
    assert middle.obo_calls()[0]["params"]["client_assertion"] == fingerprint(made[0])


def test_client_assertion_file_is_reread_when_it_changes(make_middle: MakeMiddle, entra: Any,
                                                          cert: ClientCertificate,
                                                          tmp_path: Path) -> None:
    api = entra.register_app("middle", certificate=cert, scopes=["access_as_user"])
    path = tmp_path / "azure-identity-token"
    first = _signed_assertion(cert, api.client_id, entra.token_endpoint())
    path.write_text(first + "\n")
    middle = make_middle(api=api, secret=None, OBO_CLIENT_ASSERTION=str(path))
    alice, bob = entra.add_user("alice"), entra.add_user("bob")
    assert middle.get("/profile", middle.token_for(alice)).status_code == 200

    second = _signed_assertion(cert, api.client_id, entra.token_endpoint())
    path.write_text(second)  # the kubelet rotated the projected token
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert middle.get("/profile", middle.token_for(bob)).status_code == 200
    used = [c["params"]["client_assertion"] for c in middle.obo_calls()]
    assert used == [fingerprint(first), fingerprint(second)]


def test_wrong_certificate_is_502_and_check_says_so(make_middle: MakeMiddle, entra: Any,
                                                    cert: ClientCertificate) -> None:
    other = make_client_certificate("not registered")
    api = entra.register_app("middle", certificate=cert, scopes=["access_as_user"])
    middle = make_middle(api=api, secret=None, OBO_CLIENT_CERTIFICATE={
        "private_key": other.key_pem, "certificate": other.cert_pem})
    answer = middle.get("/profile", middle.token_for(entra.add_user("alice")))
    assert answer.status_code == 502
    assert answer.get_json()["reason"] == "invalid_client"
    result = middle.app.test_cli_runner().invoke(args=["obo", "check"])
    assert result.exit_code == 1
    assert "[FAIL] credential" in result.output
    assert other.thumbprint_sha256 in result.output


def test_check_proves_a_working_credential(make_middle: MakeMiddle, entra: Any,
                                           downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    result = middle.app.test_cli_runner().invoke(args=["obo", "check"])
    assert "[ok] credential: client secret: app token for" in result.output, result.output
    assert f"{downstream.registration.app_id_uri}/.default" in result.output
    assert "s3cret" not in result.output
    assert len(entra.calls("client_credentials")) == 1


# refused at init_app ------------------------------------------------------------------------
def _expired_certificate() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=30))
                   .not_valid_after(now - datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


def _ec_certificate() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=9))
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


def _pfx_without_key(cert: ClientCertificate) -> bytes:
    certificate = x509.load_pem_x509_certificate(cert.cert_pem.encode())
    return pkcs12.serialize_key_and_certificates(b"no key", None, certificate, None,
                                                 serialization.NoEncryption())


BAD = {
    "unreadable-certificate": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {
        "private_key": f["private_key"], "certificate": "/nonexistent/cert.pem"}},
        "cannot read '/nonexistent/cert.pem'"),
    "wrong-pfx-password": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {
        "pfx": f["pfx"], "password": "Wr0ng-Pa55word"}}, "password"),
    "pfx-without-password": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {"pfx": f["pfx"]}},
                             "password"),
    "pfx-without-key": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {"pfx": _pfx_without_key(c)}},
                        "private key"),
    "key-not-matching": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {
        "private_key": make_client_certificate("other").key_pem,
        "certificate": c.cert_pem}}, "does not belong to the certificate"),
    "encrypted-key-no-password": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {
        "private_key": serialization.load_pem_private_key(c.key_pem.encode(), None)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                       serialization.BestAvailableEncryption(b"Secr3t-Pa55")).decode(),
        "certificate": c.cert_pem}}, "encrypted"),
    "not-a-key": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {
        "private_key": c.cert_pem, "certificate": c.cert_pem}}, "PEM private key"),
    "not-a-certificate": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {
        "private_key": c.key_pem, "certificate": c.key_pem}}, "no PEM certificate"),
    "expired": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": dict(zip(
        ("private_key", "certificate"), _expired_certificate()))}, "expired"),
    "ec-key": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": dict(zip(
        ("private_key", "certificate"), _ec_certificate()))}, "RSA"),
    "unknown-keys": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {
        "private_key": c.key_pem, "certificate": c.cert_pem, "passphrase": "x"}},
        "unknown keys"),
    "incomplete": (lambda c, f: {"OBO_CLIENT_CERTIFICATE": {"private_key": c.key_pem}},
                   "needs 'private_key' and 'certificate'"),
    "two-credentials": (lambda c, f: {"OBO_CLIENT_SECRET": "Secr3t-Pa55",
                                      "OBO_CLIENT_CERTIFICATE": {"pfx": f["pfx"]}},
                        "exactly one credential"),
    "assertion-file-missing": (lambda c, f: {"OBO_CLIENT_ASSERTION": "/nonexistent/token"},
                               "/nonexistent/token"),
    "assertion-literal-jwt": (lambda c, f: {"OBO_CLIENT_ASSERTION": "eyJhbGciOi.eyJzdWIi.c2ln"},
                              "path of the file"),
    "reserved-scope": (lambda c, f: {"OBO_CLIENT_SECRET": "Secr3t-Pa55", "OBO_DOWNSTREAM_APIS": {
        "down": {"scopes": ["api://x/read", "offline_access"]}}}, "offline_access"),
    "downstream-without-credential": (lambda c, f: {"OBO_DOWNSTREAM_APIS": {
        "down": {"scopes": ["api://x/read"]}}}, "no credential"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unusable_credentials_fail_at_init_app(case: str, cert: ClientCertificate,
                                               cert_files: dict[str, str], entra: Any) -> None:
    make_config, expected = BAD[case]
    app = Flask("bad-credential")
    app.config.update(OBO_AUTHORITY=entra.authority(), OBO_CLIENT_ID=str(uuid.uuid4()),
                      OBO_CA_BUNDLE=entra.ca_bundle, **make_config(cert, cert_files))
    with pytest.raises(ConfigError) as raised:
        FlaskOBO(app)
    message = str(raised.value)
    assert expected in message
    key_body = cert.key_pem.splitlines()[1][:32]
    for secret in ("Wr0ng-Pa55word", "Secr3t-Pa55", key_body, "ENCRYPTED PRIVATE"):
        assert secret not in message
    assert "obo" not in app.extensions  # nothing half-registered


def test_credential_repr_shows_no_secret() -> None:
    from flask_obo.config import OboConfig

    config = OboConfig.from_mapping({
        "OBO_AUTHORITY": "https://login.microsoftonline.com/" + str(uuid.uuid4()),
        "OBO_CLIENT_ID": str(uuid.uuid4()), "OBO_CLIENT_SECRET": "Secr3t-Pa55"})
    credential = load_credential(config)
    assert credential is not None
    assert "Secr3t-Pa55" not in repr(credential)
    assert credential.description == "client secret"
