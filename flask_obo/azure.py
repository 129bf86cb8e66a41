"""Credentials for Microsoft's SDKs (``pip install flask-obo[azure]``), backed by flask-obo.

Azure SDK clients (``BlobServiceClient``, ``SecretClient``, msgraph-sdk's
``GraphServiceClient``, ...) take an ``azure.core`` credential. These get their tokens from the
app's ``TokenAcquirer``, so an SDK client shares what ``@requires_downstream`` has: the token
cache (shared, encrypted, refreshed ahead), one identity-provider call for concurrent misses, and
the same errors (a 401 ``insufficient_claims`` challenge for MFA, a 403 for missing consent, a
503 while Entra is down), which reach the view through the SDK call and the client as usual.

=================================  ========================================
``get_user_credential()``          the caller of this request (OBO)
``get_async_user_credential()``    the same, for the SDKs' ``aio`` clients
``get_app_credential(tenant)``     the app itself (client credentials)
``get_async_app_credential()``     the same, for ``aio`` clients
=================================  ========================================

Scopes are used as the SDK gives them (``https://storage.azure.com/.default``, ``User.Read``).

A user credential is bound to its request: used after the request has ended, or while another
request is being served, it raises ``RuntimeError``; in threads the request itself started (an
SDK's parallel transfers) it works until the request ends, and so while a
``stream_with_context`` response streams. Its tokens carry a ``refresh_on`` in
the past, so an SDK client asks the credential again before each call (flask-obo's cache
answers, with no network call): a client kept beyond its request then refuses, where it would
otherwise send the first user's cached token on someone else's behalf.

``claims`` (an SDK's answer to a claims challenge, such as continuous access evaluation) makes
one fresh token with those claims, bypassing the cache and replacing its entry.

``enable_cae``: whether Entra issues CAE tokens is the app's declaration, ``OBO_CLIENT_CAPABILITIES
= ["CP1"]``, as MSAL (capabilities belong to the application object) and Microsoft.Identity.Web
have it, so one cache entry serves a user whether reached through a session or an SDK. With CP1
configured every token is CAE-capable, and ``enable_cae=False`` still gets one: azure-core's
``BearerTokenCredentialPolicy`` and msgraph-sdk answer an ``insufficient_claims`` challenge
whatever ``enable_cae`` says. Without CP1, ``enable_cae=True`` gets an ordinary token (safe: it
simply never draws a CAE challenge) and the first such request logs how to turn CAE on.
azure-identity keeps a second MSAL app per credential for CAE instead; flask-obo's tokens are
shared, so the choice is made once, in the configuration.

``tenant_id`` (an SDK passes one after a challenge names the resource's tenant) is honoured when
it is the tenant flask-obo would ask anyway, or, for a multi-tenant API, a tenant
``OBO_ALLOWED_TENANTS`` lists (or any, with ``["*"]``); any other is refused before any
identity-provider call with a 403 ``InsufficientScope`` (reason ``tenant_not_allowed``), the
same check and error as ``acquire_token_for_app(tenant=...)``.

Only this module imports ``azure.core``: the rest of flask-obo never needs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

try:
    from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError("flask_obo.azure needs azure-core: pip install 'flask-obo[azure]'") from exc
from flask import Flask, Request, g, has_request_context, request, request_tearing_down
from flask.ctx import RequestContext
from flask.globals import request_ctx

from .acquisition import TokenAcquirer
from .cache import AccessToken as CachedToken
from .config import OboConfig
from .context import get_assertion
from .downstream.api import acquirer_of, app_tenant, obo_caller
from .state import get_state
from .validation import TokenClaims

__all__ = [
    "AppCredential",
    "AsyncAppCredential",
    "AsyncUserCredential",
    "UserCredential",
    "get_app_credential",
    "get_async_app_credential",
    "get_async_user_credential",
    "get_user_credential",
]

log = logging.getLogger("flask_obo.azure")

_G_ATTR = "_flask_obo_azure"
# A refresh_on this far in the past is due whatever jitter an SDK adds (azure-core adds up to
# 60 s): the SDK asks again before each call, and flask-obo's cache answers.
_ASK_EVERY_TIME = 1
_cae_hint_logged = False

T = TypeVar("T")


# the public functions ----------------------------------------------------------------------
def get_user_credential() -> UserCredential:
    """A ``TokenCredential`` for this request's caller (validating the request first).

    Bound to this request: see the module docstring. One per request (calling again returns the
    same object). An app-only caller gets a 403; a missing or invalid token, a 401.
    """
    binding = _binding()
    if binding.user is None:
        caller = obo_caller()
        binding.user = UserCredential(acquirer_of(get_state()), caller, get_assertion(), binding)
    return binding.user


def get_async_user_credential() -> AsyncUserCredential:
    """``get_user_credential()`` for the SDKs' ``aio`` clients (an ``AsyncTokenCredential``)."""
    binding = _binding()
    if binding.async_user is None:
        binding.async_user = AsyncUserCredential(get_user_credential())
    return binding.async_user


