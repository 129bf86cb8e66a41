"""A downstream API (think Microsoft Graph's /me): validates tokens, calls nothing further.

    python -m samples.downstream_api --port 5002

Its answer shows who called it: the user (oid), the scopes, and the authorized party (azp),
which for an OBO token is the middle tier, not the user's client.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from flask_obo import current_token, requires_scopes_or_roles

from .settings import protected_app, serve


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = protected_app(__name__, config)

    @app.get("/v1.0/me")
    @requires_scopes_or_roles(scopes=["read"], roles=["Reader"])
    def me() -> dict[str, Any]:
        return {
            "oid": current_token.oid,
            "name": current_token.get("name"),
            "preferred_username": current_token.get("preferred_username"),
            "scp": sorted(current_token.scopes),
            "roles": sorted(current_token.roles),
            "azp": current_token.client_id,
            "amr": current_token.get("amr", []),
            "app_only": current_token.is_app_only,
        }

    return app


def main() -> None:
    serve(create_app, __doc__, 5002)


if __name__ == "__main__":
    main()
