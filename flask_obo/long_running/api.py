"""The public functions of long-running sessions (Microsoft.Identity.Web's
``LongRunningWebApiSessionKey``): a view starts one; a background job, hours later and outside
any request, acts as the user through it; anyone holding the key may stop it.

Inside a request, a session is only its own user's: another user's key is refused at start
(``SessionKeyInUse``) and is no session at all to use or stop.
"""

from __future__ import annotations

import secrets
import threading

from flask import Flask, current_app, has_request_context

from ..cache import AccessToken
from ..context import get_assertion, verify_token_in_request
from ..downstream.api import Scopes, acquirer_of, obo_caller, pool_for, resolve_api
from ..downstream.session import DownstreamSession
from ..errors import InvalidToken, LongRunningSessionExpired
from ..state import OboState, get_state
from ..validation import TokenClaims
from .sessions import LongRunningSessions, build_sessions, checked_key

__all__ = [
    "acquire_token_for_long_running_process",
    "get_long_running_session",
    "start_long_running_process",
    "stop_long_running_process",
]

_build_lock = threading.Lock()


def _sessions(state: OboState) -> LongRunningSessions:
    """The app's sessions, built on first use (an app that never starts one needs no Redis)."""
    sessions = state.long_running
    if sessions is None:
        with _build_lock:
            sessions = state.long_running
            if sessions is None:
                sessions = state.long_running = build_sessions(state.config, state.acquirer)
    return sessions


def _request_caller(app: Flask) -> TokenClaims | None:
    """The validated user of the current request of ``app``, if there is one."""
    if not has_request_context() or current_app._get_current_object() is not app:  # type: ignore[attr-defined]
        return None
    return verify_token_in_request(optional=True)


def _app(app: Flask | None) -> Flask:
    return app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]


def start_long_running_process(api: str | None = None, scopes: Scopes = None, *,
                               session_key: str | None = None) -> str:
    """Start a session that lets a background job act as this request's user; returns its key.

    Inside a request: validates the caller (a user, not an app), performs on-behalf-of asking
    for ``offline_access`` and keeps the refresh token, encrypted, in the shared token cache
    (Redis: ``ConfigError`` otherwise), bound to this app, the user and the scopes of ``api``
    (or ``scopes``). Without ``session_key`` an unguessable one is made. Starting again with
    the same key, for the same user, renews the session; another user's key is refused
    (``SessionKeyInUse``). The key is a capability: give it to the job, never to a log.
    """
    caller = obo_caller()
    if not caller.oid or not caller.tid:  # a session is bound to them: fail closed
        raise InvalidToken("The token names no user (oid and tid): a long-running session "
                           "cannot be bound to its user.", reason="claims")
    state = get_state()
    acquirer = acquirer_of(state)
    wanted, _ = resolve_api(state, scopes, api)
    sessions = _sessions(state)
    key = secrets.token_urlsafe(32) if session_key is None else checked_key(session_key)
    sessions.start(key, get_assertion(), caller, acquirer.scope_tuple(wanted))
    return key


def acquire_token_for_long_running_process(session_key: str, api: str | None = None,
                                           scopes: Scopes = None, *, app: Flask | None = None,
                                           claims: str | None = None) -> AccessToken:
    """A downstream token as the session's user, from a job outside any request.

    ``scopes`` or ``api``'s, default the session's own (a session serves only the scopes it
    was started for). ``app`` is the Flask app (default: the current one). Tokens are cached
    and renewed ahead like OBO tokens. Raises ``LongRunningSessionExpired`` at once when the
    session is unknown, stopped, idle too long, or its refresh token was refused; transient
    failures are ``IdentityProviderUnavailable`` and ``TokenCacheUnavailable`` (retry later).
    """
    flask_app = _app(app)
    state = get_state(flask_app)
    wanted = None if scopes is None and api is None else resolve_api(state, scopes, api)[0]
    return _sessions(state).acquire(session_key, wanted, claims=claims,
                                    caller=_request_caller(flask_app), api=api)


def get_long_running_session(session_key: str, api: str | None = None, *,
                             app: Flask | None = None) -> DownstreamSession:
    """A session that calls ``api`` (or, without, any URL with the session's scopes) as the
    session's user. It fails at once for a session that cannot be used; each call then takes
    its token from the session, so a job may keep it for hours."""
    flask_app = _app(app)
    state = get_state(flask_app)
    sessions = _sessions(state)
    caller = _request_caller(flask_app)
    _, _, record = sessions.load(session_key, caller)
    if api is None:
        wanted, spec = record.scopes, None
    else:
        configured, spec = resolve_api(state, None, api)
        wanted = sessions.scopes_of(record, configured)
    return DownstreamSession(
        acquirer_of(state), pool_for(state, spec), wanted,
        base_url=spec.base_url if spec else None,
        timeout=spec.timeout if spec else state.config.downstream_timeout,
        tenant=record.tenant, source=_SessionTokens(sessions, session_key, wanted, caller, api),
        api=api)


def stop_long_running_process(session_key: str, *, app: Flask | None = None) -> bool:
    """End the session: later uses raise ``LongRunningSessionExpired`` ("stopped"). Returns
    whether a live session was stopped; an unknown or ended one is left as it is."""
    flask_app = _app(app)
    return _sessions(get_state(flask_app)).stop(session_key, _request_caller(flask_app))


class _SessionTokens:
    """A ``DownstreamSession``'s token source: the long-running session."""

    __slots__ = ("_api", "_caller", "_key", "_scopes", "_sessions")

    def __init__(self, sessions: LongRunningSessions, key: str, scopes: tuple[str, ...],
                 caller: TokenClaims | None, api: str | None) -> None:
        self._sessions = sessions
        self._key = key
        self._scopes = scopes
        self._caller = caller
        self._api = api  # a label for telemetry

    def __repr__(self) -> str:
        return "<long-running session tokens>"  # never the key

    def acquire(self, claims: str | None) -> AccessToken:
        return self._sessions.acquire(self._key, self._scopes, claims=claims,
                                      caller=self._caller, api=self._api)

    def refused(self, claims: str) -> Exception:
        return LongRunningSessionExpired(
            "The downstream API refused the session's token even after a fresh one was "
            "obtained for its claims challenge: the user must sign in again.",
            reason="interaction_required")
