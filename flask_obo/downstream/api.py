"""Calling downstream APIs as the caller or as the app, in pairs named as
Microsoft.Identity.Web's ...ForUser / ...ForApp:

=============================  ==================================
as the signed-in user (OBO)    as the app (client credentials)
=============================  ==================================
``@requires_downstream``       ``@requires_downstream_for_app``
``get_user_session``           ``get_app_session``
``acquire_token_for_user``     ``acquire_token_for_app``
=============================  ==================================

The user forms validate the caller first (OBO exchanges only delegated tokens: an app-only
caller gets a 403). The app forms act as the app whoever called: they rely on the guard, which
has validated the caller of every view that is not public; on a ``@public`` view they make an
anonymous proxy with the app's identity, which is sometimes the point (a public status page)
and otherwise a mistake. The decorators hand the view a ``DownstreamSession`` (``session.py``)
that acquires its token on first use; the functions work without them.

A name the configuration lacks (``api="graph"`` with no ``"graph"`` in ``OBO_DOWNSTREAM_APIS``)
is a ``ServerMisconfigured`` problem+json 500, logged once; the decorators record the names
they use on the view, so ``flask obo check`` finds such a view before any request does.

``obo_caller``, ``acquirer_of``, ``resolve_api``, ``pool_for`` and ``app_tenant`` are the steps
these functions share with flask-obo's other callers of downstream APIs (``long_running``);
they are not exported from ``flask_obo``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import requests
from flask import current_app, request

from .._refusals import request_line
from ..acquisition import TokenAcquirer
from ..cache import AccessToken
from ..checks import CheckResult
from ..config import DownstreamApi, check_scopes
from ..context import get_assertion, verify_token_in_request
from ..errors import ConfigError, InsufficientScope, ServerMisconfigured
from ..state import OboState, get_state
from ..validation import TokenClaims
from .session import DownstreamSession

__all__ = [
    "acquire_token_for_app",
    "acquire_token_for_user",
    "acquirer_of",
    "app_tenant",
    "check_downstream_names",
    "downstream_names",
    "get_app_session",
    "get_user_session",
    "obo_caller",
    "pool_for",
    "requires_downstream",
    "requires_downstream_for_app",
    "resolve_api",
]

log = logging.getLogger("flask_obo")

F = TypeVar("F", bound=Callable[..., Any])
Scopes = Iterable[str] | str | None

# On a view decorated by @requires_downstream(_for_app): the api names it uses (None: scopes
# without a name), its own and those of the decorators under it.
_NAMES_ATTR = "_flask_obo_downstream_names"
_NO_CREDENTIAL = ("this app has no credential, so it cannot call downstream APIs: set "
                  "OBO_CLIENT_SECRET, OBO_CLIENT_CERTIFICATE or OBO_CLIENT_ASSERTION")


# the public functions ----------------------------------------------------------------------
def _misconfigured(state: OboState, message: str, detail: str = "", *,
                   reason: str) -> ServerMisconfigured:
    """The client's 500 (``message``), after one ERROR line per mistake (``message`` and
    ``detail``, which may name more of the configuration than a client needs to see)."""
    logged = f"{message}{detail}"
    if logged not in state.reported_mistakes:
        state.reported_mistakes.add(logged)
        log.error("flask-obo: %s", logged)
    return ServerMisconfigured(f"This API is misconfigured: {message}.", reason=reason)


def acquirer_of(state: OboState) -> TokenAcquirer:
    """The app's acquirer; a ``ServerMisconfigured`` 500 for an app with no credential."""
    acquirer: TokenAcquirer | None = state.acquirer
    if acquirer is None:
        raise _misconfigured(state, _NO_CREDENTIAL, reason="no_credential")
    return acquirer


