"""Calling downstream APIs as the caller: ``@requires_downstream``, the functions beneath it,
and ``DownstreamSession``.

One pooled ``requests.Session`` per configured downstream API is built at init_app and shared
by all requests; a ``DownstreamSession`` is a small per-request view of it that sets this
user's Authorization header on each call (nothing user-specific is stored on the pool: no
auth, no cookies). The token is acquired on first need, from the cache when possible.

A downstream 401 carrying a claims challenge (continuous access evaluation,
``error="insufficient_claims"``) gets one fresh token for that challenge and one retry; if
refused again, the challenge goes back to the client as a ``ClaimsChallenge``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import http.cookiejar
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from flask import current_app
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from ._http import build_session
from .claims import TokenClaims
from .config import DownstreamApi, OboConfig
from .context import get_assertion, verify_token_in_request
from .errors import ClaimsChallenge, DownstreamUnavailable, InsufficientScope, UpstreamAuthError
from .extension import get_state
from .obo import TokenAcquirer
from .token_cache import AccessToken

__all__ = [
    "DownstreamPools",
    "DownstreamSession",
    "acquire_app_token",
    "acquire_token_on_behalf_of",
    "get_app_session",
    "get_downstream_session",
    "requires_app_token",
    "requires_downstream",
]

log = logging.getLogger("flask_obo.downstream")

F = TypeVar("F", bound=Callable[..., Any])
Scopes = Iterable[str] | str | None

_CHALLENGE_PARAM = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*"([^"]*)"')


# pools -------------------------------------------------------------------------------------
class DownstreamPools:
    """The app's pooled sessions: one per configured downstream API, one for ad-hoc scopes."""

    def __init__(self, config: OboConfig) -> None:
        self._ca_bundle = config.ca_bundle
        self.default = self._build(config.downstream_retries)
        self.by_api = {name: self._build(api.retries) for name, api in
                       config.downstream_apis.items()}

    def _build(self, retries: int) -> requests.Session:
        retry = Retry(
            total=retries, connect=retries, read=retries, status=retries,
            status_forcelist=(502, 503, 504),
            allowed_methods=Retry.DEFAULT_ALLOWED_METHODS,  # idempotent methods only
            backoff_factor=0.2, backoff_max=2.0,
            respect_retry_after_header=False,  # a request thread must not sleep for minutes
            raise_on_status=False,
        )
        session = build_session(self._ca_bundle, retries=retry, pool_maxsize=32)
        # Shared by every user: it must remember nothing from one response for the next request.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        return session

    def close(self) -> None:
        for session in (self.default, *self.by_api.values()):
            session.close()


