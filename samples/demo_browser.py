"""``make demo-browser``: the whole chain with a browser as the client, for a person to try.

It starts the Entra emulator, the downstream API, the middle tier (with CORS for the SPA's
origin) and the SPA's static server (``samples/spa``, MSAL.js from npm) on loopback, prints the
address to open and the demo users' credentials, and runs until Ctrl-C, which stops every
process it started.

    python -m samples.demo_browser [--port 5173] [--emulator-port 0]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from contextlib import ExitStack

from flask_obo.testing import DEFAULT_ONE_TIME_CODE, EntraEmulator
from flask_obo.testing.config import DEMO_CONFIG, apply_config, emulator_options

from .processes import DemoFailure, api_process, free_port, on_sigterm
from .spa_server import SPA

SPA_CLIENT_ID = "5fa0c1e2-0000-4000-8000-0000000005ba"


def _banner(emu: EntraEmulator, spa_url: str) -> str:
    users = []
    for spec in DEMO_CONFIG["users"]:
        mfa = ", MFA for the downstream API" if spec.get("mfa_required_for") else ""
        code = spec.get("one_time_code", DEFAULT_ONE_TIME_CODE)
        users.append(f"    {spec['username']:<22} password: {spec['password']:<10} "
                     f"one-time code: {code}{mfa}")
    return "\n".join([
        "",
        "The SPA sample is running. Open it in a browser:",
        "",
        f"    {spa_url}",
        "",
        "Demo users:",
        *users,
        "",
        "The browser must trust the emulator (its own CA, made at start). Either open",
        f"    {emu.base_url}/",
        "once and accept the certificate warning, or start Chromium with",
        f"    --ignore-certificate-errors-spki-list={emu.certificate_spki_sha256}",
        f"(CA bundle: {emu.ca_bundle})",
        "",
        "Try: sign in as alice and call the API (the downstream API sees her oid); sign in as",
        "bob, call the API: it asks for MFA (his one-time code), then succeeds; Cancel on the",
        "consent page; Sign out. Press Ctrl-C to stop everything.",
    ])


def run(port: int, emulator_port: int, stop: threading.Event) -> None:
    if not (SPA / "node_modules" / "@azure" / "msal-browser").is_dir():
        raise DemoFailure("MSAL.js is not installed: run `npm ci` in samples/spa "
                          "(make demo-browser does)")
    with ExitStack() as stack:
        emu = stack.enter_context(EntraEmulator(port=emulator_port,
                                                **emulator_options(DEMO_CONFIG)))
        apps = apply_config(emu, DEMO_CONFIG)
        middle, down = apps["middle-tier"], apps["downstream"]
        origin = f"http://localhost:{port}"
        spa = emu.register_app("demo-spa", client_id=SPA_CLIENT_ID,
                               spa_redirect_uris=[f"{origin}/", f"{origin}/redirect.html"])
        log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="flask-obo-spa-"))
        base = {"OBO_AUTHORITY": emu.authority(), "OBO_CA_BUNDLE": emu.ca_bundle,
                "PYTHONUNBUFFERED": "1"}
        print(f"Entra emulator   {emu.authority()}", flush=True)
        down_url = stack.enter_context(api_process(
            "downstream_api", free_port(), {**base, "OBO_CLIENT_ID": down.client_id}, log_dir))
        print(f"downstream API   {down_url}", flush=True)
        middle_url = stack.enter_context(api_process("middle_tier", free_port(), {
            **base,
            "OBO_CLIENT_ID": middle.client_id,
            "OBO_CLIENT_SECRET": "middle-tier-secret",
            "OBO_DOWNSTREAM_APIS": json.dumps({"profile": {
                "base_url": f"{down_url}/v1.0/", "scopes": [f"{down.app_id_uri}/read"]}}),
            "CORS_ORIGINS": json.dumps([origin]),
        }, log_dir))
        print(f"middle tier      {middle_url}", flush=True)
        stack.enter_context(api_process("spa_server", port, {
            "SPA_AUTHORITY": emu.authority(), "SPA_CLIENT_ID": spa.client_id,
            "SPA_API_SCOPE": f"{middle.app_id_uri}/access_as_user", "SPA_API_URL": middle_url,
        }, log_dir))
        print(f"SPA              {origin}/", flush=True)
        print(_banner(emu, f"{origin}/"), flush=True)
        while not stop.wait(0.5):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="the SPA's port (0: any free port)")
    parser.add_argument("--emulator-port", type=int, default=0,
                        help="the emulator's port (0: any free port)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    stop = threading.Event()  # set by nobody: Ctrl-C (KeyboardInterrupt) ends the wait
    try:
        run(args.port or free_port(), args.emulator_port, stop)
    except KeyboardInterrupt:
        print("\nStopped: the emulator, both APIs and the SPA server.", flush=True)
        return 0
    except DemoFailure as failure:
        print(f"\ndemo-browser FAILED: {failure}", flush=True)
        return 1
    except Exception as error:  # a demo reports, it does not dump a stack
        print(f"\ndemo-browser FAILED: {type(error).__name__}: {error}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
