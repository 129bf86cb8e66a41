"""`make demo-browser`: everything starts, the printed address serves the SPA wired to the
printed emulator, the demo users' credentials are shown, and Ctrl-C stops every process."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import requests
from support.processes import checkout_processes, start_demo

ROOT = Path(__file__).resolve().parent.parent
DEMO_PROCESSES = ("middle_tier", "downstream_api", "spa_server")  # samples.<module>
MSAL = ROOT / "samples/spa/node_modules/@azure/msal-browser"


def test_demo_browser_serves_the_spa_prints_credentials_and_stops_on_ctrl_c() -> None:
    if not MSAL.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("samples/spa/node_modules is missing (make test runs npm ci)")
        pytest.skip("MSAL.js is not installed: run `npm ci` in samples/spa")
    process = start_demo("demo_browser")
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # until the banner's last line
        lines.append(line)
        if "Press Ctrl-C" in line or "FAILED" in line:
            break
    out = "".join(lines)
    try:
        assert "FAILED" not in out, out
        spa = re.search(r"^    (http://localhost:\d+/)$", out, re.M)
        authority = re.search(r"^Entra emulator +(https://127\.0\.0\.1:\d+/\S+)$", out, re.M)
        assert spa and authority, out
        for expected in ("alice@contoso.test", "password: alice-pw", "bob@contoso.test",
                         "one-time code: 123456", "--ignore-certificate-errors-spki-list="):
            assert expected in out
        config = requests.get(spa.group(1) + "config.json", timeout=10).json()
        assert config["authority"] == authority.group(1)
        assert requests.get(spa.group(1) + "lib/msal-browser.min.js", timeout=10).ok
        preflight = requests.options(config["apiUrl"] + "/api/profile", timeout=10, headers={
            "Origin": spa.group(1).rstrip("/"), "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.headers["Access-Control-Allow-Origin"] == spa.group(1).rstrip("/")
        assert checkout_processes(*DEMO_PROCESSES), "the APIs and the SPA server should run now"
    finally:
        process.send_signal(signal.SIGINT)
        out += process.communicate(timeout=60)[0]
    assert process.returncode == 0, out
    assert "Stopped: the emulator, both APIs and the SPA server." in out
    assert "Traceback" not in out
    assert checkout_processes(*DEMO_PROCESSES) == []
