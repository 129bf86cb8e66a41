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
  serve it), and never hangs; the shared cache is used again once Redis is back; an entry that
  does not decode is a miss;
- downstream API: 502/503/504 are retried for idempotent methods (``OBO_DOWNSTREAM_RETRIES``)
  and then reach the view as a response; a refused connection or a timeout reaches the client
  as a 502/504 problem+json, never a 500. The downstream token stays cached throughout.

This module runs its own emulator: it takes the whole emulator down (``emu.unreachable()``).
Scheduled refreshes come due on the API's clock, never by sleeping.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from support.apps import build_api, build_middle
from support.checks import assert_unavailable, bearer, leaked_fragment
from support.redis import redis_client
from support.timing import Clock, wait_for

from flask_obo.extension import FlaskOBO
from flask_obo.testing import App, DownstreamStandIn, EntraEmulator
from flask_obo.testing.redis_server import RedisServer

HTTP_TIMEOUT = 0.5
SLOW = 1.5  # longer than every timeout configured below
RETRIES = 2


@pytest.fixture(scope="module")
def emu() -> Iterator[EntraEmulator]:
    with EntraEmulator() as emulator:
        yield emulator


@dataclass
class Deployment:
    """An API, and a middle tier calling a downstream API, on this module's emulator."""

    emu: EntraEmulator
    api: App
    middle: App
    down: DownstreamStandIn
    secret: str

    def user(self) -> Any:
        return self.emu.add_user(f"rel-{uuid.uuid4().hex[:10]}@contoso.test")

    def api_token(self, user: Any | None = None) -> str:
        return self.emu.issue_user_token(user or self.user(), resource=self.api,
                                         scopes=["access_as_user"])

    def middle_token(self, user: Any) -> str:
        return self.emu.issue_user_token(user, resource=self.middle, scopes=["access_as_user"])

    def middle_app(self, **config: Any) -> Flask:
        apis = {"down": {"base_url": self.down.url, "scopes": [self.down.scope("read")],
                         "timeout": HTTP_TIMEOUT, "retries": RETRIES}}
        return build_middle(self.emu, self.middle, self.down, secret=self.secret,
                            OBO_DOWNSTREAM_APIS=apis, OBO_HTTP_TIMEOUT=HTTP_TIMEOUT,
                            OBO_JWKS_MIN_REFETCH_INTERVAL=0, **config)

    def successful_obo_calls(self) -> int:
        return sum(1 for c in self.emu.calls("on_behalf_of")
                   if c.get("client_id") == self.middle.client_id and c.get("status") == 200
                   and "fault" not in c)


@pytest.fixture(scope="module")
def deployment(emu: EntraEmulator) -> Iterator[Deployment]:
    secret = f"rel-{uuid.uuid4()}"
    api = emu.register_app("rel-api", scopes=["access_as_user"])
    middle = emu.register_app("rel-middle", secret=secret, scopes=["access_as_user"])
    down = emu.register_app("rel-down", scopes=["read"])
    emu.grant_consent(client=middle, resource=down, scopes=["read"])
    with DownstreamStandIn(emu, down) as stand_in:
        yield Deployment(emu, api, middle, stand_in, secret)


@pytest.fixture(autouse=True)
def _clean(emu: EntraEmulator, deployment: Deployment) -> Iterator[None]:
    yield
    emu.faults.clear()
    deployment.down.clear_answers()


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
def test_authority_fault_before_any_key_was_fetched(deployment: Deployment, endpoint: str,
                                                    fault: str) -> None:
    app = build_api(deployment.emu, deployment.api, OBO_HTTP_TIMEOUT=HTTP_TIMEOUT,
                    OBO_JWKS_MIN_REFETCH_INTERVAL=0)
    client = app.test_client()
    token = deployment.api_token()
    if fault == "refused":
        with deployment.emu.unreachable():
            response = client.get("/me", headers=bearer(token))
    else:
        _inject(deployment.emu, endpoint, fault)
        response = client.get("/me", headers=bearer(token))
        deployment.emu.faults.clear()
    body = assert_unavailable(response)
    assert body.get("reason") == "authority_unavailable", body
    recovered = client.get("/me", headers=bearer(token))
    assert recovered.status_code == 200, recovered.get_data(as_text=True)


