"""The emulated directory: tenants, app registrations, users, consent and per-user policies.

Secrets and passwords are kept only as SHA-256 digests. Every object is reachable by its
identifiers (client id, App ID URI, UPN, object id); all mutation goes through
:class:`Directory`, which holds one lock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes

__all__ = ["App", "Directory", "RegisteredCertificate", "Tenant", "User"]

RESERVED_TENANTS = frozenset({"common", "organizations", "consumers"})
_NAMESPACE = uuid.UUID("6b0f7c0e-3f5d-4d0e-9a51-0b1e9d7f0a11")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(eq=False)
class Tenant:
    """A directory (tenant): its GUID and its verified domain."""

    tenant_id: str
    domain: str
    name: str


@dataclass(frozen=True)
class RegisteredCertificate:
    """A public certificate registered on an app for ``private_key_jwt``."""

    certificate: x509.Certificate
    x5t: str  # base64url SHA-1 thumbprint, as in the JWS header
    x5t_s256: str  # base64url SHA-256 thumbprint

    @classmethod
    def from_pem(cls, pem: str | bytes) -> RegisteredCertificate:
        raw = pem.encode() if isinstance(pem, str) else pem
        cert = x509.load_pem_x509_certificate(raw)
        return cls(
            certificate=cert,
            x5t=_b64url(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - x5t is SHA-1
            x5t_s256=_b64url(cert.fingerprint(hashes.SHA256())),
        )


@dataclass(eq=False)
class App:
    """An app registration (and its service principal).

    An app with neither a secret nor a certificate is a public client (a SPA, a CLI).
    ``access_token_version`` is the manifest's ``accessTokenAcceptedVersion``: the version of
    the tokens issued *for* this app as a resource.
    """

    name: str
    client_id: str
    tenant_id: str
    app_id_uri: str
    scopes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    access_token_version: int = 2
    multi_tenant: bool = False
    pre_authorized: dict[str, frozenset[str]] = field(default_factory=dict)
    # Redirect URIs per platform (manifest: spa, web, publicClient); see redirects.py.
    spa_redirect_uris: tuple[str, ...] = ()
    web_redirect_uris: tuple[str, ...] = ()
    public_client_redirect_uris: tuple[str, ...] = ()
    secret_digests: list[bytes] = field(default_factory=list, repr=False)
    certificates: list[RegisteredCertificate] = field(default_factory=list, repr=False)

    @property
    def is_public_client(self) -> bool:
        """True when the app has no credential: it cannot authenticate as a confidential client."""
        return not self.secret_digests and not self.certificates

    @property
    def identifiers(self) -> tuple[str, str]:
        """The two names a resource is known by: its client id and its App ID URI."""
        return (self.client_id, self.app_id_uri)

    def check_secret(self, secret: str) -> bool:
        """Constant-time comparison against every registered secret."""
        candidate = _digest(secret)
        matches = [hmac.compare_digest(candidate, d) for d in self.secret_digests]
        return any(matches)

    def certificate_for(
        self, *, x5t: str | None, x5t_s256: str | None
    ) -> RegisteredCertificate | None:
        # MSAL pads its base64url thumbprints with "="; Entra accepts both forms.
        s256 = x5t_s256.rstrip("=") if x5t_s256 else None
        sha1 = x5t.rstrip("=") if x5t else None
        for cert in self.certificates:
            if (s256 and cert.x5t_s256 == s256) or (sha1 and cert.x5t == sha1):
                return cert
        return None

    def service_principal_id(self, tenant_id: str) -> str:
        """The object id of this app's service principal in ``tenant_id`` (stable)."""
        return str(uuid.uuid5(_NAMESPACE, f"sp:{self.client_id}:{tenant_id}"))


