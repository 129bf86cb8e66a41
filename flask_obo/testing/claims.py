"""The claims of the tokens Entra issues: v1 and v2 access tokens, app tokens, ID tokens.

v2 access tokens carry ``azp``/``azpacr``/``preferred_username`` and the issuer
``{base}/{tid}/v2.0``; v1 tokens carry ``appid``/``appidacr``/``upn`` and Entra's own v1 issuer
``https://sts.windows.net/{tid}/``, as the v1 discovery document says.

Why Entra's host in the v1 issuer: Microsoft's services check it by prefix (Azurite, the Azure
Storage emulator, accepts only ``https://sts.windows.net/`` and its sovereign-cloud siblings), and
Microsoft Graph and Azure Storage accept only v1 tokens. The issuer is a name, never a URL anyone
fetches (keys come from the discovery document's ``jwks_uri``, on the emulator), and the tokens
are signed by the emulator's keys, so an API configured against real Entra still refuses them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .directory import App, Directory, User
from .tokens import opaque

__all__ = [
    "ACR_CERTIFICATE",
    "ACR_PUBLIC",
    "ACR_SECRET",
    "V1_ISSUER_BASE",
    "Issuers",
    "app_access_claims",
    "client_info",
    "id_token_claims",
    "user_access_claims",
]

# appidacr / azpacr: how the client authenticated.
ACR_PUBLIC = "0"
ACR_SECRET = "1"
ACR_CERTIFICATE = "2"

#: Entra's v1 issuer host (v1 access tokens, the v1 discovery document).
V1_ISSUER_BASE = "https://sts.windows.net"


@dataclass(frozen=True)
class Issuers:
    """The issuers of tokens: v2 on the emulator's base URL (``https://127.0.0.1:PORT``), v1
    on Entra's ``https://sts.windows.net`` (see the module docstring)."""

    base: str

    def v1(self, tenant_id: str) -> str:
        return f"{V1_ISSUER_BASE}/{tenant_id}/"

    def v2(self, tenant_id: str) -> str:
        return f"{self.base}/{tenant_id}/v2.0"

    def for_version(self, tenant_id: str, version: int) -> str:
        return self.v1(tenant_id) if version == 1 else self.v2(tenant_id)

    def parse(self, issuer: str) -> tuple[str, int] | None:
        """``(tenant_id, version)`` for an issuer of this emulator, else None."""
        for prefix, pattern, version in ((self.base + "/", r"([^/]+)/v2\.0", 2),
                                         (V1_ISSUER_BASE + "/", r"([^/]+)/", 1)):
            if issuer.startswith(prefix):
                match = re.fullmatch(pattern, issuer[len(prefix):])
                return (match.group(1), version) if match else None
        return None


def _user_common(user: User, tenant_id: str, amr: Sequence[str]) -> dict[str, Any]:
    return {
        "aio": opaque(32),
        "amr": list(amr),
        "name": user.name,
        "oid": user.oid,
        "rh": f"1.{opaque(24)}AA.",
        "tid": tenant_id,
    }


def user_access_claims(
    *,
    issuers: Issuers,
    directory: Directory,
    user: User,
    tenant_id: str,
    resource: App,
    audience: str,
    client: App,
    client_acr: str,
    scopes: Sequence[str],
    roles: Sequence[str],
    amr: Sequence[str],
    version: int,
) -> dict[str, Any]:
    """A delegated (user) access token for ``resource``, requested by ``client``."""
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": issuers.for_version(tenant_id, version),
        **_user_common(user, tenant_id, amr),
        "sub": directory.pairwise_sub(user.oid, resource.client_id),
    }
    if scopes:
        claims["scp"] = " ".join(scopes)
    if roles:
        claims["roles"] = list(roles)
    if version == 1:
        claims.update({
            "acr": "1",
            "appid": client.client_id,
            "appidacr": client_acr,
            "unique_name": user.username,
            "upn": user.username,
            "ver": "1.0",
        })
    else:
        claims.update({
            "azp": client.client_id,
            "azpacr": client_acr,
            "preferred_username": user.username,
            "ver": "2.0",
        })
    return claims


def app_access_claims(
    *,
    issuers: Issuers,
    tenant_id: str,
    resource: App,
    audience: str,
    client: App,
    client_acr: str,
    roles: Sequence[str],
    version: int,
) -> dict[str, Any]:
    """An app-only access token (client credentials): no ``scp``, ``idtyp`` "app"."""
    sp_oid = client.service_principal_id(tenant_id)
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": issuers.for_version(tenant_id, version),
        "aio": opaque(32),
        "idtyp": "app",
        "oid": sp_oid,
        "rh": f"1.{opaque(24)}AA.",
        "sub": sp_oid,
        "tid": tenant_id,
    }
    if roles:
        claims["roles"] = list(roles)
    if version == 1:
        claims.update({"appid": client.client_id, "appidacr": client_acr, "ver": "1.0"})
    else:
        claims.update({"azp": client.client_id, "azpacr": client_acr, "ver": "2.0"})
    return claims


def id_token_claims(
    *,
    issuers: Issuers,
    directory: Directory,
    user: User,
    tenant_id: str,
    client: App,
    amr: Sequence[str] = ("pwd",),
    nonce: str | None = None,
    roles: Sequence[str] = (),
) -> dict[str, Any]:
    """A v2 ID token: ``aud`` is the client, never an API, and no ``azp``: the client is the
    audience. As Entra does, it carries ``roles`` when the user holds app roles of the client
    (so "has roles" does not make a token an access token)."""
    claims: dict[str, Any] = {
        "aud": client.client_id,
        "iss": issuers.v2(tenant_id),
        **_user_common(user, tenant_id, amr),
        "preferred_username": user.username,
        "sub": directory.pairwise_sub(user.oid, client.client_id),
        "ver": "2.0",
    }
    claims.pop("amr")  # v2 ID tokens carry no amr
    if roles:
        claims["roles"] = list(roles)
    if nonce is not None:
        claims["nonce"] = nonce
    return claims


def client_info(user: User, tenant_id: str) -> str:
    """Entra's ``client_info``: base64url (unpadded) JSON with ``uid`` and ``utid``."""
    raw = json.dumps({"uid": user.oid, "utid": tenant_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