def get_app_credential(tenant: str | None = None) -> AppCredential:
    """A ``TokenCredential`` for the app's own tokens (client credentials).

    ``tenant``: for a multi-tenant API the tenant to ask (default: the validated caller's), one
    that ``OBO_ALLOWED_TENANTS`` allows. Not bound to a request: it may be kept and shared.
    """
    state = get_state()
    # A multi-tenant API outside a request has no caller's tenant: get_token then says so.
    return AppCredential(acquirer_of(state), app_tenant(state, tenant))


def get_async_app_credential(tenant: str | None = None) -> AsyncAppCredential:
    """``get_app_credential()`` for the SDKs' ``aio`` clients (an ``AsyncTokenCredential``)."""
    return AsyncAppCredential(get_app_credential(tenant))


# the request binding -----------------------------------------------------------------------
class _RequestBinding:
    """One request, while it is being served; what its credentials hold to know that."""

    __slots__ = ("active", "async_user", "context", "request", "user")

    def __init__(self, req: Request, context: RequestContext) -> None:
        self.request = req
        # The request context as pushed by the server: its teardown ends the request. A copy
        # (copy_current_request_context in a worker thread) has a teardown of its own, earlier.
        self.context = context
        self.active = True
        self.user: UserCredential | None = None
        self.async_user: AsyncUserCredential | None = None


def _binding() -> _RequestBinding:
    app_g = g._get_current_object()
    current = request._get_current_object()  # type: ignore[attr-defined]
    found: _RequestBinding | None = app_g.get(_G_ATTR)
    # g belongs to the app context, which requests made inside one share: check whose it is.
    if found is None or found.request is not current:
        found = _RequestBinding(current, request_ctx._get_current_object())  # type: ignore[attr-defined]
        setattr(app_g, _G_ATTR, found)
    return found


def _end_binding(sender: Flask, **extra: Any) -> None:
    found: _RequestBinding | None = g.get(_G_ATTR)
    if found is not None and found.context is request_ctx._get_current_object():  # type: ignore[attr-defined]
        found.active = False


request_tearing_down.connect(_end_binding)


# credentials -------------------------------------------------------------------------------
class _SafeAccessToken(AccessToken):
    """azure-core's ``AccessToken`` whose repr withholds the token."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"AccessToken(token=<withheld>, expires_on={self.expires_on})"


class _SafeAccessTokenInfo(AccessTokenInfo):
    """azure-core's ``AccessTokenInfo`` whose repr withholds the token."""

    def __repr__(self) -> str:
        return (f"AccessTokenInfo(token=<withheld>, expires_on={self.expires_on}, "
                f"token_type={self.token_type!r}, refresh_on={self.refresh_on})")


