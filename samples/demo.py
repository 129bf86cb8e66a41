"""``make demo``: the whole OBO chain, offline, in one command.

It starts the Entra emulator, the downstream API and the middle-tier API as real servers on
loopback (the APIs as separate processes, configured through OBO_* environment variables as in
production), then plays the client and prints a trace. With a redis-server installed, it also
starts one (the token cache, Celery's broker and result store) and a Celery worker, for a
report job that acts as the user after the user's token has expired. Last, it reads the middle
tier's OpenTelemetry metrics as Prometheus would. Tokens are shown as claim summaries, never
raw. Every process it started is stopped on exit, on Ctrl-C and on failure.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from flask_obo.testing import EntraEmulator
from flask_obo.testing.config import DEMO_CONFIG, apply_config, emulator_options
from flask_obo.testing.redis_server import RedisServer, find_redis_server

from .client import SampleClient, claims_from_challenge, summarise
from .observability import scrape
from .processes import DemoFailure, api_process, celery_worker, free_port, on_sigterm

# Step 5: Alice's token lives this long, and the report outlasts it.
SHORT_TOKEN_LIFETIME = 3  # long enough to start the job on a busy machine
REPORT = {"pages": 3, "interval": 1.5}


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


def run(trace: Trace) -> None:
    with ExitStack() as stack:
        trace.begin("0", "Start the Entra emulator and both APIs on loopback")
        emu = stack.enter_context(EntraEmulator(**emulator_options(DEMO_CONFIG)))
        apps = apply_config(emu, DEMO_CONFIG)
        cli, middle, down = apps["demo-cli"], apps["middle-tier"], apps["downstream"]
        log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="flask-obo-demo-"))
        base = {"OBO_AUTHORITY": emu.authority(), "OBO_CA_BUNDLE": emu.ca_bundle,
                "PYTHONUNBUFFERED": "1"}
        down_url = stack.enter_context(api_process(
            "downstream_api", free_port(), {**base, "OBO_CLIENT_ID": down.client_id}, log_dir))
        middle_env = {
            **base,
            "OBO_CLIENT_ID": middle.client_id,
            "OBO_CLIENT_SECRET": "middle-tier-secret",
            "OBO_DOWNSTREAM_APIS": json.dumps({"profile": {
                "base_url": f"{down_url}/v1.0/", "scopes": [f"{down.app_id_uri}/read"]}}),
        }
        redis = stack.enter_context(RedisServer()) if find_redis_server() else None
        worker_log = None
        if redis is not None:  # reports: the token cache, Celery's broker and results on Redis
            middle_env.update(
                OBO_CACHE=json.dumps({"CACHE_TYPE": "RedisCache",
                                      "CACHE_REDIS_URL": redis.url}),
                CELERY_BROKER_URL=redis.url[:-1] + "1", CELERY_RESULT_BACKEND=redis.url[:-1] + "2")
            worker_log = stack.enter_context(celery_worker(middle_env, log_dir))
        middle_url = stack.enter_context(api_process("middle_tier", free_port(), middle_env,
                                                      log_dir))
        # Built before the trace names the servers: MSAL's constructor swallows a Ctrl-C that
        # lands in its optional-import check (a bare except), and the demo would go on.
        client = SampleClient(emu.authority(), cli.client_id,
                              [f"{middle.app_id_uri}/access_as_user"], middle_url,
                              ca_bundle=emu.ca_bundle, http_client=emu.http_client())
        trace.say(f"emulator  {emu.authority()}")
        trace.say(f"downstream API  {down_url}  (client id {down.client_id})")
        trace.say(f"middle tier     {middle_url}  (client id {middle.client_id})")
        if redis is not None:
            trace.say(f"redis-server    {redis.url}  and a Celery worker (samples.worker)")

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

        trace.begin("5", "A report job (Celery) acts as Alice after her token has expired")
        if worker_log is None:
            trace.say("skipped: no redis-server installed (Debian: apt-get install "
                      "redis-server); it is the token cache and Celery's broker")
        else:
            _report(trace, emu, client, alice, middle.client_id, worker_log)

        trace.begin("6", "What an operator sees: the middle tier's /metrics (OpenTelemetry)")
        _metrics(trace, emu, client, middle_url, (alice, bob))
    print("\nDemo complete: every step passed; every process stopped.", flush=True)


def _report(trace: Trace, emu: EntraEmulator, client: SampleClient, alice: str,
            middle_id: str, worker_log: Path) -> None:
    """Step 5: start a report with a short-lived token and follow it to the end."""
    # Alice's token, and the one on-behalf-of gives for it, expire in seconds; what the job
    # later gets for the session's refresh token lives an hour.
    emu.token_lifetime = emu.obo_token_lifetime = SHORT_TOKEN_LIFETIME
    try:
        try:
            short = client.sign_in("alice@contoso.test", "alice-pw")
        finally:
            emu.token_lifetime = 3600
        expires = float(summarise(short)["exp"])
        trace.say(f"Alice signs in with a token that expires in {SHORT_TOKEN_LIFETIME} s:",
                  summarise(short))
        refreshes_before = len(emu.calls("refresh_token"))
        started = client.post("/api/reports", short, REPORT)
    finally:
        emu.obo_token_lifetime = None
    trace.check(started.status_code == 202,
                f"POST /api/reports answered {started.status_code}: {started.text[:300]}")
    report = started.json()
    trace.say("POST /api/reports -> 202: a long-running session and a Celery job "
              f"({REPORT['pages']} pages, one every {REPORT['interval']:g} s)")
    status: dict[str, Any] = {}
    seen = 0
    deadline = time.monotonic() + 60
    while status.get("outcome") is None:
        trace.check(time.monotonic() < deadline, "the report did not finish within 60 s; "
                    "worker log:\n" + worker_log.read_text(errors="replace")[-2000:])
        time.sleep(0.2)
        answer = client.call(report["status"], alice)  # her first token: still valid
        trace.check(answer.status_code == 200, f"GET {report['status']} -> {answer.status_code}")
        status = answer.json()
        for call in status.get("calls", [])[seen:]:
            expired = "expired" if call["user_token_expired"] else "still valid"
            trace.say(f"page {call['page']}/{status['pages']}: downstream saw oid "
                      f"{call['oid'][:8]}..., azp {call['azp'][:8]}...; Alice's token {expired}")
        seen = len(status.get("calls", []))
    trace.check(status["outcome"] == "complete", f"the report ended: {status}")
    calls = status["calls"]
    trace.check(all(c["oid"] == summarise(alice)["oid"] and c["azp"] == middle_id
                    for c in calls), "a page was not fetched as Alice by the middle tier")
    trace.check(any(c["at"] > expires for c in calls),
                "no page was fetched after Alice's token expired")
    refreshes = len(emu.calls("refresh_token")) - refreshes_before
    trace.check(refreshes >= 1, "the job never redeemed the session's refresh token")
    trace.say(f"report complete: pages fetched after Alice's token expired = "
              f"{sum(c['at'] > expires for c in calls)}; the job redeemed the session's "
              f"refresh token {refreshes} time(s), then used the cached token")
    bob = client.sign_in("bob@contoso.test", "bob-pw")
    other = client.call(report["status"], bob)
    trace.check(other.status_code in (401, 404), f"Bob read Alice's report: {other.status_code}")
    trace.say(f"Bob asks for Alice's report -> {other.status_code}: it is hers alone")


def _metrics(trace: Trace, emu: EntraEmulator, client: SampleClient, middle_url: str,
             users: tuple[str, ...]) -> None:
    """Step 6: repeated calls, then the cache-hit ratio and the identity-provider calls as
    Prometheus reads them, checked against the emulator's log."""
    for user in users * 2:
        again = client.call("/api/profile", user)
        trace.check(again.status_code == 200, f"a repeated call answered {again.status_code}")
    figures = scrape(middle_url)
    if figures is None:
        trace.say("no /metrics: opentelemetry-sdk or its Prometheus exporter is missing")
        return
    # The middle tier's own calls (a report job's refresh tokens are the worker's).
    idp_calls = len(emu.calls("on_behalf_of")) + len(emu.calls("client_credentials"))
    trace.say(f"downstream token cache-hit ratio: {figures.cache_hit_ratio:.0%} "
              f"({figures.from_cache:.0f} of {figures.acquisitions:.0f} from the cache)")
    trace.say(f"identity-provider calls: {figures.identity_provider_calls:.0f} "
              "(the emulator's log agrees)")
    trace.check(figures.identity_provider_calls == idp_calls,
                f"/metrics counts {figures.identity_provider_calls:.0f} identity-provider "
                f"calls, the emulator answered {idp_calls}")


def main() -> int:
    signal.signal(signal.SIGTERM, on_sigterm)
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
