"""Every exception flask-obo raises, under one root: ``except FlaskOBOError`` catches them all.

- ``OboError`` and its subclasses are what a client of a flask-obo API receives: werkzeug
  HTTPExceptions that carry their own RFC 6750 ``WWW-Authenticate`` header and an RFC 9457
  ``application/problem+json`` body, so they render correctly even where an app's error
  handlers are bypassed. An app can replace the rendering with ``FlaskOBO(error_renderer=...)``.
- ``ConfigError``, ``AuthorityError``, ``CredentialUnavailable`` and ``FlightTimeout`` are
  the operator's side: a configuration to fix, an authority that cannot be reached, a client
  assertion that cannot be produced, a wait that was given up.

Nothing here ever holds a token: descriptions are short, fixed phrases.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast, overload

from flask import current_app, has_app_context
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.response import Response as SansIOResponse
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from werkzeug.wrappers.request import Request as WSGIRequest

__all__ = [
    "AuthorityError",
    "ClaimsChallenge",
    "ConfigError",
    "ConsentRequired",
    "CredentialUnavailable",
    "DownstreamUnavailable",
    "FlaskOBOError",
    "FlightTimeout",
    "IdentityProviderUnavailable",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "LongRunningSessionExpired",
    "MissingToken",
    "OboError",
    "ServerMisconfigured",
    "SessionKeyInUse",
    "TokenCacheUnavailable",
    "UpstreamAuthError",
    "bearer_challenge",
]

_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')  # RFC 6750 section 3 quoted values


# A claims challenge or consent URI cut short is useless to the client: those may be longer.
_LONG_PARAMS = frozenset({"claims", "consentUri", "authorization_uri", "scope", "scopes"})


def _quote(value: str, limit: int = 300) -> str:
    return _UNSAFE.sub("", value)[:limit]


def bearer_challenge(params: Mapping[str, str | None]) -> str:
    """``Bearer k="v", ...`` with values cleaned to the characters RFC 6750 allows."""
    parts = [f'{k}="{_quote(v, 4096 if k in _LONG_PARAMS else 300)}"'
             for k, v in params.items() if v is not None]
    return "Bearer " + ", ".join(parts)


class FlaskOBOError(Exception):
    """The root of every exception flask-obo raises."""


class ConfigError(FlaskOBOError, RuntimeError):
    """A configuration value that flask-obo cannot work with; the message says what to do."""


class AuthorityError(FlaskOBOError):
    """The authority's metadata or keys could not be fetched; the message says what to fix."""


class CredentialUnavailable(FlaskOBOError, RuntimeError):
    """The client assertion could not be produced when a token request needed it."""


class FlightTimeout(FlaskOBOError):
    """A caller gave up waiting for another caller's identical identity-provider call."""