class _Bearer(requests.auth.AuthBase):
    """Sets this request's Authorization header (an explicit auth also keeps .netrc out)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.value
        return request


# the session -------------------------------------------------------------------------------
class DownstreamSession:
    """Calls one downstream API as this request's caller (or as the app, for app tokens).

    ``get``/``post``/... take a path relative to the API's ``base_url`` (or an absolute URL on
    the same origin) and the usual ``requests`` arguments; a default timeout applies.
    """

    __slots__ = ("_acquirer", "_base_url", "_caller", "_pool", "_scopes", "_tenant", "_timeout",
                 "_token")

    def __init__(self, acquirer: TokenAcquirer, pool: requests.Session,
                 scopes: tuple[str, ...], *, base_url: str | None, timeout: float,
                 caller: TokenClaims | None = None, tenant: str | None = None) -> None:
        self._acquirer = acquirer
        self._pool = pool
        self._scopes = scopes
        self._base_url = base_url
        self._timeout = timeout
        self._caller = caller  # None: an app-only session
        self._tenant = tenant
        self._token: AccessToken | None = None

    def __repr__(self) -> str:
        kind = "app" if self._caller is None else "on-behalf-of"
        return f"<DownstreamSession {kind} {self._base_url or ''} scopes={list(self._scopes)}>"

    @property
    def access_token(self) -> AccessToken:
        """This session's token, acquired on first use (from the cache when possible)."""
        if self._token is None:
            self._token = self._acquire(None)
        return self._token

    @property
    def authorization(self) -> str:
        """The Authorization header value for the downstream API."""
        return self.access_token.authorization

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        target = self._url(url)
        kwargs.setdefault("timeout", self._timeout)
        response = self._send(method, target, kwargs)
        claims = _claims_challenge(response)
        if claims is None:
            return response
        if not _replayable(kwargs):
            raise self._refused(claims)
        response.close()
        self._token = self._acquire(claims)  # one fresh token for exactly this challenge
        response = self._send(method, target, kwargs)
        again = _claims_challenge(response)
        if again is not None:
            response.close()
            raise self._refused(again)
        return response

    def _send(self, method: str, target: str, kwargs: dict[str, Any]) -> requests.Response:
        try:
            return self._pool.request(method, target, auth=_Bearer(self.authorization),
                                      **kwargs)
        except requests.RequestException as exc:
            # No answer at all (refused, reset, timed out, after the idempotent retries): the
            # client gets a gateway error, not a 500. An answer, even a 5xx, is returned.
            if not isinstance(exc, (requests.ConnectionError, requests.Timeout)):
                raise
            timed_out = _timed_out(exc)
            log.warning("flask-obo: downstream %s %s %s: %s", method, _origin(target),
                        "timed out" if timed_out else "unreachable", type(exc).__name__)
            raise DownstreamUnavailable(timed_out=timed_out) from None

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("OPTIONS", url, **kwargs)

    def _acquire(self, claims: str | None) -> AccessToken:
        caller = self._caller
        if caller is None:
            return self._acquirer.app_token(self._scopes, tenant=self._tenant, claims=claims)
        return self._acquirer.on_behalf_of(get_assertion(), caller.token_hash, self._scopes,
                                           tenant=caller.tid, claims=claims,
                                           user=caller.oid or "")

    def _url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            # The user's token goes only where this session was configured to send it.
            origin = _origin(self._base_url) if self._base_url else None
            if parts.scheme.lower() not in ("http", "https") or (
                    origin is not None and _origin(url) != origin):
                raise ValueError(f"{url!r} is not on this downstream API's origin "
                                 f"{origin}: its token is not sent elsewhere")
            return url
        if self._base_url is None:
            raise ValueError("this downstream session has no base_url: pass an absolute URL")
        return self._base_url + url.lstrip("/")

    def _refused(self, claims: str) -> Exception:
        if self._caller is None:
            return UpstreamAuthError("The downstream API refused this API's app token.",
                                     reason="insufficient_claims")
        tenant = self._acquirer.tenant_for(self._caller.tid)
        return ClaimsChallenge(claims=claims, reason="downstream_claims_challenge",
                               authorization_uri=f"{self._acquirer.config.instance}/{tenant}"
                                                 "/oauth2/v2.0/authorize")


def _timed_out(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)  # urllib3 MaxRetryError
    if isinstance(reason, NewConnectionError):  # a subclass of ConnectTimeoutError, alas
        return False
    return isinstance(reason, (ReadTimeoutError, ConnectTimeoutError))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _claims_challenge(response: requests.Response) -> str | None:
    """The claims JSON of a 401 ``Bearer ... error="insufficient_claims", claims="<b64>"``."""
    if response.status_code != 401:
        return None
    header = response.headers.get("WWW-Authenticate", "")
    if "insufficient_claims" not in header:
        return None
    params = {k.lower(): v for k, v in _CHALLENGE_PARAM.findall(header)}
    encoded = params.get("claims")
    if params.get("error") != "insufficient_claims" or not encoded:
        return None
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_")
        claims = raw.decode()
        if not isinstance(json.loads(claims), dict):
            return None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return claims


def _replayable(kwargs: dict[str, Any]) -> bool:
    if kwargs.get("files") is not None:
        return False
    data = kwargs.get("data")
    return data is None or isinstance(data, (str, bytes, dict, list, tuple))


# the public functions ----------------------------------------------------------------------
def _acquirer(state: Any) -> TokenAcquirer:
    acquirer: TokenAcquirer | None = state.acquirer
    if acquirer is None:
        raise RuntimeError("flask-obo has no credential for this app, so it cannot call "
                           "downstream APIs: set OBO_CLIENT_SECRET, OBO_CLIENT_CERTIFICATE or "
                           "OBO_CLIENT_ASSERTION.")
    return acquirer


def _resolve(state: Any, scopes: Scopes, api: str | None) -> tuple[tuple[str, ...],
                                                                   DownstreamApi | None]:
    spec: DownstreamApi | None = None
    if api is not None:
        spec = state.config.downstream_apis.get(api)
        if spec is None:
            known = ", ".join(sorted(state.config.downstream_apis)) or "none"
            raise RuntimeError(f"downstream API {api!r} is not in OBO_DOWNSTREAM_APIS "
                               f"(configured: {known}).")
    if scopes is None:
        if spec is None:
            raise TypeError("give the downstream scopes, or api=<a name in OBO_DOWNSTREAM_APIS>")
        return spec.scopes, spec
    return tuple(scopes.split()) if isinstance(scopes, str) else tuple(scopes), spec


