"""Client authentication at the token endpoint: secrets (post or basic) and certificates.

A certificate assertion (``private_key_jwt``) is checked the way Entra documents it: PS256 with
``x5t#S256`` or RS256 with ``x5t``, the signature against a certificate registered on the app,
``aud`` the token endpoint, ``iss`` = ``sub`` = client id, ``exp``/``nbf``, and ``jti``.

Assertions carry the certificate chain in the header when MSAL is asked to send ``x5c``; that
header is far over joserfc's default 512-byte limit, so this check (and only this one) uses a
registry allowing 16 KiB headers.

Replay: Entra accepts the *same* assertion again until it expires, and every MSAL relies on it
(MSAL Python reuses its assertion for about nine minutes). So by default a ``jti`` presented
again in the *identical* assertion is accepted, while a ``jti`` seen in a *different* assertion
is refused as a replay. ``reject_assertion_reuse=True`` refuses any second use of a ``jti``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from .claims import ACR_CERTIFICATE, ACR_PUBLIC, ACR_SECRET
from .directory import App, Directory
from .errors import EntraError
from .tokens import lenient_registry

__all__ = ["ASSERTION_TYPE_JWT", "ClientAuthenticator", "ClientIdentity"]

ASSERTION_TYPE_JWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_CLOCK_SKEW = 300
_ASSERTION_ALGS = ("PS256", "RS256")


@dataclass(frozen=True)
class ClientIdentity:
    """Who called: the app, how it proved it (``method``) and the matching ``appidacr``."""

    app: App
    method: str  # "none" | "client_secret_post" | "client_secret_basic" | "private_key_jwt"
    acr: str

    @property
    def confidential(self) -> bool:
        return self.method != "none"


def _invalid_client(code: int, message: str) -> EntraError:
    return EntraError("invalid_client", code, message)


def _app_not_found(client_id: str, tenant: str) -> EntraError:
    return EntraError(
        "unauthorized_client", 700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. "
        "This can happen if the application has not been installed by the administrator of the "
        "tenant or consented to by any user in the tenant. You may have sent your "
        "authentication request to the wrong tenant.",
    )


def _parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise EntraError("invalid_request", 9002313,
                         "Invalid request. The Authorization header is malformed.") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise EntraError("invalid_request", 9002313,
                         "Invalid request. The Authorization header is malformed.")
    return unquote_plus(client_id), unquote_plus(secret)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


class ClientAuthenticator:
    """Authenticates the caller of the token endpoint."""

    def __init__(
        self,
        directory: Directory,
        audiences: Callable[[str, str], set[str]],
        *,
        reject_assertion_reuse: bool = False,
    ) -> None:
        self._directory = directory
        self._audiences = audiences  # (path tenant, tenant id) -> accepted aud values
        self.reject_assertion_reuse = reject_assertion_reuse
        self._registry = lenient_registry(max_header=16384)
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, float]] = {}  # jti -> (assertion sha256, exp)

    def authenticate(
        self,
        form: Mapping[str, str],
        authorization: str | None,
        *,
        path_tenant: str,
        tenant_id: str | None,
        allow_public: bool,
    ) -> ClientIdentity:
        """Identify and authenticate the client; raise Entra's error when it fails."""
        basic = _parse_basic(authorization)
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        assertion = form.get("client_assertion")
        if basic is not None:
            if client_id and client_id.lower() != basic[0].lower():
                raise EntraError("invalid_request", 9002313, "Invalid request. The client_id "
                                 "in the body does not match the Authorization header.")
            if secret is not None:
                raise EntraError("invalid_request", 9002313, "Invalid request. The client "
                                 "secret was sent both in the body and in the header.")
            client_id, secret = basic
        if not client_id and assertion:
            client_id = self._unverified_subject(assertion)
        if not client_id:
            raise EntraError("invalid_request", 900144,
                             "The request body must contain the following parameter: 'client_id'.")
        app = self._directory.app(client_id)
        where = tenant_id or path_tenant
        if app is None or (tenant_id and not self._directory.app_visible_in(app, tenant_id)):
            raise _app_not_found(client_id, where)
        if secret is not None and assertion is not None:
            raise EntraError("invalid_request", 9002313, "Invalid request. Present either "
                             "'client_secret' or 'client_assertion', not both.")
        if (secret is not None or assertion is not None) and app.is_public_client:
            raise _invalid_client(700025, "Client is public so neither 'client_assertion' nor "
                                  "'client_secret' should be presented.")
        if secret is not None:
            if not app.check_secret(secret):
                raise _invalid_client(
                    7000215, "Invalid client secret provided. Ensure the secret being sent in "
                    "the request is the client secret value, not the client secret ID, for a "
                    f"secret added to app '{app.client_id}'.")
            method = "client_secret_basic" if basic is not None else "client_secret_post"
            return ClientIdentity(app, method, ACR_SECRET)
        if assertion is not None:
            if form.get("client_assertion_type") != ASSERTION_TYPE_JWT:
                raise EntraError("invalid_request", 9002313, "Invalid request. "
                                 f"'client_assertion_type' must be '{ASSERTION_TYPE_JWT}'.")
            self._verify_assertion(app, assertion, path_tenant, tenant_id or app.tenant_id)
            return ClientIdentity(app, "private_key_jwt", ACR_CERTIFICATE)
        if allow_public and app.is_public_client:
            return ClientIdentity(app, "none", ACR_PUBLIC)
        raise _invalid_client(7000218, "The request body must contain the following parameter: "
                              "'client_assertion' or 'client_secret'.")

    def _unverified_subject(self, assertion: str) -> str | None:
        """The assertion's ``sub``, read without verification: only to find the app."""
        try:
            obj = jws.extract_compact(assertion.encode("ascii"), registry=self._registry)
            claims = json.loads(obj.payload or b"")
        except (JoseError, ValueError, UnicodeError):
            return None
        sub = claims.get("sub") if isinstance(claims, dict) else None
        return sub if isinstance(sub, str) else None

    def _verify_assertion(self, app: App, assertion: str, path_tenant: str, tenant_id: str) -> None:
        try:
            obj = jws.extract_compact(assertion.encode("ascii"), registry=self._registry)
            header = obj.headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise _invalid_client(50027, "JWT token is invalid or malformed.") from exc
        alg = header.get("alg")
        if alg not in _ASSERTION_ALGS:
            raise _invalid_client(700027, f"Client assertion contains an invalid signature. "
                                  f"[Reason - The algorithm {alg!r} is not supported.]")
        x5t_s256, x5t = header.get("x5t#S256"), header.get("x5t")
        if not isinstance(x5t_s256, str) and not isinstance(x5t, str):
            raise _invalid_client(700027, "Client assertion failed signature validation. "
                                  "[Reason - The header has neither 'x5t#S256' nor 'x5t'.]")
        cert = app.certificate_for(
            x5t=x5t if isinstance(x5t, str) else None,
            x5t_s256=x5t_s256 if isinstance(x5t_s256, str) else None,
        )
        if cert is None:
            raise _invalid_client(
                700027, "The certificate with identifier used to sign the client assertion is "
                "not registered on application. [Reason - The key was not found., Thumbprint "
                f"of key used by client: '{x5t_s256 or x5t}', app Id '{app.client_id}']")
        key = RSAKey.import_key(cert.certificate.public_key())  # type: ignore[arg-type]
        try:
            claims: dict[str, Any] = dict(jwt.decode(
                assertion, key, algorithms=[str(alg)], registry=self._registry).claims)
        except JoseError as exc:
            raise _invalid_client(700027, "Client assertion failed signature validation. "
                                  "[Reason - The provided signature value did not match the "
                                  "expected signature value.]") from exc
        self._check_claims(app, claims, assertion, path_tenant, tenant_id)

    def _check_claims(self, app: App, claims: Mapping[str, Any], assertion: str,
                      path_tenant: str, tenant_id: str) -> None:
        accepted = {a.rstrip("/").lower() for a in self._audiences(path_tenant, tenant_id)}
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and a.rstrip("/").lower() in accepted for a in auds):
            raise _invalid_client(700027, f"Client assertion audience claim does not match "
                                  f"Realm issuer. Audience: '{aud}'; expected the token endpoint.")
        # Client ids are GUIDs: Entra matches them whatever their case.
        wanted = app.client_id.lower()
        if not all(str(claims.get(k, "")).lower() == wanted for k in ("iss", "sub")):
            raise _invalid_client(700021, "Client assertion application identifier doesn't "
                                  "match 'client_id' parameter: 'iss' and 'sub' must both be "
                                  f"'{app.client_id}'.")
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)):
            raise EntraError("invalid_client", 90014,
                             "The required field 'exp' is missing from the credential.")
        if now > exp or (isinstance(nbf, (int, float)) and nbf > now + _CLOCK_SKEW):
            raise _invalid_client(700024, f"Client assertion is not within its valid time "
                                  f"range. Current time: {int(now)}, expiry time of assertion "
                                  f"{int(exp)}.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise EntraError("invalid_client", 90014,
                             "The required field 'jti' is missing from the credential.")
        self._check_replay(jti, _sha256(assertion), float(exp), now)

    def _check_replay(self, jti: str, digest: str, exp: float, now: float) -> None:
        with self._lock:
            if len(self._seen) > 1024:
                self._seen = {k: v for k, v in self._seen.items() if v[1] >= now}
            seen = self._seen.get(jti)
            if seen is None:
                self._seen[jti] = (digest, exp)
                return
        if self.reject_assertion_reuse or seen[0] != digest:
            raise _invalid_client(700027, f"Client assertion has been replayed: the jti "
                                  f"'{jti}' was already used.")
