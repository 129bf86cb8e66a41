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
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from flask import current_app, has_request_context, request

from .._refusals import request_line
from .._views import runner as _runner
from ..acquisition import TokenAcquirer
from ..cache import AccessToken
from ..checks import CheckResult
from ..config import DownstreamApi, check_scopes
from ..context import verified_caller, verify_token_in_request
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
    _must_be_user(caller, get_state())
    return caller


def _must_be_user(caller: TokenClaims, state: OboState) -> None:
    """OBO exchanges only delegated tokens: an app-only caller gets a 403."""
    if caller.is_app_only:
        error = InsufficientScope("This operation acts on behalf of a user: an app-only token "
                                  "cannot be used.", reason="user_token_required",
                                  log_detail=f"client {caller.client_id} sent an app-only "
                                  "token to a view that calls a downstream API as the user")
        state.refusals.refused(error, where=request_line(request))
        raise error


def acquire_token_for_user(scopes: Scopes = None, *, api: str | None = None,
                           claims: str | None = None) -> AccessToken:
    """A downstream token for the caller of this request (validating the request first).

    ``scopes``, or ``api`` (a name in ``OBO_DOWNSTREAM_APIS``) for its configured scopes.
    ``claims``: a claims challenge from the downstream API (bypasses the cache). Raises the
    errors of ``flask_obo.errors`` (401 with a claims challenge, 403 consent, 503, ...).
    """
    caller, assertion, state = verified_caller()
    _must_be_user(caller, state)
    target = _target(state, scopes, api)
    return target.acquirer.on_behalf_of(assertion, caller.token_hash, target.scopes,
                                        tenant=caller.tid, claims=claims,
                                        user=caller.oid or "", api=api)


def acquire_token_for_app(scopes: Scopes = None, *, api: str | None = None,
                          tenant: str | None = None, claims: str | None = None) -> AccessToken:
    """An app-only token (client credentials) for the resource of ``scopes`` or ``api``.

    For a multi-tenant API the tenant is ``tenant``, else the validated caller's. A ``tenant``
    this API may not act in (not in ``OBO_ALLOWED_TENANTS``; another than the configured one
    for a single-tenant API) is refused: ``InsufficientScope``, 403 ``tenant_not_allowed``.
    """
    state = get_state()
    target = _target(state, scopes, api)
    return target.acquirer.app_token(target.scopes, tenant=app_tenant(state, tenant),
                                     claims=claims, api=api)


def pool_for(state: OboState, spec: DownstreamApi | None) -> requests.Session:
    """The pooled ``requests`` session for ``spec``'s API (the default one without)."""
    pools = state.pools
    assert pools is not None  # built with the acquirer
    return pools.by_api[spec.name] if spec is not None else pools.default


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a session for (api, scopes) goes: resolved once per app, then read from a dict."""

    acquirer: TokenAcquirer
    pool: requests.Session
    scopes: tuple[str, ...]
    base_url: str | None
    timeout: float
    app_only: bool


_MAX_TARGETS = 256  # (api, scopes) pairs come from code; scopes built per request are not kept


def _target(state: OboState, scopes: Scopes, api: str | None) -> _Target:
    memo = state.downstream_targets
    key = (api, scopes) if scopes is None or isinstance(scopes, (str, tuple)) else None
    try:
        found = memo.get(key) if key is not None else None
    except TypeError:  # a tuple holding something unhashable: resolved (and refused) below
        key = found = None
    if isinstance(found, _Target):
        return found
    acquirer = acquirer_of(state)
    wanted, spec = resolve_api(state, scopes, api)
    target = _Target(acquirer, pool_for(state, spec), wanted,
                     spec.base_url if spec is not None else None,
                     spec.timeout if spec is not None else state.config.downstream_timeout,
                     spec is not None and spec.app_only)
    if key is not None and len(memo) < _MAX_TARGETS:
        memo[key] = target
    return target


def app_tenant(state: OboState, tenant: str | None) -> str | None:
    """The tenant of an app token: ``tenant`` where this API may act in it (else a 403
    ``tenant_not_allowed``, before any identity-provider call), else for a multi-tenant API the
    validated caller's (None: the configured one)."""
    if tenant is None and not state.config.is_multi_tenant:
        return None
    caller = verify_token_in_request(optional=True) if has_request_context() else None
    default = caller.tid if caller is not None else None
    return default if tenant is None else acquirer_of(state).honoured_tenant(tenant, default)


def get_user_session(api: str | None = None, scopes: Scopes = None) -> DownstreamSession:
    """A session that calls ``api`` (or any URL, with ``scopes``) as this request's caller.

    Validates the request first. An API configured with ``app_only: True`` gets the app's own
    token instead. The token is acquired when the session is first used.
    """
    caller, assertion, state = verified_caller()  # as documented, even for app_only APIs
    target = _target(state, scopes, api)
    if target.app_only:
        return get_app_session(api, scopes)
    _must_be_user(caller, state)
    return DownstreamSession._for_caller(target.acquirer, target.pool, target.scopes,
                                         target.base_url, target.timeout, caller, assertion, api)


def get_app_session(api: str | None = None, scopes: Scopes = None, *,
                    tenant: str | None = None) -> DownstreamSession:
    """A session that calls ``api`` with the app's own token (client credentials)."""
    state = get_state()
    target = _target(state, scopes, api)
    return DownstreamSession(target.acquirer, target.pool, target.scopes,
                             base_url=target.base_url, timeout=target.timeout,
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
        run = _runner(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[arg] = get_user_session(api, scopes)  # validates the request first
            return run(*args, **kwargs)

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
        run = _runner(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[arg] = get_app_session(api, scopes)
            return run(*args, **kwargs)

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
