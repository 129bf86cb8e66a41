"""The pytest plugin's helper, the JSON config and ``python -m flask_obo.testing serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from emulator_fixtures import claims_of, post_token

from flask_obo._http import build_session
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
    entra_emulator._services.internal_errors.append("GET /x: RuntimeError()")
    try:
        with pytest.raises(pytest.fail.Exception, match="internal errors"):
            helper.check_no_internal_errors()
    finally:
        entra_emulator._services.internal_errors.pop()


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
