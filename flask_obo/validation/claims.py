"""``TokenClaims``: the validated claims of one access token, immutable and safe to print."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["TokenClaims"]


def _freeze(value: Any) -> Any:
    # Claims objects are shared between requests by the validated-token cache: no caller may
    # change what the next request sees (e.g. append to "roles").
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


class TokenClaims(Mapping[str, Any]):
    """The claims of a validated access token, as a read-only mapping with typed properties.

    ``repr`` and ``str`` show identifiers only (oid, tid, client id, version); never the token.
    JSON arrays read as tuples and objects as read-only mappings.
    """

    __slots__ = ("_claims", "client_id", "expires_at", "is_app_only", "oid", "roles", "scopes",
                 "sub", "tid", "token_hash", "version")

    _claims: Mapping[str, Any]
    #: object id of the user (or of the calling app's service principal for app-only tokens).
    oid: str | None
    tid: str | None
    sub: str | None
    #: delegated permissions, from the space-separated ``scp`` claim.
    scopes: frozenset[str]
    #: app roles (application permissions, or roles assigned to the user).
    roles: frozenset[str]
    #: the calling client application: ``azp`` (v2.0) or ``appid`` (v1.0); None if absent.
    client_id: str | None
    version: str
    #: True for a token the client obtained for itself (client credentials), without a user;
    #: never for a token that names no client.
    is_app_only: bool
    #: ``exp`` as a POSIX timestamp.
    expires_at: float
    #: hex SHA-256 of the raw token: a cache key that never reveals the token.
    token_hash: str

    def __init__(self, claims: Mapping[str, Any], *, token_hash: str) -> None:
        frozen: Mapping[str, Any] = MappingProxyType(
            {k: _freeze(v) if isinstance(v, (dict, list)) else v for k, v in claims.items()}
        )
        scp = frozen.get("scp")
        roles = frozen.get("roles")
        scopes = frozenset(scp.split()) if isinstance(scp, str) else frozenset()
        idtyp = frozen.get("idtyp")
        version = _text(frozen.get("ver")) or ""
        # The client claim of the token's own version: azp (v2.0) or appid (v1.0).
        client_id = _text(frozen.get("appid" if version == "1.0" else "azp"))
        values = {
            "_claims": frozen,
            "oid": _text(frozen.get("oid")),
            "tid": _text(frozen.get("tid")),
            "sub": _text(frozen.get("sub")),
            "scopes": scopes,
            "roles": frozenset(r for r in roles if isinstance(r, str))
            if isinstance(roles, tuple) else frozenset(),
            "client_id": client_id,
            "version": version,
            # A token that names no client is no app's (an ID token, say). idtyp is Entra's
            # optional claim for this; without it, no scp means no user.
            "is_app_only": client_id is not None and (
                idtyp == "app" if isinstance(idtyp, str) else not scopes),
            "expires_at": float(frozen.get("exp", 0)),
            "token_hash": token_hash,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TokenClaims is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("TokenClaims is immutable")

    def __getitem__(self, key: str) -> Any:
        return self._claims[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._claims)

    def __len__(self) -> int:
        return len(self._claims)

    def __contains__(self, key: object) -> bool:
        return key in self._claims

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TokenClaims):
            return self.token_hash == other.token_hash
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.token_hash)

    def __repr__(self) -> str:
        return (f"TokenClaims(oid={self.oid!r}, tid={self.tid!r}, client_id={self.client_id!r}, "
                f"version={self.version!r}, app_only={self.is_app_only})")

    __str__ = __repr__


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
