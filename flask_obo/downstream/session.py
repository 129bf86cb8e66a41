"""``DownstreamSession``: one request's view of a pooled session to a downstream API.

One pooled ``requests.Session`` per configured downstream API is built at init_app and shared
by all requests (``DownstreamPools``); a ``DownstreamSession`` sets this caller's Authorization
header on each call (nothing user-specific is stored on the pool: no auth, no cookies). The
token is acquired on first need, from the cache when possible.

A downstream 401 carrying a claims challenge (continuous access evaluation,
``error="insufficient_claims"``) gets one fresh token for that challenge and one retry; if
refused again, the challenge goes back to the client as a ``ClaimsChallenge``. The header is
read in one linear pass and only up to 8 KiB, the claims only up to a sane nesting depth: what
does not read as a challenge reaches the view as the 401 it is. A session over a
``TokenSource`` (a long-running session's) asks it for the token of every call, and for the
error to raise when a challenge cannot be met. A downstream API that does not answer, or whose
answer cannot be read, is a 502/504, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.cookiejar
import logging
import re
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from .. import telemetry
from .._claims import readable_claims
from .._http import build_session
from ..cache import AccessToken
from ..config import OboConfig
from ..context import get_assertion
from ..errors import ClaimsChallenge, DownstreamUnavailable, UpstreamAuthError
from ..validation import TokenClaims

if TYPE_CHECKING:
    from ..acquisition import TokenAcquirer

__all__ = ["DownstreamPools", "DownstreamSession", "TokenSource"]

log = logging.getLogger("flask_obo.downstream")

_UNREADABLE_ANSWER = (requests.exceptions.ChunkedEncodingError,
                      requests.exceptions.ContentDecodingError,
                      requests.exceptions.TooManyRedirects, requests.exceptions.RetryError)
# A parameter name only where a name starts (the look-behind): without it, every position
# inside a long run of name characters would start a match that scans to the run's end, and a
# hostile header would cost time quadratic in its length, with the GIL held.
_CHALLENGE_PARAM = re.compile(r'(?<![\w-])([A-Za-z_][\w-]*)\s*=\s*"([^"]*)"')
# Longer WWW-Authenticate headers are not read as challenges (Entra's are a few hundred bytes).
_MAX_CHALLENGE_BYTES = 8192


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
        # Per request, never on the shared pool: the current span (this call's) as the parent.
        telemetry.inject_context(request.headers)
        return request


# the session -------------------------------------------------------------------------------
class TokenSource(Protocol):
    """Where a session's tokens come from when it is neither a request's caller nor the app."""

    def acquire(self, claims: str | None) -> AccessToken:
        """A token (for ``claims``: a fresh one meeting that claims challenge)."""

    def refused(self, claims: str) -> Exception:
        """The error to raise when the downstream API refuses even that fresh token."""


class DownstreamSession:
    """Calls one downstream API as this request's caller (or as the app, for app tokens).

    ``get``/``post``/... take a path relative to the API's ``base_url`` (or an absolute URL on
    the same origin) and the usual ``requests`` arguments; a default timeout applies.
    """

    __slots__ = ("_acquirer", "_api", "_assertion", "_base_url", "_caller", "_pool", "_scopes",
                 "_source", "_tenant", "_timeout", "_token")

    def __init__(self, acquirer: TokenAcquirer, pool: requests.Session,
                 scopes: tuple[str, ...], *, base_url: str | None, timeout: float,
                 caller: TokenClaims | None = None, tenant: str | None = None,
                 assertion: str | None = None, source: TokenSource | None = None,
                 api: str | None = None) -> None:
        self._acquirer = acquirer
        self._pool = pool
        self._scopes = scopes
        self._base_url = base_url
        self._timeout = timeout
        self._caller = caller  # None: an app-only session
        self._tenant = tenant
        # A source is asked on every call: a session kept by a job for hours would otherwise
        # keep an expired token, and one stopped meanwhile would go on.
        self._source = source
        self._api = api  # the configured API's name (telemetry); None for ad-hoc scopes
        # The caller's own token, taken now: the cache key is the caller's token hash, so the
        # assertion exchanged must be that same token even if the session outlives its request
        # (kept, or used from another thread) and another user's request is current then.
        if caller is not None:
            if assertion is None:
                assertion = get_assertion()  # this request's token, whose claims caller holds
            elif hashlib.sha256(assertion.encode()).hexdigest() != caller.token_hash:
                raise ValueError("assertion is not the token whose claims caller holds")
        self._assertion = assertion
        self._token: AccessToken | None = None

    @classmethod
    def _for_caller(cls, acquirer: TokenAcquirer, pool: requests.Session,
                    scopes: tuple[str, ...], base_url: str | None, timeout: float,
                    caller: TokenClaims, assertion: str, api: str | None) -> DownstreamSession:
        """A session for ``caller``, whose raw token ``assertion`` is: both from one validation
        (``verified_caller``), so there is nothing to check (the per-request hot path)."""
        session = cls.__new__(cls)
        session._acquirer, session._pool, session._scopes = acquirer, pool, scopes
        session._base_url, session._timeout = base_url, timeout
        session._caller, session._tenant, session._assertion = caller, None, assertion
        session._source, session._api, session._token = None, api, None
        return session

    def __repr__(self) -> str:
        kind = ("long-running" if self._source is not None else
                "app" if self._caller is None else "on-behalf-of")
        return f"<DownstreamSession {kind} {self._base_url or ''} scopes={list(self._scopes)}>"

    @property
    def access_token(self) -> AccessToken:
        """This session's token, acquired on first use (from the cache when possible)."""
        if self._source is not None:
            return self._source.acquire(None)  # asked for every call
        token = self._token
        if token is None:
            token = self._token = self._acquire(None)
        return token

    @property
    def authorization(self) -> str:
        """The Authorization header value for the downstream API."""
        token = self._token
        if token is None or self._source is not None:
            token = self.access_token
        return token.authorization

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        target = self._url(url)
        kwargs.setdefault("timeout", self._timeout)
        response = self._send(method, target, kwargs, self.authorization)
        claims = _claims_challenge(response)
        if claims is None:
            return response
        if not _replayable(kwargs):
            response.close()
            raise self._refused(claims)
        response.close()
        self._token = self._acquire(claims)  # one fresh token for exactly this challenge
        response = self._send(method, target, kwargs, self._token.authorization)
        again = _claims_challenge(response)
        if again is not None:
            response.close()
            raise self._refused(again)
        return response

    def _send(self, method: str, target: str, kwargs: dict[str, Any],
              authorization: str) -> requests.Response:
        # The token is had before: an identity-provider call is not part of this call's span.
        return telemetry.downstream_call(
            lambda: self._send_once(method, target, kwargs, authorization),
            method, target, self._api, self._ids())

    def _send_once(self, method: str, target: str, kwargs: dict[str, Any],
                   authorization: str) -> requests.Response:
        try:
            return self._pool.request(method, target, auth=_Bearer(authorization), **kwargs)
        except _UNREADABLE_ANSWER as exc:
            # An answer that cannot be read (a broken body or encoding, a redirect loop) is the
            # downstream API's fault: a gateway error, not a 500 with a stack trace.
            log.warning("flask-obo: downstream %s %s answered unreadably: %s", method,
                        _origin(target), type(exc).__name__)
            raise DownstreamUnavailable("The downstream API's answer could not be read.",
                                        reason="downstream_bad_response") from None
        except requests.RequestException as exc:
            # No answer at all (refused, reset, timed out, after the idempotent retries): the
            # client gets a gateway error, not a 500. An answer, even a 5xx, is returned.
            if not isinstance(exc, (requests.ConnectionError, requests.Timeout)):
                raise  # the view's own mistake (a bad URL, an unserialisable body)
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
        if self._source is not None:
            return self._source.acquire(claims)
        caller = self._caller
        if caller is None:
            return self._acquirer.app_token(self._scopes, tenant=self._tenant, claims=claims,
                                            api=self._api)
        return self._acquirer.on_behalf_of(self._assertion,  # type: ignore[arg-type]
                                           caller.token_hash, self._scopes, tenant=caller.tid,
                                           claims=claims, user=caller.oid or "", api=self._api)

    def _ids(self) -> tuple[str, str] | None:
        """(user object id, tenant id) for the call's span, with OBO_TELEMETRY_INCLUDE_IDS."""
        if not self._acquirer.config.telemetry_include_ids:
            return None
        caller = self._caller
        if caller is None:  # the app's own token, or a long-running session's: the tenant only
            return "", self._tenant or ""
        return caller.oid or "", caller.tid or ""

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
        if self._source is not None:
            return self._source.refused(claims)
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
    if len(header) > _MAX_CHALLENGE_BYTES or "insufficient_claims" not in header:
        return None  # a header this long is no challenge of Entra's: the view gets the 401
    params = {k.lower(): v for k, v in _CHALLENGE_PARAM.findall(header)}
    encoded = params.get("claims")
    if params.get("error") != "insufficient_claims" or not encoded:
        return None
    try:
        claims = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_").decode()
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return claims if readable_claims(claims) else None


def _replayable(kwargs: dict[str, Any]) -> bool:
    if kwargs.get("files") is not None:
        return False
    data = kwargs.get("data")
    return data is None or isinstance(data, (str, bytes, dict, list, tuple))
