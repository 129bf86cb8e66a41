"""FlaskOBO registration, the guard's defaults (fail closed, public views, OPTIONS, static),
header parsing per RFC 6750 (fuzzed in test_security_fuzz), error rendering, several apps on
one extension object."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, jsonify
from support.apps import MakeApp, build_api
from support.checks import assert_challenge, bearer

from flask_obo.context import current_token, get_assertion, verify_token_in_request
from flask_obo.errors import ConfigError, OboError
from flask_obo.extension import FlaskOBO, public
from flask_obo.testing import App, User
from flask_obo.testing.pytest_plugin import EntraTestHelper


def realm(api: App) -> str:
    return f'Bearer realm="api://{api.client_id}"'


def test_missing_token_gets_a_bare_challenge(make_app: MakeApp, api_registration: App) -> None:
    response = make_app().test_client().get("/me")
    body = assert_challenge(response, 401, None, realm=f"api://{api_registration.client_id}")
    assert response.headers["WWW-Authenticate"] == realm(api_registration)
    assert "error" not in body


def test_valid_token_reaches_the_view(make_app: MakeApp, emulator: EntraTestHelper,
                                      api_registration: App, user: User) -> None:
    token = emulator.issue_user_token(user, resource=api_registration)
    response = make_app().test_client().get("/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json["oid"] == user.oid


def test_second_init_on_the_same_app_is_refused(make_app: MakeApp) -> None:
    app = make_app()
    with pytest.raises(RuntimeError, match="already registered"):
        FlaskOBO(app)


@pytest.mark.parametrize(("config", "names"), [
    ({"OBO_AUTHORITY": None}, "OBO_AUTHORITY"),
    ({"OBO_AUTHORITY": "http://login.example/tenant"}, "OBO_AUTHORITY"),
    ({"OBO_CLIENT_ID": None}, "OBO_CLIENT_ID"),
    ({"OBO_ALGORITHMS": ["HS256"]}, "OBO_ALGORITHMS"),
    ({"OBO_ALGORITHMS": ["none"]}, "OBO_ALGORITHMS"),
    ({"OBO_CA_BUNDLE": "/nonexistent/ca.pem"}, "OBO_CA_BUNDLE"),
    ({"OBO_ACCEPTED_TOKEN_VERSIONS": ["3.0"]}, "OBO_ACCEPTED_TOKEN_VERSIONS"),
])
def test_config_errors_name_the_key(emulator: EntraTestHelper, api_registration: App,
                                    config: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        build_api(emulator, api_registration, **config)


def test_multi_tenant_authority_requires_an_allow_list(emulator: EntraTestHelper,
                                                       api_registration: App) -> None:
    with pytest.raises(ConfigError, match="OBO_ALLOWED_TENANTS"):
        build_api(emulator, api_registration,
                  OBO_AUTHORITY=emulator.authority("organizations"))


def test_public_views_options_and_static_are_not_challenged(tmp_path: Any,
                                                            emulator: EntraTestHelper,
                                                            api_registration: App) -> None:
    (tmp_path / "logo.txt").write_text("hello")
    app = Flask("static-app", static_folder=str(tmp_path), static_url_path="/static")
    app.config.update(TESTING=True, OBO_AUTHORITY=emulator.authority(),
                      OBO_CLIENT_ID=api_registration.client_id, OBO_CA_BUNDLE=emulator.ca_bundle,
                      OBO_PUBLIC_ENDPOINTS=["ready"])
    FlaskOBO(app)
    open_bp = Blueprint("open", __name__)

    @open_bp.get("/docs")
    def docs() -> str:
        return "docs"

    app.register_blueprint(open_bp)
    FlaskOBO.exempt([open_bp], app)

    @app.get("/health")
    @public
    def health() -> str:
        return "ok"

    @app.get("/ready")
    def ready() -> str:
        return "ready"

    @app.get("/items")  # Flask answers its OPTIONS (a CORS preflight) itself
    def items() -> str:
        return "items"

    client = app.test_client()
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/static/logo.txt").status_code == 200
    assert client.options("/items").status_code == 200
    # ... and everything else fails closed, unknown URLs included (a 404 reveals nothing).
    assert client.get("/items").status_code == 401
    assert client.get("/nowhere").status_code == 401


def test_a_public_view_can_still_ask_for_the_optional_caller(make_app: MakeApp,
                                                             emulator: EntraTestHelper,
                                                             api_registration: App,
                                                             user: User) -> None:
    app = make_app()

    @app.get("/greeting")
    @public
    def greeting() -> str:
        claims = verify_token_in_request(optional=True)
        return f"hello {claims.oid}" if claims else "hello stranger"

    client = app.test_client()
    assert client.get("/greeting").text == "hello stranger"
    token = emulator.issue_user_token(user, resource=api_registration)
    assert client.get("/greeting", headers=bearer(token)).text == f"hello {user.oid}"
    # A token that is present but bad is refused even where it is optional.
    bad = client.get("/greeting", headers=bearer(token[:-4] + "AAAA"))
    assert bad.status_code == 401


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Digest x", "Bearertoken"])
def test_another_scheme_gets_a_bare_challenge(make_app: MakeApp, api_registration: App,
                                              header: str) -> None:
    response = make_app().test_client().get("/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == realm(api_registration)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", "Bearer a, Bearer b"])
def test_malformed_bearer_header_is_invalid_request(make_app: MakeApp, api_registration: App,
                                                    header: str) -> None:
    response = make_app().test_client().get("/me", headers={"Authorization": header})
    assert response.status_code == 400
    assert response.headers["WWW-Authenticate"] == (
        f'{realm(api_registration)}, error="invalid_request", error_description="The '
        "Authorization header must hold exactly one bearer token: 'Bearer <token>'.\"")


def test_scheme_is_case_insensitive(make_app: MakeApp, emulator: EntraTestHelper,
                                    api_registration: App, user: User) -> None:
    token = emulator.issue_user_token(user, resource=api_registration)
    client = make_app().test_client()
    for scheme in ("bearer", "BEARER", "BeArEr"):
        assert client.get("/me", headers={"Authorization": f"{scheme} {token}"}).status_code == 200


def test_error_bodies_and_headers_never_echo_the_token(make_app: MakeApp,
                                                       emulator: EntraTestHelper,
                                                       api_registration: App,
                                                       user: User) -> None:
    token = emulator.issue_user_token(user, resource=api_registration, lifetime=-3600)
    response = make_app().test_client().get("/me", headers=bearer(token))
    assert response.status_code == 401
    text = response.get_data(as_text=True) + str(response.headers)
    for part in token.split("."):
        assert part[:16] not in text


def test_requests_sharing_an_app_context_do_not_share_the_caller(
        make_app: MakeApp, emulator: EntraTestHelper, api_registration: App, user: User) -> None:
    # Flask reuses an active app context (and its g) for requests made inside it.
    app = make_app()

    @app.get("/who")
    @public
    def who() -> str:
        claims = verify_token_in_request(optional=True)
        return claims.oid if claims else "nobody"

    token = emulator.issue_user_token(user, resource=api_registration)
    client = app.test_client()
    with app.app_context():
        assert client.get("/me", headers=bearer(token)).status_code == 200
        assert client.get("/me").status_code == 401
        assert client.get("/who").text == "nobody"
        with pytest.raises(RuntimeError):
            get_assertion()


def test_an_error_renderer_replaces_the_rendering(emulator: EntraTestHelper,
                                                  api_registration: App) -> None:
    seen: list[OboError] = []

    def render(error: OboError) -> Response:
        seen.append(error)
        response = jsonify(message=error.description, code=error.reason)
        response.status_code = error.code or 500
        response.headers["WWW-Authenticate"] = 'Bearer realm="custom"'
        return response

    app = build_api(emulator, api_registration, obo=FlaskOBO(error_renderer=render))
    response = app.test_client().get("/me", headers=bearer("not-a-jwt"))
    assert response.status_code == 401
    assert response.json == {"message": "The token is not a well-formed signed JWT.",
                             "code": "malformed"}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="custom"'
    assert [e.reason for e in seen] == ["malformed"]


def test_an_app_error_handler_can_override_too(make_app: MakeApp) -> None:
    app = make_app()

    @app.errorhandler(OboError)
    def unauthorized(error: OboError) -> Any:
        return {"custom": error.reason}, error.code, {"WWW-Authenticate": "Bearer"}

    client = app.test_client()
    assert client.get("/me").json == {"custom": "missing"}
    assert client.get("/me", headers=bearer("x")).json == {"custom": "malformed"}


def test_one_extension_object_serves_several_apps(emulator: EntraTestHelper,
                                                  user: User) -> None:
    obo = FlaskOBO()
    first = emulator.register_app("first", scopes=["access_as_user"])
    second = emulator.register_app("second", scopes=["access_as_user"])
    app1 = build_api(emulator, first, obo=obo)
    app2 = build_api(emulator, second, obo=obo)
    token1 = emulator.issue_user_token(user, resource=first)
    assert app1.test_client().get("/me", headers=bearer(token1)).status_code == 200
    refused = app2.test_client().get("/me", headers=bearer(token1))
    assert refused.status_code == 401
    assert refused.json["reason"] == "audience"
    assert app1.extensions["obo"] is not app2.extensions["obo"]
    assert not hasattr(obo, "app")


def test_async_view(make_app: MakeApp, emulator: EntraTestHelper, api_registration: App,
                    user: User) -> None:
    app = make_app()

    @app.get("/async")
    async def async_view() -> Any:
        return {"oid": current_token.oid, "has_assertion": bool(get_assertion())}

    token = emulator.issue_user_token(user, resource=api_registration)
    client = app.test_client()
    assert client.get("/async", headers=bearer(token)).json == {"oid": user.oid,
                                                                "has_assertion": True}
    assert client.get("/async").status_code == 401


def test_problem_body_is_rfc9457(make_app: MakeApp) -> None:
    response = make_app().test_client().get("/me", headers=bearer("a.b"))
    body = json.loads(response.get_data(as_text=True))
    assert response.headers["Content-Type"] == "application/problem+json"
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == 401 and body["error"] == "invalid_token"
    # No published errors page by default: RFC 9457's about:blank, with the status phrase.
    assert body["type"] == "about:blank" and body["title"] == "Unauthorized"


def test_problem_type_points_at_the_published_errors_page(make_app: MakeApp) -> None:
    base = "https://docs.example.test/flask-obo/errors.html#"
    app = make_app(OBO_PROBLEM_TYPE_BASE=base)
    body = app.test_client().get("/me", headers=bearer("a.b")).json
    assert body["type"] == base + "invalid-token" and body["title"] == "Invalid token"
    assert app.test_client().get("/me").json["type"] == base + "missing-token"


def test_problem_type_base_must_be_a_url(make_app: MakeApp) -> None:
    with pytest.raises(ConfigError, match=r"OBO_PROBLEM_TYPE_BASE=.errors\.html#. is not a URL"):
        make_app(OBO_PROBLEM_TYPE_BASE="errors.html#")
