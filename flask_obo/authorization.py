"""Scope and role checks: public ``verify_*`` functions and thin decorators over them.

As in Microsoft.Identity.Web, a list of scopes or roles means "any of these" unless
``require_all=True``. Delegated tokens carry scopes (``scp``); app-only tokens carry
application permissions as ``roles``; ``requires_scopes_or_roles`` accepts either
(Microsoft.Identity.Web's RequiredScopeOrAppPermission).

The decorators validate the token themselves when the app's before-request guard did not
(``verify_token_in_request`` is idempotent), and call an async view through
``current_app.ensure_sync`` (``_views.runner``), so async views work.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

from flask import request

from ._refusals import request_line
from ._views import runner
from .context import verify_token_in_request
from .errors import InsufficientScope
from .state import get_state
from .validation import TokenClaims

__all__ = [
    "requires_roles",
    "requires_scopes",
    "requires_scopes_or_roles",
    "verify_roles",
    "verify_scopes",
    "verify_scopes_or_roles",
]

F = TypeVar("F", bound=Callable[..., Any])


def _current_claims() -> TokenClaims:
    claims = verify_token_in_request()
    assert claims is not None  # not optional: a missing token raised
    return claims


def _matches(held: frozenset[str], wanted: tuple[str, ...], require_all: bool) -> bool:
    return held.issuperset(wanted) if require_all else not held.isdisjoint(wanted)


def verify_scopes(*scopes: str, require_all: bool = False) -> TokenClaims:
    """The request's claims if its token has any (or all) of ``scopes``; else 403."""
    wanted = _names(scopes, "scope")
    claims = _current_claims()
    if not _matches(claims.scopes, wanted, require_all):
        _refuse(claims, InsufficientScope(
            f"This resource needs {'all' if require_all else 'one'} of the scopes: "
            f"{' '.join(wanted)}.", scopes=wanted, reason="missing_scope"))
    return claims


def verify_roles(*roles: str, require_all: bool = False) -> TokenClaims:
    """The request's claims if its token has any (or all) of ``roles``; else 403."""
    wanted = _names(roles, "role")
    claims = _current_claims()
    if not _matches(claims.roles, wanted, require_all):
        _refuse(claims, InsufficientScope(
            f"This resource needs {'all' if require_all else 'one'} of the roles: "
            f"{' '.join(wanted)}.", roles=wanted, reason="missing_role"))
    return claims


def verify_scopes_or_roles(*, scopes: Iterable[str] = (),
                           roles: Iterable[str] = ()) -> TokenClaims:
    """The request's claims if its token has one of ``scopes`` (a user calling through a
    client) or one of ``roles`` (an app calling as itself); else 403."""
    wanted_scopes = tuple(_names(scopes, "scope", allow_empty=True))
    wanted_roles = tuple(_names(roles, "role", allow_empty=True))
    if not wanted_scopes and not wanted_roles:
        raise ValueError("requires_scopes_or_roles needs at least one scope or role.")
    claims = _current_claims()
    if claims.scopes.isdisjoint(wanted_scopes) and claims.roles.isdisjoint(wanted_roles):
        _refuse(claims, InsufficientScope(
            "This resource needs one of the scopes or app roles: "
            f"{' '.join(wanted_scopes + wanted_roles)}.",
            scopes=wanted_scopes, roles=wanted_roles, reason="missing_scope_or_role"))
    return claims


def _refuse(claims: TokenClaims, error: InsufficientScope) -> NoReturn:
    """Log what was wanted and what the token held (its scp and roles), then refuse."""
    wanted = [f"scopes {' '.join(error.scopes)}"] if error.scopes else []
    wanted += [f"roles {' '.join(error.roles)}"] if error.roles else []
    error.log_detail = (f"needs {' or '.join(wanted)}; the token of client {claims.client_id} "
                        f"has scp {' '.join(sorted(claims.scopes)) or '(none)'} and roles "
                        f"{' '.join(sorted(claims.roles)) or '(none)'}")
    get_state().refusals.refused(error, where=request_line(request))
    raise error


def requires_scopes(*scopes: str, require_all: bool = False) -> Callable[[F], F]:
    """Refuse the view (403 insufficient_scope) unless the token has one of ``scopes``."""
    wanted = _names(scopes, "scope")
    return _decorator(lambda: verify_scopes(*wanted, require_all=require_all))


def requires_roles(*roles: str, require_all: bool = False) -> Callable[[F], F]:
    """Refuse the view (403 insufficient_scope) unless the token has one of ``roles``."""
    wanted = _names(roles, "role")
    return _decorator(lambda: verify_roles(*wanted, require_all=require_all))


def requires_scopes_or_roles(*, scopes: Iterable[str] = (),
                             roles: Iterable[str] = ()) -> Callable[[F], F]:
    """Refuse the view unless the token has one of ``scopes`` or one of ``roles``."""
    wanted_scopes = _names(scopes, "scope", allow_empty=True)
    wanted_roles = _names(roles, "role", allow_empty=True)
    if not wanted_scopes and not wanted_roles:
        raise ValueError("requires_scopes_or_roles needs at least one scope or role.")
    return _decorator(lambda: verify_scopes_or_roles(scopes=wanted_scopes, roles=wanted_roles))


def _decorator(check: Callable[[], TokenClaims]) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        run = runner(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check()
            return run(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _names(values: Iterable[str], what: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    names = tuple(values)
    if not names and not allow_empty:
        raise ValueError(f"name at least one {what}.")
    for name in names:
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"{what} names are non-empty strings without spaces, not {name!r}.")
    return names
