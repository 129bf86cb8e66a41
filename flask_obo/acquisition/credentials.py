"""The app's own credential toward the identity provider, in the form MSAL takes.

- ``OBO_CLIENT_SECRET``: a string.
- ``OBO_CLIENT_CERTIFICATE``: ``{'private_key': <path or PEM>, 'certificate': <path or PEM>}``
  or ``{'pfx': <path, bytes or base64 text>, 'password': ...}`` (base64 text: the form Key
  Vault stores a certificate with its key in); ``'password'`` also opens an encrypted PEM key;
  ``'send_x5c': True`` sends the certificate chain (subject name / issuer authentication).
- ``OBO_CLIENT_ASSERTION``: a callable returning a signed JWT, or the path of a file holding
  one, re-read when it changes (workload identity federation, e.g. AZURE_FEDERATED_TOKEN_FILE).

Everything is loaded and checked here, at init_app: an unreadable file, a wrong password or a
key that does not belong to its certificate is a ``ConfigError`` that says what to fix. Logs
name a certificate by its SHA-256 thumbprint; no secret or key is ever logged or repr'd, and an
error quotes a value only where it can be nothing but a file path (``_shown``): key material
pasted where a path was expected must not end up in a crash log.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from ..config import OboConfig
from ..errors import ConfigError, CredentialUnavailable

__all__ = ["AssertionFile", "ClientCredential", "load_credential"]

log = logging.getLogger("flask_obo")

_CERT_KEYS = frozenset({"private_key", "certificate", "pfx", "password", "send_x5c"})
# What only a file path looks like: absolute, explicitly relative, or a name with an extension
# under a directory. Base64 (key material) has no "." and a secret no path separator.
_PATH_SHAPE = re.compile(r"(?:/|\.{1,2}/|~/|[A-Za-z]:[\\/]|\\\\)\S*|\S*[\\/]\S*\.\w{1,8}")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


@dataclass(frozen=True, eq=False)
class ClientCredential:
    """A loaded credential. ``msal_credential`` is MSAL's ``client_credential`` argument."""

    kind: str  # "secret", "certificate" or "assertion"
    description: str  # safe to log: e.g. "certificate sha256=ab12..."
    msal_credential: str | dict[str, Any] = field(repr=False)
    #: SHA-256 thumbprint (hex) of a certificate credential.
    thumbprint: str | None = None
    #: secret bytes this app alone holds (the secret, or the private key in DER), from which a
    #: cache encryption key can be derived; None for an assertion credential.
    key_material: bytes | None = field(default=None, repr=False)


def load_credential(config: OboConfig) -> ClientCredential | None:
    """The configured credential, checked; None when none is configured."""
    given = [name for name, value in (("OBO_CLIENT_SECRET", config.client_secret),
                                      ("OBO_CLIENT_CERTIFICATE", config.client_certificate),
                                      ("OBO_CLIENT_ASSERTION", config.client_assertion))
             if value]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} are both set: configure exactly one credential.")
    if config.client_secret:
        return ClientCredential("secret", "client secret", config.client_secret,
                                key_material=config.client_secret.encode())
    if config.client_certificate:
        return _certificate(config.client_certificate)
    if config.client_assertion:
        return _assertion(config.client_assertion)
    return None


