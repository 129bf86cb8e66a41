"""``python -m flask_obo.testing serve [--port N] [--config file.json]``

Runs the Entra emulator in the foreground until Ctrl-C, and prints its authority, CA bundle,
apps and demo users. Without ``--config`` it loads a small demo directory (a public CLI app, a
middle-tier API, a downstream API, Alice and Bob; Bob needs MFA for the downstream API).
The printed credentials are those of the demo/config file, nothing else.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .authorize import DEFAULT_ONE_TIME_CODE
from .config import DEMO_CONFIG, apply_config, emulator_options
from .emulator import EntraEmulator


def _describe(emu: EntraEmulator, config: Mapping[str, Any]) -> str:
    lines = [
        "Entra emulator running",
        f"  authority:      {emu.authority()}",
        f"  tenant id:      {emu.tenant_id}",
        f"  token endpoint: {emu.token_endpoint()}",
        f"  discovery:      {emu.discovery_url()}",
        f"  CA bundle:      {emu.ca_bundle}",
        "  apps:",
    ]
    for spec in config.get("apps", []):
        app = emu.get_app(spec["name"])
        kind = "no credential" if app.is_public_client else "confidential"
        extra = f", secret: {spec['secret']}" if spec.get("secret") else ""
        scopes = f", scopes: {', '.join(app.scopes)}" if app.scopes else ""
        lines.append(f"    {app.name}: {app.client_id} ({kind}, {app.app_id_uri}{scopes}{extra})")
    lines.append("  users:")
    for spec in config.get("users", []):
        user = emu.directory.user_by_name(spec["username"]) if "@" in spec["username"] else None
        upn = user.username if user else spec["username"]
        mfa = f", MFA for {', '.join(spec['mfa_required_for'])}" if spec.get(
            "mfa_required_for") else ""
        code = spec.get("one_time_code", DEFAULT_ONE_TIME_CODE)
        lines.append(f"    {upn} / password: {spec.get('password', '(none)')}{mfa}, "
                     f"one-time code: {code}")
    lines.append("Trust the CA bundle (e.g. OBO_CA_BUNDLE) and press Ctrl-C to stop.")
    return "\n".join(lines)


def serve(port: int, config_path: str | None) -> int:
    if config_path:
        path = Path(config_path)
        config: Mapping[str, Any] = json.loads(path.read_text())
        base_dir = path.parent
    else:
        config, base_dir = DEMO_CONFIG, Path(".")
    emu = EntraEmulator(port=port, **emulator_options(config))
    apply_config(emu, config, base_dir)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with emu:
        print(_describe(emu, config), flush=True)
        while not stop.wait(0.5):
            pass
    print("Entra emulator stopped.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flask_obo.testing",
                                     description="An offline Microsoft Entra ID emulator.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the emulator until Ctrl-C")
    serve_cmd.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    serve_cmd.add_argument("--config", help="JSON file of tenants, apps, users and consents")
    args = parser.parse_args(argv)
    return serve(args.port, args.config)


if __name__ == "__main__":
    sys.exit(main())
