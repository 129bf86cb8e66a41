"""Several processes, one Redis: the middle tier under gunicorn (3 workers) against a real
redis-server and the emulator (in this process). Concurrent first requests of several users
make one on-behalf-of call per user across all workers, and one app-token call; later requests
make none; Redis then holds each token only encrypted.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from support.apps import middle_settings
from support.processes import TESTS, flask_environment, stop_process
from support.redis import leaks, raw_values
from support.servers import free_port
from support.timing import wait_for

from flask_obo.testing import App, DownstreamStandIn
from flask_obo.testing.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORKERS = 3


class Gunicorn:
    def __init__(self, settings: dict[str, Any], *, workers: int = WORKERS) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(workers),
             "--worker-class", "gthread", "--threads", "4", "--bind", f"127.0.0.1:{self.port}",
             "--graceful-timeout", "2", "--log-level", "warning", "multiproc_app:app"],
            cwd=TESTS, env=flask_environment(settings), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)

    def wait_ready(self, workers: int, timeout: float = 30) -> None:
        """Until every worker has booted and answered (each has its own pid)."""
        seen: set[int] = set()

        def all_answered() -> bool:
            if self.process.poll() is not None:
                return True  # it died: no use waiting
            try:
                seen.add(requests.get(f"{self.url}/health", timeout=2).json()["pid"])
            except requests.RequestException:
                pass
            return len(seen) >= workers

        if not wait_for(all_answered, timeout=timeout, interval=0.1) or \
                self.process.poll() is not None:
            self.stop()
            pytest.fail(f"gunicorn did not start {workers} workers: {self.output()}")

    def stop(self) -> None:
        stop_process(self.process, sig=signal.SIGINT)  # gunicorn's quick shutdown

    def output(self) -> str:
        return self.process.stdout.read().decode(errors="replace") if self.process.stdout \
            else ""


@pytest.fixture
def gunicorn_middle(entra: Any, middle_api: App, downstream: DownstreamStandIn,
                    redis_server: RedisServer) -> Iterator[Gunicorn]:
    server = Gunicorn(middle_settings(entra, middle_api, downstream,
                                      redis_url=redis_server.url))
    try:
        server.wait_ready(WORKERS)
        yield server
    finally:
        server.stop()


def fire(url: str, requests_: list[tuple[str, str, str]]) -> list[tuple[str, int, dict[str, Any]]]:
    """All of ``(who, path, token)`` at once, each on its own connection."""
    barrier = threading.Barrier(len(requests_))

    def one(item: tuple[str, str, str]) -> tuple[str, int, dict[str, Any]]:
        who, path, token = item
        barrier.wait()
        answer = requests.get(url + path, headers={"Authorization": f"Bearer {token}"},
                              timeout=30)
        return who, answer.status_code, answer.json()

    with ThreadPoolExecutor(len(requests_)) as pool:
        return list(pool.map(one, requests_))


def test_one_obo_call_per_user_across_worker_processes(
        gunicorn_middle: Gunicorn, entra: Any, middle_api: App, redis_server: RedisServer,
        downstream_tokens: list[str]) -> None:
    users = [entra.add_user(f"user{i}") for i in range(5)]
    tokens = {user.oid: entra.issue_user_token(user, resource=middle_api) for user in users}
    seen_before = len(downstream_tokens)
    # A slow identity provider keeps each first call open while the other workers arrive.
    entra.faults.inject("token", "delay", delay=0.5, count=len(users) + 1)
    wave = [(user.oid, "/profile", tokens[user.oid]) for user in users for _ in range(6)]
    wave += [("app", "/as-app", tokens[users[0].oid]) for _ in range(6)]

    first = fire(gunicorn_middle.url, wave)
    pids_by_user: dict[str, set[int]] = defaultdict(set)
    for who, status, body in first:
        assert status == 200, body
        if who != "app":
            assert body["downstream"]["oid"] == who  # each user's own token
        pids_by_user[who].add(body["pid"])
    assert len(set().union(*pids_by_user.values())) >= 2, "one worker served everything"
    assert any(len(pids) >= 2 for pids in pids_by_user.values()), \
        "no user's first requests reached two workers at once: nothing was shared"
    obo = entra.calls("on_behalf_of")
    assert len(obo) == len(users), [call["user"] for call in obo]
    assert len({call["user"] for call in obo}) == len(users)
    assert len(entra.calls("client_credentials")) == 1

    again = fire(gunicorn_middle.url, wave)  # every worker, every user: from the cache
    assert all(status == 200 for _, status, _ in again)
    assert all(body["downstream"]["oid"] == who for who, _, body in again if who != "app")
    assert len(entra.calls("on_behalf_of")) == len(users)
    assert len(entra.calls("client_credentials")) == 1

    issued = sorted(set(downstream_tokens[seen_before:]))
    assert len(issued) == len(users) + 1
    values = raw_values(redis_server.url)
    assert len(values) == len(users) + 1  # one entry per user (and the app); no lock left
    for key, value in values.items():
        assert leaks(key + value, [*issued, *tokens.values()]) == [], key