class OboError(FlaskOBOError, HTTPException):
    """Base class: an HTTP error with a problem+json body and an optional Bearer challenge."""

    # None on the base class: Flask files an errorhandler(OboError) under "any code", so it
    # catches every subclass (with a code here, it would only see that code).
    code: int | None = None
    title = "Error"
    #: the error's name in problem ``type`` URIs: ``OBO_PROBLEM_TYPE_BASE`` + this, which is
    #: the anchor of its section on the docs' errors page.
    type_name = "error"
    #: RFC 6750 error code for WWW-Authenticate; None: no error attribute.
    error: str | None = None
    #: whether the response carries a Bearer challenge.
    challenge = True

    def __init__(
        self,
        description: str | None = None,
        *,
        reason: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        log_detail: str | None = None,
    ) -> None:
        super().__init__(description)
        #: a short machine-readable code (e.g. "expired"): for signals, logs and the body.
        self.reason = reason
        #: for the server log only, never the response: what was compared (non-secret values).
        self.log_detail = log_detail
        self.extra: dict[str, Any] = dict(extra or {})
        self.extra_headers: dict[str, str] = dict(headers or {})

    def challenge_params(self) -> dict[str, str | None]:
        realm = ""
        if has_app_context():
            state = current_app.extensions.get("obo")
            realm = getattr(getattr(state, "config", None), "realm", "") or ""
        params: dict[str, str | None] = {"realm": realm}
        if self.error:
            params["error"] = self.error
            params["error_description"] = self.description
        return params

    def problem(self) -> dict[str, Any]:
        base = "about:blank"
        if has_app_context():
            state = current_app.extensions.get("obo")
            base = getattr(getattr(state, "config", None), "problem_type_base", base)
        code = self.code or 500
        # RFC 9457 section 4.2.1: with about:blank the title is the HTTP status phrase.
        blank = base == "about:blank"
        body: dict[str, Any] = {
            "type": base if blank else base + self.type_name,
            "title": HTTPStatus(code).phrase if blank else self.title,
            "status": self.code,
            "detail": self.description,
        }
        if self.error:
            body["error"] = self.error
        if self.reason:
            body["reason"] = self.reason
        body.update(self.extra)
        return body

    def get_headers(
        self, environ: WSGIEnvironment | None = None, scope: dict[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/problem+json")]
        if self.challenge:
            headers.append(("WWW-Authenticate", bearer_challenge(self.challenge_params())))
        headers.extend(self.extra_headers.items())
        return headers

    def get_body(
        self, environ: WSGIEnvironment | None = None, scope: dict[str, Any] | None = None
    ) -> str:
        return json.dumps(self.problem())

    @overload
    def get_response(
        self, environ: WSGIEnvironment | WSGIRequest | None = ..., scope: None = None
    ) -> Response: ...
    @overload
    def get_response(
        self, environ: None = None, scope: dict[str, Any] = ...
    ) -> SansIOResponse: ...
    def get_response(
        self,
        environ: WSGIEnvironment | WSGIRequest | None = None,
        scope: dict[str, Any] | None = None,
    ) -> Response | SansIOResponse:
        if has_app_context():
            state = current_app.extensions.get("obo")
            renderer = getattr(state, "error_renderer", None)
            if renderer is not None:
                return cast(Response, renderer(self))
        return Response(self.get_body(), self.code or 500, self.get_headers())


class MissingToken(OboError):
    """401 with a bare challenge (RFC 6750 section 3.1: no error code when no token came)."""

    code = 401
    title = "Unauthorized"
    type_name = "missing-token"
    description = "This API needs a bearer access token in the Authorization header."

    def challenge_params(self) -> dict[str, str | None]:
        return {"realm": super().challenge_params()["realm"]}


class InvalidRequest(OboError):
    """400: a malformed Authorization header (RFC 6750 section 3.1, invalid_request)."""

    code = 400
    title = "Invalid request"
    type_name = "invalid-request"
    error = "invalid_request"
    description = "The Authorization header is malformed."


class InvalidToken(OboError):
    code = 401
    title = "Invalid token"
    type_name = "invalid-token"
    error = "invalid_token"
    description = "The access token is invalid."


class InsufficientScope(OboError):
    code = 403
    title = "Insufficient scope"
    type_name = "insufficient-scope"
    error = "insufficient_scope"
    description = "The access token lacks the scope or role this resource needs."

    def __init__(self, description: str | None = None, *, scopes: Iterable[str] = (),
                 roles: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(description, **kwargs)
        self.scopes = tuple(scopes)
        self.roles = tuple(roles)
        if self.scopes:
            self.extra.setdefault("required_scopes", list(self.scopes))
        if self.roles:
            self.extra.setdefault("required_roles", list(self.roles))

    def challenge_params(self) -> dict[str, str | None]:
        params = super().challenge_params()
        if self.scopes:
            params["scope"] = " ".join(self.scopes)
        return params


class ClaimsChallenge(OboError):
    """401 asking the client to sign the user in again with a claims challenge (MFA, CA, CAE)."""

    code = 401
    title = "Additional claims required"
    type_name = "insufficient-claims"
    error = "insufficient_claims"
    description = "The user must sign in again to satisfy a policy of the downstream API."

    def __init__(self, description: str | None = None, *, claims: str,
                 authorization_uri: str, **kwargs: Any) -> None:
        super().__init__(description, **kwargs)
        self.claims = claims  # the claims JSON, as Entra returned it
        self.authorization_uri = authorization_uri
        self.extra.setdefault("claims", claims)

    def challenge_params(self) -> dict[str, str | None]:
        params = super().challenge_params()
        encoded = base64.b64encode(self.claims.encode()).decode()
        return {"realm": params["realm"], "authorization_uri": self.authorization_uri,
                "error": params["error"], "error_description": params["error_description"],
                "claims": encoded}


class ConsentRequired(OboError):
    """403: the user or an admin has not consented to the downstream scopes."""

    code = 403
    title = "Consent required"
    type_name = "consent-required"
    error = "insufficient_scope"
    description = "Consent to the downstream API's scopes is missing."

    def __init__(self, description: str | None = None, *, scopes: Iterable[str],
                 consent_uri: str, **kwargs: Any) -> None:
        super().__init__(description, reason=kwargs.pop("reason", "consent_required"), **kwargs)
        self.scopes = tuple(scopes)
        self.consent_uri = consent_uri
        self.extra.setdefault("scopes", list(self.scopes))
        self.extra.setdefault("consent_uri", consent_uri)
        self.extra.setdefault("proposed_action", "consent")

    def challenge_params(self) -> dict[str, str | None]:
        params = super().challenge_params()
        # Microsoft.Identity.Web's form, so its clients' consent handling works unchanged.
        params.update({"consentUri": self.consent_uri, "scopes": " ".join(self.scopes),
                       "proposedAction": "consent"})
        return params


def _retry_after(error: OboError, seconds: int) -> int:
    """``error``'s ``Retry-After`` header (unless one was given): at least a second."""
    seconds = max(1, int(seconds))
    error.extra_headers.setdefault("Retry-After", str(seconds))
    return seconds


class IdentityProviderUnavailable(OboError):
    """503: the identity provider failed or is unreachable; retry later. Nothing was cached."""

    code = 503
    title = "Identity provider unavailable"
    type_name = "identity-provider-unavailable"
    challenge = False
    description = "The identity provider could not be reached; try again shortly."

    def __init__(self, description: str | None = None, *, retry_after: int = 5,
                 **kwargs: Any) -> None:
        super().__init__(description, **kwargs)
        self.retry_after = _retry_after(self, retry_after)


class UpstreamAuthError(OboError):
    """502: the identity provider refused this API itself (its credential or registration)."""

    code = 502
    title = "Upstream authentication failed"
    type_name = "upstream-auth-failed"
    challenge = False
    description = "This API could not obtain a token for the downstream API."


class DownstreamUnavailable(OboError):
    """502 (refused, reset, an answer that cannot be read) or 504 (timed out): the downstream
    API gave no usable answer.

    An answer it did give, even a 5xx, reaches the view as a response instead.
    """

    code = 502
    title = "Downstream API unavailable"
    type_name = "downstream-unavailable"
    challenge = False
    description = "The downstream API could not be reached."

    def __init__(self, description: str | None = None, *, timed_out: bool = False,
                 **kwargs: Any) -> None:
        kwargs.setdefault("reason", "downstream_timeout" if timed_out else "downstream_unreachable")
        super().__init__(description or ("The downstream API did not answer in time."
                                         if timed_out else None), **kwargs)
        if timed_out:
            self.code = 504


class ServerMisconfigured(OboError):
    """500: the app's code names something its configuration lacks (a downstream API missing
    from ``OBO_DOWNSTREAM_APIS``, no credential to call one). The body says so in short, the
    log in full; ``flask obo check`` reports it before any request does."""

    code = 500
    title = "Server misconfigured"
    type_name = "server-misconfigured"
    challenge = False
    description = "This API is misconfigured; its operator must fix its configuration."


class TokenCacheUnavailable(OboError):
    """503: the shared token cache (Redis), which long-running sessions live in, could not be
    reached; retry later. The session itself is not lost."""

    code = 503
    title = "Token cache unavailable"
    type_name = "token-cache-unavailable"
    challenge = False
    description = "The token cache could not be reached; try again shortly."

    def __init__(self, description: str | None = None, *, retry_after: int = 5,
                 **kwargs: Any) -> None:
        kwargs.setdefault("reason", "token_cache_unavailable")
        super().__init__(description, **kwargs)
        self.retry_after = _retry_after(self, retry_after)


class LongRunningSessionExpired(OboError):
    """410: a long-running session cannot act as its user any more; ``reason`` says why:
    ``unknown`` (never started, expired unused, or lost with the cache), ``stopped``, ``idle``
    (unused for longer than ``OBO_LONG_RUNNING_IDLE_TTL``), or the identity provider refused
    its refresh token: ``expired``, ``revoked``, ``user_disabled``, ``consent_withdrawn``,
    ``interaction_required`` (MFA or conditional access now asks for the user), ``refused``.

    A job gets it at once: retrying cannot help. The user must start a new session from a
    request of theirs.
    """

    code = 410
    title = "Long-running session expired"
    type_name = "long-running-session-expired"
    challenge = False
    description = "The long-running session has ended: start a new one from a request."


class SessionKeyInUse(OboError):
    """409: ``start_long_running_process`` was given the key of another user's (or another
    app's) session. Nothing was changed; choose another key, or let flask-obo make one."""

    code = 409
    title = "Session key in use"
    type_name = "session-key-in-use"
    challenge = False
    description = ("This session key belongs to another session: use another key, or none "
                   "(flask-obo then makes one).")

    def __init__(self, description: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("reason", "session_key_in_use")
        super().__init__(description, **kwargs)
