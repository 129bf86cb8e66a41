"""Long-running sessions with a real Celery worker (two pool processes) and a real
redis-server as broker, result backend and token cache, the emulator in this process.

A view of the web tier (a Flask app in this process) starts each session; the jobs run in the
worker, outside any request: after the user's token expired they still call the downstream
API as the user; two of them redeeming one session at once make one identity-provider call;
stop, revocation and maximum age reach them as LongRunningSessionExpired; another user's
request cannot take or use a session; no session key reaches any log.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from support.apps import MIDDLE_SECRET, middle_settings
from support.jose import claims_of
from support.processes import TESTS, flask_environment, stop_process
from support.timing import wait_for

from flask_obo import (
    FlaskOBO,
    get_long_running_session,
    start_long_running_process,
    stop_long_running_process,
)
from flask_obo.testing import App, DownstreamStandIn, EntraEmulator, User
from flask_obo.testing.redis_server import RedisServer
from samples.reports import celery_init_app

pytestmark = [pytest.mark.redis, pytest.mark.slow]

# On-behalf-of tokens live less than OBO_CACHE_EXPIRY_MARGIN here, so the one a session starts
# with is not cached and every job redeems the session's refresh token.
OBO_TOKEN_LIFETIME = 30
RESULT_TIMEOUT = 60


class LogLines(logging.Handler):
    """Every record this process logs while the module runs, formatted with its arguments."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Tier:
    """The web tier (in this process) and the worker (a Celery process) of one middle tier."""

    emu: EntraEmulator
    api: App
    app: Flask
    client: FlaskClient
    celery: Celery
    worker_log: Path
    app_log: LogLines
    keys: list[str] = field(default_factory=list)  # every session key started

    def user(self) -> User:
        return self.emu.add_user(f"celery-{uuid.uuid4().hex[:8]}@contoso.test", password="pw")

    def token_for(self, user: User, **kwargs: Any) -> str:
        return str(self.emu.issue_user_token(user, resource=self.api, **kwargs))

    def start(self, token: str, **body: Any) -> Any:
        answer = self.client.post("/jobs", json=body,
                                  headers={"Authorization": f"Bearer {token}"})
        if answer.status_code == 200:
            self.keys.append(answer.get_json()["key"])
        return answer

    def new_session(self, user: User, **kwargs: Any) -> str:
        answer = self.start(self.token_for(user, **kwargs))
        assert answer.status_code == 200, answer.get_json()
        return str(answer.get_json()["key"])

    def run(self, task: str, *args: Any, **options: Any) -> Any:
        """Queue ``task`` of the worker (the session key hidden from Celery's logs)."""
        shown = ("'<session key>'", *map(repr, args[1:]))
        return self.celery.send_task(f"long_running_worker.{task}", args=args,
                                     argsrepr=f"({', '.join(shown)},)", **options)

    def result(self, task: str, *args: Any, **options: Any) -> dict[str, Any]:
        found: dict[str, Any] = self.run(task, *args, **options).get(timeout=RESULT_TIMEOUT)
        return found

    def calls(self, grant: str, user: User) -> list[dict[str, Any]]:
        return [c for c in self.emu.calls(grant)
                if c.get("client_id") == self.api.client_id and c.get("user") == user.username]


def _settings(emu: EntraEmulator, api: App, down: DownstreamStandIn,
              url: str) -> dict[str, Any]:
    """The middle tier's, its token cache on db 0 of ``url``; Celery's broker and results
    on 1 and 2."""
    base = url.rsplit("/", 1)[0]
    return middle_settings(emu, api, down, redis_url=f"{base}/0", CELERY={
        "broker_url": f"{base}/1", "result_backend": f"{base}/2",
        "broker_connection_retry_on_startup": True})


def _web_app(settings: dict[str, Any]) -> Flask:
    app = Flask("long-running-web")
    app.config.update(settings)
    FlaskOBO(app)
    celery_init_app(app)

    @app.post("/jobs")
    def start() -> Any:
        body = request.get_json(silent=True) or {}
        return jsonify(key=start_long_running_process(
            "down", session_key=body.get("session_key")))

    @app.get("/jobs/<key>/me")
    def me(key: str) -> Any:
        return jsonify(get_long_running_session(key, "down").get("me").json())

    return app


@pytest.fixture(scope="module")
def downstream_of_module(entra_emulator: EntraEmulator) -> Iterator[DownstreamStandIn]:
    """The downstream API of the module's jobs (the plugin's ``downstream_api`` is per test)."""
    registration = entra_emulator.register_app(f"celery down {uuid.uuid4().hex[:8]}",
                                               scopes=["read"], roles=["Reader"])
    with DownstreamStandIn(entra_emulator, registration) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def tier(entra_emulator: EntraEmulator, downstream_of_module: DownstreamStandIn,
         module_redis_server: RedisServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    down = downstream_of_module
    api = entra_emulator.register_app(f"celery middle {uuid.uuid4().hex[:8]}",
                                      secret=MIDDLE_SECRET, scopes=["access_as_user"])
    entra_emulator.grant_consent(client=api, resource=down.registration, scopes=["read"])
    settings = _settings(entra_emulator, api, down, module_redis_server.url)
    app_log = LogLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(app_log)
    root.setLevel(logging.DEBUG)
    app = _web_app(settings)
    worker_log = tmp_path_factory.mktemp("celery") / "worker.log"
    previous_lifetime = entra_emulator.obo_token_lifetime
    entra_emulator.obo_token_lifetime = OBO_TOKEN_LIFETIME
    with open(worker_log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "long_running_worker:celery_app", "worker",
             "--pool=prefork", "--concurrency=2", "--loglevel=DEBUG", "--without-heartbeat",
             "--without-gossip", "--without-mingle", "--hostname", f"lr-{os.getpid()}@%h"],
            cwd=TESTS, env=flask_environment(settings), stdout=out, stderr=subprocess.STDOUT)
    celery: Celery = app.extensions["celery"]
    try:
        # The worker answers a ping once it consumes.
        answered = wait_for(lambda: worker.poll() is not None or celery.control.ping(timeout=0.5),
                            timeout=60, interval=0)
        if not answered or worker.poll() is not None:
            pytest.fail("the Celery worker did not start:\n"
                        + worker_log.read_text(errors="replace")[-3000:])
        yield Tier(entra_emulator, api, app, app.test_client(), celery, worker_log, app_log)
    finally:
        stop_process(worker, timeout=20)
        entra_emulator.obo_token_lifetime = previous_lifetime
        root.removeHandler(app_log)
        root.setLevel(level)
        app.extensions["obo"].close()


