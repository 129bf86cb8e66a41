"""``TokenAcquirer``: downstream tokens on behalf of the caller (OBO) or for the app itself.

One MSAL ``ConfidentialClientApplication`` per tenant, built on first use and kept (the 256
most recently built): the configured tenant, or for a multi-tenant API the caller's own
``tid`` (never /common or /organizations, which OBO cannot use), with the plumbing of
``_msal.py``: the app's pooled session, and no token or response caching inside MSAL
(``OboTokenCache`` is the cache). Concurrent misses of one key make one call
(``_single_flight``). Entra's answers become the errors in ``errors.py``
(``_msal.result_error``); log lines carry AADSTS codes and a hash of the user, never a token.
Long-running sessions get a second app per tenant, the only one that asks for
``offline_access``: its refresh tokens go to the caller (``long_running``), never into MSAL.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msal
from flask import has_request_context, request
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from .. import telemetry
from .._claims import readable_claims
from .._refusals import RefusalLog, clean, request_line
from .._single_flight import SingleFlight
from ..cache import AccessToken, OboTokenCache, build_token_cache
from ..checks import CheckResult
from ..config import OboConfig, is_guid
from ..errors import (
    ConfigError,
    DownstreamUnavailable,
    FlightTimeout,
    IdentityProviderUnavailable,
    InsufficientScope,
    InvalidToken,
    OboError,
    UpstreamAuthError,
)
from ..signals import downstream_token_acquired, obo_failed
from ._msal import (
    CLIENT_FAULT_CODES,
    MsalHttp,
    NoStore,
    NoTokenCache,
    call_outcome,
    error_codes,
    exception_error,
    refresh_error,
    result_error,
    with_capabilities,
)
from .aadsts import hint_for
from .credentials import ClientCredential, load_credential

if TYPE_CHECKING:
    from flask import Flask

    from .._http import PinnedTrustSession
    from ..state import OboState

__all__ = ["TokenAcquirer", "app_scopes", "check_credential", "create_acquirer", "user_hash"]

log = logging.getLogger("flask_obo.obo")

_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_GRAPH = "https://graph.microsoft.com"
# MSAL apps kept (one per tenant): a multi-tenant API open to any tenant would otherwise keep
# one for every tenant that ever called it. An evicted tenant's next miss rebuilds its app.
_MAX_CLIENTS = 256
_MAX_EXPIRES_IN = 86_400
# The key of a tenant's second MSAL app, the one that asks for offline_access (refresh tokens,
# for long-running sessions only); a space cannot occur in a tenant id or domain.
_OFFLINE = " offline_access"


def create_acquirer(app: Flask, config: OboConfig, http: PinnedTrustSession,
                    cache: Any | None, *, clock: Callable[[], float] | None = None,
                    refusals: RefusalLog | None = None) -> TokenAcquirer | None:
    """The app's acquirer, or None for an API that only validates tokens (no credential)."""
    credential = load_credential(config)
    if credential is None:
        return None
    for api in config.downstream_apis.values():
        reserved = _RESERVED_SCOPES.intersection(api.scopes)
        if reserved:
            raise ConfigError(f"OBO_DOWNSTREAM_APIS[{api.name!r}]['scopes'] has {sorted(reserved)}"
                              ": list only the downstream API's own scopes.")
    acquirer = TokenAcquirer(config, http, credential,
                             build_token_cache(app, config, cache, credential, clock=clock),
                             sender=app, refusals=refusals)
    log.info("flask-obo: on-behalf-of enabled for client %s with a %s", config.client_id,
             credential.description)
    return acquirer


