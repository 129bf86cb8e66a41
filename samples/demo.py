"""``make demo``: the whole OBO chain, offline, in one command.

It starts the Entra emulator, the downstream API and the middle-tier API as real servers on
loopback (the APIs as separate processes, configured through OBO_* environment variables as in
production), then plays the client and prints a trace. Tokens are shown as claim summaries,
never raw. Every process it started is stopped on exit, on Ctrl-C and on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import requests

from flask_obo.testing import EntraEmulator
from flask_obo.testing.config import DEMO_CONFIG, apply_config, emulator_options

from .client import SampleClient, claims_from_challenge, summarise
from .observability import scrape

ROOT = Path(__file__).resolve().parent.parent


class DemoFailure(RuntimeError):
    """A step did not do what the demo expected; the message says which and why."""


class Trace:
    def __init__(self) -> None:
        self.step = "setup"

    def begin(self, step: str, title: str) -> None:
        self.step = f"step {step}"
        print(f"\n== {step}. {title}", flush=True)

    def say(self, text: str, data: Any = None) -> None:
        suffix = f" {json.dumps(data, sort_keys=True)}" if data is not None else ""
        print(f"   {text}{suffix}", flush=True)

    def check(self, condition: bool, why: str) -> None:
        if not condition:
            raise DemoFailure(why)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _api_process(module: str, port: int, env: dict[str, str], log_dir: str) -> Iterator[str]:
    """Run ``python -m samples.<module>`` and wait for its /health; stop it on exit."""
    log_path = Path(log_dir) / f"{module}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", f"samples.{module}", "--port", str(port)],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise DemoFailure(f"{module} exited with {process.returncode}:\n{tail}")
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise DemoFailure(f"{module} did not answer on {url} within 30 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(trace: Trace) -> None:
    with ExitStack() as stack:
        trace.begin("0", "Start the Entra emulator and both APIs on loopback")
        emu = stack.enter_context(EntraEmulator(**emulator_options(DEMO_CONFIG)))
        apps = apply_config(emu, DEMO_CONFIG)
        cli, middle, down = apps["demo-cli"], apps["middle-tier"], apps["downstream"]
        log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="flask-obo-demo-"))
        base = {"OBO_AUTHORITY": emu.authority(), "OBO_CA_BUNDLE": emu.ca_bundle,
                "PYTHONUNBUFFERED": "1"}
        down_url = stack.enter_context(_api_process(
            "downstream_api", _free_port(), {**base, "OBO_CLIENT_ID": down.client_id}, log_dir))
        middle_url = stack.enter_context(_api_process("middle_tier", _free_port(), {
            **base,
            "OBO_CLIENT_ID": middle.client_id,
            "OBO_CLIENT_SECRET": "middle-tier-secret",
            "OBO_DOWNSTREAM_APIS": json.dumps({"profile": {
                "base_url": f"{down_url}/v1.0/", "scopes": [f"{down.app_id_uri}/read"]}}),
        }, log_dir))
        trace.say(f"emulator  {emu.authority()}")
        trace.say(f"downstream API  {down_url}  (client id {down.client_id})")
        trace.say(f"middle tier     {middle_url}  (client id {middle.client_id})")
        client = SampleClient(emu.authority(), cli.client_id,
                              [f"{middle.app_id_uri}/access_as_user"], middle_url,
                              ca_bundle=emu.ca_bundle, http_client=emu.http_client())

        trace.begin("1", "Alice signs in; the middle tier validates her token")
        alice = client.sign_in("alice@contoso.test", "alice-pw")
        alice_claims = summarise(alice)
        trace.say("Alice's token for the middle tier:", alice_claims)
        obo_before = len(emu.calls("on_behalf_of"))
        first = client.call("/api/profile", alice)
        trace.check(first.status_code == 200,
                    f"the middle tier answered {first.status_code}: {first.text[:300]}")
        trace.say("GET /api/profile -> 200: the middle tier accepted the token")

        trace.begin("2", "On-behalf-of: one call to the identity provider, then the cache")
        obo_calls = len(emu.calls("on_behalf_of")) - obo_before
        trace.check(obo_calls == 1, f"expected 1 OBO call for the first request, saw {obo_calls}")
        trace.say("first request: OBO calls to the identity provider = 1")
        second = client.call("/api/profile", alice)
        trace.check(second.status_code == 200, f"second call answered {second.status_code}")
        obo_calls = len(emu.calls("on_behalf_of")) - obo_before
        trace.check(obo_calls == 1, f"the second request made an OBO call ({obo_calls} in all)")
        trace.say("second request: served from the token cache, OBO calls still = 1")

        trace.begin("3", "What the downstream API saw")
        saw = second.json()["downstream_saw"]
        trace.say("downstream API saw:", {k: saw[k] for k in ("oid", "azp", "scp")})
        trace.check(saw["oid"] == alice_claims.get("oid"), "the downstream API saw another user")
        trace.check(saw["azp"] == middle.client_id,
                    "the authorized party downstream is not the middle tier")
        trace.say("same user (oid), and the middle tier as the authorized party (azp)")
        status = client.call("/api/service-status", alice)
        trace.check(status.status_code == 200, f"app-only call answered {status.status_code}")
        app_saw = status.json()["downstream_saw"]
        trace.say("with an app-only token instead, it saw:",
                  {k: app_saw[k] for k in ("app_only", "roles", "azp")})

        trace.begin("4", "MFA: Bob's tenant requires MFA for the downstream API")
        bob = client.sign_in("bob@contoso.test", "bob-pw")
        trace.say("Bob's token:", summarise(bob))
        challenged = client.call("/api/profile", bob)
        header = challenged.headers.get("WWW-Authenticate", "")
        claims = claims_from_challenge(header)
        trace.check(challenged.status_code == 401 and claims is not None,
                    f"expected a 401 claims challenge, got {challenged.status_code}")
        assert claims is not None
        trace.say("GET /api/profile -> 401 with a claims challenge:", json.loads(claims))
        bob = client.sign_in("bob@contoso.test", "bob-pw", claims_challenge=claims)
        trace.say("Bob signs in again with the challenge:", summarise(bob))
        retried = client.call("/api/profile", bob)
        trace.check(retried.status_code == 200, f"after MFA the API answered {retried.status_code}")
        trace.say("GET /api/profile -> 200; downstream saw amr:",
                  retried.json()["downstream_saw"]["amr"])

        trace.begin("5", "What an operator sees: the middle tier's /metrics (OpenTelemetry)")
        for user in (alice, bob, alice, bob):
            again = client.call("/api/profile", user)
            trace.check(again.status_code == 200, f"a repeated call answered {again.status_code}")
        figures = scrape(middle_url)
        if figures is None:
            trace.say("no /metrics: opentelemetry-sdk or its Prometheus exporter is missing")
        else:
            idp_calls = len(emu.calls("on_behalf_of")) + len(emu.calls("client_credentials"))
            trace.say(f"downstream token cache-hit ratio: {figures.cache_hit_ratio:.0%} "
                      f"({figures.from_cache:.0f} of {figures.acquisitions:.0f} from the cache)")
            trace.say(f"identity-provider calls: {figures.identity_provider_calls:.0f} "
                      "(the emulator's log agrees)")
            trace.check(figures.identity_provider_calls == idp_calls,
                        f"/metrics counts {figures.identity_provider_calls:.0f} identity-provider "
                        f"calls, the emulator answered {idp_calls}")
    print("\nDemo complete: every step passed; every process stopped.", flush=True)


def main() -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    trace = Trace()
    try:
        run(trace)
    except KeyboardInterrupt:
        print(f"\nInterrupted during {trace.step}; every process stopped.", flush=True)
        return 130
    except DemoFailure as failure:
        print(f"\nDemo FAILED at {trace.step}: {failure}", flush=True)
        return 1
    except Exception as error:  # a demo reports, it does not dump a stack
        print(f"\nDemo FAILED at {trace.step}: {type(error).__name__}: {error}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