def resolve_api(state: OboState, scopes: Scopes,
                api: str | None) -> tuple[tuple[str, ...], DownstreamApi | None]:
    """The scopes asked for (``scopes``, else ``api``'s) and ``api``'s configuration; a
    ``ServerMisconfigured`` 500 for a name ``OBO_DOWNSTREAM_APIS`` lacks or invalid scopes."""
    spec: DownstreamApi | None = None
    if api is not None:
        spec = state.config.downstream_apis.get(api)
        if spec is None:
            raise _misconfigured(state, _unknown_api(api), _known_apis(state),
                                 reason="unknown_downstream_api")
    if scopes is None:
        if spec is None:
            raise TypeError("give the downstream scopes, or api=<a name in OBO_DOWNSTREAM_APIS>")
        return spec.scopes, spec
    wanted = tuple(scopes.split()) if isinstance(scopes, str) else tuple(scopes)
    try:
        check_scopes(wanted, "the scopes asked for")
    except ConfigError as exc:
        raise _misconfigured(state, str(exc).rstrip("."), reason="invalid_scopes") from None
    return wanted, spec


def _unknown_api(api: str) -> str:
    return f"the code calls downstream API {api!r}, which OBO_DOWNSTREAM_APIS does not define"


def _known_apis(state: OboState) -> str:
    known = ", ".join(repr(name) for name in sorted(state.config.downstream_apis)) or "none"
    return f" (it defines: {known}); add {{'scopes': [...], 'base_url': ...}} under that name"


def obo_caller() -> TokenClaims:
    """The validated caller, who must be a user: OBO exchanges only delegated tokens."""
    caller = verify_token_in_request()
    assert caller is not None  # not optional: it raised MissingToken otherwise
    if caller.is_app_only:
        error = InsufficientScope("This operation acts on behalf of a user: an app-only token "
                                  "cannot be used.", reason="user_token_required",
                                  log_detail=f"client {caller.client_id} sent an app-only "
                                  "token to a view that calls a downstream API as the user")
        get_state().refusals.refused(error, where=request_line(request))
        raise error
    return caller


def acquire_token_for_user(scopes: Scopes = None, *, api: str | None = None,
                           claims: str | None = None) -> AccessToken:
    """A downstream token for the caller of this request (validating the request first).

    ``scopes``, or ``api`` (a name in ``OBO_DOWNSTREAM_APIS``) for its configured scopes.
    ``claims``: a claims challenge from the downstream API (bypasses the cache). Raises the
    errors of ``flask_obo.errors`` (401 with a claims challenge, 403 consent, 503, ...).
    """
    caller = obo_caller()
    state = get_state()
    wanted, _ = resolve_api(state, scopes, api)
    return acquirer_of(state).on_behalf_of(get_assertion(), caller.token_hash, wanted,
                                         tenant=caller.tid, claims=claims,
                                         user=caller.oid or "", api=api)


def acquire_token_for_app(scopes: Scopes = None, *, api: str | None = None,
                          tenant: str | None = None, claims: str | None = None) -> AccessToken:
    """An app-only token (client credentials) for the resource of ``scopes`` or ``api``.

    For a multi-tenant API the tenant is ``tenant``, else the validated caller's.
    """
    state = get_state()
    wanted, _ = resolve_api(state, scopes, api)
    return acquirer_of(state).app_token(wanted, tenant=app_tenant(state, tenant), claims=claims,
                                        api=api)


def pool_for(state: OboState, spec: DownstreamApi | None) -> requests.Session:
    """The pooled ``requests`` session for ``spec``'s API (the default one without)."""
    pools = state.pools
    assert pools is not None  # built with the acquirer
    return pools.by_api[spec.name] if spec is not None else pools.default


def app_tenant(state: OboState, tenant: str | None) -> str | None:
    """The tenant of an app token: ``tenant``, else for a multi-tenant API the validated
    caller's (None: the configured one)."""
    if tenant is None and state.config.is_multi_tenant:
        caller = verify_token_in_request(optional=True)
        return caller.tid if caller is not None else None
    return tenant


def get_user_session(api: str | None = None, scopes: Scopes = None) -> DownstreamSession:
    """A session that calls ``api`` (or any URL, with ``scopes``) as this request's caller.

    Validates the request first. An API configured with ``app_only: True`` gets the app's own
    token instead. The token is acquired when the session is first used.
    """
    state = get_state()
    acquirer = acquirer_of(state)
    wanted, spec = resolve_api(state, scopes, api)
    if spec is not None and spec.app_only:
        verify_token_in_request()  # as documented, even on a public view: fail closed
        return get_app_session(api, scopes)
    caller = obo_caller()
    if spec is None:
        return DownstreamSession(acquirer, pool_for(state, None), wanted, base_url=None,
                                 timeout=state.config.downstream_timeout, caller=caller)
    return DownstreamSession(acquirer, pool_for(state, spec), wanted,
                             base_url=spec.base_url, timeout=spec.timeout, caller=caller,
                             api=api)