class TokenAcquirer:
    """Acquires, caches and maps errors for downstream tokens of one app."""

    def __init__(self, config: OboConfig, http: PinnedTrustSession, credential: ClientCredential,
                 cache: OboTokenCache, *, sender: Any = None,
                 refusals: RefusalLog | None = None) -> None:
        self.config = config
        # Where a refused tenant is explained: the app's refusal log (``OboState.refusals``).
        self.refusals = refusals or RefusalLog()
        self.credential = credential
        self.cache = cache
        self._http = MsalHttp(http, config.http_timeout)
        self._clients: dict[str, msal.ConfidentialClientApplication] = {}
        self._clients_lock = threading.Lock()  # writers only; reads are plain dict lookups
        self.max_clients = _MAX_CLIENTS
        self._client_flights: SingleFlight[msal.ConfidentialClientApplication] = SingleFlight()
        host = urlsplit(config.instance).hostname or ""
        # Instance discovery asks login.microsoftonline.com about the host: only for Microsoft's.
        self._instance_discovery = None if host in WELL_KNOWN_AUTHORITY_HOSTS else False
        self._sender = weakref.ref(sender) if sender is not None else (lambda: None)
        self._scope_memo: dict[Any, tuple[str, ...]] = {}
        # Read on every request: looked up once here (is_multi_tenant is a computed property).
        self._client_id = config.client_id
        self._single_tenant = None if config.is_multi_tenant else config.tenant
        # (assertion hash, scopes, tenant) -> cache key: what a repeated caller asks for again.
        self._obo_keys = functools.lru_cache(maxsize=max(1024, cache.local.size))(self._obo_key)

    # public --------------------------------------------------------------------------------
    def on_behalf_of(self, assertion: str, assertion_hash: str, scopes: Iterable[str], *,
                     tenant: str | None = None, claims: str | None = None,
                     user: str = "", api: str | None = None) -> AccessToken:
        """A token for ``scopes`` on behalf of the user whose token ``assertion`` is.

        ``assertion_hash`` (hex SHA-256 of the assertion) keys the cache; with ``claims`` (a
        claims challenge) the cache is bypassed and the fresh token replaces the cached one.
        ``api``: the configured downstream API's name, a label for telemetry.
        """
        cache = self.cache
        if claims is None:  # the hit path first: one lookup for the key, one for the token
            try:
                key = self._obo_keys(assertion_hash, scopes, tenant)  # type: ignore[arg-type]
            except TypeError:  # scopes that are not hashable (a list): the path below
                pass
            else:
                token = cache.get(key)
                if token is not None and token.refresh_on > cache.clock():
                    telemetry.token_acquired("cache", "on_behalf_of", api)
                    if downstream_token_acquired.receivers:
                        self._send_acquired(token.scopes, "cache", False)
                    return token
        wanted = self.scope_tuple(scopes)
        tid = self.tenant_for(tenant)
        key = cache.key("obo", self._client_id, tid, assertion_hash, wanted)

        def fetch() -> AccessToken:
            return self._obo(tid, assertion, wanted, claims, user)

        return self._acquire(key, fetch, wanted, claims, app_only=False, api=api)

    def _obo_key(self, assertion_hash: str, scopes: Iterable[str], tenant: str | None) -> str:
        return self.cache.key("obo", self._client_id, self.tenant_for(tenant), assertion_hash,
                              self.scope_tuple(scopes))

    def app_token(self, scopes: Iterable[str], *, tenant: str | None = None,
                  claims: str | None = None, api: str | None = None) -> AccessToken:
        """An app-only token (client credentials) for the resource of ``scopes``."""
        wanted = app_scopes(self.scope_tuple(scopes))
        tid = self.tenant_for(tenant)
        key = self.cache.key("app", self._client_id, tid, "", wanted)

        def fetch() -> AccessToken:
            return self._client_credentials(tid, wanted, claims)

        return self._acquire(key, fetch, wanted, claims, app_only=True, api=api)

    def acquire_cached(self, key: str, fetch: Callable[[], AccessToken],
                       scopes: tuple[str, ...], *, claims: str | None = None,
                       api: str | None = None) -> AccessToken:
        """A user's token cached under ``key``, else ``fetch()``'s: the same single flight,
        cross-process lock and refresh-ahead as ``on_behalf_of`` (long-running sessions, whose
        ``fetch`` redeems a refresh token)."""
        return self._acquire(key, fetch, scopes, claims, app_only=False, api=api,
                             grant="refresh_token")

    def on_behalf_of_offline(self, assertion: str, scopes: tuple[str, ...], *, tenant: str,
                             user: str) -> tuple[AccessToken, str]:
        """On-behalf-of asking for ``offline_access``: the token and a refresh token, which
        the caller keeps (nothing is cached here). For long-running sessions."""
        started = self.cache.clock()
        result = self._call("on_behalf_of", tenant, scopes, user, lambda app: (
            app.acquire_token_on_behalf_of(assertion, list(scopes))), offline=True)
        token = self._token(result, started, "on_behalf_of", tenant, scopes, user)
        refresh_token = result.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise self._failed("on_behalf_of", tenant, scopes, user, UpstreamAuthError(
                "The identity provider returned no refresh token: this API needs the "
                "offline_access permission (consented) for long-running sessions.",
                reason="no_refresh_token"))
        return token, refresh_token

    def redeem_refresh_token(self, refresh_token: str, scopes: tuple[str, ...], *,
                             tenant: str, user: str,
                             claims: str | None = None) -> tuple[AccessToken, str | None]:
        """A token for ``scopes`` from ``refresh_token``, and the refresh token that replaces
        it (None if the identity provider sent none). A refused refresh token raises
        ``LongRunningSessionExpired``; nothing is cached here."""
        started = self.cache.clock()
        merged = with_capabilities(self.config.client_capabilities, claims)
        extra = {"data": {"claims": merged}} if merged else {}
        result = self._call("refresh_token", tenant, scopes, user, lambda app: (
            app.acquire_token_by_refresh_token(refresh_token, list(scopes), **extra)),
            offline=True)
        token = self._token(result, started, "refresh_token", tenant, scopes, user)
        rotated = result.get("refresh_token")
        return token, rotated if isinstance(rotated, str) and rotated else None

    def tenant_for(self, tid: str | None) -> str:
        """The tenant to ask: the configured one, or for a multi-tenant API the caller's (or
        the one given), which must be in ``OBO_ALLOWED_TENANTS`` (else a 403)."""
        if self._single_tenant is not None:
            return self._single_tenant
        if tid is None:
            raise ValueError(f"OBO_AUTHORITY is multi-tenant ('{self.config.tenant}'): pass the "
                             "tenant id to use (a token's tid).")
        if not is_guid(tid):
            raise InvalidToken(reason="tenant", description="The token's tenant id is invalid.")
        tid = tid.lower()
        allowed = self.config.allowed_tenants
        if allowed is not None and tid not in allowed:
            # A caller's own tid was checked by the validator; a tenant given by the app (maybe
            # from request input) must not make this API act in a tenant it does not serve.
            raise self._tenant_refused(tid, "OBO_ALLOWED_TENANTS does not list it")
        return tid

    def honoured_tenant(self, requested: object, default: str | None) -> str | None:
        """The tenant to ask where code or an Azure SDK names one (``requested``) instead of
        ``default`` (the caller's, or None: the configured one): the same tenant, or for a
        multi-tenant API one that ``OBO_ALLOWED_TENANTS`` allows. Any other is refused (403
        ``tenant_not_allowed``) before any identity-provider call: the one tenant check of
        every app-token and SDK path."""
        if requested is None:
            return default
        if not isinstance(requested, str):
            raise self._tenant_refused(requested, "a tenant id is a string")
        wanted = requested.strip().lower()
        single = self._single_tenant
        if wanted == (default or "").lower() or (single is not None and wanted == single.lower()):
            return default
        if single is not None:
            raise self._tenant_refused(requested, f"OBO_AUTHORITY is single-tenant ({single})")
        if not is_guid(wanted):
            raise self._tenant_refused(requested, "a tenant is named by its id (a GUID)")
        return self.tenant_for(wanted)

    def _tenant_refused(self, tenant: object, why: str) -> InsufficientScope:
        error = InsufficientScope("This API does not act in that tenant.",
                                  reason="tenant_not_allowed",
                                  log_detail=f"a token for tenant {clean(tenant, 64)} was "
                                             f"refused: {why}")
        self.refusals.refused(error, where=request_line(request) if has_request_context()
                              else "")
        return error

    def scope_tuple(self, scopes: Iterable[str]) -> tuple[str, ...]:
        """Scopes as a sorted tuple without duplicates (memoized for the tuples config holds)."""
        memo_key = scopes if isinstance(scopes, (tuple, str)) else None
        if memo_key is not None:
            known = self._scope_memo.get(memo_key)
            if known is not None:
                return known
        items = scopes.split() if isinstance(scopes, str) else list(scopes)
        if not items or not all(isinstance(s, str) and s and s == s.strip() for s in items):
            raise ValueError(f"scopes must be a non-empty list of scope strings, not {scopes!r}")
        reserved = _RESERVED_SCOPES.intersection(items)
        if reserved:
            raise ValueError(f"scopes {sorted(reserved)} are reserved (MSAL adds them itself); "
                             "ask only for the downstream API's scopes")
        result = tuple(sorted(set(items)))
        if memo_key is not None and len(self._scope_memo) < 1024:
            self._scope_memo[memo_key] = result
        return result

    def client(self, tenant: str, *, offline: bool = False) -> msal.ConfidentialClientApplication:
        """The MSAL app for ``tenant``, built once (its construction fetches discovery);
        ``offline``: the one that asks for refresh tokens (long-running sessions)."""
        key = tenant + _OFFLINE if offline else tenant
        found = self._clients.get(key)
        if found is not None:
            return found
        try:
            built, _ = self._client_flights.run(key, lambda: self._build_client(tenant, offline),
                                                timeout=self.cache.wait_timeout)
        except FlightTimeout:
            raise IdentityProviderUnavailable(reason="timeout") from None
        return built

    def msal_cache_size(self) -> int:
        """How many entries MSAL's own token caches hold (always 0: they store nothing)."""
        return sum(len(entries) for app in list(self._clients.values())
                   for entries in app.token_cache._cache.values())

    def close(self) -> None:
        """Wait for background refreshes to finish and release their threads."""
        self.cache.close()

    # the flow --------------------------------------------------------------------------------
    def _acquire(self, key: str, fetch: Callable[[], AccessToken], scopes: tuple[str, ...],
                 claims: str | None, *, app_only: bool, api: str | None = None,
                 grant: str | None = None) -> AccessToken:
        # api, grant: telemetry's labels (grant: the one fetch uses, where not OBO or app-only)
        cache = self.cache
        if claims is None:
            token = cache.get(key)  # the hit path: a dict lookup and a clock check
            if token is not None:
                if token.refresh_on <= cache.clock():
                    cache.refresh_in_background(key, lambda: self._announce(
                        fetch(), scopes, app_only, api, grant))
                self._signal_acquired(scopes, "cache", app_only, api, grant)
                return token
            flight = key
        else:
            if not readable_claims(claims):
                # A downstream API's (an Azure SDK passes it on): nothing to send to Entra.
                raise DownstreamUnavailable("The downstream API's claims challenge could not "
                                            "be read.", reason="downstream_bad_response")
            flight = key + ":" + hashlib.sha256(claims.encode()).hexdigest()[:16]
        try:
            token, fetched = cache.get_or_fetch(flight, fetch, store_key=key,
                                                force=claims is not None)
        except FlightTimeout:
            raise IdentityProviderUnavailable(reason="timeout") from None
        self._signal_acquired(scopes, "identity_provider" if fetched else "cache", app_only, api,
                              grant)
        return token

    def _announce(self, token: AccessToken, scopes: tuple[str, ...], app_only: bool,
                  api: str | None, grant: str | None) -> AccessToken:
        self._signal_acquired(scopes, "refresh_ahead", app_only, api, grant)
        return token

    def _obo(self, tenant: str, assertion: str, scopes: tuple[str, ...], claims: str | None,
             user: str) -> AccessToken:
        started = self.cache.clock()
        result = self._call("on_behalf_of", tenant, scopes, user, lambda app: (
            app.acquire_token_on_behalf_of(assertion, list(scopes), claims_challenge=claims)))
        return self._token(result, started, "on_behalf_of", tenant, scopes, user)

    def _client_credentials(self, tenant: str, scopes: tuple[str, ...],
                            claims: str | None) -> AccessToken:
        started = self.cache.clock()
        result = self._call("client_credentials", tenant, scopes, "app", lambda app: (
            app.acquire_token_for_client(list(scopes), claims_challenge=claims)))
        return self._token(result, started, "client_credentials", tenant, scopes, "app")

    def _call(self, grant: str, tenant: str, scopes: tuple[str, ...], user: str,
              call: Callable[[msal.ConfidentialClientApplication], Any], *,
              offline: bool = False) -> Mapping[str, Any]:
        # Timed and traced whole: a tenant's first call fetches its discovery document too.
        return telemetry.identity_provider_call(
            grant, lambda: self._call_once(grant, tenant, scopes, user, call, offline),
            call_outcome, (user, tenant) if self.config.telemetry_include_ids else None)

    def _call_once(self, grant: str, tenant: str, scopes: tuple[str, ...], user: str,
                   call: Callable[[msal.ConfidentialClientApplication], Any],
                   offline: bool) -> Mapping[str, Any]:
        try:
            app = self.client(tenant, offline=offline)
        except OboError as exc:
            raise self._failed(grant, tenant, scopes, user, exc,
                               error=f"metadata_{exc.reason}") from None
        try:
            result = call(app)
        except OboError:
            raise
        except Exception as exc:
            raise self._failed(grant, tenant, scopes, user, exception_error(exc)) from None
        if not isinstance(result, Mapping):
            raise self._failed(grant, tenant, scopes, user, IdentityProviderUnavailable(
                reason="malformed_response"))
        return result

    def _token(self, result: Mapping[str, Any], started: float, grant: str, tenant: str,
               scopes: tuple[str, ...], user: str) -> AccessToken:
        token = result.get("access_token")
        if "error" in result or not token:
            error = refresh_error(result) if grant == "refresh_token" else result_error(
                result, authority=f"{self.config.instance}/{tenant}",
                client_id=self.config.client_id, scopes=scopes,
                app_only=grant == "client_credentials")
            raise self._failed(grant, tenant, scopes, user, error, codes=error_codes(result),
                               error=str(result.get("error", "no_access_token")))
        try:
            # At most a day (Entra's longest access-token lifetime): an absurd lifetime would
            # keep the token in the caches for as long.
            expires_in = min(int(result.get("expires_in", 0)), _MAX_EXPIRES_IN)
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
            expires_in = 0
        token_type = str(result.get("token_type", "Bearer"))
        if expires_in <= 0 or not isinstance(token, str) or token_type.lower() != "bearer":
            raise self._failed(grant, tenant, scopes, user, IdentityProviderUnavailable(
                reason="malformed_response"))
        log.debug("flask-obo: %s token for user=%s tenant=%s scopes=%s, expires in %d s (%.0f ms)",
                  grant, user_hash(tenant, user), tenant, " ".join(scopes), expires_in,
                  (self.cache.clock() - started) * 1000)
        return AccessToken(token, started + expires_in, scopes)

    # errors ----------------------------------------------------------------------------------
    def _failed(self, grant: str, tenant: str, scopes: tuple[str, ...], user: str,
                exc: OboError, *, codes: Iterable[int] = (), error: str | None = None,
                ) -> OboError:
        """Log and signal a failure; returns ``exc`` for the caller to raise."""
        name = error or exc.reason or type(exc).__name__
        listed = sorted(codes)
        log.warning("flask-obo: %s for user=%s tenant=%s scopes=%s failed: %s %s -> %d", grant,
                    user_hash(tenant, user), tenant, " ".join(scopes), name,
                    ",".join(f"AADSTS{c}" for c in listed) or "(no AADSTS code)", exc.code)
        if obo_failed.receivers:
            sender = self._sender()
            if sender is not None:
                obo_failed.send(sender, error=name, codes=listed, scopes=scopes)
        return exc

    def _signal_acquired(self, scopes: tuple[str, ...], source: str, app_only: bool,
                         api: str | None = None, grant: str | None = None) -> None:
        telemetry.token_acquired(
            source, grant or ("client_credentials" if app_only else "on_behalf_of"), api)
        if downstream_token_acquired.receivers:
            self._send_acquired(scopes, source, app_only)

    def _send_acquired(self, scopes: tuple[str, ...], source: str, app_only: bool) -> None:
        sender = self._sender()
        if sender is not None:
            # The signal's sources stay two: a refresh ahead is the identity provider's.
            downstream_token_acquired.send(
                sender, scopes=scopes, app_only=app_only,
                source="identity_provider" if source == "refresh_ahead" else source)

    def _build_client(self, tenant: str, offline: bool) -> msal.ConfidentialClientApplication:
        key = tenant + _OFFLINE if offline else tenant
        found = self._clients.get(key)
        if found is not None:
            return found
        authority = f"{self.config.instance}/{tenant}"
        # Refresh tokens only where a long-running session keeps them (MSAL adds openid itself).
        excluded = [] if offline else ["offline_access"]
        try:
            app = msal.ConfidentialClientApplication(
                self.config.client_id,
                client_credential=self.credential.msal_credential,
                authority=authority,
                http_client=self._http,
                http_cache=NoStore(),
                token_cache=NoTokenCache(),
                instance_discovery=self._instance_discovery,
                exclude_scopes=excluded,
                # "CP1" tells Entra this API answers CAE claims challenges (DownstreamSession).
                client_capabilities=list(self.config.client_capabilities) or None,
                app_name="flask-obo",
            )
        except Exception as exc:  # logged and signalled by the caller, as any failed call
            raise exception_error(exc) from None
        with self._clients_lock:
            self._clients[key] = app
            while len(self._clients) > max(1, self.max_clients):
                del self._clients[next(iter(self._clients))]  # the oldest built
        return app


