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
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from .._views import runner as _runner
from ..acquisition import TokenAcquirer
from ..cache import AccessToken
from ..config import DownstreamApi
from ..context import verified_caller, verify_token_in_request
from ..errors import InsufficientScope
from ..state import OboState, get_state
from ..validation import TokenClaims
from .session import DownstreamSession

__all__ = [
    "acquire_token_for_app",
    "acquire_token_for_user",
    "get_app_session",
    "get_user_session",
    "requires_downstream",
    "requires_downstream_for_app",
]

F = TypeVar("F", bound=Callable[..., Any])
Scopes = Iterable[str] | str | None


# the public functions ----------------------------------------------------------------------
def _acquirer(state: OboState) -> TokenAcquirer:
    acquirer: TokenAcquirer | None = state.acquirer
    if acquirer is None:
        raise RuntimeError("flask-obo has no credential for this app, so it cannot call "
                           "downstream APIs: set OBO_CLIENT_SECRET, OBO_CLIENT_CERTIFICATE or "
                           "OBO_CLIENT_ASSERTION.")
    return acquirer


def _resolve(state: OboState, scopes: Scopes, api: str | None) -> tuple[tuple[str, ...],
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


def _must_be_user(caller: TokenClaims) -> None:
    """OBO exchanges only delegated tokens: an app-only caller gets a 403."""
    if caller.is_app_only:
        raise InsufficientScope("This operation acts on behalf of a user: an app-only token "
                                "cannot be used.", reason="user_token_required")


def acquire_token_for_user(scopes: Scopes = None, *, api: str | None = None,
                           claims: str | None = None) -> AccessToken:
    """A downstream token for the caller of this request (validating the request first).

    ``scopes``, or ``api`` (a name in ``OBO_DOWNSTREAM_APIS``) for its configured scopes.
    ``claims``: a claims challenge from the downstream API (bypasses the cache). Raises the
    errors of ``flask_obo.errors`` (401 with a claims challenge, 403 consent, 503, ...).
    """
    caller, assertion, state = verified_caller()
    _must_be_user(caller)
    target = _target(state, scopes, api)
    return target.acquirer.on_behalf_of(assertion, caller.token_hash, target.scopes,
                                        tenant=caller.tid, claims=claims,
                                        user=caller.oid or "")


def acquire_token_for_app(scopes: Scopes = None, *, api: str | None = None,
                          tenant: str | None = None, claims: str | None = None) -> AccessToken:
    """An app-only token (client credentials) for the resource of ``scopes`` or ``api``.

    For a multi-tenant API the tenant is ``tenant``, else the validated caller's; one that
    ``OBO_ALLOWED_TENANTS`` does not allow is refused (``InsufficientScope``, 403).
    """
    state = get_state()
    wanted, _ = _resolve(state, scopes, api)
    return _acquirer(state).app_token(wanted, tenant=_app_tenant(state, tenant), claims=claims)


def _pool(state: OboState, spec: DownstreamApi | None) -> requests.Session:
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
    acquirer = _acquirer(state)
    wanted, spec = _resolve(state, scopes, api)
    target = _Target(acquirer, _pool(state, spec), wanted,
                     spec.base_url if spec is not None else None,
                     spec.timeout if spec is not None else state.config.downstream_timeout,
                     spec is not None and spec.app_only)
    if key is not None and len(memo) < _MAX_TARGETS:
        memo[key] = target
    return target


def _app_tenant(state: OboState, tenant: str | None) -> str | None:
    if tenant is None and state.config.is_multi_tenant:
        caller = verify_token_in_request(optional=True)
        return caller.tid if caller is not None else None
    return tenant


def get_user_session(api: str | None = None, scopes: Scopes = None) -> DownstreamSession:
    """A session that calls ``api`` (or any URL, with ``scopes``) as this request's caller.

    Validates the request first. An API configured with ``app_only: True`` gets the app's own
    token instead. The token is acquired when the session is first used.
    """
    caller, assertion, state = verified_caller()  # as documented, even for app_only APIs
    target = _target(state, scopes, api)
    if target.app_only:
        return get_app_session(api, scopes)
    _must_be_user(caller)
    return DownstreamSession._for_caller(target.acquirer, target.pool, target.scopes,
                                         target.base_url, target.timeout, caller, assertion)


def get_app_session(api: str | None = None, scopes: Scopes = None, *,
                    tenant: str | None = None) -> DownstreamSession:
    """A session that calls ``api`` with the app's own token (client credentials)."""
    state = get_state()
    target = _target(state, scopes, api)
    tenant = _app_tenant(state, tenant)
    if tenant is not None:
        target.acquirer.tenant_for(tenant)  # refuse a tenant OBO_ALLOWED_TENANTS does not allow
    return DownstreamSession(target.acquirer, target.pool, target.scopes,
                             base_url=target.base_url, timeout=target.timeout, tenant=tenant)


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

        return wrapper  # type: ignore[return-value]

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

        return wrapper  # type: ignore[return-value]

    return decorator


def _check_args(name: str, scopes: Any, api: str | None) -> None:
    if callable(scopes):
        raise TypeError(f"use @{name}(api=...) or @{name}([...scopes]), with parentheses")
    if scopes is None and api is None:
        raise TypeError(f"@{name} needs the downstream scopes or api=<a name in "
                        "OBO_DOWNSTREAM_APIS>")