@dataclass(eq=False)
class User:
    """A user. ``mfa_required_for`` holds resource client ids under an MFA policy.

    ``mfa_passes`` says whether the user completes MFA when a sign-in asks for it (demo users
    have no second factor; this stands in for one).
    """

    username: str
    oid: str
    tenant_id: str
    name: str
    password_digest: bytes | None = field(default=None, repr=False)
    mfa_required_for: set[str] = field(default_factory=set)
    mfa_passes: bool = True
    app_roles: dict[str, set[str]] = field(default_factory=dict)
    sessions_revoked_at: float | None = None
    enabled: bool = True
    one_time_code_digest: bytes | None = field(default=None, repr=False)

    @property
    def upn(self) -> str:
        return self.username

    def check_password(self, password: str) -> bool:
        if self.password_digest is None:
            return False
        return hmac.compare_digest(_digest(password), self.password_digest)

    def check_one_time_code(self, code: str) -> bool:
        """The second factor of the interactive sign-in (see ``EntraEmulator.add_user``)."""
        if self.one_time_code_digest is None:
            return False
        return hmac.compare_digest(_digest(code.strip()), self.one_time_code_digest)


@dataclass(frozen=True)
class _ConsentKey:
    tenant_id: str
    client_id: str
    resource_id: str
    user_oid: str | None