def get_app_session(api: str | None = None, scopes: Scopes = None, *,
                    tenant: str | None = None) -> DownstreamSession:
    """A session that calls ``api`` with the app's own token (client credentials)."""
    state = get_state()
    acquirer = acquirer_of(state)
    wanted, spec = resolve_api(state, scopes, api)
    return DownstreamSession(acquirer, pool_for(state, spec), wanted,
                             base_url=spec.base_url if spec else None,
                             timeout=spec.timeout if spec else state.config.downstream_timeout,
                             tenant=app_tenant(state, tenant), api=api)


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
            kwargs[arg] = get_user_session(api, scopes)  # validates the request first
            return current_app.ensure_sync(view)(*args, **kwargs)

        return _record(wrapper, view, api)  # type: ignore[return-value]

    return decorator


def requires_downstream_for_app(scopes: Scopes = None, *, api: str | None = None,
                                arg: str = "downstream") -> Callable[[F], F]:
    """Pass a ``DownstreamSession`` that calls ``api`` with the app's own token.

    It validates nothing itself: the guard has already refused a view that is not public
    without a valid token; on a ``@public`` view, anyone may make the app call ``api``.
    """
    _check_args("requires_downstream_for_app", scopes, api)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[arg] = get_app_session(api, scopes)
            return current_app.ensure_sync(view)(*args, **kwargs)

        return _record(wrapper, view, api)  # type: ignore[return-value]

    return decorator


def _check_args(name: str, scopes: Any, api: str | None) -> None:
    if callable(scopes):
        raise TypeError(f"use @{name}(api=...) or @{name}([...scopes]), with parentheses")
    if scopes is None and api is None:
        raise TypeError(f"@{name} needs the downstream scopes or api=<a name in "
                        "OBO_DOWNSTREAM_APIS>")
    if scopes is not None:
        check_scopes(tuple(scopes.split()) if isinstance(scopes, str) else tuple(scopes),
                     f"@{name}")


def _record(wrapper: Callable[..., Any], view: Callable[..., Any],
            api: str | None) -> Callable[..., Any]:
    setattr(wrapper, _NAMES_ATTR, (*downstream_names(view), api))
    return wrapper


def downstream_names(view: Callable[..., Any]) -> tuple[str | None, ...]:
    """The ``api=`` names the flask-obo decorators of ``view`` use (None: scopes only)."""
    names: tuple[str | None, ...] = getattr(view, _NAMES_ATTR, ())
    return names


# flask obo check ---------------------------------------------------------------------------
def check_downstream_names(state: OboState) -> Iterator[CheckResult]:
    """Every view's ``api=`` name is in ``OBO_DOWNSTREAM_APIS``, and there is a credential."""
    users: dict[str | None, list[str]] = {}
    for endpoint, view in sorted(current_app.view_functions.items()):
        for name in downstream_names(view):
            users.setdefault(name, []).append(endpoint)
    if not users:
        return
    every = sorted({e for endpoints in users.values() for e in endpoints})
    if state.acquirer is None:
        yield CheckResult(False, "downstream APIs", f"view(s) {', '.join(every)} call downstream "
                          f"APIs, but {_NO_CREDENTIAL}.")
        return
    missing = sorted((n, e) for n, e in users.items() if n is not None
                     and n not in state.config.downstream_apis)
    for name, endpoints in missing:
        yield CheckResult(False, "downstream APIs", f"view(s) {', '.join(endpoints)}: "
                          f"{_unknown_api(name)}{_known_apis(state)}.")
    if not missing:
        named = sorted(n for n in users if n is not None)
        yield CheckResult(True, "downstream APIs", f"{len(every)} view(s) call "
                          f"{', '.join(named) or 'downstream APIs by scope'}; every name is in "
                          "OBO_DOWNSTREAM_APIS")
