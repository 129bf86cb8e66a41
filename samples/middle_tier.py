"""The middle-tier API: validates the caller's token, then calls the downstream API as the user.

    python -m samples.middle_tier --port 5001

Configuration (environment or .env): OBO_AUTHORITY, OBO_CLIENT_ID, OBO_CLIENT_SECRET (or a
certificate), and OBO_DOWNSTREAM_APIS, e.g.
    OBO_DOWNSTREAM_APIS={"profile": {"base_url": "http://127.0.0.1:5002/v1.0/",
                                      "scopes": ["api://<downstream-client-id>/read"]}}
Against Microsoft Graph: {"graph": {"base_url": "https://graph.microsoft.com/v1.0/",
                                     "scopes": ["User.Read"]}}
A browser app on another origin (samples/spa) needs CORS: CORS_ORIGINS=http://localhost:5173
(Flask-CORS settings, e.g. a JSON list of origins).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_cors import CORS

from flask_obo import (
    DownstreamSession,
    current_token,
    requires_downstream,
    requires_downstream_for_app,
    requires_scopes,
)

from .observability import add_metrics_endpoint, start_metrics
from .settings import load_settings, protected_app, serve

DOWNSTREAM = "profile"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = protected_app(__name__, {**load_settings("CORS_"), **(config or {})})
    if app.config.get("CORS_ORIGINS"):
        # Only the configured origins; the SPA must read the claims challenge's header.
        CORS(app, expose_headers=["WWW-Authenticate"])
    add_metrics_endpoint(app)  # flask-obo's OpenTelemetry metrics, for Prometheus

    @app.get("/api/profile")
    @requires_scopes("access_as_user")
    @requires_downstream(api=DOWNSTREAM)
    def profile(downstream: DownstreamSession) -> tuple[dict[str, Any], int]:
        # The session carries this user's downstream token; the first call per user does OBO,
        # later ones are served from the cache.
        return _what_downstream_saw(downstream)

    @app.get("/api/service-status")
    @requires_scopes("access_as_user")
    @requires_downstream_for_app(api=DOWNSTREAM)
    def service_status(downstream: DownstreamSession) -> tuple[dict[str, Any], int]:
        # An app-only token (client credentials): the downstream API sees the middle tier
        # itself, with the app roles it was granted, not the user.
        return _what_downstream_saw(downstream)

    return app


def _what_downstream_saw(downstream: DownstreamSession) -> tuple[dict[str, Any], int]:
    answer = downstream.get("me")
    if not answer.ok:  # the downstream API's own refusal, passed on as a gateway error
        return {"caller": current_token.oid, "downstream_status": answer.status_code}, 502
    return {"caller": current_token.oid, "downstream_saw": answer.json()}, 200


def main() -> None:
    start_metrics("middle-tier")  # the OpenTelemetry SDK, once per process, before the app
    serve(create_app, __doc__, 5001)


if __name__ == "__main__":
    main()
