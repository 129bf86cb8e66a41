"""``EntraEmulator``: an offline Microsoft Entra ID (v2 endpoints) for tests and demos.

::

    from flask_obo.testing import EntraEmulator

    with EntraEmulator() as emu:
        api = emu.register_app("middle-tier", secret="s3cret", scopes=["access_as_user"])
        down = emu.register_app("downstream", scopes=["read"], roles=["Reader"])
        emu.grant_consent(client=api, resource=down, scopes=["read"])
        alice = emu.add_user("alice@contoso.test", password="pw")
        token = emu.issue_user_token(alice, resource=api)
        result = emu.confidential_client(api, "s3cret").acquire_token_on_behalf_of(
            token, [f"{down.app_id_uri}/read"])

The server binds 127.0.0.1 (any free port by default) when the object is created; ``start()``
(or ``with``) serves it from a background thread; ``stop()`` ends it and removes its files.
"""

from __future__ import annotations

import secrets
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from .authorize import DEFAULT_ONE_TIME_CODE, AuthorizeEndpoint
from .calls import CallLog
from .claims import ACR_PUBLIC, ACR_SECRET, Issuers
from .client_auth import ClientAuthenticator
from .clients import EmulatorHttpClient, confidential_client, public_client
from .directory import App, Directory, RegisteredCertificate, Tenant, User
from .faults import FaultInjector
from .first_party import GRAPH, STORAGE, register_first_party
from .grants import TokenEndpoint
from .interactive import InteractiveSignIn
from .issuance import TokenFactory, UserTokenRequest
from .redirects import check_redirect_uris
from .server import EmulatorServer, Services, build_app
from .tls import ClientCertificate, ServerTLS
from .tokens import KeyRing, TokenService, amr_for

__all__ = ["EntraEmulator"]

AppRef = App | str
PreAuthorized = Iterable[AppRef] | Mapping[AppRef, Iterable[str]]


