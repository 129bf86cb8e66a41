"""A fault matrix: each dependency, each way it fails, what the client gets, and the recovery.

Dependencies: the authority's discovery documents and key set (JWKS), its token endpoint,
Redis (the shared token cache) and the downstream API. Faults: connection refused, a timeout,
an error status (5xx, 429, or Redis's own error reply), a malformed answer (and a dropped
connection for the identity provider). The documented answers:

- authority down before any key was fetched: 503 with Retry-After (validation cannot start);
- authority down after start: validation goes on with the keys held; a token signed by a key
  never seen cannot be checked, so it is refused (401 or 503, never 200) until the authority is
  back, and accepted right after;
- token endpoint failing during on-behalf-of: 503 with Retry-After (the identity provider's own
  Retry-After when it gave one), nothing cached, the next request after recovery succeeds;
- Redis failing: the request still succeeds (the identity provider or the in-process cache
  serve it), within a bounded time; the shared cache is used again once Redis is back; an entry
  that does not decode is a miss;
- downstream API: 502/503/504 are retried for idempotent methods (``OBO_DOWNSTREAM_RETRIES``)
  and then reach the view as a response; a refused connection or a timeout reaches the client
  as a 502/504 problem+json, never a 500. The downstream token stays cached throughout.

This module runs its own emulator: it takes the whole emulator down.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from security_fixtures import (
    DownstreamBehaviour,
    LoopbackApp,
    build_api,
    build_downstream,
    build_middle,
    leaked_fragment,
    wait_for,
)

from flask_obo.testing import EntraEmulator
from flask_obo.testing.redis_server import RedisServer, RedisUnavailable, find_redis_server
from flask_obo.testing.server import EmulatorServer

HTTP_TIMEOUT = 0.5
SLOW = 1.5  # longer than every timeout configured below
RETRIES = 2


# -- an emulator that can be taken off the network ----------------------------------------------

class Outage:
    """Closes the emulator's port (connection refused) and reopens it with all its state.

    The emulator has no public switch for this; it restarts its server object on the same port.
    """

    def __init__(self, emu: EntraEmulator) -> None:
        self.emu = emu

    def __enter__(self) -> Outage:
        self.emu._server.stop()
        return self

    def __exit__(self, *exc: object) -> None:
        server = EmulatorServer(self.emu.port, self.emu._wsgi, self.emu._tls.server_context())
        self.emu._server = server
        server.start()


@pytest.fixture(scope="module")
def emu() -> Iterator[EntraEmulator]:
    with EntraEmulator() as emulator:
        yield emulator


@dataclass
class World:
    emu: EntraEmulator
    api: Any
    middle: Any
    down: Any
    secret: str
    behaviour: DownstreamBehaviour
    server: LoopbackApp

    def user(self) -> Any:
        return self.emu.add_user(f"rel-{uuid.uuid4().hex[:10]}@contoso.test")

    def api_token(self, user: Any | None = None) -> str:
        return self.emu.issue_user_token(user or self.user(), resource=self.api,
                                         scopes=["access_as_user"])

    def middle_token(self, user: Any) -> str:
        return self.emu.issue_user_token(user, resource=self.middle, scopes=["access_as_user"])

    def middle_app(self, **config: Any) -> Flask:
        apis = {"down": {"base_url": self.server.url, "scopes": [f"{self.down.app_id_uri}/read"],
                         "timeout": HTTP_TIMEOUT, "retries": RETRIES}}
        return build_middle(self.emu, self.middle, self.secret, apis,
                            OBO_HTTP_TIMEOUT=HTTP_TIMEOUT, OBO_JWKS_MIN_REFETCH_INTERVAL=0,
                            **config)

    def successful_obo_calls(self) -> int:
        return sum(1 for c in self.emu.calls("on_behalf_of")
                   if c.get("client_id") == self.middle.client_id and c.get("status") == 200
                   and "fault" not in c)


@pytest.fixture(scope="module")
def world(emu: EntraEmulator) -> Iterator[World]:
    secret = f"rel-{uuid.uuid4()}"
    api = emu.register_app("rel-api", scopes=["access_as_user"])
    middle = emu.register_app("rel-middle", secret=secret, scopes=["access_as_user"])
    down = emu.register_app("rel-down", scopes=["read"])
    emu.grant_consent(client=middle, resource=down, scopes=["read"])
    behaviour = DownstreamBehaviour()
    with LoopbackApp(build_downstream(emu, down, behaviour)) as server:
        yield World(emu, api, middle, down, secret, behaviour, server)


@pytest.fixture(autouse=True)
def _clean(emu: EntraEmulator, world: World) -> Iterator[None]:
    yield
    emu.faults.clear()
    world.behaviour.reset()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_unavailable(response: Any, retry_after: str | None = None) -> dict[str, Any]:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    value = response.headers.get("Retry-After", "")
    assert value.isdigit() and int(value) >= 1, response.headers
    if retry_after is not None:
        assert value == retry_after
    body: dict[str, Any] = json.loads(response.get_data(as_text=True))
    assert body["status"] == 503
    return body


# The identity provider's faults, as the emulator injects them: (kind, options).
IDP_FAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "timeout": ("delay", {"delay": SLOW}),
    "http-500": ("status", {"status": 500}),
    "http-503": ("status", {"status": 503}),
    "malformed": ("malformed", {}),
    "dropped": ("drop", {}),
}


def _inject(emu: EntraEmulator, endpoint: str, fault: str, count: int = 50) -> None:
    kind, options = IDP_FAULTS[fault]
    emu.faults.inject(endpoint, kind, count, **options)


# -- discovery and JWKS ----------------------------------------------------------------------------

# A refused connection takes the whole authority (discovery and JWKS) down at once.
AUTHORITY_ROWS = [("authority", "refused")] + [(endpoint, fault) for endpoint in
                                               ("discovery", "jwks") for fault in IDP_FAULTS]


@pytest.mark.parametrize(("endpoint", "fault"), AUTHORITY_ROWS)
def test_authority_fault_before_any_key_was_fetched(world: World, endpoint: str,
                                                    fault: str) -> None:
    app = build_api(world.emu, world.api, OBO_HTTP_TIMEOUT=HTTP_TIMEOUT)
    client = app.test_client()
    token = world.api_token()
    if fault == "refused":
        with Outage(world.emu):
            response = client.get("/me", headers=_bearer(token))
    else:
        _inject(world.emu, endpoint, fault)
        response = client.get("/me", headers=_bearer(token))
        world.emu.faults.clear()
    body = _assert_unavailable(response)
    assert body.get("reason") == "authority_unavailable", body
    recovered = client.get("/me", headers=_bearer(token))
    assert recovered.status_code == 200, recovered.get_data(as_text=True)


@pytest.mark.parametrize(("endpoint", "fault"), AUTHORITY_ROWS)
def test_authority_fault_after_start_keeps_validating(world: World, endpoint: str,
                                                      fault: str) -> None:
    # Refresh every second, so a scheduled refresh meets the fault.
    app = build_api(world.emu, world.api, OBO_HTTP_TIMEOUT=HTTP_TIMEOUT,
                    OBO_METADATA_REFRESH_INTERVAL=1)
    client = app.test_client()
    assert client.get("/me", headers=_bearer(world.api_token())).status_code == 200
    time.sleep(1.1)
    applied_before = len(world.emu.faults.applied)
    outage = Outage(world.emu) if fault == "refused" else None
    if outage is not None:
        outage.__enter__()
    else:
        _inject(world.emu, endpoint, fault)
    try:
        # A new token (not in the validated-token cache), signed by a key already held.
        response = client.get("/me", headers=_bearer(world.api_token()))
        assert response.status_code == 200, response.get_data(as_text=True)
        if outage is None:
            assert wait_for(lambda: len(world.emu.faults.applied) > applied_before), \
                "the scheduled refresh never met the fault"
        else:
            time.sleep(HTTP_TIMEOUT)
        response = client.get("/me", headers=_bearer(world.api_token()))
        assert response.status_code == 200, response.get_data(as_text=True)
        # A key never seen: it cannot be checked while the key set is unreachable. (With only
        # discovery down, the refetch for an unknown kid goes to the jwks_uri already known.)
        new_kid = world.emu.rotate_keys()
        rotated = world.api_token()
        response = client.get("/me", headers=_bearer(rotated))
        if endpoint == "discovery" and fault != "refused":
            assert response.status_code == 200, response.get_data(as_text=True)
        else:
            assert response.status_code in (401, 503), response.get_data(as_text=True)
            assert response.mimetype == "application/problem+json"
    finally:
        if outage is not None:
            outage.__exit__(None, None, None)
        world.emu.faults.clear()
    response = client.get("/me", headers=_bearer(rotated))
    assert response.status_code == 200, (new_kid, response.get_data(as_text=True))


# -- the token endpoint during on-behalf-of --------------------------------------------------------

@pytest.fixture(scope="module")
def warm_middle(world: World) -> Flask:
    """A middle tier whose MSAL client is built (one OBO already done)."""
    app = world.middle_app()
    response = app.test_client().get("/call/down", headers=_bearer(world.middle_token(
        world.user())))
    assert response.status_code == 200, response.get_data(as_text=True)
    return app


@pytest.mark.parametrize("fault", ["refused", "http-429-retry-after", "http-503-retry-after",
                                   *IDP_FAULTS])
def test_token_endpoint_fault_during_obo(world: World, warm_middle: Flask, fault: str) -> None:
    client = warm_middle.test_client()
    user = world.user()
    token = world.middle_token(user)
    assert client.get("/me", headers=_bearer(token)).status_code == 200  # validation is fine
    calls_before, hits_before = world.successful_obo_calls(), world.behaviour.hits
    expected_retry_after = None
    if fault == "refused":
        with Outage(world.emu):
            response = client.get("/call/down", headers=_bearer(token))
    else:
        if fault.endswith("-retry-after"):
            status = int(fault.split("-")[1])
            world.emu.faults.inject("token", "status", 5, status=status, retry_after=7)
            expected_retry_after = "7"
        else:
            _inject(world.emu, "token", fault, count=5)
        response = client.get("/call/down", headers=_bearer(token))
        world.emu.faults.clear()
    _assert_unavailable(response, expected_retry_after)
    assert "WWW-Authenticate" not in response.headers  # not the client's token's fault
    assert world.behaviour.hits == hits_before, "the downstream API was called without a token"
    assert world.successful_obo_calls() == calls_before
    # Recovery: nothing was cached from the failure; the next request gets a real token.
    response = client.get("/call/down", headers=_bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["oid"] == user.oid
    assert world.successful_obo_calls() == calls_before + 1


# -- Redis -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if find_redis_server() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI (set REDIS_SERVER or install it)")
        pytest.skip("redis-server is not installed: the Redis rows of the fault matrix need it")
    try:
        with RedisServer() as server:
            yield server
    except RedisUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"redis-server could not start in CI: {exc}")
        pytest.skip(f"redis-server could not start: {exc}")


def _redis_client(server: RedisServer) -> Any:
    import redis

    return redis.Redis.from_url(server.url, socket_timeout=2)


def _redis_middle(world: World, server: RedisServer) -> Flask:
    return world.middle_app(OBO_CACHE={"CACHE_TYPE": "RedisCache",
                                       "CACHE_REDIS_URL": server.url})


def _call_within(client: Any, token: str, seconds: float) -> Any:
    """The response, or None if the request did not finish in ``seconds``."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(
        client.get("/call/down", headers=_bearer(token))), daemon=True)
    thread.start()
    thread.join(seconds)
    return result[0] if result else None


