"""The apps under test: a protected API, and a middle tier that calls a downstream API.

``build_api`` is an API FlaskOBO protects, with ``GET /me`` (who called), ``/scoped`` (needs
the ``access_as_user`` scope) and ``/roles`` (needs the ``Reader`` role).

``build_middle`` is a middle-tier API calling the downstream API ``down`` (a
``DownstreamStandIn``: its ``url`` and ``scope("read")``) on behalf of its callers:

- ``GET /profile``: ``down``'s ``/me`` as the caller: ``{"status", "downstream", "pid"}``;
- ``GET /as-app``: the same with the app's own token;
- ``GET|POST /call/<api>/<path>``: ``<path>`` of any configured API as the caller, its answer
  (status, body, content type) passed on as it came;
- ``GET /me`` (needs ``access_as_user``): ``{"oid"}``; ``GET /health`` (public): ``{"pid"}``.

``middle_settings`` and ``add_middle_routes`` also make the gunicorn app of the multi-process
test (``multiproc_app``), configured from the environment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request
from flask.testing import FlaskClient

from flask_obo import (
    FlaskOBO,
    current_token,
    get_user_session,
    public,
    requires_downstream,
    requires_downstream_for_app,
    requires_roles,
    requires_scopes,
)
from flask_obo.downstream import DownstreamSession
from flask_obo.testing import App, User

__all__ = [
    "API_ROLES",
    "API_SCOPES",
    "MIDDLE_SECRET",
    "MakeApp",
    "MakeMiddle",
    "Middle",
    "add_middle_routes",
    "build_api",
    "build_middle",
    "middle_settings",
    "obo_config",
]

API_SCOPES = ("access_as_user", "read", "write")
API_ROLES = ("Reader", "Writer")
MIDDLE_SECRET = "s3cret-of-the-middle-tier"


def obo_config(emu: Any, api: App, **config: Any) -> dict[str, Any]:
    """The OBO_ settings of an API protected against ``emu`` (overridable)."""
    settings: dict[str, Any] = {
        "OBO_AUTHORITY": emu.authority(),
        "OBO_CLIENT_ID": api.client_id,
        "OBO_CA_BUNDLE": emu.ca_bundle,
    }
    settings.update(config)
    return settings


def build_api(emu: Any, api: App | None, *, obo: FlaskOBO | None = None,
              **config: Any) -> Flask:
    """An API protected by FlaskOBO: ``/me``, ``/scoped`` and ``/roles``.

    ``emu``/``api`` give the authority, CA and client id; ``None`` when ``config`` does.
    """
    app = Flask(f"api-{uuid.uuid4().hex[:8]}")
    app.config.update(TESTING=True)
    if emu is not None and api is not None:
        app.config.update(obo_config(emu, api))
    app.config.update(config)
    (obo or FlaskOBO()).init_app(app)

    def me() -> Any:
        return jsonify(oid=current_token.oid, tid=current_token.tid,
                       version=current_token.version, scopes=sorted(current_token.scopes),
                       roles=sorted(current_token.roles), app_only=current_token.is_app_only)

    app.add_url_rule("/me", "me", me)
    app.add_url_rule("/scoped", "scoped", requires_scopes("access_as_user")(me))
    app.add_url_rule("/roles", "roles", requires_roles("Reader")(me))
    return app


# the middle tier -------------------------------------------------------------------------------
def middle_settings(emu: Any, api: App, downstream: Any, *, secret: str | None = MIDDLE_SECRET,
                    redis_url: str | None = None, **config: Any) -> dict[str, Any]:
    """OBO_ settings of the middle tier ``api`` calling ``downstream`` as ``down``, its cache on
    ``redis_url`` when given; ``config`` overrides, and its ``None`` values are left out."""
    settings: dict[str, Any] = obo_config(emu, api, OBO_CLIENT_SECRET=secret,
                                          OBO_DOWNSTREAM_APIS={"down": {
                                              "base_url": downstream.url,
                                              "scopes": [downstream.scope("read")]}})
    if redis_url is not None:
        settings["OBO_CACHE"] = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_url}
    settings.update(config)
    return {k: v for k, v in settings.items() if v is not None}


def _me_of(downstream: DownstreamSession) -> dict[str, Any]:
    """``down``'s ``/me`` as ``downstream`` sees it, and which process asked."""
    answer = downstream.get("me")
    body = answer.json() if answer.headers.get("Content-Type") == "application/json" else None
    return {"status": answer.status_code, "downstream": body, "pid": os.getpid()}


def add_middle_routes(app: Flask) -> None:
    """The middle tier's views (see the module docstring)."""
    app.add_url_rule("/profile", "profile", requires_downstream(api="down")(_me_of))
    app.add_url_rule("/as-app", "as_app", requires_downstream_for_app(api="down")(_me_of))

    @app.route("/call/<api>/<path:path>", methods=["GET", "POST"])
    def call(api: str, path: str) -> Response:
        session = get_user_session(api)
        answer = session.post(path, json={"x": 1}) if request.method == "POST" \
            else session.get(path)
        return Response(answer.content, answer.status_code,
                        {"Content-Type": answer.headers.get("Content-Type", "text/plain")})

    @app.get("/me")
    @requires_scopes("access_as_user")
    def me() -> Any:
        return {"oid": current_token.oid}

    @app.get("/health")
    @public
    def health() -> Any:
        return {"pid": os.getpid()}


def build_middle(emu: Any, api: App, downstream: Any, *, secret: str | None = MIDDLE_SECRET,
                 redis_url: str | None = None, cache: Any = None,
                 clock: Callable[[], float] | None = None,
                 flask_class: type[Flask] = Flask, **config: Any) -> Flask:
    """The middle tier ``api`` (see the module docstring); ``cache``: a Flask-Caching ``Cache``
    for FlaskOBO (initialised on the app here); ``clock``: FlaskOBO's clock."""
    app = flask_class(f"middle-{uuid.uuid4().hex[:8]}")
    if cache is not None:
        cache.init_app(app)
    app.config.update(middle_settings(emu, api, downstream, secret=secret, redis_url=redis_url,
                                      **config))
    FlaskOBO(app, cache=cache, clock=clock)
    add_middle_routes(app)
    return app


@dataclass
class Middle:
    """A middle tier under test: its Flask app, registration and a test client."""

    app: Flask
    api: App
    client: FlaskClient
    entra: Any

    def token_for(self, user: User, **kwargs: Any) -> str:
        """A token of ``user`` for this middle tier (``kwargs`` as ``issue_user_token``'s)."""
        return str(self.entra.issue_user_token(user, resource=self.api, **kwargs))

    def get(self, path: str, token: str | None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.get(path, headers=headers, **kwargs)

    def profile(self, token: str) -> Any:
        return self.get("/profile", token)

    @property
    def acquirer(self) -> Any:
        return self.app.extensions["obo"].acquirer

    @property
    def cache(self) -> Any:
        return self.acquirer.cache

    def obo_calls(self) -> list[dict[str, Any]]:
        """This test's on-behalf-of calls to the emulator."""
        return list(self.entra.calls("on_behalf_of"))


MakeApp = Callable[..., Flask]
MakeMiddle = Callable[..., Middle]
