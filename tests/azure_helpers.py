"""Helpers of the Azure SDK suites (no fixtures here)."""

from __future__ import annotations

import base64
import json
from typing import Any

from obo_helpers import CAE_CLAIMS

GRAPH_SCOPES = ["User.Read", "Mail.Read"]
STORAGE_SCOPE = "https://storage.azure.com/.default"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT (unverified: for asserting its shape in tests)."""
    payload = token.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def cae_challenge_header(claims: str = CAE_CLAIMS) -> str:
    """A continuous access evaluation challenge in Graph's form (base64url claims)."""
    encoded = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
    return ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
            'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", '
            f'error="insufficient_claims", claims="{encoded}"')
