"""Configuration for the samples: OBO_* environment variables, or a .env file beside them.

The same samples run against the emulator (make demo) and against real Entra ID: only these
settings change. Values that look like JSON (lists, dicts) are parsed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask


def _parse(value: str) -> Any:
    if value.startswith(("[", "{")):
        return json.loads(value)
    return value


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; # comments and blank lines ignored; no interpolation."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def load_settings(prefix: str = "OBO_", dotenv: Path | None = None) -> dict[str, Any]:
    """Settings with ``prefix``: the .env file first, the environment over it."""
    merged = read_dotenv(dotenv or Path.cwd() / ".env")
    merged.update(os.environ)
    return {key: _parse(value) for key, value in merged.items() if key.startswith(prefix)}


def serve(create_app: Callable[[], Flask], description: str | None, default_port: int) -> None:
    """The samples' command line: ``--host`` and ``--port``, then Flask's threaded server."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    create_app().run(host=args.host, port=args.port, threaded=True, use_reloader=False)


def protected_app(import_name: str, config: dict[str, Any] | None = None) -> Flask:
    """A Flask app guarded by FlaskOBO (settings, then ``config``) with a public /health."""
    from flask_obo import FlaskOBO, public

    app = Flask(import_name)
    app.config.update(load_settings())
    app.config.update(config or {})
    FlaskOBO(app)

    @app.get("/health")
    @public
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