# certificates ------------------------------------------------------------------------------
def _certificate(spec: Mapping[str, Any]) -> ClientCredential:
    unknown = set(spec) - _CERT_KEYS
    if unknown:
        raise ConfigError(f"OBO_CLIENT_CERTIFICATE has unknown keys {sorted(unknown)}: use "
                          "private_key + certificate, or pfx (+ password); send_x5c optional.")
    password = spec.get("password")
    if password is not None and not isinstance(password, (str, bytes)):
        raise ConfigError("OBO_CLIENT_CERTIFICATE['password'] must be a string.")
    password_bytes = password.encode() if isinstance(password, str) else password
    if spec.get("pfx") is not None:
        if spec.get("private_key") or spec.get("certificate"):
            raise ConfigError("OBO_CLIENT_CERTIFICATE: give either 'pfx' or 'private_key' and "
                              "'certificate', not both.")
        key, chain = _load_pfx(spec["pfx"], password_bytes)
    elif spec.get("private_key") and spec.get("certificate"):
        key = _load_pem_key(_read("private_key", spec["private_key"]), password_bytes)
        chain = _load_pem_certs(_read("certificate", spec["certificate"]))
    else:
        raise ConfigError("OBO_CLIENT_CERTIFICATE needs 'private_key' and 'certificate' (paths or "
                          "PEM text), or 'pfx' (a path or bytes) with its 'password'.")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("OBO_CLIENT_CERTIFICATE: the private key is not an RSA key; Entra ID "
                          "client certificates must be RSA (2048 bits or more).")
    leaf = _matching_cert(key, chain)
    now = datetime.datetime.now(datetime.UTC)
    sha256 = leaf.fingerprint(hashes.SHA256()).hex()
    if leaf.not_valid_after_utc <= now:
        raise ConfigError(f"OBO_CLIENT_CERTIFICATE: the certificate sha256={sha256} expired on "
                          f"{leaf.not_valid_after_utc:%Y-%m-%d}: renew it and upload the new one "
                          "to the app registration.")
    if leaf.not_valid_after_utc - now < datetime.timedelta(days=30):
        log.warning("flask-obo: client certificate sha256=%s expires on %s", sha256,
                    f"{leaf.not_valid_after_utc:%Y-%m-%d}")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    credential: dict[str, Any] = {"private_key": key_pem}
    if spec.get("send_x5c"):
        # MSAL signs with PS256 and the SHA-256 thumbprint, and sends the chain as x5c.
        ordered = [leaf, *(c for c in chain if c is not leaf)]
        credential["public_certificate"] = "".join(
            c.public_bytes(serialization.Encoding.PEM).decode() for c in ordered)
    else:
        # Without a certificate to send, MSAL identifies the key by its SHA-1 thumbprint (x5t).
        credential["thumbprint"] = leaf.fingerprint(hashes.SHA1()).hex()  # noqa: S303
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    log.info("flask-obo: client certificate sha256=%s (valid until %s)%s", sha256,
             f"{leaf.not_valid_after_utc:%Y-%m-%d}",
             ", sending x5c" if spec.get("send_x5c") else "")
    return ClientCredential("certificate", f"certificate sha256={sha256}", credential,
                            thumbprint=sha256, key_material=der)


def _shown(value: str) -> str:
    """``value`` quoted where it can only be a file path, else a stand-in: a value that is not a
    path (key material, a secret in the wrong setting) may be secret."""
    if len(value) <= 512 and _PATH_SHAPE.fullmatch(value):
        return repr(value)
    return "the value given (not shown: it is no file path, and may be secret)"


def _base64_der(value: str | bytes) -> bytes | None:
    """The DER bytes of base64 text (a PFX as Key Vault stores it, or PEM without its armour),
    or None for anything else (a path never decodes to a DER sequence: '/' is 0xFC...)."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    compact = "".join(text.split())
    if len(compact) < 64 or not _BASE64_TEXT.fullmatch(compact):
        return None
    standard = compact.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if raw[:1] == b"\x30" else None  # an ASN.1 SEQUENCE


def _read(name: str, value: Any) -> bytes:
    """PEM given inline, or read from a path."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    if isinstance(value, str) and _base64_der(value) is not None:
        raise ConfigError(f"OBO_CLIENT_CERTIFICATE['{name}'] holds base64 without its PEM "
                          "armour: give the PEM text with its -----BEGIN ...----- and "
                          "-----END ...----- lines, or the path of the PEM file; a certificate "
                          "with its key as base64 (as Key Vault stores it) goes in 'pfx'.")
    return _read_path(name, value)


def _load_pem_key(data: bytes, password: bytes | None) -> Any:
    try:
        return serialization.load_pem_private_key(data, password)
    except TypeError:
        if password is None:
            raise ConfigError("OBO_CLIENT_CERTIFICATE: the private key is encrypted: add its "
                              "'password'.") from None
        raise ConfigError("OBO_CLIENT_CERTIFICATE: a 'password' was given but the private key "
                          "is not encrypted: remove the password.") from None
    except ValueError:
        hint = ("the password is wrong, or " if password else "")
        raise ConfigError(f"OBO_CLIENT_CERTIFICATE['private_key'] could not be loaded: {hint}it "
                          "is not a PEM private key (-----BEGIN PRIVATE KEY-----).") from None


