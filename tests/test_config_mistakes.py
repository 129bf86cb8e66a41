"""The configuration mistakes a new user makes are caught at start, or by ``flask obo check``,
each with a message that says what to set; none is found first by a user's 401 or 500."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from support.apps import MakeApp, build_api
from support.checks import bearer

from flask_obo import ConfigError, DownstreamSession, requires_downstream
from flask_obo.testing import App, User
from flask_obo.testing.pytest_plugin import EntraTestHelper


def run_check(app: Flask) -> Any:
    return app.test_cli_runner().invoke(args=["obo", "check"])


# -- api://<client id> and <client id> name the same app ---------------------------------------

def test_an_app_id_uri_as_client_id_is_read_as_the_client_id(
        emulator: EntraTestHelper, api_registration: App, user: User,
        caplog: pytest.LogCaptureFixture) -> None:
    client_id = api_registration.client_id
    with caplog.at_level(logging.INFO, logger="flask_obo"):
        app = build_api(emulator, api_registration, OBO_CLIENT_ID=f"api://{client_id}")
    assert app.extensions["obo"].config.client_id == client_id
    assert any(f"App ID URI of client id {client_id}" in r.getMessage() for r in caplog.records)
    response = app.test_client().get("/me", headers=bearer("not-a-token"))
    assert f'realm="api://{client_id}"' in response.headers["WWW-Authenticate"]
    token = emulator.issue_user_token(user, resource=api_registration)  # v2: aud = client id
    assert app.test_client().get("/me", headers=bearer(token)).status_code == 200


def test_an_app_id_uri_that_names_no_client_id_is_refused(make_app: MakeApp) -> None:
    with pytest.raises(ConfigError, match=re.escape(
            "OBO_CLIENT_ID='api://contoso.test/orders' is an App ID URI: set OBO_CLIENT_ID to "
            "the Application")):
        make_app(OBO_CLIENT_ID="api://contoso.test/orders")


@pytest.mark.parametrize("version", [1, 2])
def test_audiences_listing_the_app_id_uri_still_accept_v2_tokens(
        emulator: EntraTestHelper, api_registration: App, user: User, version: int) -> None:
    # Microsoft's samples set the audience to api://<client id>; a v2 token's aud is the
    # client id, a v1 token's the App ID URI: both name this app.
    app = build_api(emulator, api_registration,
                    OBO_AUDIENCES=[f"api://{api_registration.client_id}"])
    token = emulator.issue_user_token(user, resource=api_registration, version=version)
    assert app.test_client().get("/me", headers=bearer(token)).status_code == 200
    listed = run_check(app).output.split("audiences ", 1)[1].split(";", 1)[0]
    assert set(listed.split(", ")) == {api_registration.client_id,
                                       f"api://{api_registration.client_id}"}


# -- unknown keys ----------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "meant"), [
    ("OBO_CLIENTID", "OBO_CLIENT_ID"),
    ("OBO_DOWNSTREAM_API", "OBO_DOWNSTREAM_APIS"),
    ("OBO_AUDIENCE", "OBO_AUDIENCES"),
    ("OBO_CLIENT_SECRETS", "OBO_CLIENT_SECRET"),
])
def test_a_misspelt_key_is_refused_with_the_key_meant(make_app: MakeApp, key: str,
                                                      meant: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown flask-obo setting: {key} "
                                          rf"\(did you mean {meant}\?\)"):
        make_app(**{key: "x"})


def test_an_unknown_key_like_no_other_is_refused_without_a_guess(make_app: MakeApp) -> None:
    with pytest.raises(ConfigError) as raised:
        make_app(OBO_TELEMETRY_SAMPLING=0.5)
    assert "unknown flask-obo setting: OBO_TELEMETRY_SAMPLING." in str(raised.value)
    assert "did you mean" not in str(raised.value)


def test_every_declared_key_is_accepted(make_app: MakeApp) -> None:
    from flask_obo.config import DEFAULTS, KEYS

    assert [key.name for key in KEYS] == list(DEFAULTS)
    app = make_app(**{k: v for k, v in DEFAULTS.items()
                      if k not in ("OBO_AUTHORITY", "OBO_CLIENT_ID")})
    assert "obo" in app.extensions


def test_a_secret_that_json_made_a_number_says_how_to_quote_it(make_app: MakeApp) -> None:
    # FLASK_OBO_CLIENT_SECRET=123456 read by app.config.from_prefixed_env() arrives as an int.
    with pytest.raises(ConfigError, match=r"OBO_CLIENT_SECRET must be a string, not int .*"
                                          r"from_prefixed_env.*quote"):
        make_app(OBO_CLIENT_SECRET=123456)


# -- .default with other scopes ---------------------------------------------------------------

def test_default_scope_mixed_with_others_is_refused_at_start(make_app: MakeApp) -> None:
    apis = {"down": {"scopes": ["api://down/.default", "api://down/read"]}}
    with pytest.raises(ConfigError, match=r"OBO_DOWNSTREAM_APIS\['down'\]\['scopes'\] mixes "
                                          "'api://down/.default' with other scopes"):
        make_app(OBO_CLIENT_SECRET="s3cret", OBO_DOWNSTREAM_APIS=apis)


def test_default_scope_mixed_with_others_is_refused_by_the_decorator() -> None:
    with pytest.raises(ConfigError, match=r"@requires_downstream mixes 'api://down/\.default'"):
        requires_downstream(["api://down/.default", "api://down/read"])


# -- an api= name the configuration lacks ---------------------------------------------------

def test_an_api_name_missing_from_the_configuration_is_found_by_check(make_middle: Any) -> None:
    middle = make_middle()

    @middle.app.get("/graph")
    @requires_downstream(api="graph")
    def graph(downstream: DownstreamSession) -> Any:
        return downstream.get("me").json()

    result = run_check(middle.app)
    assert result.exit_code == 1, result.output
    assert ("[FAIL] downstream APIs: view(s) graph: the code calls downstream API 'graph', "
            "which OBO_DOWNSTREAM_APIS does not define (it defines: 'down'); add "
            "{'scopes': [...], 'base_url': ...} under that name.") in result.output


def test_views_whose_api_names_are_configured_pass_check(make_middle: Any) -> None:
    result = run_check(make_middle().app)
    assert result.exit_code == 0, result.output
    assert "[ok] downstream APIs: 2 view(s) call down; every name is in OBO_DOWNSTREAM_APIS" \
        in result.output


def test_an_api_name_missing_at_first_use_is_a_problem_500_logged_once(
        make_middle: Any, user: User, caplog: pytest.LogCaptureFixture) -> None:
    middle = make_middle()

    @middle.app.get("/graph")
    @requires_downstream(api="graph")
    def graph(downstream: DownstreamSession) -> Any:
        return downstream.get("me").json()

    token = middle.token_for(user)
    with caplog.at_level(logging.ERROR, logger="flask_obo"):
        responses = [middle.get("/graph", token) for _ in range(3)]
    for response in responses:
        assert response.status_code == 500
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json["reason"] == "unknown_downstream_api"
        assert response.json["detail"] == ("This API is misconfigured: the code calls "
                                           "downstream API 'graph', which OBO_DOWNSTREAM_APIS "
                                           "does not define.")
    logged = [r.getMessage() for r in caplog.records if "'graph'" in r.getMessage()]
    assert logged == ["flask-obo: the code calls downstream API 'graph', which "
                      "OBO_DOWNSTREAM_APIS does not define (it defines: 'down'); add "
                      "{'scopes': [...], 'base_url': ...} under that name"]
    assert middle.obo_calls() == []


def test_downstream_calls_without_a_credential_are_reported_by_check(
        make_app: MakeApp) -> None:
    app = make_app()

    @app.get("/read")
    @requires_downstream(["api://down/read"])
    def read(downstream: DownstreamSession) -> Any:
        return {}

    result = run_check(app)
    assert result.exit_code == 1
    assert ("[FAIL] downstream APIs: view(s) read call downstream APIs, but this app has no "
            "credential") in result.output


# -- flask obo check: no traceback, and AADSTS codes as the README explains them ---------------

@pytest.mark.parametrize(("config", "said"), [
    ({"OBO_AUTHORITY": "https://login.microsoftonline.com/organizations",
      "OBO_CLIENT_ID": str(uuid.UUID(int=1))},
     "OBO_AUTHORITY is multi-tenant ('organizations'), so OBO_ALLOWED_TENANTS is required"),
    ({"OBO_AUTHORITY": "https://login.microsoftonline.com/contoso.test",
      "OBO_CLIENTID": str(uuid.UUID(int=1))},
     "unknown flask-obo setting: OBO_CLIENTID (did you mean OBO_CLIENT_ID?)"),
])
def test_check_reports_a_configuration_that_stops_the_app_without_a_traceback(
        tmp_path: Path, config: dict[str, str], said: str) -> None:
    (tmp_path / "badapp.py").write_text(textwrap.dedent(f"""
        from flask import Flask
        from flask_obo import FlaskOBO

        def create_app():
            app = Flask(__name__)
            app.config.update({config!r})
            FlaskOBO(app)
            return app
    """))
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "badapp:create_app", "obo",
                             "check"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"[FAIL] configuration: {said}" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_check_says_where_to_look_for_an_app_not_found_in_the_tenant(
        emulator: EntraTestHelper, api_registration: App) -> None:
    # AADSTS700016: no app with this client id in the tenant. The credential is not the
    # problem, so the check must not say "secret refused": the README says what to check.
    app = build_api(emulator, api_registration, OBO_CLIENT_ID=str(uuid.uuid4()),
                    OBO_CLIENT_SECRET="s3cret")
    result = run_check(app)
    assert result.exit_code == 1
    line = next(line for line in result.output.splitlines() if "credential:" in line)
    assert "AADSTS700016: application not found in the tenant): check OBO_CLIENT_ID and " \
           "OBO_AUTHORITY." in line, line
    assert "secret" not in line.replace("client secret", ""), line


def test_check_says_to_fix_a_wrong_secret(emulator: EntraTestHelper) -> None:
    api = emulator.register_app("api", secret="right", scopes=["access_as_user"])
    result = run_check(build_api(emulator, api, OBO_CLIENT_SECRET="wrong"))
    assert result.exit_code == 1
    assert "AADSTS7000215: invalid client secret): the secret is wrong" in result.output