class Directory:
    """Every tenant, app and user of one emulator, with consent and policy decisions."""

    def __init__(self, salt: bytes) -> None:
        self._lock = threading.RLock()
        self._salt = salt
        self._tenants: dict[str, Tenant] = {}
        self._apps: dict[str, App] = {}
        self._users: dict[str, User] = {}  # by oid
        self._usernames: dict[str, str] = {}  # lower-case UPN -> oid
        self._scope_grants: dict[_ConsentKey, set[str]] = {}
        self._role_grants: dict[_ConsentKey, set[str]] = {}

    # tenants -----------------------------------------------------------------------------
    def add_tenant(self, tenant_id: str | None = None, domain: str | None = None,
                   name: str | None = None) -> Tenant:
        with self._lock:
            tid = tenant_id or str(uuid.uuid4())
            if tid in self._tenants:
                raise ValueError(f"tenant {tid} already exists")
            number = len(self._tenants) + 1
            domain = (domain or f"tenant{number}.test").lower()
            tenant = Tenant(tid, domain, name or f"Tenant {number}")
            self._tenants[tid] = tenant
            return tenant

    def tenant(self, key: str) -> Tenant | None:
        """A tenant by GUID or verified domain (case-insensitive)."""
        with self._lock:
            found = self._tenants.get(key) or self._tenants.get(key.lower())
            if found:
                return found
            lowered = key.lower()
            return next((t for t in self._tenants.values() if t.domain == lowered), None)

    def tenants(self) -> list[Tenant]:
        with self._lock:
            return list(self._tenants.values())

    # apps ----------------------------------------------------------------------------------
    def add_app(self, app: App) -> App:
        with self._lock:
            if app.client_id in self._apps:
                raise ValueError(f"an app with client id {app.client_id} already exists")
            taken = self.resource(app.app_id_uri)
            if taken is not None:
                raise ValueError(f"App ID URI {app.app_id_uri} is already in use (by "
                                 f"{taken.name!r}; Microsoft Graph and Azure Storage are "
                                 "built in: emu.graph, emu.storage)")
            self._apps[app.client_id] = app
            return app

    def app(self, client_id: str) -> App | None:
        with self._lock:
            return self._apps.get(client_id) or self._apps.get(client_id.lower())

    def resource(self, identifier: str) -> App | None:
        """A resource app by client id or App ID URI (URIs compare case-insensitively)."""
        with self._lock:
            by_id = self.app(identifier)
            if by_id is not None:
                return by_id
            wanted = identifier.rstrip("/").lower()
            return next(
                (a for a in self._apps.values() if a.app_id_uri.rstrip("/").lower() == wanted),
                None,
            )

    def app_by_name(self, name: str) -> App | None:
        """The app called ``name``, if exactly one is."""
        with self._lock:
            found = [a for a in self._apps.values() if a.name == name]
        return found[0] if len(found) == 1 else None

    def apps(self) -> list[App]:
        with self._lock:
            return list(self._apps.values())

    def add_secret(self, app: App, secret: str) -> None:
        with self._lock:
            app.secret_digests.append(_digest(secret))

    def add_certificate(self, app: App, pem: str | bytes) -> RegisteredCertificate:
        cert = RegisteredCertificate.from_pem(pem)
        with self._lock:
            app.certificates.append(cert)
        return cert

    def app_visible_in(self, app: App, tenant_id: str) -> bool:
        """Whether ``app`` can sign in to ``tenant_id`` (its home tenant, or multi-tenant)."""
        return app.tenant_id == tenant_id or app.multi_tenant

    # users ---------------------------------------------------------------------------------
    def add_user(self, user: User, password: str | None,
                 one_time_code: str | None = None) -> User:
        with self._lock:
            key = user.username.lower()
            if key in self._usernames:
                raise ValueError(f"user {user.username} already exists")
            if password is not None:
                user.password_digest = _digest(password)
            if one_time_code is not None:
                user.one_time_code_digest = _digest(one_time_code)
            self._users[user.oid] = user
            self._usernames[key] = user.oid
            return user

    def user(self, oid: str) -> User | None:
        with self._lock:
            return self._users.get(oid)

    def user_by_name(self, username: str) -> User | None:
        with self._lock:
            oid = self._usernames.get(username.lower())
            return self._users.get(oid) if oid else None

    def users(self) -> list[User]:
        with self._lock:
            return list(self._users.values())

    # consent -------------------------------------------------------------------------------
    def grant(self, *, tenant_id: str, client: App, resource: App, scopes: Iterable[str] = (),
              roles: Iterable[str] = (), user: User | None = None) -> None:
        """Record delegated consent (``scopes``) and app role assignments (``roles``)."""
        key = _ConsentKey(tenant_id, client.client_id, resource.client_id,
                          user.oid if user else None)
        unknown_scopes = set(scopes) - set(resource.scopes)
        unknown_roles = set(roles) - set(resource.roles)
        if unknown_scopes or unknown_roles:
            raise ValueError(
                f"{resource.name} does not expose {sorted(unknown_scopes | unknown_roles)}"
            )
        if roles and user is not None:
            raise ValueError("app roles are granted to the client app, not per user")
        with self._lock:
            self._scope_grants.setdefault(key, set()).update(scopes)
            if roles:
                self._role_grants.setdefault(key, set()).update(roles)

    def revoke(
        self, *, tenant_id: str, client: App, resource: App, user: User | None = None
    ) -> None:
        key = _ConsentKey(tenant_id, client.client_id, resource.client_id,
                          user.oid if user else None)
        with self._lock:
            self._scope_grants.pop(key, None)
            self._role_grants.pop(key, None)

    def granted_scopes(self, *, tenant_id: str, client: App, resource: App,
                       user: User | None) -> set[str]:
        """Delegated scopes ``client`` may use on ``resource`` for ``user``.

        Sources: admin consent (tenant-wide), the user's own consent, and the resource's
        pre-authorized client applications.
        """
        with self._lock:
            granted = set(self._scope_grants.get(
                _ConsentKey(tenant_id, client.client_id, resource.client_id, None), set()))
            if user is not None:
                granted |= self._scope_grants.get(
                    _ConsentKey(tenant_id, client.client_id, resource.client_id, user.oid), set())
            if client.client_id in resource.pre_authorized:
                pre = resource.pre_authorized[client.client_id]
                granted |= set(pre) if pre else set(resource.scopes)
            return granted

    def granted_roles(self, *, tenant_id: str, client: App, resource: App) -> set[str]:
        with self._lock:
            return set(self._role_grants.get(
                _ConsentKey(tenant_id, client.client_id, resource.client_id, None), set()))

    # policies and identifiers ---------------------------------------------------------------
    def mfa_policy_id(self, tenant_id: str, resource: App) -> str:
        """A stable conditional-access policy id, used in ``capolids`` claims challenges."""
        return str(uuid.uuid5(_NAMESPACE, f"capolicy:mfa:{tenant_id}:{resource.client_id}"))

    def pairwise_sub(self, oid: str, app_client_id: str) -> str:
        """Entra's ``sub``: stable per user and per app, different across apps."""
        digest = hmac.new(self._salt, f"{oid}:{app_client_id}".encode(), hashlib.sha256).digest()
        return _b64url(digest)

    def revoke_sessions(self, user: User) -> None:
        """Invalidate every token and refresh token issued to ``user`` before now."""
        with self._lock:
            user.sessions_revoked_at = time.time()
