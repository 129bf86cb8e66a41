"""The suite's fixtures; the helpers they are built from live in ``tests/support``.

The emulator is the plugin's session-wide ``entra_emulator``; ``entra`` (also ``emulator``)
is the per-test helper over it (names unique to the test, faults cleared after it). Tests that
change the whole emulator (key rotation, outages) start their own with ``private_emulator``.
The downstream API is the plugin's ``downstream_api`` stand-in (also ``downstream``), so the
suite tests what users get.

- ``api_registration``, ``user``, ``make_app``: a protected API (``support.apps.build_api``);
- ``downstream``, ``make_middle``: a middle tier calling the downstream API on behalf of users
  (``support.apps.build_middle``); ``downstream_tokens``: the raw tokens the downstream API
  received, for the suites that search for leaks;
- ``clock``: a ``support.timing.Clock`` for ``FlaskOBO(clock=...)`` and the like;
- ``world``: the emulator suites' cast (``support.world.World``);
- ``otel`` (session), ``telemetry``: OpenTelemetry's SDK recording in memory, and what it
  recorded during one test (``support.telemetry.Recorded``);
- ``redis_server`` (``module_redis_server``: one per module), ``redis_sentinel``,
  ``redis_cluster``: throwaway Redis servers (skipped with the reason shown without a
  redis-server binary, except in CI); ``middle_api`` and ``make_redis_middle``: instances of
  one middle tier sharing a Redis;
- ``graph``, ``azurite``, ``azure_middle``: the Azure SDK suites' Microsoft Graph stand-in,
  Azurite (skipped without Node.js, except in CI) and a middle tier with consent for Graph and
  Azure Storage (``support.azure``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from flask import request
from support.apps import (
    API_ROLES,
    API_SCOPES,
    MIDDLE_SECRET,
    MakeApp,
    MakeMiddle,
    Middle,
    build_api,
    build_middle,
)
from support.azure import GRAPH_SCOPES, Azurite, GraphStandIn, start_azurite, start_graph
from support.redis import port_with_free_bus, redis_client, start_redis
from support.telemetry import Recorded
from support.timing import Clock, wait_for
from support.world import World, build_world

from flask_obo.extension import FlaskOBO
from flask_obo.testing import App, DownstreamStandIn, EntraEmulator, User
from flask_obo.testing.pytest_plugin import EntraTestHelper
from flask_obo.testing.redis_server import RedisServer

# -- the emulator and a protected API ---------------------------------------------------------


@pytest.fixture
def emulator(entra: EntraTestHelper) -> EntraTestHelper:
    return entra


@pytest.fixture
def api_registration(emulator: EntraTestHelper) -> App:
    """The protected API's app registration (v2 tokens; scopes and app roles)."""
    return emulator.register_app("api", scopes=API_SCOPES, roles=API_ROLES)


@pytest.fixture
def user(emulator: EntraTestHelper) -> User:
    return emulator.add_user("alice", password="pw")


@pytest.fixture
def make_app(emulator: EntraTestHelper, api_registration: App) -> MakeApp:
    """``make_app(*, obo=None, **OBO_config) -> Flask``: the API of ``api_registration``."""

    def factory(*, obo: FlaskOBO | None = None, **config: Any) -> Any:
        return build_api(emulator, api_registration, obo=obo, **config)

    return factory


@pytest.fixture(scope="module")
def private_emulator() -> Iterator[EntraEmulator]:
    """An emulator of this module's own, for tests that rotate keys or take it down."""
    with EntraEmulator() as emu:
        yield emu


@pytest.fixture
def clock() -> Clock:
    """Epoch seconds that move only with ``clock.advance(seconds)``."""
    return Clock()


@pytest.fixture
def world(entra: EntraTestHelper) -> World:
    return build_world(entra)


# -- OpenTelemetry -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def otel() -> Iterator[Recorded]:
    """The global meter and tracer providers, set once for the session, recording in memory."""
    recorded = Recorded.install_sdk()
    yield recorded
    recorded.shutdown()


@pytest.fixture
def telemetry(otel: Recorded) -> Recorded:
    """``otel``, read as what changed during this test."""
    otel.mark()
    return otel


# -- a middle tier and its downstream API -------------------------------------------------------


@pytest.fixture
def downstream(downstream_api: DownstreamStandIn) -> DownstreamStandIn:
    return downstream_api


