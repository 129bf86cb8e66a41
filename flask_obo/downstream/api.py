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
from typing import Any, TypeVar

import requests
from flask import current_app

from ..acquisition import TokenAcquirer
from ..cache import AccessToken
from ..config import DownstreamApi
from ..context import get_assertion, verify_token_in_request
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


def _user_caller() -> TokenClaims:
    """The validated caller, who must be a user: OBO exchanges only delegated tokens."""
    caller = verify_token_in_request()
    assert caller is not None  # not optional: it raised MissingToken otherwise
    if caller.is_app_only:
        raise InsufficientScope("This operation acts on behalf of a user: an app-only token "
                                "cannot be used.", reason="user_token_required")
    return caller


def acquire_token_for_user(scopes: Scopes = None, *, api: str | None = None,
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
    state = get_state()
    acquirer = _acquirer(state)
    wanted, spec = _resolve(state, scopes, api)
    if spec is not None and spec.app_only:
        verify_token_in_request()  # as documented, even on a public view: fail closed
        return get_app_session(api, scopes)
    caller = _user_caller()
    if spec is None:
        return DownstreamSession(acquirer, _pool(state, None), wanted, base_url=None,
                                 timeout=state.config.downstream_timeout, caller=caller)
    return DownstreamSession(acquirer, _pool(state, spec), wanted,
                             base_url=spec.base_url, timeout=spec.timeout, caller=caller)


def get_app_session(api: str | None = None, scopes: Scopes = None, *,
                    tenant: str | None = None) -> DownstreamSession:
    """A session that calls ``api`` with the app's own token (client credentials)."""
    state = get_state()
    acquirer = _acquirer(state)
    wanted, spec = _resolve(state, scopes, api)
    tenant = _app_tenant(state, tenant)
    if tenant is not None:
        acquirer.tenant_for(tenant)  # refuse a tenant OBO_ALLOWED_TENANTS does not allow now
    return DownstreamSession(acquirer, _pool(state, spec), wanted,
                             base_url=spec.base_url if spec else None,
                             timeout=spec.timeout if spec else state.config.downstream_timeout,
                             tenant=tenant)


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