def _keys(server: RedisServer) -> set[bytes]:
    return set(_redis_client(server).keys("*"))


def _await_shared_cache(world: World, client: Any, server: RedisServer) -> None:
    """After recovery, new entries reach Redis again (within the backend's retry delay)."""
    def stored() -> bool:
        before = _keys(server)
        user = world.user()
        response = client.get("/call/down", headers=_bearer(world.middle_token(user)))
        assert response.status_code == 200, response.get_data(as_text=True)
        return len(_keys(server) - before) > 0

    assert wait_for(stored, timeout=12), "the shared cache was not used again after recovery"


@pytest.mark.redis
@pytest.mark.parametrize("fault", ["refused", "timeout", "error-reply", "malformed-entry"])
def test_redis_fault(world: World, redis_server: RedisServer, fault: str) -> None:
    if not redis_server.running:
        redis_server.start()
    app = _redis_middle(world, redis_server)
    client = app.test_client()
    user = world.user()
    token = world.middle_token(user)
    first = client.get("/call/down", headers=_bearer(token))
    assert first.status_code == 200, first.get_data(as_text=True)
    stored = _keys(redis_server)
    assert stored, "the token was not stored in Redis"
    for key in stored:  # keys are hashes: nothing of the assertion is in them
        text = key.decode("latin-1")
        assert leaked_fragment(token.rsplit(".", 1)[1], text) is None, text
        assert leaked_fragment(token.split(".")[1], text) is None, text

    if fault == "malformed-entry":
        # Another instance of the app (its in-process cache empty) meets a corrupted entry.
        redis = _redis_client(redis_server)
        for key in stored:
            redis.set(key, b"\x00garbage{not an entry")
        calls = world.successful_obo_calls()
        other = _redis_middle(world, redis_server).test_client()
        response = other.get("/call/down", headers=_bearer(token))
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["oid"] == user.oid
        assert world.successful_obo_calls() == calls + 1  # a miss, refilled
        again = _redis_middle(world, redis_server).test_client()
        calls = world.successful_obo_calls()
        assert again.get("/call/down", headers=_bearer(token)).status_code == 200
        assert world.successful_obo_calls() == calls  # the refilled entry decodes
        return

    redis = _redis_client(redis_server)
    if fault == "refused":
        redis_server.stop()
    elif fault == "timeout":
        redis_server.pause()
    else:  # Redis answers every write with an error (out of memory, no eviction)
        redis.config_set("maxmemory-policy", "noeviction")
        redis.config_set("maxmemory", "1")
    try:
        for _ in range(2):
            other = world.user()
            started = time.monotonic()
            response = _call_within(client, world.middle_token(other), 15)
            assert response is not None, f"a request hung on a {fault} Redis for 15 s"
            assert response.status_code == 200, response.get_data(as_text=True)
            assert response.get_json()["oid"] == other.oid
            assert time.monotonic() - started < 10
        # The first user's token is still served (from the in-process cache).
        calls = world.successful_obo_calls()
        response = _call_within(client, token, 15)
        assert response is not None and response.status_code == 200
        assert world.successful_obo_calls() == calls
    finally:
        if fault == "refused":
            redis_server.start()
        elif fault == "timeout":
            redis_server.resume()
        else:
            redis.config_set("maxmemory", "0")
    _await_shared_cache(world, client, redis_server)


