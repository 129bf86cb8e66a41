"""The caller of the current request: bearer-token parsing, validation and state on ``g``.

``verify_token_in_request`` is the one public entry point; the extension's before-request
guard and the authorization decorators both call it, and it is idempotent within a request.
State is written to ``g`` only after every check passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from flask import current_app, g, request
from werkzeug.local import LocalProxy

from . import telemetry
from ._refusals import request_line
from .errors import InvalidRequest, InvalidToken, MissingToken, OboError
from .signals import token_rejected, token_validated
from .state import OboState, get_state
from .validation import TokenClaims

if TYPE_CHECKING:
    from flask import Flask, Request
    from flask.ctx import _AppCtxGlobals

__all__ = [
    "current_token",
    "get_assertion",
    "get_current_token",
    "verify_request",
    "verify_token_in_request",
]

_G_ATTR = "_flask_obo_token"


class _Verified:
    """What ``g`` holds for a validated request; the raw token never shows in its repr.

    It names the request it was validated for: ``g`` belongs to the app context, which Flask
    shares between requests made inside one (``with app.app_context(): client.get(...)``),
    and one request's caller must never become the next one's.
    """

    __slots__ = ("assertion", "claims", "request")

    def __init__(self, claims: TokenClaims, assertion: str, request: Request) -> None:
        self.claims = claims
        self.assertion = assertion
        self.request = request

    def __repr__(self) -> str:
        return f"<verified {self.claims!r}>"


def verify_token_in_request(optional: bool = False) -> TokenClaims | None:
    """Validate the request's bearer token and return its claims.

    Raises ``MissingToken`` (401, bare challenge) when no bearer token came, unless
    ``optional`` (then returns None); ``InvalidRequest`` (400) for a malformed Authorization
    header; ``InvalidToken`` (401) for a token that fails any check; ``IdentityProviderUnavailable``
    (503) while the authority's keys cannot be had. A present but invalid token is refused even
    when ``optional``. Idempotent within a request.
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get("obo")
    if state is None:
        state = get_state(app)  # raises the clear error
    return verify_request(app, request._get_current_object(),  # type: ignore[attr-defined]
                          state, optional=optional)


def verify_request(app: Flask, req: Request, state: OboState, *,
                   optional: bool = False) -> TokenClaims | None:
    """``verify_token_in_request`` with the context objects already resolved (the hot path)."""
    app_g: _AppCtxGlobals = g._get_current_object()
    # g.get, not getattr: a missing attribute makes g raise and catch an AttributeError (~2 us).
    verified: _Verified | None = app_g.get(_G_ATTR)
    if verified is not None and verified.request is req:
        return verified.claims
    header = req.environ.get("HTTP_AUTHORIZATION")
    token = _bearer_token(app, req, state, header) if header else None
    if token is None:
        if optional:
            return None
        _rejected(app, req, state, MissingToken(reason="missing", log_detail="no bearer token in "
                                         "the Authorization header"))
    try:
        claims, cached = state.validator.validate_cached(token)
    except OboError as exc:
        _rejected(app, req, state, exc, token)
    except Exception as exc:  # fail closed: an unforeseen input is a bad token, never a 500
        _rejected(app, req, state, InvalidToken(reason="malformed", log_detail=(
            f"an unexpected {type(exc).__name__} in validation")), token)
    setattr(app_g, _G_ATTR, _Verified(claims, token, req))
    telemetry.validation_accepted(cached, claims if state.config.telemetry_include_ids else None)
    if token_validated.receivers:
        token_validated.send(app, claims=claims, cached=cached)
    return claims


def _bearer_token(app: Flask, req: Request, state: OboState, header: str) -> str | None:
    """The token of ``Bearer <token>``; None for another scheme (RFC 6750: a bare challenge)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip(" \t")
    if not token or " " in token or "\t" in token or "," in token:
        _rejected(app, req, state, InvalidRequest(
            "The Authorization header must hold exactly one bearer token: 'Bearer <token>'.",
            reason="malformed_header", log_detail="not 'Bearer <one token>'",
        ))
    return token


def _rejected(app: Flask, req: Request, state: OboState, error: OboError,
              token: str | None = None) -> NoReturn:
    telemetry.validation_refused(error.reason)
    if token_rejected.receivers:
        token_rejected.send(app, reason=error.reason, status=error.code)
    state.refusals.refused(error, where=request_line(req), token=token)
    raise error from None  # an unexpected error's message (maybe token content) stays out


def _verified() -> _Verified:
    try:
        verified: _Verified | None = g._get_current_object().get(_G_ATTR)
        current = request._get_current_object()  # type: ignore[attr-defined]
        if verified is not None and verified.request is not current:
            verified = None  # another request's, in a shared app context
    except RuntimeError:  # outside an app or request context
        verified = None
    if verified is None:
        raise RuntimeError(
            "No validated access token in this request: the view is public, or the token "
            "check has not run. Call flask_obo.verify_token_in_request() first, or use "
            "@requires_scopes / @requires_roles."
        )
    return verified


def get_current_token() -> TokenClaims:
    """The validated claims of this request's token; RuntimeError if none was validated."""
    return _verified().claims


def get_assertion() -> str:
    """The raw bearer token of this request, for On-Behalf-Of. Never log or return it."""
    return _verified().assertion


#: The validated claims of this request's token (a ``TokenClaims``).
current_token: TokenClaims = LocalProxy(get_current_token)  # type: ignore[assignment]