@pytest.mark.parametrize(("endpoint", "fault"), AUTHORITY_ROWS)
def test_authority_fault_after_start_keeps_validating(deployment: Deployment, endpoint: str,
                                                      fault: str, clock: Clock,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flask_obo")
    emu = deployment.emu
    app = build_api(emu, deployment.api, obo=FlaskOBO(clock=clock),
                    OBO_HTTP_TIMEOUT=HTTP_TIMEOUT, OBO_METADATA_REFRESH_INTERVAL=60,
                    OBO_JWKS_MIN_REFETCH_INTERVAL=0)
    client = app.test_client()
    assert client.get("/me", headers=bearer(deployment.api_token())).status_code == 200
    clock.advance(61)  # the scheduled refresh is due: the next request starts it
    applied_before = len(emu.faults.applied)
    outage = emu.unreachable() if fault == "refused" else None
    if outage is not None:
        outage.__enter__()
    else:
        _inject(emu, endpoint, fault)
    try:
        # A new token (not in the validated-token cache), signed by a key already held.
        response = client.get("/me", headers=bearer(deployment.api_token()))
        assert response.status_code == 200, response.get_data(as_text=True)
        assert wait_for(lambda: "metadata refresh failed" in caplog.text), \
            "the scheduled refresh never failed"
        if outage is None:
            assert len(emu.faults.applied) > applied_before, \
                "the scheduled refresh never met the fault"
        response = client.get("/me", headers=bearer(deployment.api_token()))
        assert response.status_code == 200, response.get_data(as_text=True)
        # A key never seen: it cannot be checked while the key set is unreachable. (With only
        # discovery down, the refetch for an unknown kid goes to the jwks_uri already known.)
        new_kid = emu.rotate_keys()
        rotated = deployment.api_token()
        response = client.get("/me", headers=bearer(rotated))
        if endpoint == "discovery" and fault != "refused":
            assert response.status_code == 200, response.get_data(as_text=True)
        else:
            assert response.status_code in (401, 503), response.get_data(as_text=True)
            assert response.mimetype == "application/problem+json"
    finally:
        if outage is not None:
            outage.__exit__(None, None, None)
        emu.faults.clear()
    response = client.get("/me", headers=bearer(rotated))
    assert response.status_code == 200, (new_kid, response.get_data(as_text=True))


# -- the token endpoint during on-behalf-of --------------------------------------------------------

@pytest.fixture(scope="module")
def warm_middle(deployment: Deployment) -> Flask:
    """A middle tier whose MSAL client is built (one OBO already done)."""
    app = deployment.middle_app()
    token = deployment.middle_token(deployment.user())
    response = app.test_client().get("/call/down/echo", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return app


@pytest.mark.parametrize("fault", ["refused", "http-429-retry-after", "http-503-retry-after",
                                   *IDP_FAULTS])
def test_token_endpoint_fault_during_obo(deployment: Deployment, warm_middle: Flask,
                                         fault: str) -> None:
    emu, down = deployment.emu, deployment.down
    client = warm_middle.test_client()
    user = deployment.user()
    token = deployment.middle_token(user)
    assert client.get("/me", headers=bearer(token)).status_code == 200  # validation is fine
    calls_before, hits_before = deployment.successful_obo_calls(), len(down.calls)
    expected_retry_after = None
    if fault == "refused":
        with emu.unreachable():
            response = client.get("/call/down/echo", headers=bearer(token))
    else:
        if fault.endswith("-retry-after"):
            status = int(fault.split("-")[1])
            emu.faults.inject("token", "status", 5, status=status, retry_after=7)
            expected_retry_after = "7"
        else:
            _inject(emu, "token", fault, count=5)
        response = client.get("/call/down/echo", headers=bearer(token))
        emu.faults.clear()
    assert_unavailable(response, expected_retry_after)
    assert "WWW-Authenticate" not in response.headers  # not the client's token's fault
    assert len(down.calls) == hits_before, "the downstream API was called without a token"
    assert deployment.successful_obo_calls() == calls_before
    # Recovery: nothing was cached from the failure; the next request gets a real token.
    response = client.get("/call/down/echo", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["oid"] == user.oid
    assert deployment.successful_obo_calls() == calls_before + 1


# -- Redis -----------------------------------------------------------------------------------------

def _redis_middle(deployment: Deployment, server: RedisServer) -> Flask:
    return deployment.middle_app(OBO_CACHE={"CACHE_TYPE": "RedisCache",
                                            "CACHE_REDIS_URL": server.url})


def _call_within(client: Any, token: str, seconds: float) -> Any:
    """The response, or None if the request did not finish in ``seconds`` (a hang)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(
        client.get("/call/down/echo", headers=bearer(token))), daemon=True)
    thread.start()
    thread.join(seconds)
    return result[0] if result else None


def _keys(server: RedisServer) -> set[bytes]:
    return set(redis_client(server.url).keys("*"))


def _await_shared_cache(deployment: Deployment, client: Any, server: RedisServer) -> None:
    """After recovery, new entries reach Redis again (within the backend's retry delay)."""
    def stored() -> bool:
        before = _keys(server)
        user = deployment.user()
        response = client.get("/call/down/echo", headers=bearer(deployment.middle_token(user)))
        assert response.status_code == 200, response.get_data(as_text=True)
        return len(_keys(server) - before) > 0

    assert wait_for(stored, timeout=12, interval=0.25), \
        "the shared cache was not used again after recovery"


@pytest.mark.redis
@pytest.mark.parametrize("fault", ["refused", "timeout", "error-reply", "malformed-entry"])
def test_redis_fault(deployment: Deployment, redis_server: RedisServer, fault: str) -> None:
    app = _redis_middle(deployment, redis_server)
    client = app.test_client()
    user = deployment.user()
    token = deployment.middle_token(user)
    first = client.get("/call/down/echo", headers=bearer(token))
    assert first.status_code == 200, first.get_data(as_text=True)
    stored = _keys(redis_server)
    assert stored, "the token was not stored in Redis"
    for key in stored:  # keys are hashes: nothing of the assertion is in them
        text = key.decode("latin-1")
        assert leaked_fragment(token.rsplit(".", 1)[1], text) is None, text
        assert leaked_fragment(token.split(".")[1], text) is None, text

    if fault == "malformed-entry":
        # Another instance of the app (its in-process cache empty) meets a corrupted entry.
        redis = redis_client(redis_server.url)
        for key in stored:
            redis.set(key, b"\x00garbage{not an entry")
        calls = deployment.successful_obo_calls()
        other = _redis_middle(deployment, redis_server).test_client()
        response = other.get("/call/down/echo", headers=bearer(token))
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["oid"] == user.oid
        assert deployment.successful_obo_calls() == calls + 1  # a miss, refilled
        again = _redis_middle(deployment, redis_server).test_client()
        calls = deployment.successful_obo_calls()
        assert again.get("/call/down/echo", headers=bearer(token)).status_code == 200
        assert deployment.successful_obo_calls() == calls  # the refilled entry decodes
        return

    redis = redis_client(redis_server.url)
    if fault == "refused":
        redis_server.stop()
    elif fault == "timeout":
        redis_server.pause()
    else:  # Redis answers every write with an error (out of memory, no eviction)
        redis.config_set("maxmemory-policy", "noeviction")
        redis.config_set("maxmemory", "1")
    try:
        for _ in range(2):
            other = deployment.user()
            response = _call_within(client, deployment.middle_token(other), 15)
            assert response is not None, f"a request hung on a {fault} Redis for 15 s"
            assert response.status_code == 200, response.get_data(as_text=True)
            assert response.get_json()["oid"] == other.oid
        # The first user's token is still served (from the in-process cache).
        calls = deployment.successful_obo_calls()
        response = _call_within(client, token, 15)
        assert response is not None and response.status_code == 200
        assert deployment.successful_obo_calls() == calls
    finally:
        if fault == "refused":
            redis_server.start()
        elif fault == "timeout":
            redis_server.resume()
        else:
            redis.config_set("maxmemory", "0")
    _await_shared_cache(deployment, client, redis_server)


# -- the downstream API ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def warm_downstream_client(deployment: Deployment) -> tuple[Any, Any, str]:
    """A middle tier with one user's downstream token already cached."""
    app = deployment.middle_app()
    user = deployment.user()
    token = deployment.middle_token(user)
    client = app.test_client()
    assert client.get("/call/down/echo", headers=bearer(token)).status_code == 200
    return client, user, token


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_downstream_error_status(deployment: Deployment,
                                 warm_downstream_client: tuple[Any, Any, str],
                                 status: int, method: str) -> None:
    client, user, token = warm_downstream_client
    down = deployment.down
    calls = deployment.successful_obo_calls()
    down.answer_next(status=status, body="downstream failure", count=10)
    hits = len(down.calls)
    response = client.open("/call/down/echo", method=method, headers=bearer(token))
    assert response.status_code == status, response.get_data(as_text=True)
    # Idempotent requests are retried; a POST is sent once.
    assert len(down.calls) - hits == (1 + RETRIES if method == "GET" else 1)
    down.clear_answers()
    response = client.open("/call/down/echo", method=method, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["oid"] == user.oid
    assert deployment.successful_obo_calls() == calls  # the downstream token stayed cached


def test_downstream_500_is_not_retried(deployment: Deployment,
                                       warm_downstream_client: tuple[Any, Any, str]) -> None:
    client, _, token = warm_downstream_client
    down = deployment.down
    down.answer_next(status=500, body="downstream failure", count=10)
    hits = len(down.calls)
    response = client.get("/call/down/echo", headers=bearer(token))
    assert response.status_code == 500  # the downstream API's own answer, relayed by the view
    assert len(down.calls) - hits == 1


def test_downstream_malformed_challenge(deployment: Deployment,
                                        warm_downstream_client: tuple[Any, Any, str]) -> None:
    """A 401 whose claims challenge does not decode reaches the view as it is: no new token,
    no retry, no crash."""
    client, _, token = warm_downstream_client
    down = deployment.down
    calls = deployment.successful_obo_calls()
    down.answer_next(status=401, body="{", count=10, headers={
        "WWW-Authenticate": 'Bearer error="insufficient_claims", claims="%%%not-base64%%%"'})
    hits = len(down.calls)
    response = client.get("/call/down/echo", headers=bearer(token))
    assert response.status_code == 401, response.get_data(as_text=True)
    assert len(down.calls) - hits == 1
    assert deployment.successful_obo_calls() == calls


@pytest.mark.parametrize("fault", ["refused", "timeout"])
def test_downstream_unreachable(deployment: Deployment,
                                warm_downstream_client: tuple[Any, Any, str],
                                fault: str) -> None:
    client, user, token = warm_downstream_client
    down = deployment.down
    calls = deployment.successful_obo_calls()
    if fault == "refused":
        down.stop()
    else:
        down.answer_next(delay=SLOW, count=10)
    try:
        response = client.get("/call/down/echo", headers=bearer(token))
    finally:
        if fault == "refused":
            down.start()
        down.clear_answers()
    assert response.status_code in (502, 504), (response.status_code,
                                                response.get_data(as_text=True)[:200])
    assert response.mimetype == "application/problem+json"
    response = client.get("/call/down/echo", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["oid"] == user.oid
    assert deployment.successful_obo_calls() == calls