# -- the downstream API ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def warm_downstream_client(world: World) -> tuple[Any, Any, str]:
    """A middle tier with one user's downstream token already cached."""
    app = world.middle_app()
    user = world.user()
    token = world.middle_token(user)
    client = app.test_client()
    assert client.get("/call/down", headers=_bearer(token)).status_code == 200
    return client, user, token


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_downstream_error_status(world: World, warm_downstream_client: tuple[Any, Any, str],
                                 status: int, method: str) -> None:
    client, user, token = warm_downstream_client
    calls = world.successful_obo_calls()
    world.behaviour.reset()
    world.behaviour.status = status
    path = "/call/down" if method == "GET" else "/post/down"
    response = client.open(path, method=method, headers=_bearer(token))
    assert response.status_code == status, response.get_data(as_text=True)
    # Idempotent requests are retried; a POST is sent once.
    assert world.behaviour.hits == (1 + RETRIES if method == "GET" else 1)
    world.behaviour.reset()
    response = client.open(path, method=method, headers=_bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["oid"] == user.oid
    assert world.successful_obo_calls() == calls  # the downstream token stayed cached


def test_downstream_500_is_not_retried(world: World,
                                       warm_downstream_client: tuple[Any, Any, str]) -> None:
    client, _, token = warm_downstream_client
    world.behaviour.reset()
    world.behaviour.status = 500
    response = client.get("/call/down", headers=_bearer(token))
    assert response.status_code == 500  # the downstream API's own answer, relayed by the view
    assert world.behaviour.hits == 1


def test_downstream_malformed_challenge(world: World,
                                        warm_downstream_client: tuple[Any, Any, str]) -> None:
    """A 401 whose claims challenge does not decode reaches the view as it is: no new token,
    no retry, no crash."""
    client, _, token = warm_downstream_client
    calls = world.successful_obo_calls()
    world.behaviour.reset()
    world.behaviour.malformed_challenge = True
    response = client.get("/call/down", headers=_bearer(token))
    assert response.status_code == 401, response.get_data(as_text=True)
    assert world.behaviour.hits == 1
    assert world.successful_obo_calls() == calls


@pytest.mark.parametrize("fault", ["refused", "timeout"])
def test_downstream_unreachable(world: World, warm_downstream_client: tuple[Any, Any, str],
                                fault: str) -> None:
    client, user, token = warm_downstream_client
    calls = world.successful_obo_calls()
    world.behaviour.reset()
    if fault == "refused":
        world.server.stop()
    else:
        world.behaviour.delay = SLOW
    try:
        started = time.monotonic()
        response = client.get("/call/down", headers=_bearer(token))
        elapsed = time.monotonic() - started
    finally:
        if fault == "refused":
            world.server.start()
        world.behaviour.reset()
    assert response.status_code in (502, 504), (response.status_code,
                                                response.get_data(as_text=True)[:200])
    assert response.mimetype == "application/problem+json"
    assert elapsed < (1 + RETRIES) * (HTTP_TIMEOUT + 1) + 2
    response = client.get("/call/down", headers=_bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["oid"] == user.oid
    assert world.successful_obo_calls() == calls