class EntraEmulator:
    """A real HTTPS Entra ID emulator in a background thread. See the module docstring.

    :param port: the port to bind on 127.0.0.1 (0: any free port).
    :param token_lifetime: seconds an access token lives (settable later, per call too).
    :param obo_token_lifetime: seconds an OBO-issued token lives (default: ``token_lifetime``).
    :param refresh_token_lifetime: seconds a refresh token may lie unused (each redemption
        issues a new one); past it, ``invalid_grant`` AADSTS70008.
    :param refresh_token_max_age: seconds after the user's sign-in (the assertion's ``iat``
        for OBO) that a refresh token chain is redeemable, rotation or not; past it,
        ``invalid_grant`` AADSTS700082. ``None`` (the default): no limit. Settable later.
    :param tenant_id: the default tenant's GUID (default: random).
    :param tenant_domain: the default tenant's verified domain; users ``x@<domain>`` land there.
    :param reject_assertion_reuse: refuse any second use of a client assertion ``jti``
        (default: the identical assertion may be reused until it expires, as Entra allows and
        MSAL does; a ``jti`` reused in a *different* assertion is always refused).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        token_lifetime: int = 3600,
        obo_token_lifetime: int | None = None,
        id_token_lifetime: int = 3600,
        refresh_token_lifetime: int = 90 * 24 * 3600,
        refresh_token_max_age: float | None = None,
        tenant_id: str | None = None,
        tenant_domain: str = "contoso.test",
        reject_assertion_reuse: bool = False,
    ) -> None:
        self.token_lifetime = token_lifetime
        self.obo_token_lifetime = obo_token_lifetime
        self.id_token_lifetime = id_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.refresh_token_max_age = refresh_token_max_age
        self._tmp = tempfile.TemporaryDirectory(prefix="entra-emulator-")
        self._tls = ServerTLS(self._tmp.name)
        self.directory = Directory(salt=secrets.token_bytes(16))
        self.tenant_id = self.directory.add_tenant(tenant_id, tenant_domain, "Contoso").tenant_id
        self._first_party = register_first_party(self.directory)
        self.keyring = KeyRing()
        self.tokens = TokenService(self.keyring)
        self.faults = FaultInjector()
        self._calls = CallLog()
        self._server = EmulatorServer(port, self._wsgi, self._tls.server_context())
        self.port: int = self._server.port
        self.base_url = f"https://127.0.0.1:{self.port}"
        self.issuers = Issuers(self.base_url)
        self._factory = TokenFactory(self.directory, self.tokens, self.issuers, self)
        self._authenticator = ClientAuthenticator(
            self.directory, self._assertion_audiences,
            reject_assertion_reuse=reject_assertion_reuse)
        self._authorize = AuthorizeEndpoint(self.directory, self._factory.codes, self.tokens,
                                             self.base_url)
        self._services = Services(
            base=self.base_url, directory=self.directory, keyring=self.keyring,
            token_endpoint=TokenEndpoint(self.directory, self._factory, self._authenticator),
            faults=self.faults, calls=self._calls, authorize=self._authorize,
            session_cookie=self.session_cookie)
        self._flask = build_app(self._services)
        self._default_client: App | None = None

    # lifecycle -----------------------------------------------------------------------------
    def _wsgi(self, environ: Any, start_response: Any) -> Any:
        return self._flask.wsgi_app(environ, start_response)

    def start(self) -> EntraEmulator:
        """Serve from a daemon thread (idempotent). Returns the emulator."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and delete the CA bundle and keys written at start."""
        self._server.stop()
        self._tmp.cleanup()

    def __enter__(self) -> EntraEmulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @contextmanager
    def unreachable(self) -> Iterator[None]:
        """An outage: the port is closed (connections refused) inside the ``with`` block, then
        served again on the same port, with the same keys, apps, users and call log."""
        self._server.stop()
        try:
            yield
        finally:
            self._server = EmulatorServer(self.port, self._wsgi, self._tls.server_context())
            self._server.start()

    # addresses -----------------------------------------------------------------------------
    @property
    def ca_bundle(self) -> str:
        """Path of the PEM file (this emulator's CA only) clients must trust."""
        return self._tls.ca_bundle

    def _tenant(self, tenant: str | None) -> Tenant:
        found = self.directory.tenant(tenant or self.tenant_id)
        if found is None:
            raise KeyError(f"unknown tenant {tenant!r}")
        return found

    def authority(self, tenant: str | None = None) -> str:
        """``https://127.0.0.1:PORT/<tenant>`` (the default tenant, or ``common`` etc. as given)."""
        if tenant in ("common", "organizations"):
            return f"{self.base_url}/{tenant}"
        return f"{self.base_url}/{self._tenant(tenant).tenant_id}"

    def issuer(self, tenant: str | None = None, *, version: int = 2) -> str:
        """The ``iss`` of tokens for ``tenant``: ``.../{tid}/v2.0`` (v2) or ``.../{tid}/`` (v1)."""
        return self.issuers.for_version(self._tenant(tenant).tenant_id, version)

    def discovery_url(self, tenant: str | None = None, *, version: int = 2) -> str:
        middle = "/v2.0" if version == 2 else ""
        return f"{self.authority(tenant)}{middle}/.well-known/openid-configuration"

    def jwks_uri(self, tenant: str | None = None, *, version: int = 2) -> str:
        return f"{self.authority(tenant)}/discovery{'/v2.0' if version == 2 else ''}/keys"

    def token_endpoint(self, tenant: str | None = None) -> str:
        return f"{self.authority(tenant)}/oauth2/v2.0/token"

    def authorization_endpoint(self, tenant: str | None = None) -> str:
        return f"{self.authority(tenant)}/oauth2/v2.0/authorize"

    def end_session_endpoint(self, tenant: str | None = None) -> str:
        return f"{self.authority(tenant)}/oauth2/v2.0/logout"

    @property
    def session_cookie(self) -> str:
        """The name of the sign-in session cookie (per port: cookies do not tell ports apart)."""
        return f"ESTSAUTH_{self.port}"

    @property
    def certificate_spki_sha256(self) -> str:
        """base64 SHA-256 of the server key's SPKI, for Chromium's
        ``--ignore-certificate-errors-spki-list`` (trusts this server's key, nothing else)."""
        return self._tls.spki_sha256

    def _assertion_audiences(self, path_tenant: str, tenant_id: str) -> set[str]:
        tenant = self.directory.tenant(tenant_id)
        segments = {path_tenant, tenant_id} | ({tenant.domain} if tenant else set())
        out: set[str] = set()
        for seg in segments:
            root = f"{self.base_url}/{seg}"
            out |= {f"{root}/oauth2/v2.0/token", f"{root}/oauth2/token", f"{root}/v2.0", root}
        return out

    # directory -----------------------------------------------------------------------------
    def add_tenant(self, *, tenant_id: str | None = None, domain: str | None = None,
                   name: str | None = None) -> str:
        """Create another tenant; returns its id (GUID)."""
        return self.directory.add_tenant(tenant_id, domain, name).tenant_id

    def get_app(self, ref: AppRef) -> App:
        """An app by object, client id, App ID URI or (unique) name."""
        if isinstance(ref, App):
            return ref
        found = self.directory.resource(ref) or self.directory.app_by_name(ref)
        if found is None:
            raise KeyError(f"unknown app {ref!r}")
        return found

    def register_app(
        self,
        name: str,
        *,
        secret: str | None = None,
        scopes: Iterable[str] = (),
        roles: Iterable[str] = (),
        access_token_version: int = 2,
        tenant: str | None = None,
        pre_authorized: PreAuthorized = (),
        app_id_uri: str | None = None,
        client_id: str | None = None,
        multi_tenant: bool = False,
        certificate: str | ClientCertificate | None = None,
        spa_redirect_uris: Iterable[str] = (),
        web_redirect_uris: Iterable[str] = (),
        public_client_redirect_uris: Iterable[str] = (),
    ) -> App:
        """Register an app (and its service principal) in ``tenant`` (default tenant).

        ``scopes`` are the delegated permissions it exposes, ``roles`` its app roles.
        ``access_token_version`` (1 or 2) is the version of tokens issued *for* it.
        ``pre_authorized`` lists client apps (or maps them to scopes) that need no consent.
        With neither ``secret`` nor ``certificate`` it is a public client.
        Redirect URIs for the interactive sign-in, per platform: ``spa_redirect_uris``
        (single-page apps: PKCE S256, codes redeemed cross-origin only), ``web_redirect_uris``
        (server-side apps, which authenticate to redeem) and ``public_client_redirect_uris``
        (mobile and desktop; ``http://localhost`` matches any port). See ``redirects.py``.
        """
        if access_token_version not in (1, 2):
            raise ValueError("access_token_version must be 1 or 2")
        spa, web, native = check_redirect_uris(spa_redirect_uris, web_redirect_uris,
                                               public_client_redirect_uris)
        cid = client_id or str(uuid.uuid4())
        pre: dict[str, frozenset[str]] = {}
        items = pre_authorized.items() if isinstance(pre_authorized, Mapping) else (
            (ref, ()) for ref in pre_authorized)
        for ref, pre_scopes in items:
            pre[ref.client_id if isinstance(ref, App) else ref] = frozenset(pre_scopes)
        app = self.directory.add_app(App(
            name=name, client_id=cid, tenant_id=self._tenant(tenant).tenant_id,
            app_id_uri=app_id_uri or f"api://{cid}", scopes=tuple(scopes), roles=tuple(roles),
            access_token_version=access_token_version, multi_tenant=multi_tenant,
            pre_authorized=pre, spa_redirect_uris=spa, web_redirect_uris=web,
            public_client_redirect_uris=native))
        if secret is not None:
            self.directory.add_secret(app, secret)
        if certificate is not None:
            self.register_certificate(app, certificate)
        return app

    def add_secret(self, app: AppRef, secret: str) -> None:
        """Add a client secret to ``app`` (secrets are stored as digests)."""
        self.directory.add_secret(self.get_app(app), secret)

    def register_certificate(self, app: AppRef,
                             cert_pem: str | bytes | ClientCertificate) -> RegisteredCertificate:
        """Register a public certificate on ``app`` for ``private_key_jwt``."""
        pem = cert_pem.cert_pem if isinstance(cert_pem, ClientCertificate) else cert_pem
        return self.directory.add_certificate(self.get_app(app), pem)

    def grant_consent(self, *, client: AppRef, resource: AppRef, scopes: Iterable[str] = (),
                      roles: Iterable[str] = (), user: User | None = None,
                      tenant: str | None = None) -> None:
        """Consent for ``client`` to call ``resource``: delegated ``scopes`` (admin consent, or
        ``user``'s own) and app ``roles`` (for app-only tokens). ``tenant``: the client's home."""
        client_app = self.get_app(client)
        tid = self._tenant(tenant or client_app.tenant_id).tenant_id
        self.directory.grant(tenant_id=tid, client=client_app, resource=self.get_app(resource),
                             scopes=scopes, roles=roles, user=user)

    def revoke_consent(self, *, client: AppRef, resource: AppRef, user: User | None = None,
                       tenant: str | None = None) -> None:
        client_app = self.get_app(client)
        tid = self._tenant(tenant or client_app.tenant_id).tenant_id
        self.directory.revoke(tenant_id=tid, client=client_app, resource=self.get_app(resource),
                              user=user)

    def add_user(
        self,
        username: str,
        *,
        password: str | None = None,
        name: str | None = None,
        tenant: str | None = None,
        mfa_required_for: Iterable[AppRef] = (),
        mfa_passes: bool = True,
        roles: Mapping[AppRef, Iterable[str]] | None = None,
        oid: str | None = None,
        one_time_code: str | None = DEFAULT_ONE_TIME_CODE,
    ) -> User:
        """Add a user. A bare name gets the tenant's domain; a ``user@domain`` lands in the
        tenant of that domain unless ``tenant`` says otherwise. ``mfa_required_for`` lists
        resources under a per-user MFA policy; ``roles`` assigns app roles per resource.
        ``one_time_code`` is what the user types on the sign-in's MFA page (``None``: no second
        factor, so an interactive MFA step cannot succeed)."""
        domain = username.rpartition("@")[2] if "@" in username else None
        home = self._tenant(tenant) if tenant else (
            self.directory.tenant(domain) if domain else None) or self._tenant(None)
        upn = username if domain else f"{username}@{home.domain}"
        local = upn.partition("@")[0]
        user = self.directory.add_user(User(
            username=upn, oid=oid or str(uuid.uuid4()), tenant_id=home.tenant_id,
            name=name or local.replace(".", " ").title(), mfa_passes=mfa_passes,
            mfa_required_for={self.get_app(r).client_id for r in mfa_required_for},
        ), password, one_time_code)
        for resource, assigned in (roles or {}).items():
            self.assign_app_role(user, resource, *assigned)
        return user

    def assign_app_role(self, user: User, resource: AppRef, *roles: str) -> None:
        """Assign app roles of ``resource`` to ``user`` (they appear in the user's tokens)."""
        app = self.get_app(resource)
        unknown = set(roles) - set(app.roles)
        if unknown:
            raise ValueError(f"{app.name} defines no app roles {sorted(unknown)}")
        user.app_roles.setdefault(app.client_id, set()).update(roles)

    def set_mfa_required(self, user: User, resource: AppRef, required: bool = True) -> None:
        """Turn the per-user MFA policy for ``resource`` on or off."""
        cid = self.get_app(resource).client_id
        if required:
            user.mfa_required_for.add(cid)
        else:
            user.mfa_required_for.discard(cid)

    def revoke_user_sessions(self, user: User) -> None:
        """Like ``revokeSignInSessions``: OBO with an assertion, or a refresh token, issued
        before now fails with ``invalid_grant`` (AADSTS50173), rotated refresh tokens too."""
        self.directory.revoke_sessions(user)

    @property
    def graph(self) -> App:
        """Microsoft Graph (``https://graph.microsoft.com``), present in every tenant."""
        return self._first_party[GRAPH.app_id_uri]

    @property
    def storage(self) -> App:
        """Azure Storage (``https://storage.azure.com``), present in every tenant."""
        return self._first_party[STORAGE.app_id_uri]

    @property
    def default_client(self) -> App:
        """The public client used as ``azp`` when ``issue_user_token`` is given no client."""
        if self._default_client is None:
            self._default_client = self.register_app("emulator test client", multi_tenant=True)
        return self._default_client

    # tokens without a flow -------------------------------------------------------------------
    def issue_user_token(
        self,
        user: User,
        *,
        resource: AppRef,
        scopes: Iterable[str] | None = None,
        roles: Iterable[str] | None = None,
        mfa: bool = False,
        client: AppRef | None = None,
        lifetime: int | None = None,
        version: int | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        tenant: str | None = None,
    ) -> str:
        """A delegated access token for ``resource``, as if ``client`` had signed ``user`` in.

        ``scopes`` default to every scope ``resource`` exposes; ``roles`` to the user's app
        roles there; ``version`` to the resource's ``access_token_version``. ``mfa`` puts
        "mfa" in ``amr``. ``lifetime`` <= 0 gives an expired token. ``extra_claims`` override
        claims (``None`` removes one), for crafting odd tokens signed by the real key.
        """
        res = self.get_app(resource)
        scp = list(res.scopes if scopes is None else scopes)
        if not scp:
            raise ValueError(f"{res.name} exposes no scopes; pass scopes=[...]")
        ver = version or res.access_token_version
        client_app = self.get_app(client) if client is not None else self.default_client
        req = UserTokenRequest(
            user=user, tenant_id=self._tenant(tenant or user.tenant_id).tenant_id, resource=res,
            audience=res.app_id_uri if ver == 1 else res.client_id, client=client_app,
            client_acr=ACR_PUBLIC if client_app.is_public_client else ACR_SECRET, scopes=scp,
            roles=sorted(user.app_roles.get(res.client_id, set()) if roles is None else roles),
            amr=amr_for(mfa), version=ver)
        token, _, _ = self._factory.user_access_token(req, lifetime=lifetime,
                                                      extra_claims=extra_claims)
        return token

    def auth_header(self, user: User, resource: AppRef, *, scopes: Iterable[str] | None = None,
                    **kwargs: Any) -> dict[str, str]:
        """``{"Authorization": "Bearer <a user token for resource>"}``, for a test client's
        ``headers=``; ``scopes`` and ``kwargs`` as for :meth:`issue_user_token`."""
        token = self.issue_user_token(user, resource=resource, scopes=scopes, **kwargs)
        return {"Authorization": f"Bearer {token}"}

    def issue_app_token(self, client: AppRef, *, resource: AppRef,
                        roles: Iterable[str] | None = None, lifetime: int | None = None,
                        version: int | None = None, tenant: str | None = None,
                        extra_claims: Mapping[str, Any] | None = None) -> str:
        """An app-only token (client credentials) carrying the app roles granted to ``client``."""
        client_app, res = self.get_app(client), self.get_app(resource)
        tid = self._tenant(tenant or client_app.tenant_id).tenant_id
        granted = self.directory.granted_roles(tenant_id=tid, client=client_app, resource=res)
        ver = version or res.access_token_version
        token, _ = self._factory.app_access_token(
            client=client_app, client_acr=ACR_SECRET, tenant_id=tid, resource=res,
            audience=res.app_id_uri if ver == 1 else res.client_id,
            roles=sorted(granted) if roles is None else list(roles), version=ver,
            lifetime=lifetime, extra_claims=extra_claims)
        return token

    def issue_id_token(self, user: User, client: AppRef, *, lifetime: int | None = None,
                       tenant: str | None = None,
                       extra_claims: Mapping[str, Any] | None = None) -> str:
        """An ID token for ``client`` (an API must refuse it as an access token)."""
        return self._factory.id_token(
            user=user, tenant_id=self._tenant(tenant or user.tenant_id).tenant_id,
            client=self.get_app(client), lifetime=lifetime, extra_claims=extra_claims)

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None,
             tenant: str | None = None) -> str:
        """Sign arbitrary ``claims`` with the current key, for hostile-token tests.

        ``headers`` add to or override ``typ``/``alg``/``kid``/``x5t`` (``None`` removes).
        Keys are shared by every tenant, as in Entra; ``tenant`` is only checked to exist.
        """
        self._tenant(tenant)
        return self.tokens.sign(claims, headers)

    # keys ------------------------------------------------------------------------------------
    @property
    def signing_kid(self) -> str:
        return self.keyring.current.kid

    def rotate_keys(self) -> str:
        """Publish a new key and sign with it; old keys stay published. Returns the new kid."""
        return self.keyring.rotate().kid

    def retire_old_keys(self) -> list[str]:
        """Stop publishing every key but the current one. Returns the retired kids."""
        return self.keyring.retire_old()

    def jwks(self, tenant: str | None = None) -> dict[str, Any]:
        """The key set published at ``jwks_uri(tenant)``."""
        return self.keyring.jwks(self.issuer(tenant))

    # observation -----------------------------------------------------------------------------
    def calls(
        self, grant: str | None = None, *, endpoint: str | None = "token"
    ) -> list[dict[str, Any]]:
        """Recorded calls, oldest first, secrets redacted (``sha256:`` prefixes).

        By default token-endpoint calls, optionally of one ``grant`` (``"on_behalf_of"``,
        ``"client_credentials"``, ``"password"``, ``"refresh_token"``). ``endpoint`` picks
        ``"discovery"``, ``"jwks"``, ``"userrealm"``, ``"authorize"``, or ``None`` for all.
        """
        return self._calls.query(grant, endpoint=endpoint)

    def call_count(self, endpoint: str | None = None) -> int:
        """How many calls ``endpoint`` (or any endpoint) answered, faulted ones included."""
        return self._calls.count(endpoint)

    @property
    def requests_log(self) -> list[dict[str, Any]]:
        """Every recorded request, any endpoint."""
        return self._calls.query(endpoint=None)

    def reset_calls(self) -> None:
        self._calls.reset()

    def on_call(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener`` with each call's record (as :meth:`calls` returns them), once the
        call is answered; ``python -m flask_obo.testing serve`` logs requests this way."""
        self._calls.subscribe(listener)

    @property
    def internal_errors(self) -> list[str]:
        """Unexpected exceptions inside the emulator (each also answered 500 and logged)."""
        return list(self._services.internal_errors)

    # real MSAL clients -----------------------------------------------------------------------
    def interactive_sign_in(self) -> InteractiveSignIn:
        """A person at this emulator's sign-in pages, without a browser (see ``interactive.py``):
        ``emu.interactive_sign_in().complete(auth_uri, username=..., password=...)``."""
        return InteractiveSignIn(self.ca_bundle, self.base_url)

    def http_client(self) -> EmulatorHttpClient:
        """An HTTP client for MSAL that trusts this emulator (see ``clients.py``)."""
        return EmulatorHttpClient(self.ca_bundle, self.port)

    def confidential_client(self, app: AppRef,
                            credential: str | Mapping[str, Any] | ClientCertificate,
                            *, tenant: str | None = None, **kwargs: Any) -> Any:
        """A real ``msal.ConfidentialClientApplication`` for ``app``.

        ``credential``: the secret, an MSAL ``client_credential`` dict (PEM or PFX), or a
        :class:`ClientCertificate`. ``kwargs`` go to MSAL (``token_cache``, ...).
        """
        return confidential_client(self.get_app(app), credential, authority=self.authority(tenant),
                                   http_client=self.http_client(), **kwargs)

    def public_client(self, app: AppRef, *, tenant: str | None = None, **kwargs: Any) -> Any:
        """A real ``msal.PublicClientApplication`` for ``app`` (username/password works)."""
        return public_client(self.get_app(app), authority=self.authority(tenant),
                             http_client=self.http_client(), **kwargs)
