"""The ``scope`` parameter as Entra v2 reads it.

A resource scope is ``<App ID URI or client id>/<name>``; ``<resource>/.default`` means "every
permission already granted". ``openid``, ``profile``, ``email`` and ``offline_access`` are OIDC
scopes (MSAL always adds three of them). A bare name (``User.Read``) means Microsoft Graph,
which exists in every tenant (``first_party.py``). One request names one resource.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .directory import App, Directory
from .errors import EntraError

__all__ = ["GRAPH_APP_ID_URI", "OIDC_SCOPES", "ScopeRequest", "parse_scope"]

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
GRAPH_APP_ID_URI = "https://graph.microsoft.com"
DEFAULT = ".default"


@dataclass(frozen=True)
class ScopeRequest:
    """A parsed ``scope``: at most one resource, its scope names, and the OIDC scopes."""

    raw: str
    resource: App | None
    identifier: str  # how the request named the resource (App ID URI or client id)
    names: tuple[str, ...]  # empty with .default
    default: bool
    oidc: frozenset[str]

    def qualified(self, names: Iterable[str]) -> list[str]:
        """Scope names in the form the request used, as Entra echoes them in ``scope``."""
        return [f"{self.identifier}/{name}" for name in names]

    def require_resource(self) -> App:
        if self.resource is None:
            raise EntraError(
                "invalid_scope", 70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope "
                f"'{self.raw}' names no resource.",
            )
        return self.resource


def _invalid(raw: str, why: str) -> EntraError:
    return EntraError(
        "invalid_scope", 70011,
        f"The provided value for the input parameter 'scope' is not valid. The scope '{raw}' "
        f"is not valid. {why}",
    )


def parse_scope(raw: str | None, directory: Directory) -> ScopeRequest:
    """Parse and resolve ``raw``; unknown resources and scopes raise Entra's errors."""
    if raw is None or not raw.strip():
        raise EntraError(
            "invalid_request", 900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    oidc: set[str] = set()
    resource: App | None = None
    identifier = ""
    names: list[str] = []
    default = False
    for item in raw.split():
        if item.lower() in OIDC_SCOPES:
            oidc.add(item.lower())
            continue
        if "/" in item:
            ident, _, name = item.rpartition("/")
        else:
            ident, name = GRAPH_APP_ID_URI, item
        found = directory.resource(ident)
        if found is None:
            raise EntraError(
                "invalid_resource", 500011,
                f"The resource principal named {ident} was not found in the tenant. This can "
                f"happen if the application has not been installed by the administrator of "
                f"the tenant or consented to by any user in the tenant.",
            )
        if resource is not None and found is not resource:
            raise EntraError(
                "invalid_scope", 28000,
                f"Provided value for the input parameter scope '{raw}' is not valid because "
                f"it contains more than one resource. Scope {raw} is not valid.",
            )
        resource, identifier = found, ident
        if name == DEFAULT:
            default = True
        elif not name:
            raise _invalid(raw, "A scope name is empty.")
        else:
            names.append(name)
    if default and names:
        raise _invalid(raw, "'.default' cannot be combined with other scopes of the resource.")
    if resource is not None:
        unknown = [n for n in names if n not in resource.scopes]
        if unknown:
            raise EntraError(
                "invalid_scope", 650053,
                f"The application asked for scope '{unknown[0]}' that doesn't exist on the "
                f"resource '{resource.client_id}'. Contact the app vendor.",
            )
    return ScopeRequest(
        raw=raw,
        resource=resource,
        identifier=identifier,
        names=tuple(dict.fromkeys(names)),
        default=default,
        oidc=frozenset(oidc),
    )
