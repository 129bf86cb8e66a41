"""CORS, as Entra answers browsers: single-page apps fetch the metadata and redeem their codes
and refresh tokens from their own origin.

- Metadata (discovery, keys, instance discovery) answers any origin with
  ``Access-Control-Allow-Origin: *`` (see ``server.py``), and preflights too.
- The token endpoint and UserInfo answer a preflight from any origin (MSAL.js sends
  ``X-AnchorMailbox`` and ``Content-Type``, so the browser asks first) and echo the caller's
  ``Origin`` on every answer, errors included, so that a browser can read why a request was
  refused. Whether a cross-origin request may redeem anything is the grants' business: only a
  code or refresh token issued to a single-page app's redirect URI may (AADSTS9002326 for any
  other cross-origin request, AADSTS9002327 for a single-page app's grant redeemed without an
  ``Origin``); see ``grants.py``.

Preflights are answered before the call log and fault injection see them: a fault queued for
the token endpoint hits the request, not its preflight.
"""

from __future__ import annotations

from flask import Flask, Response, request

__all__ = ["register_cors"]

_TOKEN = "POST, OPTIONS"
_METADATA = "GET, OPTIONS"
# endpoint name -> methods a preflight may ask for
_ENDPOINTS = {
    "token_v2": _TOKEN, "token_v1": _TOKEN,
    "userinfo_v2": "GET, POST, OPTIONS", "userinfo_v1": "GET, POST, OPTIONS",
    "discovery_v2": _METADATA, "discovery_v1": _METADATA, "jwks_v2": _METADATA,
    "jwks_v1": _METADATA, "instance_discovery": _METADATA,
}
_ECHOES_ORIGIN = frozenset({"token_v2", "token_v1", "userinfo_v2", "userinfo_v1"})
_EXPOSED = "client-request-id, x-ms-request-id, x-ms-clitelem, x-ms-srs, Retry-After"


def _preflight() -> Response | None:
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    methods = _ENDPOINTS.get(request.endpoint or "")
    if methods is None:
        return None
    response = Response(status=204)
    origin = request.headers.get("Origin")
    response.headers["Access-Control-Allow-Origin"] = origin or "*"
    response.headers["Access-Control-Allow-Methods"] = methods
    asked = request.headers.get("Access-Control-Request-Headers")
    if asked:
        response.headers["Access-Control-Allow-Headers"] = asked
    response.headers["Access-Control-Max-Age"] = "86400"
    response.headers["Vary"] = "Origin"
    return response


def _allow_origin(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin and request.endpoint in _ECHOES_ORIGIN and request.method != "OPTIONS":
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED
        response.headers.add("Vary", "Origin")
    return response


def register_cors(app: Flask) -> None:
    """Answer preflights first (before recording and faults) and tag cross-origin answers."""
    app.before_request_funcs.setdefault(None, []).insert(0, _preflight)
    app.after_request(_allow_origin)