class _Credential:
    """``get_token`` and ``get_token_info`` over ``_acquire``."""

    _acquirer: TokenAcquirer

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        """A token for ``scopes`` (azure-core's ``TokenCredential``); other keywords ignored."""
        token = self._token(scopes, claims, tenant_id, enable_cae)
        return _SafeAccessToken(token.token, int(token.expires_on))

    def get_token_info(self, *scopes: str,
                       options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """A token for ``scopes`` (azure-core's ``SupportsTokenInfo``); unknown options ignored."""
        options = options or {}
        token = self._token(scopes, options.get("claims"), options.get("tenant_id"),
                            bool(options.get("enable_cae", False)))
        return _SafeAccessTokenInfo(token.token, int(token.expires_on),
                                    refresh_on=self._refresh_on(token))

    def close(self) -> None:
        """Nothing to release: the acquirer and its cache belong to the app."""

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _token(self, scopes: tuple[str, ...], claims: str | None, tenant_id: str | None,
               enable_cae: bool) -> CachedToken:
        if enable_cae:
            _hint_cae(self._acquirer.config)
        return self._acquire(scopes, claims or None, tenant_id)

    def _acquire(self, scopes: tuple[str, ...], claims: str | None,
                 tenant_id: str | None) -> CachedToken:
        raise NotImplementedError

    def _refresh_on(self, token: CachedToken) -> int | None:
        return int(token.refresh_on) if token.refresh_on else None


class UserCredential(_Credential):
    """This request's caller, as an azure-core ``TokenCredential`` (``get_user_credential()``)."""

    def __init__(self, acquirer: TokenAcquirer, caller: TokenClaims, assertion: str,
                 binding: _RequestBinding) -> None:
        self._acquirer = acquirer
        self._caller = caller
        self._assertion = assertion  # the caller's own token: never logged, never in a repr
        self._binding = binding

    def __repr__(self) -> str:
        return f"<UserCredential for {self._caller!r}>"

    def _acquire(self, scopes: tuple[str, ...], claims: str | None,
                 tenant_id: str | None) -> CachedToken:
        self._check_bound()
        caller = self._caller
        tenant = self._acquirer.honoured_tenant(tenant_id, caller.tid)
        return self._acquirer.on_behalf_of(self._assertion, caller.token_hash, scopes,
                                           tenant=tenant, claims=claims, user=caller.oid or "")

    def _refresh_on(self, token: CachedToken) -> int | None:
        return _ASK_EVERY_TIME

    def _check_bound(self) -> None:
        binding = self._binding
        if has_request_context():
            if request._get_current_object() is not binding.request:  # type: ignore[attr-defined]
                raise RuntimeError(
                    "This user credential belongs to another request's caller: call "
                    "get_user_credential() in this request instead.")
            # Its own request is being served here. Flask tears a request down when the view
            # returns, then pushes its context again while a stream_with_context response
            # streams (and tears it down once more): that is the request, still in progress.
            binding.active = True
        elif not binding.active:
            raise RuntimeError(
                "This user credential belonged to a request that has ended: call "
                "get_user_credential() in each request, and build SDK clients per request (a "
                "client must not outlive the request whose user it acts for).")


class AppCredential(_Credential):
    """The app's own tokens, as an azure-core ``TokenCredential`` (``get_app_credential()``)."""

    def __init__(self, acquirer: TokenAcquirer, tenant: str | None) -> None:
        self._acquirer = acquirer
        self._tenant = tenant

    def __repr__(self) -> str:
        return f"<AppCredential client={self._acquirer.config.client_id} tenant={self._tenant}>"

    def _acquire(self, scopes: tuple[str, ...], claims: str | None,
                 tenant_id: str | None) -> CachedToken:
        tenant = self._acquirer.honoured_tenant(tenant_id, self._tenant)
        return self._acquirer.app_token(scopes, tenant=tenant, claims=claims)


class _AsyncCredential:
    """An ``AsyncTokenCredential`` over a sync credential: each call runs in a worker thread
    (a cache miss waits on the network; the event loop must not), request context included."""

    def __init__(self, sync: _Credential) -> None:
        self._sync = sync

    def __repr__(self) -> str:
        return f"<async {self._sync!r}>"

    async def get_token(self, *scopes: str, claims: str | None = None,
                        tenant_id: str | None = None, enable_cae: bool = False,
                        **kwargs: Any) -> AccessToken:
        """A token for ``scopes`` (azure-core's ``AsyncTokenCredential``)."""
        return await _in_thread(lambda: self._sync.get_token(
            *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae))

    async def get_token_info(self, *scopes: str,
                             options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """A token for ``scopes`` (azure-core's ``AsyncSupportsTokenInfo``)."""
        return await _in_thread(lambda: self._sync.get_token_info(*scopes, options=options))

    async def close(self) -> None:
        """Nothing to release: the acquirer and its cache belong to the app."""

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None = None,
                        exc: BaseException | None = None,
                        tb: TracebackType | None = None) -> None:
        await self.close()


class AsyncUserCredential(_AsyncCredential):
    """This request's caller, as an ``AsyncTokenCredential`` (``get_async_user_credential()``)."""


class AsyncAppCredential(_AsyncCredential):
    """The app's own tokens, as an ``AsyncTokenCredential`` (``get_async_app_credential()``)."""


# helpers -----------------------------------------------------------------------------------
async def _in_thread(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)  # copies contextvars: the request context comes along


def _hint_cae(config: OboConfig) -> None:
    global _cae_hint_logged
    if not _cae_hint_logged and "CP1" not in config.client_capabilities:
        _cae_hint_logged = True
        log.info("flask-obo: an Azure SDK asked for a CAE token; tokens are CAE-capable only "
                 "with OBO_CLIENT_CAPABILITIES = [\"CP1\"] (this app's tokens are ordinary ones)")