def _user_caller() -> TokenClaims:
    """The validated caller, who must be a user: OBO exchanges only delegated tokens."""
    caller = verify_token_in_request()
    assert caller is not None  # not optional: it raised MissingToken otherwise
    if caller.is_app_only:
        raise InsufficientScope("This operation acts on behalf of a user: an app-only token "
                                "cannot be used.", reason="user_token_required")
    return caller


def acquire_token_on_behalf_of(scopes: Scopes = None, *, api: str | None = None,
                               claims: str | None = None) -> AccessToken:
    """A downstream token for the caller of this request (validating the request first).

    ``scopes``, or ``api`` (a name in ``OBO_DOWNSTREAM_APIS``) for its configured scopes.
    ``claims``: a claims challenge from the downstream API (bypasses the cache). Raises the
    errors of ``flask_obo.errors`` (401 with a claims challenge, 403 consent, 503, ...).
    """
    caller = _user_caller()
    state = get_state()
    wanted, _ = _resolve(state, scopes, api)
    return _acquirer(state).on_behalf_of(get_assertion(), caller.token_hash, wanted,
                                         tenant=caller.tid, claims=claims,
                                         user=caller.oid or "")


def acquire_app_token(scopes: Scopes = None, *, api: str | None = None,
                      tenant: str | None = None, claims: str | None = None) -> AccessToken:
    """An app-only token (client credentials) for the resource of ``scopes`` or ``api``.

    For a multi-tenant API the tenant is ``tenant``, else the validated caller's.
    """
    state = get_state()
    wanted, _ = _resolve(state, scopes, api)
    return _acquirer(state).app_token(wanted, tenant=_app_tenant(state, tenant), claims=claims)


def _app_tenant(state: Any, tenant: str | None) -> str | None:
    if tenant is None and state.config.is_multi_tenant:
        caller = verify_token_in_request(optional=True)
        return caller.tid if caller is not None else None
    return tenant


def get_downstream_session(api: str | None = None, scopes: Scopes = None) -> DownstreamSession:
    """A session that calls ``api`` (or any URL, with ``scopes``) as this request's caller.

    Validates the request first. An API configured with ``app_only: True`` gets the app's own
    token instead. The token is acquired when the session is first used.
    """
    state = get_state()
    acquirer = _acquirer(state)
    wanted, spec = _resolve(state, scopes, api)
    if spec is not None and spec.app_only:
        return get_app_session(api, scopes)
    caller = _user_caller()
    if spec is None:
        return DownstreamSession(acquirer, acquirer.pools.default, wanted, base_url=None,
                                 timeout=state.config.downstream_timeout, caller=caller)
    return DownstreamSession(acquirer, acquirer.pools.by_api[spec.name], wanted,
                             base_url=spec.base_url, timeout=spec.timeout, caller=caller)


def get_app_session(api: str | None = None, scopes: Scopes = None, *,
                    tenant: str | None = None) -> DownstreamSession:
    """A session that calls ``api`` with the app's own token (client credentials)."""
    state = get_state()
    acquirer = _acquirer(state)
    wanted, spec = _resolve(state, scopes, api)
    pool = acquirer.pools.by_api[spec.name] if spec is not None else acquirer.pools.default
    return DownstreamSession(acquirer, pool, wanted, base_url=spec.base_url if spec else None,
                             timeout=spec.timeout if spec else state.config.downstream_timeout,
                             tenant=_app_tenant(state, tenant))


# the decorators ----------------------------------------------------------------------------
def requires_downstream(scopes: Scopes = None, *, api: str | None = None,
                        arg: str = "downstream") -> Callable[[F], F]:
    """Validate the caller, then pass a ``DownstreamSession`` as keyword argument ``arg``.

    ``@requires_downstream(api="graph")`` or ``@requires_downstream(["api://.../read"])``. The
    token is acquired when the view first uses the session.
    """
    _check_args("requires_downstream", scopes, api)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[arg] = get_downstream_session(api, scopes)  # validates the request first
            return current_app.ensure_sync(view)(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def requires_app_token(scopes: Scopes = None, *, api: str | None = None,
                       arg: str = "downstream") -> Callable[[F], F]:
    """Pass a ``DownstreamSession`` that calls ``api`` with the app's own token."""
    _check_args("requires_app_token", scopes, api)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[arg] = get_app_session(api, scopes)
            return current_app.ensure_sync(view)(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def _check_args(name: str, scopes: Any, api: str | None) -> None:
    if callable(scopes):
        raise TypeError(f"use @{name}(api=...) or @{name}([...scopes]), with parentheses")
    if scopes is None and api is None:
        raise TypeError(f"@{name} needs the downstream scopes or api=<a name in "
                        "OBO_DOWNSTREAM_APIS>")