# helpers -------------------------------------------------------------------------------------
def app_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Delegated scopes -> the ``<resource>/.default`` scope client credentials ask for."""
    resources = set()
    for scope in scopes:
        if scope.endswith("/.default"):
            resources.add(scope[: -len("/.default")])
        elif "/" in scope:
            resources.add(scope.rsplit("/", 1)[0])
        else:  # a bare scope such as User.Read is Microsoft Graph's
            resources.add(_GRAPH)
    if len(resources) != 1:
        raise ValueError(f"an app token is for one resource; scopes {sorted(scopes)} name "
                         f"{len(resources)}")
    return (resources.pop() + "/.default",)


def user_hash(tenant: str, user: str) -> str:
    """A user as logged: a hash prefix of tenant and oid, never the oid itself."""
    if not user or user == "app":
        return user or "-"
    return hashlib.sha256(f"{tenant}:{user}".encode()).hexdigest()[:12]


# flask obo check -----------------------------------------------------------------------------
def check_credential(state: OboState) -> Iterator[CheckResult]:
    """Prove the credential works: a client-credentials call to the identity provider."""
    acquirer = state.acquirer
    if acquirer is None:
        return
    config = state.config
    if config.is_multi_tenant:
        tenants = sorted(config.allowed_tenants or ())
        if not tenants:
            yield CheckResult(True, "credential", f"{acquirer.credential.description}: not tried "
                              "(a multi-tenant API allowing any tenant has no tenant to ask)",
                              warning=True)
            return
        tenant = tenants[0]
    else:
        tenant = config.tenant
    apis = list(config.downstream_apis.values())
    scopes = app_scopes(apis[0].scopes) if apis else (f"{config.client_id}/.default",)
    try:
        token = acquirer._client_credentials(tenant, scopes, None)
    except UpstreamAuthError as exc:
        codes = exc.extra.get("aadsts", ())
        hint = hint_for(codes)
        said = f"{exc.reason} {_aadsts(exc)}".strip()
        if hint is not None and set(hint.codes) & CLIENT_FAULT_CODES:
            yield CheckResult(False, "credential", f"the identity provider refused app "
                              f"{config.client_id} with its {acquirer.credential.description} "
                              f"({said}: {hint.meaning}): {_plain(hint.fix)}.")
        elif exc.reason in ("invalid_client", "unauthorized_client", "credential_unavailable"):
            yield CheckResult(False, "credential", f"{acquirer.credential.description} was "
                              f"refused ({said}): check that it is the one registered on app "
                              f"{config.client_id} and has not expired.")
        else:
            detail = f": {hint.meaning}; {_plain(hint.fix)}" if hint is not None else ""
            yield CheckResult(True, "credential", f"{acquirer.credential.description} accepted, "
                              f"but a token for {scopes[0]} was refused ({said}){detail}",
                              warning=True)
        return
    except OboError as exc:
        yield CheckResult(False, "credential", f"could not reach the identity provider to try "
                          f"{acquirer.credential.description} ({exc.reason}).")
        return
    valid = int(token.expires_on - acquirer.cache.clock())
    yield CheckResult(True, "credential", f"{acquirer.credential.description}: app token for "
                      f"{scopes[0]} obtained (valid {valid} s)")


def _aadsts(exc: OboError) -> str:
    return ",".join(f"AADSTS{c}" for c in sorted(exc.extra.get("aadsts", ()))) or ""


def _plain(text: str) -> str:
    """A hint's markdown, as a terminal shows it."""
    return text.replace("`", "").replace("*", "")

