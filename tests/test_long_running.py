"""Long-running sessions, in process: a view starts one; a job outside any request acts as the
user through it, long after the user's token and the first access token expired; stop,
revocation, maximum age, withdrawn consent and a disabled user end it with a reason; Redis
failing is a retryable error, Redis losing the entry ends the session, never a wrong token.

Real MSAL over HTTPS against the emulator, a real redis-server; time moves by the app's
injected clock (``FlaskOBO(clock=...)``), never by sleeping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, jsonify, request
from support.apps import MIDDLE_SECRET, MakeMiddle, Middle
from support.checks import bearer, cae_challenge
from support.redis import leaks, raw_values, redis_client
from support.timing import Clock

from flask_obo import (
    ConfigError,
    IdentityProviderUnavailable,
    InsufficientScope,
    LongRunningSessionExpired,
    TokenCacheUnavailable,
    acquire_token_for_long_running_process,
    get_long_running_session,
    start_long_running_process,
    stop_long_running_process,
)
from flask_obo.testing import App, DownstreamStandIn, User
from flask_obo.testing.redis_server import RedisServer

pytestmark = pytest.mark.redis

HOUR = 3600.0


@dataclass
class Jobs(Middle):
    """A middle tier that starts long-running sessions (POST /jobs) and uses them."""

    clock: Clock = field(default_factory=Clock)

    def start(self, user: User | str, **body: Any) -> Any:
        token = user if isinstance(user, str) else self.token_for(user)
        return self.client.post("/jobs", json=body, headers=bearer(token))

    def new_session(self, user: User, **body: Any) -> str:
        answer = self.start(user, **body)
        assert answer.status_code == 200, answer.get_json()
        return str(answer.get_json()["key"])

    def job(self, key: str) -> Any:
        """What the downstream API answers a job of session ``key`` (outside any request)."""
        with self.app.app_context():
            answer = get_long_running_session(key, "down").get("me")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def acquire(self, key: str, **kwargs: Any) -> Any:
        return acquire_token_for_long_running_process(key, app=self.app, **kwargs)

    def calls(self, grant: str) -> list[dict[str, Any]]:
        return [c for c in self.entra.calls(grant) if c.get("client_id") == self.api.client_id]


def add_job_routes(app: Flask) -> None:
    @app.post("/jobs")
    def start_job() -> Any:
        body = request.get_json(silent=True) or {}
        key = start_long_running_process(body.get("api", "down"), body.get("scopes"),
                                         session_key=body.get("session_key"))
        return jsonify(key=key)

    @app.get("/jobs/<key>/me")
    def job_me(key: str) -> Any:
        return jsonify(get_long_running_session(key, "down").get("me").json())

    @app.post("/jobs/<key>/stop")
    def stop_job(key: str) -> Any:
        return jsonify(stopped=stop_long_running_process(key))


MakeJobs = Callable[..., Jobs]


def write_scope(downstream: DownstreamStandIn) -> str:
    return downstream.scope("write")


@pytest.fixture
def middle(entra: Any, downstream: DownstreamStandIn) -> App:
    api = entra.register_app("long-running middle", secret=MIDDLE_SECRET,
                             scopes=["access_as_user"])
    entra.grant_consent(client=api, resource=downstream.registration, scopes=["read", "write"])
    return api


@pytest.fixture
def make_jobs(make_middle: MakeMiddle, downstream: DownstreamStandIn, middle: App,
              redis_server: RedisServer) -> MakeJobs:
    """``make_jobs(redis_url=..., clock=..., api=..., **config)``: one more instance, its token
    cache on ``redis_server`` (``redis_url=None``: in-process), two downstream APIs: ``down``
    (read) and ``write``."""

    def make(*, redis_url: str | None = redis_server.url, clock: Clock | None = None,
             api: App | None = None, **config: Any) -> Jobs:
        clock = clock or Clock()
        apis = {"down": {"base_url": downstream.url, "scopes": [downstream.scope("read")]},
                "write": {"base_url": downstream.url, "scopes": [write_scope(downstream)]}}
        built = make_middle(api=api or middle, consent=False, redis_url=redis_url, clock=clock,
                            TESTING=True,  # a view's unexpected error reaches the test
                            OBO_DOWNSTREAM_APIS=apis, **config)
        add_job_routes(built.app)
        return Jobs(built.app, built.api, built.client, built.entra, clock)

    return make


@pytest.fixture
def alice(entra: Any) -> User:
    return entra.add_user("alice", password="pw")


@pytest.fixture
def bob(entra: Any) -> User:
    return entra.add_user("bob", password="pw")


# -- the job acts as the user -------------------------------------------------------------------

def test_a_job_calls_downstream_as_the_user_with_no_request_and_no_user_token(
        make_jobs: MakeJobs, alice: User) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice)
    [obo] = jobs.calls("on_behalf_of")
    assert "offline_access" in obo["scope"].split()  # a refresh token was asked for

    saw = jobs.job(key)

    assert saw["oid"] == alice.oid
    assert saw["azp"] == jobs.api.client_id  # the middle tier, not the user's client
    assert jobs.calls("refresh_token") == []  # the access token from the start served


def test_generated_session_keys_are_unguessable(make_jobs: MakeJobs, alice: User) -> None:
    jobs = make_jobs()
    keys = {jobs.new_session(alice) for _ in range(3)}
    assert len(keys) == 3
    assert all(len(k) >= 43 for k in keys)  # 32 random bytes, URL-safe base64


def test_an_expired_token_is_renewed_from_the_refresh_token_which_rotates(
        make_jobs: MakeJobs, alice: User) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice)
    first = jobs.acquire(key)

    jobs.clock.advance(2 * HOUR)  # the user's token and the first access token have expired
    second = jobs.acquire(key)
    jobs.clock.advance(2 * HOUR)
    third = jobs.acquire(key)

    assert len({first.token, second.token, third.token}) == 3
    redeemed = [c["params"]["refresh_token"] for c in jobs.calls("refresh_token")]
    assert len(redeemed) == 2
    assert redeemed[0] != redeemed[1]  # the rotated refresh token was kept and used
    assert jobs.acquire(key) == third  # cached again: no further call
    assert len(jobs.calls("refresh_token")) == 2
    assert jobs.job(key)["oid"] == alice.oid


def test_two_instances_redeeming_at_once_make_one_identity_provider_call(
        make_jobs: MakeJobs, alice: User, entra: Any) -> None:
    clock = Clock()
    one, two = make_jobs(clock=clock), make_jobs(clock=clock)
    key = one.new_session(alice)
    clock.advance(2 * HOUR)
    # The identity provider answers slowly, so the second instance arrives mid-redemption.
    entra.faults.inject("token", "delay", count=1, delay=0.5)
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def redeem(name: str, jobs: Jobs) -> None:
        barrier.wait(timeout=10)
        results[name] = jobs.acquire(key)

    threads = [threading.Thread(target=redeem, args=(n, j)) for n, j in (("1", one), ("2", two))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results["1"].token == results["2"].token
    assert len(one.calls("refresh_token")) == 1


def test_a_token_near_its_expiry_is_served_while_the_session_renews_it_in_the_background(
        make_jobs: MakeJobs, alice: User) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice)
    first = jobs.acquire(key)
    jobs.clock.advance(first.refresh_on + 1 - jobs.clock())  # inside OBO_CACHE_REFRESH_AHEAD

    assert jobs.acquire(key) == first  # served at once
    jobs.app.extensions["obo"].acquirer.close()  # waits for the background renewal
    renewed = jobs.acquire(key)

    assert renewed.token != first.token
    assert len(jobs.calls("refresh_token")) == 1


def test_a_claims_challenge_of_the_downstream_api_is_met_through_the_refresh_token(
        make_jobs: MakeJobs, alice: User, downstream: DownstreamStandIn) -> None:
    """Continuous access evaluation: the downstream API refuses the first token with a claims
    challenge; the session redeems its refresh token for those claims and retries once."""
    jobs = make_jobs(OBO_CLIENT_CAPABILITIES=["CP1"])
    key = jobs.new_session(alice)
    challenge = {"WWW-Authenticate": cae_challenge()}
    downstream.answer_next(status=401, headers=challenge)  # once: the fresh token is accepted
    assert jobs.job(key)["oid"] == alice.oid
    downstream.answer_next(status=401, headers=challenge, count=2)  # the fresh token too
    with jobs.app.app_context(), pytest.raises(LongRunningSessionExpired) as caught:
        get_long_running_session(key, "down").get("me")
    assert caught.value.reason == "interaction_required"
    claims = [c["params"].get("claims", "") for c in jobs.calls("refresh_token")]
    assert all('"nbf"' in c and '"xms_cc"' in c for c in claims), claims
    assert len(claims) == 2  # one fresh token per challenge, no more


def test_the_session_serves_only_the_scopes_it_was_started_for(
        make_jobs: MakeJobs, alice: User, downstream: DownstreamStandIn) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice)  # api "down": read
    with pytest.raises(ValueError, match="started for"):
        jobs.acquire(key, api="write")
    both = jobs.new_session(alice, scopes=[downstream.scope("read"), write_scope(downstream)])
    assert jobs.acquire(both, api="write").scopes == (write_scope(downstream),)


# -- ending a session -----------------------------------------------------------------------------

def expired(jobs: Jobs, key: str) -> LongRunningSessionExpired:
    with pytest.raises(LongRunningSessionExpired) as caught:
        jobs.acquire(key)
    return caught.value


def test_a_stopped_session_fails_at_once_and_says_so(make_jobs: MakeJobs, alice: User) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice)
    with jobs.app.app_context():
        session = get_long_running_session(key, "down")
        assert stop_long_running_process(key) is True
        assert stop_long_running_process(key) is False  # already stopped
        with pytest.raises(LongRunningSessionExpired) as caught:
            session.get("me")  # a session object kept by the job stops too
    assert caught.value.reason == "stopped"
    assert caught.value.code == 410
    assert expired(jobs, key).reason == "stopped"
    assert jobs.calls("refresh_token") == []


def test_an_unknown_key_is_no_session(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    for key in ("x" * 43, "short", ""):
        error = expired(jobs, key)
        assert error.reason == "unknown"
        assert "never started" in str(error.description)


@pytest.mark.parametrize(("end", "reason", "code"), [
    ("revoke_sessions", "revoked", 50173),
    ("max_age", "expired", 700082),
    ("withdraw_consent", "consent_withdrawn", 65001),
    ("disable_user", "user_disabled", 50034),
])
def test_a_refused_refresh_token_ends_the_session_with_its_reason(
        make_jobs: MakeJobs, alice: User, entra: Any, downstream: DownstreamStandIn, end: str,
        reason: str, code: int) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice)
    jobs.clock.advance(2 * HOUR)
    if end == "revoke_sessions":
        entra.revoke_user_sessions(alice)
    elif end == "max_age":
        entra.emulator.refresh_token_max_age = 0
    elif end == "withdraw_consent":
        entra.revoke_consent(client=jobs.api, resource=downstream.registration)
    else:
        alice.enabled = False
    try:
        error = expired(jobs, key)
        again = expired(jobs, key)
    finally:
        entra.emulator.refresh_token_max_age = None

    assert (error.reason, error.extra["aadsts"]) == (reason, [code])
    assert f"AADSTS{code}" in str(error.description)
    assert "sign in again" in str(error.description)
    assert (again.reason, again.description) == (error.reason, error.description)
    assert len(jobs.calls("refresh_token")) == 1  # refused once: no retry, no second call


def test_an_identity_provider_outage_is_retryable_and_ends_nothing(
        make_jobs: MakeJobs, alice: User, entra: Any) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice)
    jobs.clock.advance(2 * HOUR)
    entra.faults.inject("token", "status", count=1, status=503, retry_after=7)
    with pytest.raises(IdentityProviderUnavailable) as caught:
        jobs.acquire(key)
    assert caught.value.retry_after == 7
    assert jobs.job(key)["oid"] == alice.oid  # the session lives on


def test_redis_down_is_retryable_and_redis_losing_the_entry_ends_the_session(
        make_jobs: MakeJobs, alice: User, redis_server: RedisServer) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice)
    jobs.clock.advance(2 * HOUR)
    redis_server.stop()
    with pytest.raises(TokenCacheUnavailable) as caught:
        jobs.acquire(key)
    assert (caught.value.code, caught.value.reason) == (503, "token_cache_unavailable")

    redis_server.start()  # a Redis without persistence comes back empty
    assert expired(jobs, key).reason == "unknown"
    assert jobs.calls("refresh_token") == []  # never a token from a session it cannot see


# -- whose session it is ---------------------------------------------------------------------------

def test_another_users_request_cannot_start_use_or_stop_a_session_under_its_key(
        make_jobs: MakeJobs, alice: User, bob: User) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice, session_key="report-1-of-alice-0123456789")
    bob_token = jobs.token_for(bob)
    obo_before = len(jobs.calls("on_behalf_of"))

    taken = jobs.start(bob_token, session_key=key)
    used = jobs.client.get(f"/jobs/{key}/me", headers=bearer(bob_token))
    stopped = jobs.client.post(f"/jobs/{key}/stop", headers=bearer(bob_token))

    assert taken.status_code == 409
    assert taken.get_json()["reason"] == "session_key_in_use"
    assert used.status_code == 410
    assert used.get_json()["reason"] == "unknown"  # to bob, alice's session does not exist
    assert stopped.get_json() == {"stopped": False}
    assert len(jobs.calls("on_behalf_of")) == obo_before  # bob's token was never exchanged
    mine = jobs.client.get(f"/jobs/{key}/me", headers=bearer(jobs.token_for(alice)))
    assert mine.get_json()["oid"] == alice.oid
    assert jobs.job(key)["oid"] == alice.oid  # alice's session is untouched


def test_the_same_user_starting_again_renews_the_session(make_jobs: MakeJobs,
                                                         alice: User) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice, session_key="nightly-export-of-alice-0001")
    with jobs.app.app_context():
        stop_long_running_process(key)
    assert jobs.new_session(alice, session_key="nightly-export-of-alice-0001") == key
    assert jobs.job(key)["oid"] == alice.oid
    assert len(jobs.calls("on_behalf_of")) == 2


def test_a_session_is_useless_to_another_app_on_the_same_redis(
        make_jobs: MakeJobs, entra: Any, alice: User, downstream: DownstreamStandIn) -> None:
    jobs = make_jobs()
    key = jobs.new_session(alice)
    other_api = entra.register_app("other middle", secret=MIDDLE_SECRET,
                                   scopes=["access_as_user"])
    entra.grant_consent(client=other_api, resource=downstream.registration, scopes=["read"])
    other = make_jobs(api=other_api,
                      OBO_CACHE_ENCRYPTION_KEY="q2hIu1cbmPjSJ5YOL2qsc2Tc6G6nGoeSaFk5b8ZpOq0=")
    assert expired(other, key).reason == "unknown"
    assert other.calls("refresh_token") == []


def test_a_session_whose_tenant_leaves_the_allowed_list_stops_acting(
        make_jobs: MakeJobs, entra: Any, downstream: DownstreamStandIn) -> None:
    api = entra.register_app("multi-tenant middle", secret=MIDDLE_SECRET,
                             scopes=["access_as_user"], multi_tenant=True)
    entra.grant_consent(client=api, resource=downstream.registration, scopes=["read", "write"])
    fabrikam = entra.add_tenant()
    multi = {"api": api, "OBO_AUTHORITY": entra.authority("organizations")}
    jobs = make_jobs(OBO_ALLOWED_TENANTS=[entra.tenant_id, fabrikam], **multi)
    alice = entra.add_user("alice")
    key = jobs.new_session(alice)
    assert jobs.job(key)["oid"] == alice.oid
    # The app redeployed without alice's tenant: its sessions (and their tokens cached in the
    # shared Redis) act no more, before any identity-provider call.
    offboarded = make_jobs(OBO_ALLOWED_TENANTS=[fabrikam], **multi)
    with offboarded.app.app_context(), pytest.raises(InsufficientScope) as refused:
        get_long_running_session(key, "down").get("me")
    assert refused.value.reason == "tenant_not_allowed"
    assert offboarded.calls("refresh_token") == []
    assert jobs.job(key)["oid"] == alice.oid  # the instance that still allows it


def test_an_entry_copied_under_another_sessions_name_opens_for_none(
        make_jobs: MakeJobs, alice: User, bob: User, redis_server: RedisServer) -> None:
    jobs = make_jobs()
    alices, bobs = jobs.new_session(alice), jobs.new_session(bob)
    client = redis_client(redis_server.url)
    # Whoever can write to Redis puts alice's sealed entry under bob's session.
    client.set(session_name(jobs, bobs), client.get(session_name(jobs, alices)))

    assert expired(jobs, bobs).reason == "unknown"  # never alice's refresh token for bob
    assert jobs.job(alices)["oid"] == alice.oid


def session_name(jobs: Jobs, key: str) -> bytes:
    """The Redis key of a session (what an operator sees; tests reach for it to tamper)."""
    from flask_obo.long_running._store import key_digest

    store = jobs.app.extensions["obo"].long_running.store
    return str(store.backend.name(store.name(key_digest(key)))).encode()


# -- time ------------------------------------------------------------------------------------------

def test_an_unused_session_expires_after_the_idle_ttl_and_use_keeps_it_alive(
        make_jobs: MakeJobs, alice: User, redis_server: RedisServer) -> None:
    jobs = make_jobs(OBO_LONG_RUNNING_IDLE_TTL=600)
    key = jobs.new_session(alice)
    assert 0 < redis_client(redis_server.url).pttl(session_name(jobs, key)) <= 600_000

    jobs.clock.advance(400)
    jobs.acquire(key)  # used: its idle time starts again
    jobs.clock.advance(400)
    jobs.acquire(key)
    jobs.clock.advance(601)
    error = expired(jobs, key)

    assert error.reason == "idle"
    assert "OBO_LONG_RUNNING_IDLE_TTL (600 s)" in str(error.description)


# -- configuration and the caller ------------------------------------------------------------------

def test_a_session_needs_a_shared_redis_cache(make_jobs: MakeJobs, alice: User) -> None:
    jobs = make_jobs(redis_url=None)
    with pytest.raises(ConfigError, match="OBO_CACHE to Redis"):
        jobs.start(alice)


def test_only_a_named_user_can_start_a_session(make_jobs: MakeJobs, entra: Any,
                                              alice: User) -> None:
    jobs = make_jobs()
    daemon = entra.register_app("daemon", secret="x")
    as_app = jobs.start(entra.issue_app_token(daemon, resource=jobs.api))
    nameless = jobs.start(jobs.token_for(alice, extra_claims={"oid": None}))
    assert as_app.status_code in (401, 403)
    assert nameless.status_code == 401
    assert "names no user" in nameless.get_json()["detail"]
    assert jobs.calls("on_behalf_of") == []


def test_a_given_session_key_must_be_long_enough(make_jobs: MakeJobs, alice: User) -> None:
    jobs = make_jobs()
    with pytest.raises(ValueError, match="16 to 512"):
        jobs.start(alice, session_key="job-1")


@pytest.mark.parametrize("value", ["soon", 0, 59, -1, float("nan")])
def test_the_idle_ttl_is_validated(make_jobs: MakeJobs, value: Any) -> None:
    with pytest.raises(ConfigError, match="OBO_LONG_RUNNING_IDLE_TTL"):
        make_jobs(OBO_LONG_RUNNING_IDLE_TTL=value)


# -- secrets ---------------------------------------------------------------------------------------

def test_session_keys_and_tokens_stay_out_of_logs_and_redis(
        make_jobs: MakeJobs, alice: User, entra: Any, redis_server: RedisServer,
        downstream_tokens: list[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    jobs = make_jobs()
    key = jobs.new_session(alice)
    ended = jobs.new_session(alice)
    jobs.clock.advance(2 * HOUR)
    jobs.job(key)
    with jobs.app.app_context():
        stop_long_running_process(ended)
    expired(jobs, ended)
    entra.revoke_user_sessions(alice)
    jobs.clock.advance(2 * HOUR)
    expired(jobs, key)

    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (key, ended):
        assert secret not in logged
    values = raw_values(redis_server.url)
    for name, value in values.items():
        assert not leaks(name + b" " + value, [key, ended]), name
        assert not leaks(value, downstream_tokens[-3:]), name
