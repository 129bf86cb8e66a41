"""TLS material for the emulator: a throwaway CA, a server certificate, client certificates.

Everything here is generated in memory at start with ``cryptography`` and written to a private
temporary directory; nothing touches the system trust store. Clients trust the emulator by
pointing at :attr:`ServerTLS.ca_bundle` (see ``flask_obo.build_session``).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ClientCertificate", "ServerTLS", "make_client_certificate", "self_signed_rsa_cert"]

_VALIDITY = datetime.timedelta(days=2)
_BACKDATE = datetime.timedelta(hours=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "flask-obo Entra emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def self_signed_rsa_cert(
    key: rsa.RSAPrivateKey, common_name: str, *, days: int = 365
) -> x509.Certificate:
    """A self-signed certificate for ``key`` (used for JWKS ``x5c`` and client certificates)."""
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class ClientCertificate:
    """A client certificate for ``private_key_jwt``, in the shapes MSAL accepts.

    ``cert_pem`` is what you register (``emu.register_certificate(app, cert.cert_pem)``);
    ``msal_credential()`` is what you hand to ``msal.ConfidentialClientApplication``.
    """

    cert_pem: str
    key_pem: str
    pfx: bytes
    pfx_passphrase: str
    thumbprint_sha1: str
    thumbprint_sha256: str

    def msal_credential(self, *, sha1: bool = False, send_x5c: bool = False) -> dict[str, str]:
        """MSAL's ``client_credential`` dict for the PEM form.

        By default MSAL signs PS256 with ``x5t#S256``; ``sha1=True`` makes it RS256 with ``x5t``
        (the legacy form). ``send_x5c=True`` also puts the certificate in the JWS header
        (subject name/issuer authentication).
        """
        if sha1:
            credential = {"private_key": self.key_pem, "thumbprint": self.thumbprint_sha1}
            if send_x5c:
                credential["public_certificate"] = self.cert_pem
            return credential
        # With public_certificate MSAL computes the SHA-256 thumbprint and sends x5c.
        return {"private_key": self.key_pem, "public_certificate": self.cert_pem}

    def write_pfx(self, directory: str | os.PathLike[str]) -> str:
        """Write the PKCS#12 file into ``directory`` and return its path."""
        path = Path(directory) / f"client-{self.thumbprint_sha1[:12]}.pfx"
        path.write_bytes(self.pfx)
        return str(path)


def make_client_certificate(
    common_name: str = "flask-obo client", *, pfx_passphrase: str = "pfx-pass"
) -> ClientCertificate:
    """Generate an RSA-2048 key and a self-signed certificate for client authentication."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed_rsa_cert(key, common_name)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    pfx = pkcs12.serialize_key_and_certificates(
        common_name.encode(),
        key,
        cert,
        None,
        serialization.BestAvailableEncryption(pfx_passphrase.encode()),
    )
    return ClientCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key_pem,
        pfx=pfx,
        pfx_passphrase=pfx_passphrase,
        thumbprint_sha1=cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - x5t is SHA-1
        thumbprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


class ServerTLS:
    """A CA and a server certificate for 127.0.0.1/localhost, written to ``directory``.

    EC P-256 keys keep start-up fast. The CA bundle holds only this emulator's CA.
    """

    def __init__(self, directory: str | os.PathLike[str], hostnames: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        now = _now()
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("flask-obo Entra emulator CA")
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
        ]
        names.extend(x509.DNSName(h) for h in hostnames if h not in ("127.0.0.1", "localhost"))
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("127.0.0.1"))
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        spki = server_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(spki)
        # base64 SHA-256 of the server key's SubjectPublicKeyInfo: what Chromium's
        # --ignore-certificate-errors-spki-list takes to trust this server and nothing else.
        self.spki_sha256 = base64.b64encode(digest.finalize()).decode("ascii")
        self.ca_bundle = str(self.directory / "entra-emulator-ca.pem")
        Path(self.ca_bundle).write_text(self.ca_pem)
        self._cert_file = self.directory / "server.pem"
        self._key_file = self.directory / "server.key"
        self._cert_file.write_bytes(
            server_cert.public_bytes(serialization.Encoding.PEM)
            + ca_cert.public_bytes(serialization.Encoding.PEM)
        )
        key_bytes = server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_bytes)

    @property
    def cert_file(self) -> str:
        """The server certificate chain (PEM), for servers configured by path (Azurite's --cert)."""
        return str(self._cert_file)

    @property
    def key_file(self) -> str:
        """The server's private key (PEM, mode 0600), for servers configured by path (--key)."""
        return str(self._key_file)

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for the server side (TLS 1.2 or later)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self._cert_file), str(self._key_file))
        return ctx
