"""``python -m flask_obo.testing serve [--port N] [--config file.json] [--print-env]``
and ``python -m flask_obo.testing token [USER] [--scope S] [--env FILE]``

``serve`` runs the Entra emulator in the foreground until Ctrl-C, and prints its authority, CA
bundle, apps and demo users; with ``--print-env``, the same as ``KEY=value`` lines (see
:mod:`~flask_obo.testing.pytest_plugin` for the names), ending with ``EMULATOR_READY=1``. Each
request it answers is logged on stderr: method, path, grant, client id, status (never a secret
or a token). Without ``--config`` it loads a small demo directory (a public CLI app, a
middle-tier API, a downstream API, Alice and Bob; Bob needs MFA for the downstream API). The
printed credentials are those of the demo/config file, nothing else.

``token`` prints a user's access token, asked of a running emulator with the password grant,
for curl: its defaults come from the ``--print-env`` lines, read from the environment or from
``--env FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._http import build_session
from .authorize import DEFAULT_ONE_TIME_CODE
from .config import DEMO_CONFIG, apply_config, emulator_options
from .emulator import EntraEmulator

READY = "EMULATOR_READY"


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
        mfa = f", MFA for {', '.join(spec['mfa_required_for'])}" if spec.get(
            "mfa_required_for") else ""
        code = spec.get("one_time_code", DEFAULT_ONE_TIME_CODE)
        lines.append(f"    {_upn(emu, spec)} / password: {spec.get('password', '(none)')}{mfa}, "
                     f"one-time code: {code}")
    lines.append("Trust the CA bundle (e.g. OBO_CA_BUNDLE) and press Ctrl-C to stop.")
    return "\n".join(lines)


def _upn(emu: EntraEmulator, spec: Mapping[str, Any]) -> str:
    user = emu.directory.user_by_name(spec["username"]) if "@" in spec["username"] else None
    if user is None:  # a bare name got the default tenant's domain
        domain = emu.directory.tenant(emu.tenant_id)
        user = emu.directory.user_by_name(f"{spec['username']}@{domain.domain}") if domain \
            else None
    return user.username if user else str(spec["username"])


def _name(value: str) -> str:
    """``middle-tier`` -> ``MIDDLE_TIER``: a shell variable's part."""
    return re.sub(r"[^A-Z0-9]+", "_", value.upper()).strip("_")


