"""The caller of the current request: bearer-token parsing, validation and its result.

``verify_token_in_request`` is the one public entry point; the extension's before-request
guard and the authorization decorators both call it, and it is idempotent within a request.
The result is kept only after every check passed, on the request object itself rather than on
``g``: ``g`` belongs to the app context, which Flask shares between requests made inside one
(``with app.app_context(): client.get(...)``), so it would need a check on every read that it
is this request's; the request object is this request's by construction, and reading it costs
one context lookup where ``g`` and that check cost three.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from flask import current_app, request
from werkzeug.local import LocalProxy

from . import telemetry
from ._refusals import request_line
from .errors import InvalidRequest, InvalidToken, MissingToken, OboError
from .signals import token_rejected, token_validated
from .state import OboState, get_state
from .validation import TokenClaims

if TYPE_CHECKING:
    from flask import Flask, Request

__all__ = [
    "current_token",
    "get_assertion",
    "get_current_token",
    "verified_caller",
    "verify_request",
    "verify_token_in_request",
]

_ATTR = "_flask_obo_verified"  # on the request object
_BEARER = frozenset({"Bearer ", "bearer ", "BEARER "})


class _Verified:
    """What a validated request holds (and the app state it was validated with, so later
    steps of the request need not look the app up again); the raw token never shows in its
    repr."""

    __slots__ = ("assertion", "claims", "state")

    def __init__(self, claims: TokenClaims, assertion: str, state: OboState) -> None:
        self.claims = claims
        self.assertion = assertion
        self.state = state

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
    verified = _verify(app, req, state, optional)
    return verified.claims if verified is not None else None


def verified_caller() -> tuple[TokenClaims, str, OboState]:
    """The validated claims of this request's caller, the raw token they are of and the app's
    state, from one validation (``verify_token_in_request``, not optional): for OBO. Once
    the guard has validated the request, this is one context lookup."""
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    verified: _Verified | None = req.__dict__.get(_ATTR)
    if verified is None:
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        verified = _verify(app, req, get_state(app), False)
        assert verified is not None  # not optional: a missing token raised
    return verified.claims, verified.assertion, verified.state


def _verify(app: Flask, req: Request, state: OboState, optional: bool) -> _Verified | None:
    # __dict__.get, not getattr: a missing attribute raises and catches an AttributeError.
    verified: _Verified | None = req.__dict__.get(_ATTR)
    if verified is not None:
        return verified
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
    verified = req.__dict__[_ATTR] = _Verified(claims, token, state)
    telemetry.validation_accepted(cached, claims if state.config.telemetry_include_ids else None)
    if token_validated.receivers:
        token_validated.send(app, claims=claims, cached=cached)
    return verified


def _bearer_token(app: Flask, req: Request, state: OboState, header: str) -> str | None:
    """The token of ``Bearer <token>``; None for another scheme (RFC 6750: a bare challenge)."""
    if header[:7] in _BEARER:  # the usual form, read without a copy of the header per step
        token = header[7:]
        if (token and not token[0].isspace() and not token[-1].isspace()
                and " " not in token and "\t" not in token and "," not in token):
            return token
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
        verified: _Verified | None = request._get_current_object(  # type: ignore[attr-defined]
        ).__dict__.get(_ATTR)
    except RuntimeError:  # outside a request context
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


def _claim(name: str) -> property:
    def read(proxy: _CurrentToken) -> object:
        try:
            verified = request._get_current_object().__dict__.get(  # type: ignore[attr-defined]
                _ATTR)
        except RuntimeError:  # outside a request context
            verified = None
        return getattr(verified.claims if verified is not None else get_current_token(), name)

    return property(read, doc=f"``TokenClaims.{name}`` of this request's token.")


class _CurrentToken(LocalProxy):  # type: ignore[type-arg]
    """A ``LocalProxy`` whose ``TokenClaims`` attributes are properties of its own: read
    through ``LocalProxy.__getattr__``, each costs a failed lookup, an AttributeError and a
    bound partial first, on every access in every view."""

    __slots__ = ()

    oid = _claim("oid")
    tid = _claim("tid")
    sub = _claim("sub")
    scopes = _claim("scopes")
    roles = _claim("roles")
    client_id = _claim("client_id")
    version = _claim("version")
    is_app_only = _claim("is_app_only")
    expires_at = _claim("expires_at")
    token_hash = _claim("token_hash")


#: The validated claims of this request's token (a ``TokenClaims``).
current_token: TokenClaims = _CurrentToken(get_current_token)  # type: ignore[assignment]
