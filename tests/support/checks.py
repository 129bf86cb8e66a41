"""What flask-obo's answers must look like, and what the emulator's must.

flask-obo: RFC 6750 ``WWW-Authenticate`` challenges, RFC 9457 problem+json bodies, a 503 with
``Retry-After``, and nothing of a token echoed. The emulator: Entra's JSON error shape with its
AADSTS code.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import requests
from werkzeug.test import TestResponse

from flask_obo.testing import App
from flask_obo.validation import REASONS

__all__ = [
    "CAE_CLAIMS",
    "ENTRA_ERROR_KEYS",
    "assert_challenge",
    "assert_entra_error",
    "assert_invalid",
    "assert_no_echo",
    "assert_unavailable",
    "bearer",
    "cae_challenge",
    "decode_claims",
    "leaked_fragment",
    "parse_challenge",
    "response_text",
]

_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"')
#: a continuous access evaluation challenge's claims, as a downstream API sends them
CAE_CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
ENTRA_ERROR_KEYS = {"error", "error_description", "error_codes", "timestamp", "trace_id",
                    "correlation_id", "error_uri"}


def bearer(token: str) -> dict[str, str]:
    """Request headers carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


def cae_challenge(claims: str = CAE_CLAIMS, *, graph_form: bool = False) -> str:
    """The ``WWW-Authenticate`` value of a downstream API asking for a fresh token (CAE);
    ``graph_form``: as Microsoft Graph words it (its client id, base64url ``claims``)."""
    if not graph_form:
        encoded = base64.b64encode(claims.encode()).decode()
        return (f'Bearer realm="", authorization_uri="https://login.example/authorize", '
                f'error="insufficient_claims", claims="{encoded}"')
    encoded = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
    return ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
            'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", '
            f'error="insufficient_claims", claims="{encoded}"')


def parse_challenge(header: str) -> dict[str, str]:
    """The parameters of a ``Bearer ...`` challenge."""
    assert header.startswith("Bearer "), header
    return dict(_PARAM.findall(header[len("Bearer "):]))


def decode_claims(encoded: str) -> Any:
    """A challenge's base64 ``claims`` parameter, decoded."""
    return json.loads(base64.b64decode(encoded))


def assert_challenge(response: TestResponse, status: int, error: str | None, *,
                     realm: str | None = None) -> dict[str, Any]:
    """The RFC 6750 challenge and RFC 9457 body flask-obo promises; returns the body."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/problem+json", response.headers
    challenge = response.headers.get("WWW-Authenticate", "")
    if error is None:
        assert re.fullmatch(r'Bearer realm="[^"]*"', challenge), challenge
    else:
        expected = rf'Bearer realm="[^"]*", error="{error}", error_description="[^"]+"'
        assert re.match(expected, challenge), challenge
    params = parse_challenge(challenge)
    if realm is not None:
        assert params["realm"] == realm, challenge
    body: dict[str, Any] = json.loads(response.get_data(as_text=True))
    assert body["status"] == status, body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert isinstance(body.get("type"), str) and body["type"], body
    if error is not None:
        assert body.get("error") == error, body
    return body


def assert_invalid(response: TestResponse, api: App | str, reason: str) -> None:
    """A 401 ``invalid_token`` with the exact challenge of ``reason`` for ``api`` (its
    registration, or its client id)."""
    client_id = api if isinstance(api, str) else api.client_id
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="api://{client_id}", error="invalid_token", '
        f'error_description="{REASONS[reason]}"')
    assert response.json is not None and response.json["reason"] == reason


def assert_unavailable(response: TestResponse, retry_after: str | None = None) -> dict[str, Any]:
    """A 503 problem+json with a ``Retry-After`` of at least a second (``retry_after`` exactly)."""
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    value = response.headers.get("Retry-After", "")
    assert value.isdigit() and int(value) >= 1, response.headers
    if retry_after is not None:
        assert value == retry_after
    body: dict[str, Any] = json.loads(response.get_data(as_text=True))
    assert body["status"] == 503
    return body


def _windows(text: str, size: int = 20) -> Iterator[str]:
    for start in range(0, max(0, len(text) - size + 1)):
        yield text[start:start + size]


def leaked_fragment(secret: str, haystack: str, size: int = 20) -> str | None:
    """A ``size``-character piece of ``secret`` found in ``haystack``, if any.

    Scans the haystack's windows against a set of the secret's: linear in both lengths.
    """
    if len(secret) < size:
        return secret if secret and secret in haystack else None
    pieces = set(_windows(secret, size))
    for window in _windows(haystack, size):
        if window in pieces:
            return window
    return None


def response_text(response: TestResponse) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return headers + "\n" + response.get_data(as_text=True)


def assert_no_echo(response: TestResponse, token: str) -> None:
    """Neither the token nor any 20-character piece of one of its segments comes back."""
    text = response_text(response)
    if len(token) >= 16:  # shorter junk ("a.b.c") is too short to tell an echo from chance
        assert token not in text
    for segment in token.split("."):
        if len(segment) < 20:
            continue
        found = leaked_fragment(segment, text)
        assert found is None, f"the response echoes a piece of the token: {found!r}"


def assert_entra_error(response: requests.Response | Mapping[str, Any], status: int | None,
                       error: str, code: int) -> dict[str, Any]:
    """Entra's error shape, status, error and AADSTS code; returns the body."""
    if isinstance(response, Mapping):
        body = dict(response)
    else:
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
    assert ENTRA_ERROR_KEYS <= set(body), body
    assert body["error"] == error, body
    assert body["error_codes"] == [code], body
    assert body["error_description"].startswith(f"AADSTS{code}: "), body
    for part in ("Trace ID: ", "Correlation ID: ", "Timestamp: "):
        assert part in body["error_description"]
    return body