def env_lines(emu: EntraEmulator, config: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The ``--print-env`` settings, in order."""
    apps = [emu.get_app(spec["name"]) for spec in config.get("apps", [])]
    secrets = {spec["name"]: spec.get("secret") for spec in config.get("apps", [])}
    api = next((app for app in apps if secrets.get(app.name)), None)
    yield "OBO_AUTHORITY", emu.authority()
    yield "OBO_CA_BUNDLE", emu.ca_bundle
    if api is not None:
        yield "OBO_CLIENT_ID", api.client_id
        yield "OBO_CLIENT_SECRET", str(secrets[api.name])
    yield "EMULATOR_TENANT_ID", emu.tenant_id
    yield "EMULATOR_TOKEN_ENDPOINT", emu.token_endpoint()
    yield "EMULATOR_DISCOVERY_URL", emu.discovery_url()
    public = next((app for app in apps if app.is_public_client), None)
    if public is not None:
        yield "EMULATOR_PUBLIC_CLIENT_ID", public.client_id
    if api is not None and api.scopes:
        yield "EMULATOR_SCOPE", f"{api.app_id_uri}/{api.scopes[0]}"
    for app in apps:
        prefix = f"EMULATOR_APP_{_name(app.name)}"
        yield f"{prefix}_CLIENT_ID", app.client_id
        yield f"{prefix}_APP_ID_URI", app.app_id_uri
        yield f"{prefix}_SCOPES", " ".join(app.scopes)
        yield f"{prefix}_ROLES", " ".join(app.roles)
        if secrets.get(app.name):
            yield f"{prefix}_SECRET", str(secrets[app.name])
    for spec in config.get("users", []):
        upn = _upn(emu, spec)
        prefix = f"EMULATOR_USER_{_name(upn.partition('@')[0])}"
        yield prefix, upn
        if spec.get("password"):
            yield f"{prefix}_PASSWORD", str(spec["password"])
    yield READY, "1"


def _log_call(record: Mapping[str, Any]) -> None:
    parts = [str(record.get("method")), str(record.get("path"))]
    if record.get("grant"):
        parts.append(f"grant={record['grant']}")
    if record.get("client_id"):
        parts.append(f"client={record['client_id']}")
    if record.get("fault"):
        parts.append(f"fault={record['fault']}")
    status = record.get("status")
    parts.append(str(status) if status is not None else "(dropped)")
    print(" ".join(parts), file=sys.stderr, flush=True)


def serve(port: int, config_path: str | None, *, print_env: bool = False) -> int:
    if config_path:
        path = Path(config_path)
        config: Mapping[str, Any] = json.loads(path.read_text())
        base_dir = path.parent
    else:
        config, base_dir = DEMO_CONFIG, Path(".")
    emu = EntraEmulator(port=port, **emulator_options(config))
    apply_config(emu, config, base_dir)
    emu.on_call(_log_call)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with emu:
        if print_env:
            print("\n".join(f"{key}={shlex.quote(value)}" for key, value in env_lines(emu, config)),
                  flush=True)
        else:
            print(_describe(emu, config), flush=True)
        while not stop.wait(0.5):
            pass
    print("Entra emulator stopped.", file=sys.stderr if print_env else sys.stdout, flush=True)
    return 0


def _read_env(path: str | None) -> dict[str, str]:
    if path is None:
        return dict(os.environ)
    found: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            words = shlex.split(value)
            found[key] = words[0] if words else ""
    return found


def token(username: str | None, *, password: str | None, scope: str | None,
          client_id: str | None, env_file: str | None) -> int:
    env = _read_env(env_file)
    if READY not in env:
        print("no emulator settings: source the lines of `python -m flask_obo.testing serve "
              "--print-env`, or pass --env FILE", file=sys.stderr)
        return 2
    users = {key: value for key, value in env.items()
             if key.startswith("EMULATOR_USER_") and not key.endswith("_PASSWORD")}
    if username is None:
        username = next(iter(users.values()), None)
    elif "@" not in username:  # a short name: EMULATOR_USER_<NAME>
        username = users.get(f"EMULATOR_USER_{_name(username)}", username)
    key = next((k for k, v in users.items() if v == username), None)
    password = password or (env.get(f"{key}_PASSWORD") if key else None)
    client_id = client_id or env.get("EMULATOR_PUBLIC_CLIENT_ID")
    scope = scope or env.get("EMULATOR_SCOPE")
    missing = [name for name, value in (("a user", username), ("--password", password),
                                        ("--client-id", client_id), ("--scope", scope))
               if not value]
    if missing:
        print(f"token: give {', '.join(missing)}", file=sys.stderr)
        return 2
    with build_session(env["OBO_CA_BUNDLE"]) as session:
        answer = session.post(env["EMULATOR_TOKEN_ENDPOINT"], timeout=30, data={
            "grant_type": "password", "client_id": client_id, "username": username,
            "password": password, "scope": scope})
    body = answer.json()
    if "access_token" not in body:
        print(f"token: {body.get('error')}: {body.get('error_description')}", file=sys.stderr)
        return 1
    print(body["access_token"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flask_obo.testing",
                                     description="An offline Microsoft Entra ID emulator.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the emulator until Ctrl-C")
    serve_cmd.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    serve_cmd.add_argument("--config", help="JSON file of tenants, apps, users and consents")
    serve_cmd.add_argument("--print-env", action="store_true",
                           help="print KEY=value lines (OBO_ settings, apps, users), not prose")
    token_cmd = commands.add_parser(
        "token", help="print a user's access token from a running emulator (password grant)")
    token_cmd.add_argument("user", nargs="?", help="user name or UPN (default: the first user)")
    token_cmd.add_argument("--password", help="default: the user's EMULATOR_USER_*_PASSWORD")
    token_cmd.add_argument("--scope", help="default: EMULATOR_SCOPE")
    token_cmd.add_argument("--client-id", help="default: EMULATOR_PUBLIC_CLIENT_ID")
    token_cmd.add_argument("--env", help="a file of `serve --print-env` lines "
                                         "(default: the environment)")
    args = parser.parse_args(argv)
    if args.command == "token":
        return token(args.user, password=args.password, scope=args.scope,
                     client_id=args.client_id, env_file=args.env)
    return serve(args.port, args.config, print_env=args.print_env)


if __name__ == "__main__":
    sys.exit(main())
