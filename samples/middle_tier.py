"""The middle-tier API: validates the caller's token, then calls the downstream API as the user.

    python -m samples.middle_tier --port 5001

Configuration (environment or .env): OBO_AUTHORITY, OBO_CLIENT_ID, OBO_CLIENT_SECRET (or a
certificate), and OBO_DOWNSTREAM_APIS, e.g.
    OBO_DOWNSTREAM_APIS={"profile": {"base_url": "http://127.0.0.1:5002/v1.0/",
                                      "scopes": ["api://<downstream-client-id>/read"]}}
Against Microsoft Graph: {"graph": {"base_url": "https://graph.microsoft.com/v1.0/",
                                     "scopes": ["User.Read"]}}
"""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask

from flask_obo import (
    DownstreamSession,
    FlaskOBO,
    current_token,
    public,
    requires_app_token,
    requires_downstream,
    requires_scopes,
)

from .settings import load_settings

DOWNSTREAM = "profile"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(load_settings())
    app.config.update(config or {})
    FlaskOBO(app)

    @app.get("/health")
    @public
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/profile")
    @requires_scopes("access_as_user")
    @requires_downstream(api=DOWNSTREAM)
    def profile(downstream: DownstreamSession) -> dict[str, Any]:
        # The session carries this user's downstream token; the first call per user does OBO,
        # later ones are served from the cache.
        answer = downstream.get("me")
        answer.raise_for_status()
        return {"caller": current_token.oid, "downstream_saw": answer.json()}

    @app.get("/api/service-status")
    @requires_scopes("access_as_user")
    @requires_app_token(api=DOWNSTREAM)
    def service_status(downstream: DownstreamSession) -> dict[str, Any]:
        # An app-only token (client credentials): the downstream API sees the middle tier
        # itself, with the app roles it was granted, not the user.
        answer = downstream.get("me")
        answer.raise_for_status()
        return {"caller": current_token.oid, "downstream_saw": answer.json()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    create_app().run(host=args.host, port=args.port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
