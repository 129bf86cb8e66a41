"""The pytest plugin's helper, the JSON config and ``python -m flask_obo.testing serve``."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from support.jose import claims_of
from support.world import post_token, verify_with_jwks

from flask_obo import build_session
from flask_obo.testing import EntraEmulator
from flask_obo.testing.config import DEMO_CONFIG, apply_config, emulator_options
from flask_obo.testing.pytest_plugin import EntraTestHelper


def test_helper_names_are_unique_per_test(entra: EntraTestHelper) -> None:
    alice = entra.add_user("alice", password="pw")
    assert alice.username == f"alice.{entra.tag}@contoso.test"
    other = entra.add_user("alice@fabrikam.example", password="pw")
    assert other.username == f"alice.{entra.tag}@fabrikam.example"
    app = entra.register_app("api")
    assert entra.tag in app.name
    assert entra.authority() == entra.emulator.authority()  # everything else passes through


def test_helper_calls_are_this_tests_only(entra: EntraTestHelper,
                                          entra_emulator: EntraEmulator) -> None:
    neighbour = EntraTestHelper(entra_emulator, "neighbour")
    for helper in (entra, neighbour):
        client = helper.register_app("daemon", secret="s")
        down = helper.register_app("down", roles=["R"])
        post_token(entra_emulator, {"grant_type": "client_credentials",
                                    "client_id": client.client_id, "client_secret": "s",
                                    "scope": f"{down.app_id_uri}/.default"})
    mine = entra.calls("client_credentials")
    assert len(mine) == 1 and mine[0]["client_id"] in entra.client_ids
    assert len(neighbour.calls("client_credentials")) == 1


def test_helper_reports_internal_errors(entra_emulator: EntraEmulator) -> None:
    helper = EntraTestHelper(entra_emulator, "broken")
    # No request makes the emulator fail on purpose (that would be a bug): one is planted.
    entra_emulator._services.internal_errors.append("GET /x: RuntimeError()")
    try:
        with pytest.raises(pytest.fail.Exception, match="internal errors"):
            helper.check_no_internal_errors()
    finally:
        entra_emulator._services.internal_errors.pop()


def test_auth_header_carries_a_user_token_for_the_api(entra: EntraTestHelper) -> None:
    api = entra.register_app("api", scopes=["access_as_user", "read"])
    alice = entra.add_user("alice")
    header = entra.auth_header(alice, api, scopes=["read"])
    assert list(header) == ["Authorization"] and header["Authorization"].startswith("Bearer ")
    claims = verify_with_jwks(entra.emulator, header["Authorization"].removeprefix("Bearer "))
    assert (claims["aud"], claims["oid"], claims["scp"]) == (api.client_id, alice.oid, "read")


def test_demo_config_supports_the_whole_chain() -> None:
    with EntraEmulator(**emulator_options(DEMO_CONFIG)) as emu:
        apps = apply_config(emu, DEMO_CONFIG)
        assert emu.tenant_id == DEMO_CONFIG["tenant_id"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            signin = emu.public_client(apps["demo-cli"]).acquire_token_by_username_password(
                "alice@contoso.test", "alice-pw",
                [f"{apps['middle-tier'].app_id_uri}/access_as_user"])
        result = emu.confidential_client(apps["middle-tier"], "middle-tier-secret")\
            .acquire_token_on_behalf_of(signin["access_token"],
                                        [f"{apps['downstream'].app_id_uri}/read"])
        assert claims_of(result["access_token"])["scp"] == "read"


def test_config_refuses_unknown_keys() -> None:
    with EntraEmulator() as emu:
        with pytest.raises(ValueError, match="unknown app keys"):
            apply_config(emu, {"apps": [{"name": "x", "secrets": "typo"}]})
        with pytest.raises(ValueError, match="unknown top-level keys"):
            apply_config(emu, {"userz": []})


def test_serve_command(tmp_path: Path) -> None:
    config = {
        "tenant_domain": "example.test",
        "apps": [{"name": "api", "secret": "s", "scopes": ["access_as_user"]}],
        "users": [{"username": "zoe@example.test", "password": "zoe-pw"}],
    }
    path = tmp_path / "emulator.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask_obo.testing", "serve", "--port", "0", "--config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        fields = dict(tuple(p.strip() for p in ln.split(": ", 1)) for ln in lines
                      if ln.startswith("  ") and not ln.startswith("    ") and ": " in ln)
        assert "zoe@example.test / password: zoe-pw" in text
        ca_bundle = fields["CA bundle"]
        assert Path(ca_bundle).exists()
        with build_session(ca_bundle) as session:
            doc = session.get(fields["discovery"], timeout=10).json()
        assert doc["issuer"].startswith(fields["authority"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert not Path(ca_bundle).exists()


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flask_obo.testing", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_serve_prints_its_settings_logs_requests_and_hands_out_tokens(tmp_path: Path) -> None:
    proc = _serve("--print-env")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("EMULATOR_READY="):
                break
        env_file = tmp_path / "emulator.env"
        env_file.write_text("".join(lines))
        env = {key: shlex.split(value)[0] if value else "" for key, _, value in
               (line.rstrip("\n").partition("=") for line in lines)}
        assert env["OBO_CLIENT_ID"] == DEMO_CONFIG["apps"][1]["client_id"]  # the middle tier
        assert env["OBO_CLIENT_SECRET"] == "middle-tier-secret"
        assert env["EMULATOR_TENANT_ID"] == DEMO_CONFIG["tenant_id"]
        assert env["OBO_AUTHORITY"].endswith("/" + DEMO_CONFIG["tenant_id"])
        assert env["EMULATOR_APP_DOWNSTREAM_SCOPES"] == "read write"
        assert env["EMULATOR_USER_ALICE"] == "alice@contoso.test"
        assert env["EMULATOR_USER_BOB_PASSWORD"] == "bob-pw"
        assert env["EMULATOR_PUBLIC_CLIENT_ID"] == DEMO_CONFIG["apps"][0]["client_id"]
        with build_session(env["OBO_CA_BUNDLE"]) as session:
            doc = session.get(env["EMULATOR_DISCOVERY_URL"], timeout=10).json()
        assert doc["issuer"].startswith(env["OBO_AUTHORITY"])

        token = subprocess.run(
            [sys.executable, "-m", "flask_obo.testing", "token", "alice", "--env", str(env_file)],
            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        claims = claims_of(token)
        assert claims["aud"] == env["OBO_CLIENT_ID"]
        assert claims["preferred_username"] == "alice@contoso.test"
        assert claims["scp"] == "access_as_user"
        refused = subprocess.run(
            [sys.executable, "-m", "flask_obo.testing", "token", "bob", "--password", "wrong",
             "--env", str(env_file)], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "invalid_grant" in refused.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        _, log = proc.communicate(timeout=10)
    assert proc.returncode == 0
    requests_logged = [line for line in log.splitlines() if line.startswith(("GET ", "POST "))]
    token_lines = [line for line in requests_logged if "/oauth2/v2.0/token" in line]
    assert token_lines[0] == (f"POST /{DEMO_CONFIG['tenant_id']}/oauth2/v2.0/token "
                              f"grant=password client={env['EMULATOR_PUBLIC_CLIENT_ID']} 200")
    assert token_lines[1].endswith(" 400")
    assert any(line.startswith("GET /") and "openid-configuration" in line
               for line in requests_logged)
    for secret in ("alice-pw", "wrong", token, token.split(".")[2]):
        assert secret not in log


def test_token_without_settings_says_what_to_do() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "OBO_"))}
    result = subprocess.run([sys.executable, "-m", "flask_obo.testing", "token"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "--print-env" in result.stderr
