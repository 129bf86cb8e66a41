"""The OIDC UserInfo endpoint that the discovery documents advertise.

Entra's v2 discovery points ``userinfo_endpoint`` at Microsoft Graph
(``https://graph.microsoft.com/oidc/userinfo``), which the emulator cannot be; it serves the same
API at ``{base}/oidc/userinfo`` (and the v1 ``/{tenant}/openid/userinfo``) instead. It takes a
user access token this emulator issued and answers what Graph answers: ``sub`` (the ID token's
pairwise ``sub`` for the calling app), ``name``, ``given_name``, ``family_name`` and ``email``.
"""

from __future__ import annotations

import time
from typing import Any

from .directory import Directory
from .tokens import TokenRejected, TokenService

__all__ = ["UserInfoError", "userinfo"]


class UserInfoError(Exception):
    """A refused UserInfo call: 401 with an RFC 6750 challenge, as Graph answers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def challenge(self) -> str:
        detail = self.message.replace('"', "'")
        return f'Bearer error="invalid_token", error_description="{detail}"'

    def body(self) -> dict[str, Any]:
        return {"error": {"code": "InvalidAuthenticationToken", "message": self.message}}


def userinfo(authorization: str | None, tokens: TokenService,
             directory: Directory) -> dict[str, Any]:
    """The claims for the bearer token in ``authorization``; raise UserInfoError if refused."""
    scheme, _, raw = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise UserInfoError("Access token is empty.")
    try:
        _, claims = tokens.verify(raw.strip())
    except TokenRejected as exc:
        raise UserInfoError(f"Access token validation failure. {exc.detail}") from exc
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or time.time() >= exp:
        raise UserInfoError("Lifetime validation failed, the token is expired.")
    oid, client = claims.get("oid"), claims.get("azp") or claims.get("appid")
    user = directory.user(oid) if isinstance(oid, str) else None
    if not isinstance(claims.get("scp"), str) or user is None or not isinstance(client, str):
        raise UserInfoError("Access token validation failure. UserInfo needs a delegated "
                            "(user) access token.")
    given, _, family = user.name.partition(" ")
    body: dict[str, Any] = {"sub": directory.pairwise_sub(user.oid, client), "name": user.name}
    if family:
        body.update(given_name=given, family_name=family)
    body["email"] = user.username
    return body