def _load_pem_certs(data: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ConfigError("OBO_CLIENT_CERTIFICATE['certificate'] holds no PEM certificate "
                          "(-----BEGIN CERTIFICATE-----).")
    return certs


def _load_pfx(value: Any, password: bytes | None) -> tuple[Any, list[x509.Certificate]]:
    if isinstance(value, bytes):  # DER, or the base64 text of it
        data = value if value[:1] == b"\x30" else (_base64_der(value) or value)
    else:
        data = (_base64_der(value) if isinstance(value, str) else None) or _read_path("pfx",
                                                                                    value)
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        raise ConfigError("OBO_CLIENT_CERTIFICATE['pfx'] could not be opened: the 'password' is "
                          "wrong or missing, or it is not a PKCS#12 (.pfx) file or its base64 "
                          "text.") from None
    if key is None or cert is None:
        raise ConfigError("OBO_CLIENT_CERTIFICATE['pfx'] must hold both the private key and its "
                          "certificate: export it with the private key included.")
    return key, [cert, *extra]


def _read_path(name: str, value: Any) -> bytes:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigError(f"OBO_CLIENT_CERTIFICATE['{name}'] must be a path, PEM text or bytes.")
    try:
        with open(value, "rb") as handle:
            return handle.read()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the "path"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a path"
        raise ConfigError(f"OBO_CLIENT_CERTIFICATE['{name}']: cannot read {_shown(value)} "
                          f"({reason}): check the path and the file's permissions.") from None


def _matching_cert(key: rsa.RSAPrivateKey, chain: list[x509.Certificate]) -> x509.Certificate:
    wanted = key.public_key().public_numbers()
    for cert in chain:
        public = cert.public_key()
        if isinstance(public, rsa.RSAPublicKey) and public.public_numbers() == wanted:
            return cert
    thumbs = ", ".join(c.fingerprint(hashes.SHA256()).hex()[:16] for c in chain)
    raise ConfigError("OBO_CLIENT_CERTIFICATE: the private key does not belong to the "
                      f"certificate (sha256 {thumbs}...): pair the key with its own certificate.")


# assertions --------------------------------------------------------------------------------
def _assertion(value: Callable[[], str] | str) -> ClientCredential:
    if callable(value):
        name = getattr(value, "__qualname__", type(value).__name__)
        return ClientCredential("assertion", f"client assertion from {name}()",
                                {"client_assertion": _CallableAssertion(value)})
    if value.count(".") == 2 and value.startswith("eyJ"):
        raise ConfigError("OBO_CLIENT_ASSERTION looks like a JWT itself: give the path of the "
                          "file that holds it (it is re-read as it is renewed), or a callable.")
    source = AssertionFile(value)
    try:
        source()  # read it now: a missing or empty file fails at start
    except CredentialUnavailable as exc:
        raise ConfigError(f"OBO_CLIENT_ASSERTION: {exc}: check the path and that the token "
                          "file is mounted.") from None
    return ClientCredential("assertion", f"client assertion from file {value}",
                            {"client_assertion": source})


class _CallableAssertion:
    """Calls the app's callable and checks that it returned something usable."""

    def __init__(self, source: Callable[[], str | bytes]) -> None:
        self._source = source

    def __call__(self) -> str:
        try:
            value = self._source()
        except Exception as exc:
            raise CredentialUnavailable(
                f"the OBO_CLIENT_ASSERTION callable raised {type(exc).__name__}") from None
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str) or value.strip().count(".") != 2:
            raise CredentialUnavailable("the OBO_CLIENT_ASSERTION callable did not return a JWT")
        return value.strip()

    def __repr__(self) -> str:
        return "<client assertion callable>"


class AssertionFile:
    """A signed assertion in a file (a projected service-account token), re-read on change."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._value = ""

    def __call__(self) -> str:
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                with self._lock, open(self.path, encoding="ascii") as handle:
                    value = handle.read().strip()
                if value.count(".") != 2:
                    raise ValueError("not a JWT")
                self._value, self._stamp = value, stamp
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            if not self._value:
                raise CredentialUnavailable(f"cannot read a signed JWT from {_shown(self.path)} "
                                            f"({type(exc).__name__})") from None
            # Mid-rotation (the file briefly missing or partly written): keep the last one.
            log.warning("flask-obo: could not re-read %s (%s); using the previous assertion",
                        self.path, type(exc).__name__)
        return self._value

    def __repr__(self) -> str:
        return f"<client assertion file {self.path!r}>"
