"""``DownstreamSession``: one request's view of a pooled session to a downstream API.

One pooled ``requests.Session`` per configured downstream API is built at init_app and shared
by all requests (``DownstreamPools``); a ``DownstreamSession`` sets this caller's Authorization
header on each call (nothing user-specific is stored on the pool: no auth, no cookies). The
token is acquired on first need, from the cache when possible.

A downstream 401 carrying a claims challenge (continuous access evaluation,
``error="insufficient_claims"``) gets one fresh token for that challenge and one retry; if
refused again, the challenge goes back to the client as a ``ClaimsChallenge``. The header is
read in one linear pass and only up to 8 KiB, the claims only up to a sane nesting depth: what
does not read as a challenge reaches the view as the 401 it is. A downstream API that does not
answer, or whose answer cannot be read, is a 502/504, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.cookiejar
import json
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from .._http import build_session
from ..cache import AccessToken
from ..config import OboConfig
from ..context import get_assertion
from ..errors import ClaimsChallenge, DownstreamUnavailable, UpstreamAuthError
from ..validation import TokenClaims

if TYPE_CHECKING:
    from ..acquisition import TokenAcquirer

__all__ = ["DownstreamPools", "DownstreamSession"]

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
# Claims nested deeper than this are not a claims request (Entra's go 3 or 4 deep).
_MAX_CLAIMS_DEPTH = 16


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

    __slots__ = ("_acquirer", "_assertion", "_base_url", "_caller", "_pool", "_scopes", "_tenant",
                 "_timeout", "_token")

    def __init__(self, acquirer: TokenAcquirer, pool: requests.Session,
                 scopes: tuple[str, ...], *, base_url: str | None, timeout: float,
                 caller: TokenClaims | None = None, tenant: str | None = None,
                 assertion: str | None = None) -> None:
        self._acquirer = acquirer
        self._pool = pool
        self._scopes = scopes
        self._base_url = base_url
        self._timeout = timeout
        self._caller = caller  # None: an app-only session
        self._tenant = tenant
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
                    caller: TokenClaims, assertion: str) -> DownstreamSession:
        """A session for ``caller``, whose raw token ``assertion`` is: both from one validation
        (``verified_caller``), so there is nothing to check (the per-request hot path)."""
        session = cls.__new__(cls)
        session._acquirer, session._pool, session._scopes = acquirer, pool, scopes
        session._base_url, session._timeout = base_url, timeout
        session._caller, session._tenant, session._assertion = caller, None, assertion
        session._token = None
        return session

    def __repr__(self) -> str:
        kind = "app" if self._caller is None else "on-behalf-of"
        return f"<DownstreamSession {kind} {self._base_url or ''} scopes={list(self._scopes)}>"

    @property
    def access_token(self) -> AccessToken:
        """This session's token, acquired on first use (from the cache when possible)."""
        token = self._token
        if token is None:
            token = self._token = self._acquire(None)
        return token

    @property
    def authorization(self) -> str:
        """The Authorization header value for the downstream API."""
        token = self._token
        if token is None:
            token = self._token = self._acquire(None)
        return token.authorization

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        target = self._url(url)
        kwargs.setdefault("timeout", self._timeout)
        response = self._send(method, target, kwargs)
        claims = _claims_challenge(response)
        if claims is None:
            return response
        if not _replayable(kwargs):
            response.close()
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
        caller = self._caller
        if caller is None:
            return self._acquirer.app_token(self._scopes, tenant=self._tenant, claims=claims)
        return self._acquirer.on_behalf_of(self._assertion,  # type: ignore[arg-type]
                                           caller.token_hash, self._scopes, tenant=caller.tid,
                                           claims=claims, user=caller.oid or "")

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
    if len(header) > _MAX_CHALLENGE_BYTES or "insufficient_claims" not in header:
        return None  # a header this long is no challenge of Entra's: the view gets the 401
    params = {k.lower(): v for k, v in _CHALLENGE_PARAM.findall(header)}
    encoded = params.get("claims")
    if params.get("error") != "insufficient_claims" or not encoded:
        return None
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_")
        claims = raw.decode()
        if _nesting(claims) > _MAX_CLAIMS_DEPTH or not isinstance(json.loads(claims), dict):
            return None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return claims


def _nesting(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings not counted):
    checked before parsing, so deep nesting is refused rather than a RecursionError."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _replayable(kwargs: dict[str, Any]) -> bool:
    if kwargs.get("files") is not None:
        return False
    data = kwargs.get("data")
    return data is None or isinstance(data, (str, bytes, dict, list, tuple))
