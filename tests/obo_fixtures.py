"""Shared pieces of the OBO, downstream, credential and token-cache suites.

- ``downstream``: a real downstream API (session scope), itself protected by FlaskOBO, served
  over loopback HTTP by werkzeug; it echoes who called it and can answer with a continuous
  access evaluation challenge, fail transiently or set cookies.
- ``make_middle``: builds a middle-tier app (registered in the emulator per test) that calls
  the downstream API through ``@requires_downstream``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request
from flask.testing import FlaskClient
from obo_helpers import LoopbackServer, cae_challenge, token_hash

from flask_obo.downstream import DownstreamSession, requires_downstream, requires_downstream_for_app
from flask_obo.extension import FlaskOBO
from flask_obo.testing import App, EntraEmulator, User


@dataclass
class Downstream:
    """The running downstream API and what it has seen."""

    app: App  # its registration in the emulator
    url: str  # http://127.0.0.1:PORT/
    flask_app: Flask
    seen_tokens: list[str] = field(default_factory=list)  # hashes, in order of arrival
    cae_first: dict[str, str] = field(default_factory=dict)  # oid -> first token hash on /cae
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def read_scope(self) -> str:
        return f"{self.app.app_id_uri}/read"


def _downstream_app(emu: EntraEmulator, registration: App, state: dict[str, Any]) -> Flask:
    from flask_obo.context import current_token

    app = Flask("downstream-api")
    app.config.update(OBO_AUTHORITY=emu.authority(), OBO_CLIENT_ID=registration.client_id,
                      OBO_CA_BUNDLE=emu.ca_bundle)
    FlaskOBO(app)

    def who() -> dict[str, Any]:
        raw = request.headers["Authorization"].split(" ", 1)[1]
        down: Downstream = state["downstream"]
        with down.lock:
            down.seen_tokens.append(token_hash(raw))
        return {
            "oid": current_token.oid, "tid": current_token.tid,
            "scp": sorted(current_token.scopes), "roles": sorted(current_token.roles),
            "amr": list(current_token.get("amr", ())), "azp": current_token.client_id,
            "app_only": current_token.is_app_only, "token": token_hash(raw),
            "cookies": dict(request.cookies),
        }

    @app.route("/me", methods=["GET", "POST"])
    def me() -> Any:
        return jsonify(who())

    @app.get("/cae")
    def cae() -> Any:
        # Continuous access evaluation: the first token each user presents here is "revoked".
        body = who()
        down: Downstream = state["downstream"]
        with down.lock:
            first = down.cae_first.setdefault(body["oid"], body["token"])
        if first == body["token"]:
            return Response(status=401, headers={"WWW-Authenticate": cae_challenge()})
        return jsonify(body)

    @app.route("/cae-always", methods=["GET", "POST"])
    def cae_always() -> Any:
        who()
        return Response(status=401, headers={"WWW-Authenticate": cae_challenge()})

    @app.route("/flaky/<key>/<int:failures>", methods=["GET", "POST"])
    def flaky(key: str, failures: int) -> Any:
        down: Downstream = state["downstream"]
        with down.lock:
            down.hits[key] += 1
            count = down.hits[key]
        if count <= failures:
            return Response("try again", status=503)
        return jsonify(who() | {"attempt": count})

    @app.get("/slow/<float:seconds>")
    def slow(seconds: float) -> Any:
        time.sleep(seconds)
        return jsonify(who())

    @app.get("/set-cookie")
    def set_cookie() -> Any:
        response = jsonify(who())
        response.set_cookie("session", current_token.oid or "", domain=None)
        return response

    return app


@pytest.fixture(scope="session")
def downstream(entra_emulator: EntraEmulator) -> Iterator[Downstream]:
    registration = entra_emulator.register_app(
        "obo-suite downstream", scopes=["read", "write"], roles=["Reader"])
    state: dict[str, Any] = {}
    flask_app = _downstream_app(entra_emulator, registration, state)
    server = LoopbackServer(flask_app)
    down = Downstream(app=registration, url=server.url, flask_app=flask_app)
    state["downstream"] = down
    try:
        yield down
    finally:
        server.stop()


@dataclass
class Middle:
    """A middle-tier API under test: its Flask app, registration and a test client."""

    app: Flask
    api: App
    client: FlaskClient
    entra: Any

    def token_for(self, user: User, **kwargs: Any) -> str:
        return str(self.entra.issue_user_token(user, resource=self.api, **kwargs))

    def get(self, path: str, token: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {token}"}, **kwargs)

    @property
    def acquirer(self) -> Any:
        return self.app.extensions["obo"].acquirer

    def obo_calls(self) -> list[dict[str, Any]]:
        return list(self.entra.calls("on_behalf_of"))


def add_middle_routes(app: Flask) -> None:
    @app.get("/profile")
    @requires_downstream(api="down")
    def profile(downstream: DownstreamSession) -> Any:
        answer = downstream.get("me")
        return {"status": answer.status_code, "downstream": answer.json()}

    @app.get("/call/<path:path>")
    @requires_downstream(api="down")
    def call(path: str, downstream: DownstreamSession) -> Any:
        answer = downstream.get(path)
        body = answer.json() if answer.headers.get("Content-Type") == "application/json" else None
        return {"status": answer.status_code, "downstream": body}

    @app.post("/call/<path:path>")
    @requires_downstream(api="down")
    def call_post(path: str, downstream: DownstreamSession) -> Any:
        answer = downstream.post(path, json={"x": 1})
        return {"status": answer.status_code}

    @app.get("/as-app")
    @requires_downstream_for_app(api="down")
    def as_app(downstream: DownstreamSession) -> Any:
        answer = downstream.get("me")
        return {"status": answer.status_code, "downstream": answer.json()}


MakeMiddle = Callable[..., Middle]


@pytest.fixture
def make_middle(entra: Any, downstream: Downstream) -> Iterator[MakeMiddle]:
    """``make_middle(**config)``: a middle tier with a secret and consent for ``read``."""
    built: list[Middle] = []

    def make(*, consent: bool = True, secret: str | None = "s3cret", api: App | None = None,
             **config: Any) -> Middle:
        if api is None:
            api = entra.register_app("middle", secret=secret, scopes=["access_as_user"])
        if consent:
            entra.grant_consent(client=api, resource=downstream.app, scopes=["read"],
                                roles=["Reader"])
        app = Flask(f"middle-{api.client_id[:8]}")
        settings: dict[str, Any] = {
            "OBO_AUTHORITY": entra.authority(), "OBO_CLIENT_ID": api.client_id,
            "OBO_CA_BUNDLE": entra.ca_bundle,
            "OBO_DOWNSTREAM_APIS": {"down": {"base_url": downstream.url,
                                             "scopes": [downstream.read_scope]}},
        }
        if secret is not None:
            settings["OBO_CLIENT_SECRET"] = secret
        settings.update(config)
        app.config.update(settings)
        FlaskOBO(app)
        add_middle_routes(app)
        middle = Middle(app, api, app.test_client(), entra)
        built.append(middle)
        return middle

    yield make
    for middle in built:
        middle.app.extensions["obo"].close()
