"""What the guard lets through without a token: Flask's own static-file views and the OPTIONS
answers Flask generates itself, and nothing that merely looks like them.

- A view whose endpoint is named ``static`` (or ``<blueprint>.static``) is the app's view like
  any other: only the real static-file views serve without a token.
- OPTIONS: a CORS preflight carries no credentials, so the automatic OPTIONS answer (which runs
  no view) is not challenged; a view that implements OPTIONS itself runs only with a token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.views import MethodView
from support.apps import obo_config
from support.checks import bearer

from flask_obo import FlaskOBO


def _protected(entra: Any, api: Any, **flask_kwargs: Any) -> Flask:
    """An API of ``api`` with no views yet (``flask_kwargs``: where its static files are)."""
    app = Flask("guarded", **flask_kwargs)
    app.config.update(TESTING=True, **obo_config(entra, api))
    FlaskOBO(app)
    return app


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    (tmp_path / "hello.txt").write_text("static hello")
    return tmp_path


# -- static -------------------------------------------------------------------------------------

def test_a_view_named_static_needs_a_token(entra: Any, api_registration: Any) -> None:
    app = _protected(entra, api_registration, static_folder=None)
    ran: list[str] = []

    @app.get("/export")
    def static() -> str:  # endpoint "static": a name, not Flask's static-file view
        ran.append("static")
        return "secret export"

    response = app.test_client().get("/export")
    assert response.status_code == 401 and ran == []


def test_a_blueprint_view_named_static_needs_a_token(entra: Any, api_registration: Any) -> None:
    app = _protected(entra, api_registration)
    files = Blueprint("files", __name__)
    ran: list[str] = []

    @files.get("/report")
    def static() -> str:  # endpoint "files.static"
        ran.append("files.static")
        return "secret report"

    app.register_blueprint(files, url_prefix="/files")
    response = app.test_client().get("/files/report")
    assert response.status_code == 401 and ran == []


def test_real_static_files_are_served_without_a_token(entra: Any, api_registration: Any,
                                                      static_dir: Path) -> None:
    app = _protected(entra, api_registration, static_folder=str(static_dir),
                     static_url_path="/static")
    assets = Blueprint("assets", __name__, static_folder=str(static_dir),
                       static_url_path="/files")
    app.register_blueprint(assets, url_prefix="/assets")
    app.add_url_rule("/download/<path:filename>", "download", app.send_static_file)
    client = app.test_client()
    for path in ("/static/hello.txt", "/assets/files/hello.txt", "/download/hello.txt"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.get_data(as_text=True) == "static hello"
        response.close()


# -- OPTIONS ------------------------------------------------------------------------------------

def _items(entra: Any, api: Any, methods: list[str]) -> tuple[Flask, list[str]]:
    """A protected app with ``/items`` for ``methods``, and the list of the view's runs."""
    app = _protected(entra, api)
    ran: list[str] = []

    def items() -> str:
        ran.append("items")
        return "items"

    app.add_url_rule("/items", "items", items, methods=methods)
    return app, ran


def test_flasks_automatic_options_answer_needs_no_token(entra: Any,
                                                        api_registration: Any) -> None:
    app, ran = _items(entra, api_registration, ["GET", "POST"])
    response = app.test_client().options("/items")
    assert response.status_code == 200
    assert {"GET", "POST", "OPTIONS"} <= set(response.headers["Allow"].split(", "))
    assert ran == []


def test_a_view_that_implements_options_needs_a_token(entra: Any, api_registration: Any,
                                                      user: Any) -> None:
    app, ran = _items(entra, api_registration, ["GET", "OPTIONS"])
    client = app.test_client()
    assert client.options("/items").status_code == 401
    assert ran == []
    token = entra.issue_user_token(user, resource=api_registration)
    assert client.options("/items", headers=bearer(token)).status_code == 200
    assert ran == ["items"]


def test_a_method_view_with_options_needs_a_token(entra: Any, api_registration: Any) -> None:
    app = _protected(entra, api_registration)
    ran: list[str] = []

    class Items(MethodView):
        def get(self) -> str:
            return "items"

        def options(self) -> str:
            ran.append("options")
            return "allowed"

    app.add_url_rule("/items", view_func=Items.as_view("items"))
    response = app.test_client().options("/items")
    assert response.status_code == 401 and ran == []


def test_options_on_an_unknown_route_is_challenged(entra: Any, api_registration: Any) -> None:
    app = _protected(entra, api_registration)
    assert app.test_client().options("/nowhere").status_code == 401
