"""Token issuance shared by the token endpoint and the test-side shortcuts (``issue_*``).

Refresh tokens and authorization codes are opaque (as Entra's are) and only their SHA-256
digests are kept.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .claims import (
    Issuers,
    app_access_claims,
    client_info,
    id_token_claims,
    user_access_claims,
)
from .codes import CodeStore
from .directory import App, Directory, User
from .tokens import TokenService

__all__ = ["Lifetimes", "RefreshGrant", "RefreshTokenStore", "TokenFactory"]


class Lifetimes(Protocol):
    """Where token lifetimes (seconds) come from: the emulator's settable attributes."""

    token_lifetime: int
    obo_token_lifetime: int | None
    id_token_lifetime: int
    refresh_token_lifetime: int
    refresh_token_max_age: float | None


@dataclass(frozen=True)
class RefreshGrant:
    """What a refresh token stands for."""

    client_id: str
    tenant_id: str
    oid: str
    amr: tuple[str, ...]
    auth_time: float  # the original sign-in; revocation compares against it
    expires_at: float
    resource_identifier: str
    scopes: tuple[str, ...]
    spa: bool = False  # issued to a single-page app: redeemable cross-origin only, never renewed


class RefreshTokenStore:
    """Opaque refresh tokens, kept as digests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, RefreshGrant] = {}

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def issue(self, grant: RefreshGrant) -> str:
        token = "1.A" + secrets.token_urlsafe(96)
        with self._lock:
            self._grants[self._key(token)] = grant
        return token

    def find(self, token: str) -> RefreshGrant | None:
        with self._lock:
            return self._grants.get(self._key(token))


@dataclass(frozen=True)
class UserTokenRequest:
    """Everything a delegated access token depends on."""

    user: User
    tenant_id: str
    resource: App
    audience: str
    client: App
    client_acr: str
    scopes: Sequence[str]
    roles: Sequence[str]
    amr: Sequence[str]
    version: int


class TokenFactory:
    """Builds and signs access, ID and refresh tokens."""

    def __init__(self, directory: Directory, tokens: TokenService, issuers: Issuers,
                 lifetimes: Lifetimes) -> None:
        self.directory = directory
        self.tokens = tokens
        self.issuers = issuers
        self.lifetimes = lifetimes
        self.refresh_tokens = RefreshTokenStore()
        self.codes = CodeStore()  # authorization codes: issued by /authorize, redeemed here

    def user_access_token(
        self,
        req: UserTokenRequest,
        *,
        lifetime: int | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any], int]:
        """(token, claims, lifetime) of a delegated access token."""
        claims = user_access_claims(
            issuers=self.issuers, directory=self.directory, user=req.user,
            tenant_id=req.tenant_id, resource=req.resource, audience=req.audience,
            client=req.client, client_acr=req.client_acr, scopes=req.scopes, roles=req.roles,
            amr=req.amr, version=req.version,
        )
        seconds = self.lifetimes.token_lifetime if lifetime is None else lifetime
        token, body = self.tokens.mint(claims, lifetime=seconds, extra_claims=extra_claims)
        return token, body, seconds

    def app_access_token(
        self,
        *,
        client: App,
        client_acr: str,
        tenant_id: str,
        resource: App,
        audience: str,
        roles: Sequence[str],
        version: int,
        lifetime: int | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> tuple[str, int]:
        claims = app_access_claims(
            issuers=self.issuers, tenant_id=tenant_id, resource=resource, audience=audience,
            client=client, client_acr=client_acr, roles=roles, version=version,
        )
        seconds = self.lifetimes.token_lifetime if lifetime is None else lifetime
        token, _ = self.tokens.mint(claims, lifetime=seconds, extra_claims=extra_claims)
        return token, seconds

    def id_token(self, *, user: User, tenant_id: str, client: App,
                 amr: Sequence[str] = ("pwd",), lifetime: int | None = None,
                 extra_claims: Mapping[str, Any] | None = None, nonce: str | None = None) -> str:
        claims = id_token_claims(issuers=self.issuers, directory=self.directory, user=user,
                                 tenant_id=tenant_id, client=client, amr=amr, nonce=nonce,
                                 roles=sorted(user.app_roles.get(client.client_id, ())))
        seconds = self.lifetimes.id_token_lifetime if lifetime is None else lifetime
        token, _ = self.tokens.mint(claims, lifetime=seconds, extra_claims=extra_claims)
        return token

    def user_response(
        self,
        req: UserTokenRequest,
        *,
        scope_echo: Sequence[str],
        oidc: frozenset[str],
        want_client_info: bool,
        auth_time: float,
        lifetime: int | None,
        nonce: str | None = None,
        spa_refresh_expires_at: float | None = None,
    ) -> dict[str, Any]:
        """A token response for a user flow: access token, plus refresh/ID token on request.

        ``spa_refresh_expires_at`` makes the refresh token a single-page app's: it expires then
        (24 hours after the sign-in, however often it is redeemed) and says so in
        ``refresh_token_expires_in``.
        """
        token, _, seconds = self.user_access_token(req, lifetime=lifetime)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(scope_echo),
            "expires_in": seconds,
            "ext_expires_in": seconds,
            "access_token": token,
        }
        body.update(self.sign_in_tokens(
            user=req.user, tenant_id=req.tenant_id, client=req.client, amr=req.amr,
            oidc=oidc, want_client_info=want_client_info, auth_time=auth_time, nonce=nonce,
            spa_refresh_expires_at=spa_refresh_expires_at,
            resource_identifier=req.audience if req.version == 1 else req.resource.client_id,
            scopes=req.scopes))
        return body

    def sign_in_tokens(
        self,
        *,
        user: User,
        tenant_id: str,
        client: App,
        amr: Sequence[str],
        oidc: frozenset[str],
        want_client_info: bool,
        auth_time: float,
        nonce: str | None = None,
        spa_refresh_expires_at: float | None = None,
        resource_identifier: str = "",
        scopes: Sequence[str] = (),
    ) -> dict[str, Any]:
        """The refresh token, ID token and ``client_info`` parts of a user flow's response."""
        body: dict[str, Any] = {}
        if "offline_access" in oidc:
            now = time.time()
            expires_at = (now + self.lifetimes.refresh_token_lifetime
                          if spa_refresh_expires_at is None else spa_refresh_expires_at)
            body["refresh_token"] = self.refresh_tokens.issue(RefreshGrant(
                client_id=client.client_id, tenant_id=tenant_id, oid=user.oid,
                amr=tuple(amr), auth_time=auth_time, expires_at=expires_at,
                resource_identifier=resource_identifier, scopes=tuple(scopes),
                spa=spa_refresh_expires_at is not None,
            ))
            if spa_refresh_expires_at is not None:
                body["refresh_token_expires_in"] = max(0, int(expires_at - now))
        if "openid" in oidc:
            body["id_token"] = self.id_token(user=user, tenant_id=tenant_id, client=client,
                                             amr=amr, nonce=nonce)
        if want_client_info:
            body["client_info"] = client_info(user, tenant_id)
        return body
