"""The pinned-trust session trusts OBO_CA_BUNDLE even where REQUESTS_CA_BUNDLE is set."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import certifi
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flask_obo import build_session


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    directory = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/", ca_file
    server.shutdown()
    server.server_close()


def test_env_bundle_defeats_plain_session_verify(
    https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The requests behaviour this module exists for: the environment wins over Session.verify."""
    url, ca_file = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    session = requests.Session()
    session.verify = str(ca_file)
    with pytest.raises(requests.exceptions.SSLError):
        session.get(url, timeout=5)


def test_pinned_session_trusts_its_ca_despite_env(
    https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca_file = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    session = build_session(str(ca_file))
    assert session.get(url, timeout=5).text == "ok"


def test_unpinned_session_does_not_trust_unknown_ca(
    https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with pytest.raises(requests.exceptions.SSLError):
        build_session(None).get(url, timeout=5)


def test_forked_child_does_not_reuse_parent_connections(https_server: tuple[str, Path]) -> None:
    """gunicorn --preload forks after init_app: a worker must open its own connections."""
    import os

    url, ca_file = https_server
    session = build_session(str(ca_file))
    assert session.get(url, timeout=5).text == "ok"
    adapter = session.get_adapter(url)
    assert len(adapter.poolmanager.pools) == 1  # the parent holds a pooled connection
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports how many pools it inherited, then proves the session works
        pools = len(adapter.poolmanager.pools)
        ok = session.get(url, timeout=5).text == "ok"
        os.write(write, f"{pools} {ok}".encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    report = os.read(read, 64).decode()
    os.close(read)
    assert status == 0
    assert report == "0 True"
