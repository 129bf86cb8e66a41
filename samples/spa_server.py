"""Serves the single-page app of ``samples/spa/`` and its settings (``/config.json``).

    python -m samples.spa_server --port 5173

Settings (environment or .env): SPA_AUTHORITY (the authority, e.g. the emulator's
``https://127.0.0.1:PORT/<tenant>``), SPA_CLIENT_ID (the SPA's app registration),
SPA_API_SCOPE (``api://<middle tier>/access_as_user``) and SPA_API_URL (the middle tier).
MSAL.js comes from ``samples/spa/node_modules`` (``npm ci`` there), never from a CDN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, send_from_directory

from .settings import load_settings, serve

SPA = Path(__file__).resolve().parent / "spa"
_PAGES = frozenset({"index.html", "app.js", "style.css", "redirect.html", "redirect.js"})
_MSAL = SPA / "node_modules" / "@azure" / "msal-browser" / "lib"
_LIBRARIES = {
    "msal-browser.min.js": _MSAL,
    "msal-redirect-bridge.min.js": _MSAL / "redirect-bridge",
}
_SETTINGS = {"SPA_AUTHORITY": "authority", "SPA_CLIENT_ID": "clientId",
             "SPA_API_SCOPE": "apiScope", "SPA_API_URL": "apiUrl"}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    settings = load_settings("SPA_")
    settings.update(config or {})
    missing = [key for key in _SETTINGS if not settings.get(key)]
    if missing:
        raise RuntimeError(f"samples.spa_server needs {', '.join(missing)} (environment or .env)")
    app = Flask(__name__, static_folder=None)

    @app.after_request
    def no_cache(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/")
    def index() -> Response:
        return send_from_directory(SPA, "index.html")

    @app.get("/<name>")
    def page(name: str) -> Response:
        if name not in _PAGES:
            abort(404)
        return send_from_directory(SPA, name)

    @app.get("/lib/<name>")
    def library(name: str) -> Response:
        folder = _LIBRARIES.get(name)
        if folder is None:
            abort(404)
        if not (folder / name).is_file():
            abort(Response(f"{name} is missing: run `npm ci` in samples/spa\n", status=500,
                           mimetype="text/plain"))
        return send_from_directory(folder, name, mimetype="text/javascript")

    @app.get("/config.json")
    def spa_config() -> dict[str, str]:
        return {name: str(settings[key]) for key, name in _SETTINGS.items()}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    serve(create_app, __doc__, 5173)


if __name__ == "__main__":
    main()