@pytest.fixture
def downstream_tokens(downstream: DownstreamStandIn) -> list[str]:
    """Every raw bearer token ``downstream`` received, in order (its calls keep only hashes)."""
    tokens: list[str] = []

    @downstream.app.before_request
    def keep() -> None:
        tokens.append(request.headers.get("Authorization", "").removeprefix("Bearer "))

    return tokens


@pytest.fixture
def make_middle(entra: EntraTestHelper, downstream: DownstreamStandIn) -> Iterator[MakeMiddle]:
    """``make_middle(*, consent=True, secret=..., api=None, **build_middle options)``: a middle
    tier registered for this test, with consent for ``read`` on ``downstream``."""
    built: list[Middle] = []

    def make(*, consent: bool = True, secret: str | None = MIDDLE_SECRET, api: App | None = None,
             **options: Any) -> Middle:
        if api is None:
            api = entra.register_app("middle", secret=secret, scopes=["access_as_user"])
        if consent:
            entra.grant_consent(client=api, resource=downstream.registration, scopes=["read"],
                                roles=["Reader"])
        app = build_middle(entra, api, downstream, secret=secret, **options)
        middle = Middle(app, api, app.test_client(), entra)
        built.append(middle)
        return middle

    yield make
    for middle in built:
        middle.app.extensions["obo"].close()


# -- Redis -----------------------------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for one test (tests stop, pause and restart it)."""
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def module_redis_server() -> Iterator[RedisServer]:
    """One redis-server for a whole module, for suites whose tests only add to it (a Celery
    worker's broker and results, and its token cache, outlive a test)."""
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_sentinel(redis_server: RedisServer) -> Iterator[tuple[RedisServer, int]]:
    """``(master, sentinel port)``: a sentinel watching ``redis_server`` as "mymaster"."""
    fd, conf = tempfile.mkstemp(suffix=".conf", prefix="flask-obo-sentinel-")
    with os.fdopen(fd, "w") as out:
        out.write(f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n"
                  "sentinel down-after-milliseconds mymaster 1000\n")
    sentinel = start_redis(conf, "--sentinel")
    try:
        yield redis_server, sentinel.port
    finally:
        sentinel.close()
        os.unlink(conf)


@pytest.fixture
def redis_cluster() -> Iterator[int]:
    """The port of a one-node Redis Cluster holding every slot."""
    node = start_redis("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                       port=port_with_free_bus())
    try:
        client = redis_client(node.url)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        assert wait_for(lambda: b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")), \
            "the one-node cluster never became ok"
        yield node.port
    finally:
        node.close()


@pytest.fixture
def middle_api(entra: EntraTestHelper, downstream: DownstreamStandIn) -> App:
    """The Redis suites' middle tier registration, with consent to the downstream API: every
    instance ``make_redis_middle`` builds is this same app."""
    api = entra.register_app("middle", secret=MIDDLE_SECRET, scopes=["access_as_user"])
    entra.grant_consent(client=api, resource=downstream.registration, scopes=["read"],
                        roles=["Reader"])
    return api


@pytest.fixture
def make_redis_middle(make_middle: MakeMiddle, middle_api: App) -> MakeMiddle:
    """``make_redis_middle(redis_url, **options)``: one more instance (its own in-process cache)
    of the same middle tier, its token cache on ``redis_url`` (``None``: as ``options`` say)."""

    def make(redis_url: str | None, **options: Any) -> Middle:
        return make_middle(api=middle_api, consent=False, redis_url=redis_url, **options)

    return make


# -- Azure SDKs ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def graph(entra_emulator: EntraEmulator) -> Iterator[GraphStandIn]:
    """A Microsoft Graph stand-in validating tokens as Graph would (``support.azure``)."""
    with start_graph(entra_emulator) as stand_in:
        yield stand_in


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's blob service, HTTPS and ``--oauth basic`` (``support.azure``)."""
    with start_azurite() as running:
        yield running


@pytest.fixture
def azure_middle(make_middle: MakeMiddle, entra: EntraTestHelper) -> MakeMiddle:
    """``azure_middle(*, graph_scopes=GRAPH_SCOPES, **make_middle options)``: a middle tier
    with admin consent for Microsoft Graph and Azure Storage."""

    def make(*, graph_scopes: list[str] = GRAPH_SCOPES, **options: Any) -> Middle:
        middle = make_middle(**options)
        entra.grant_consent(client=middle.api, resource=entra.graph, scopes=graph_scopes)
        entra.grant_consent(client=middle.api, resource=entra.storage,
                            scopes=["user_impersonation"])
        return middle

    return make
