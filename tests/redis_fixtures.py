"""Fixtures of the Redis suites (helpers are in ``redis_helpers``).

- ``redis_server``: a throwaway redis-server (its own port and directory), stopped at the end.
  Without a redis-server binary the tests skip, except in CI (``CI=true``), where they fail.
- ``redis_sentinel`` / ``redis_cluster``: a master watched by a sentinel, and a one-node
  cluster (all 16384 slots on one server), each started from the same binary.
- ``token_downstream`` (session): a downstream API protected by FlaskOBO over loopback HTTP; it
  answers who called and keeps every token it received, so tests can look for them in Redis.
- ``make_redis_middle(redis_url, **config)``: one more instance (its own in-process cache) of
  the same middle tier, with ``GET /profile`` (on behalf of the user) and ``GET /as-app``.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from obo_helpers import LoopbackServer
from redis_helpers import SECRET, add_routes, middle_settings, redis_client

from flask_obo.extension import FlaskOBO
from flask_obo.testing import App, EntraEmulator, User
from flask_obo.testing.redis_server import RedisServer, RedisUnavailable, find_redis_server


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run installs redis-server, so this must not happen)")
    pytest.skip(f"{reason}: install redis-server (Debian: apt-get install redis-server) or set "
                "REDIS_SERVER to its path to run the Redis tests")


def _binary() -> str:
    found = find_redis_server()
    if found is None:
        _missing("no redis-server binary found")
    assert found is not None
    return found


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for one test (tests stop, pause and restart it)."""
    _binary()
    try:
        server = RedisServer().start()
    except RedisUnavailable as exc:
        _missing(f"redis-server could not start ({exc})")
    try:
        yield server
    finally:
        server.close()


# -- Sentinel and Cluster ------------------------------------------------------------------------

class _Process:
    """A redis-server started with extra arguments in a directory of its own."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port or RedisServer(binary=_binary()).port  # a free port
        self._dir = tempfile.TemporaryDirectory(prefix="flask-obo-redis-")
        self._process = subprocess.Popen(
            [_binary(), *args, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             self._dir.name, "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis_client(f"redis://127.0.0.1:{self.port}/0")
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except Exception:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    _missing(f"redis-server {' '.join(args)} did not start")
                time.sleep(0.02)

    def stop(self) -> None:
        self._process.kill()
        self._process.wait(timeout=10)
        self._dir.cleanup()


@pytest.fixture
def redis_sentinel(redis_server: RedisServer) -> Iterator[tuple[RedisServer, int]]:
    """``(master, sentinel port)``: a sentinel watching ``redis_server`` as "mymaster"."""
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    with conf:
        conf.write(f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n"
                   "sentinel down-after-milliseconds mymaster 1000\n")
    sentinel = _Process(conf.name, "--sentinel")
    try:
        yield redis_server, sentinel.port
    finally:
        sentinel.stop()
        os.unlink(conf.name)


def _port_with_free_bus() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too: a random free
    port above 55535 would make redis-server refuse to start in cluster mode."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a one-node Redis Cluster")


@pytest.fixture
def redis_cluster() -> Iterator[int]:
    """The port of a one-node Redis Cluster holding every slot."""
    node = _Process("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    port=_port_with_free_bus())
    try:
        client = redis_client(f"redis://127.0.0.1:{node.port}/0")
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the one-node cluster never became ok"
            time.sleep(0.05)
        yield node.port
    finally:
        node.stop()


# -- the downstream API ----------------------------------------------------------------------------

@dataclass
class TokenDownstream:
    app: App
    url: str
    tokens: list[str] = field(default_factory=list)  # every raw token received
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def read_scope(self) -> str:
        return f"{self.app.app_id_uri}/read"


@pytest.fixture(scope="session")
def token_downstream(entra_emulator: EntraEmulator) -> Iterator[TokenDownstream]:
    from flask_obo.context import current_token

    registration = entra_emulator.register_app("redis-suite downstream", scopes=["read"],
                                               roles=["Reader"])
    app = Flask("redis-suite-downstream")
    app.config.update(OBO_AUTHORITY=entra_emulator.authority(),
                      OBO_CLIENT_ID=registration.client_id, OBO_CA_BUNDLE=entra_emulator.ca_bundle)
    FlaskOBO(app)
    holder: dict[str, TokenDownstream] = {}

    @app.get("/me")
    def me() -> Any:
        down = holder["down"]
        with down.lock:
            down.tokens.append(request.headers["Authorization"].split(" ", 1)[1])
        return jsonify(oid=current_token.oid, app_only=current_token.is_app_only,
                       azp=current_token.client_id)

    server = LoopbackServer(app)
    holder["down"] = down = TokenDownstream(registration, server.url)
    try:
        yield down
    finally:
        server.stop()


# -- the middle tier -------------------------------------------------------------------------------

@dataclass
class RedisMiddle:
    app: Flask
    api: App
    client: FlaskClient
    entra: Any

    def token_for(self, user: User) -> str:
        return str(self.entra.issue_user_token(user, resource=self.api))

    def profile(self, token: str) -> Any:
        return self.client.get("/profile", headers={"Authorization": f"Bearer {token}"})

    @property
    def cache(self) -> Any:
        return self.app.extensions["obo"].acquirer.cache

    def obo_calls(self) -> int:
        return len(self.entra.calls("on_behalf_of"))


MakeRedisMiddle = Callable[..., RedisMiddle]


@pytest.fixture
def middle_api(entra: Any, token_downstream: TokenDownstream) -> App:
    """The middle tier's registration, with consent to the downstream API."""
    api = entra.register_app("middle", secret=SECRET, scopes=["access_as_user"])
    entra.grant_consent(client=api, resource=token_downstream.app, scopes=["read"],
                        roles=["Reader"])
    return api


@pytest.fixture
def make_redis_middle(entra: Any, token_downstream: TokenDownstream,
                      middle_api: App) -> Iterator[MakeRedisMiddle]:
    """``make_redis_middle(redis_url, **config)``: one more instance of the same middle tier."""
    built: list[RedisMiddle] = []

    def make(redis_url: str | None, **config: Any) -> RedisMiddle:
        app = Flask(f"middle-{len(built)}")
        app.config.update(middle_settings(entra, middle_api, token_downstream, redis_url,
                                          **config))
        FlaskOBO(app)
        add_routes(app)
        middle = RedisMiddle(app, middle_api, app.test_client(), entra)
        built.append(middle)
        return middle

    yield make
    for middle in built:
        middle.app.extensions["obo"].close()