# -- the job acts as the user -------------------------------------------------------------------

def test_the_job_calls_downstream_as_the_user_after_the_users_token_expired(tier: Tier) -> None:
    user = tier.user()
    token = tier.token_for(user, lifetime=2)
    answer = tier.start(token)
    assert answer.status_code == 200, answer.get_json()
    expires = float(claims_of(token)["exp"])

    # The worker holds the job until the user's token has expired.
    saw = tier.result("call_downstream", answer.get_json()["key"],
                      eta=datetime.fromtimestamp(expires + 0.5, tz=UTC))

    assert saw["at"] > expires
    assert (saw["status"], saw["oid"], saw["azp"]) == (200, user.oid, tier.api.client_id)
    assert len(tier.calls("on_behalf_of", user)) == 1
    assert len(tier.calls("refresh_token", user)) == 1


def test_two_workers_redeeming_one_session_at_once_make_one_identity_provider_call(
        tier: Tier) -> None:
    user = tier.user()
    key = tier.new_session(user)
    barrier = f"barrier:{uuid.uuid4().hex}"
    # The identity provider answers slowly, so the second worker arrives mid-redemption.
    tier.emu.faults.inject("token", "delay", count=1, delay=0.5)
    try:
        pending = [tier.run("acquire_together", key, barrier, 2) for _ in range(2)]
        one, two = (p.get(timeout=RESULT_TIMEOUT) for p in pending)
    finally:
        tier.emu.faults.clear()

    assert "error" not in one and "error" not in two, (one, two)
    assert max(one["started"], two["started"]) < min(one["done"], two["done"])  # at once
    assert one["token"] == two["token"]
    assert len(tier.calls("refresh_token", user)) == 1


@pytest.mark.parametrize("end", ["stop", "revocation", "maximum age"])
def test_stop_revocation_and_maximum_age_reach_the_job_as_session_expired(
        tier: Tier, end: str) -> None:
    user = tier.user()
    key = tier.new_session(user)
    if end == "stop":
        assert stop_long_running_process(key, app=tier.app) is True
    elif end == "revocation":
        tier.emu.revoke_user_sessions(user)
    else:
        tier.emu.refresh_token_max_age = 0
    try:
        outcome = tier.result("call_downstream", key)
    finally:
        tier.emu.refresh_token_max_age = None

    expected = {"stop": ("stopped", None), "revocation": ("revoked", "AADSTS50173"),
                "maximum age": ("expired", "AADSTS700082")}[end]
    assert (outcome["error"], outcome["reason"]) == ("LongRunningSessionExpired", expected[0])
    if expected[1]:
        assert expected[1] in outcome["message"]
    # Refused once, at once: no retry loop.
    assert len(tier.calls("refresh_token", user)) == (0 if end == "stop" else 1)


def test_another_users_request_cannot_start_or_use_a_session_under_someone_elses_key(
        tier: Tier) -> None:
    alice, bob = tier.user(), tier.user()
    key = tier.new_session(alice)
    bob_token = tier.token_for(bob)

    taken = tier.start(bob_token, session_key=key)
    used = tier.client.get(f"/jobs/{key}/me", headers={"Authorization": f"Bearer {bob_token}"})

    assert taken.status_code == 409
    assert used.status_code == 410
    assert tier.calls("on_behalf_of", bob) == []
    saw = tier.result("call_downstream", key)
    assert saw["oid"] == alice.oid  # the job still acts as alice, and only as her


def test_no_session_key_appears_in_the_workers_or_the_apps_logs(tier: Tier) -> None:
    """Runs last: every session key of the module has been through both by now."""
    user = tier.user()
    key = tier.new_session(user)
    assert tier.result("call_downstream", key)["oid"] == user.oid
    stop_long_running_process(key, app=tier.app)
    assert tier.result("call_downstream", key)["reason"] == "stopped"

    # A control: an argument Celery is not told to hide does show in its log, so the log
    # would show a session key passed without argsrepr.
    control = f"not-a-session-{uuid.uuid4().hex}"
    assert tier.celery.send_task("long_running_worker.call_downstream", args=(control,)).get(
        timeout=RESULT_TIMEOUT)["reason"] == "unknown"

    worker = tier.worker_log.read_text(errors="replace")
    app = "\n".join(tier.app_log.lines)
    assert control in worker
    assert "long-running session" in worker and "long-running session" in app
    assert key in tier.keys
    for secret in tier.keys:
        assert secret not in worker
        assert secret not in app
