"""On-behalf-of end to end: real MSAL over real HTTPS to the emulator, a real downstream API.

One OBO call per user and scope set, then the cache; each user's own token downstream; a new
OBO after expiry; refresh ahead of expiry without making a request wait; one OBO call for
concurrent first requests; MSAL's own cache stays empty and ours is bounded however many users
come (at 10,000 users, with the memory they take: ``benchmarks/bench_memory.py``).

Token lifetimes pass on the middle tier's clock (``FlaskOBO(clock=...)``), never by sleeping.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from support.apps import MakeMiddle
from support.checks import bearer
from support.timing import Clock

from flask_obo import FlaskOBO, acquire_token_for_user
from flask_obo.signals import downstream_token_acquired
from flask_obo.testing import DownstreamStandIn


def test_first_request_does_obo_then_the_cache_serves(make_middle: MakeMiddle, entra: Any,
                                                       downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")
    token = middle.token_for(alice)

    first = middle.get("/profile", token)
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["downstream"]["oid"] == alice.oid
    assert first.get_json()["downstream"]["azp"] == middle.api.client_id
    assert len(middle.obo_calls()) == 1
    downstream_token = first.get_json()["downstream"]["token"]

    for _ in range(100):
        again = middle.get("/profile", token)
        assert again.status_code == 200
        assert again.get_json()["downstream"]["oid"] == alice.oid
        assert again.get_json()["downstream"]["token"] == downstream_token
    assert len(middle.obo_calls()) == 1


def test_each_user_gets_their_own_token(make_middle: MakeMiddle, entra: Any) -> None:
    middle = make_middle()
    alice, bob = entra.add_user("alice"), entra.add_user("bob")
    alice_token, bob_token = middle.token_for(alice), middle.token_for(bob)

    seen_alice = middle.get("/profile", alice_token).get_json()["downstream"]
    seen_bob = middle.get("/profile", bob_token).get_json()["downstream"]
    assert seen_alice["oid"] == alice.oid
    assert seen_bob["oid"] == bob.oid
    assert seen_alice["token"] != seen_bob["token"]
    assert len(middle.obo_calls()) == 2
    # Back to alice: her cached token, still hers.
    assert middle.get("/profile", alice_token).get_json()["downstream"] == seen_alice
    assert len(middle.obo_calls()) == 2


def test_a_new_assertion_of_the_same_user_is_a_new_cache_entry(make_middle: MakeMiddle,
                                                                entra: Any) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")
    middle.get("/profile", middle.token_for(alice))
    later = middle.token_for(alice, lifetime=1800)  # the client renewed its token
    assert middle.get("/profile", later).get_json()["downstream"]["oid"] == alice.oid
    assert len(middle.obo_calls()) == 2


def test_after_expiry_a_new_obo_happens(make_middle: MakeMiddle, entra: Any,
                                        clock: Clock) -> None:
    middle = make_middle(clock=clock, OBO_CACHE_EXPIRY_MARGIN=60, OBO_CACHE_REFRESH_AHEAD=0)
    alice = entra.add_user("alice")
    token = middle.token_for(alice, lifetime=7200)  # the caller's token outlives the OBO token
    first = middle.get("/profile", token).get_json()["downstream"]["token"]
    clock.advance(3600 - 60 - 1)  # the emulator's lifetime, less the margin: still usable
    assert middle.get("/profile", token).get_json()["downstream"]["token"] == first
    assert len(middle.obo_calls()) == 1

    clock.advance(2)  # past expiry minus the margin
    renewed = middle.get("/profile", token).get_json()["downstream"]
    assert len(middle.obo_calls()) == 2
    assert renewed["token"] != first
    assert renewed["oid"] == alice.oid


def test_refresh_ahead_renews_in_the_background(make_middle: MakeMiddle, entra: Any,
                                                clock: Clock) -> None:
    # Lifetime 3600 s, margin 60 s, refresh ahead 300 s: refreshed once 3240 s have passed.
    middle = make_middle(clock=clock, OBO_CACHE_EXPIRY_MARGIN=60, OBO_CACHE_REFRESH_AHEAD=300)
    alice = entra.add_user("alice")
    token = middle.token_for(alice, lifetime=7200)
    first = middle.get("/profile", token).get_json()["downstream"]["token"]
    clock.advance(3300)
    hold = entra.faults.hold("token")  # the refresh waits at the identity provider...
    during = middle.get("/profile", token).get_json()["downstream"]["token"]
    assert during == first  # ...while the still-valid token kept serving this request
    assert hold.wait_reached(), "no refresh reached the identity provider"
    assert len(middle.obo_calls()) == 1  # the refresh is still held: nobody waited for it
    hold.release()
    middle.cache.close()  # wait for the background refresh to be stored
    assert len(middle.obo_calls()) == 2
    after = middle.get("/profile", token).get_json()["downstream"]["token"]
    assert after != first
    assert len(middle.obo_calls()) == 2


def test_concurrent_first_requests_make_one_obo_call(make_middle: MakeMiddle,
                                                     entra: Any) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    entra.faults.inject("token", "delay", delay=0.5)  # keep the first call open while all arrive
    barrier = threading.Barrier(32)

    def call(_: int) -> Any:
        client = middle.app.test_client()
        barrier.wait()
        response = client.get("/profile", headers=bearer(token))
        return response.status_code, response.get_json()["downstream"]["oid"]

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(32)))
    assert results == [(200, alice.oid)] * 32
    assert len(middle.obo_calls()) == 1


def test_many_users_in_parallel_each_see_their_own_token(make_middle: MakeMiddle,
                                                         entra: Any) -> None:
    middle = make_middle()
    users = [entra.add_user(f"user{i}") for i in range(24)]
    tokens = {u.oid: middle.token_for(u) for u in users}
    work = [oid for oid in tokens for _ in range(4)]
    sources: list[str] = []

    def record(sender: Any, **kwargs: Any) -> None:
        sources.append(kwargs["source"])

    def call(oid: str) -> tuple[str, str]:
        response = middle.app.test_client().get("/profile", headers=bearer(tokens[oid]))
        assert response.status_code == 200, response.get_json()
        return oid, response.get_json()["downstream"]["oid"]

    with downstream_token_acquired.connected_to(record, sender=middle.app), \
            ThreadPoolExecutor(12) as pool:
        for caller, seen in pool.map(call, work):
            assert seen == caller
    assert len(middle.obo_calls()) == len(users)
    assert sources.count("identity_provider") == len(users)
    assert len(sources) == len(work)


def test_msal_cache_stays_empty_and_ours_is_bounded(make_middle: MakeMiddle, entra: Any,
                                                    clock: Clock) -> None:
    """Distinct users through the OBO path: MSAL's in-memory cache holds nothing; ours holds one
    entry per user, each until its token's expiry minus the margin, behind a bounded in-process
    front. (10,000 users and the memory they take: benchmarks/bench_memory.py.)"""
    users_count, front = 150, 40
    middle = make_middle(clock=clock, OBO_CACHE_LOCAL_SIZE=front, OBO_CACHE_EXPIRY_MARGIN=60,
                         OBO_CACHE_REFRESH_AHEAD=0)
    users = [entra.add_user(f"m{i}") for i in range(users_count)]
    tokens = [middle.token_for(u, lifetime=7200) for u in users]

    def one(index: int) -> str:
        with middle.app.test_request_context(headers=bearer(tokens[index])):
            return acquire_token_for_user(api="down").token

    with ThreadPoolExecutor(8) as pool:
        issued = list(pool.map(one, range(users_count)))
    assert len(set(issued)) == users_count  # one distinct downstream token per user
    assert len(middle.obo_calls()) == users_count
    assert middle.acquirer.msal_cache_size() == 0
    # No public count of MSAL apps: one for the tenant, reused, is what this asserts.
    assert len(middle.acquirer._clients) == 1
    assert len(middle.cache.local.entries) <= front
    # Every user's token is still cached (most of them no longer in the front):
    clock.advance(3600 - 60 - 1)
    assert [one(i) for i in range(users_count)] == issued
    assert len(middle.obo_calls()) == users_count
    # ... until its expiry minus the margin, then nobody's is.
    clock.advance(2)
    assert one(0) != issued[0] and one(users_count - 1) != issued[-1]
    assert len(middle.obo_calls()) == users_count + 2


def test_an_absurd_token_lifetime_is_cached_for_a_day_at_most(make_middle: MakeMiddle,
                                                              entra: Any, clock: Clock) -> None:
    middle = make_middle(clock=clock)
    token = middle.token_for(entra.add_user("alice"))
    entra.faults.inject("token", "json", body={"access_token": "eyJ.x.y", "token_type": "Bearer",
                                               "expires_in": 10**15})
    with middle.app.test_request_context(headers=bearer(token)):
        assert acquire_token_for_user(api="down").expires_on == clock() + 86_400


def test_msal_apps_per_tenant_are_bounded_for_an_api_open_to_any_tenant(entra: Any) -> None:
    api = entra.register_app("any-tenant-middle", secret="s3cret", scopes=["access_as_user"],
                             multi_tenant=True)
    app = Flask("any-tenant")
    app.config.update(OBO_AUTHORITY=entra.authority("organizations"),
                      OBO_CLIENT_ID=api.client_id, OBO_CLIENT_SECRET="s3cret",
                      OBO_ALLOWED_TENANTS="*", OBO_CA_BUNDLE=entra.ca_bundle)
    FlaskOBO(app)
    acquirer = app.extensions["obo"].acquirer
    acquirer.max_clients = 2
    tenants = [entra.tenant_id, entra.add_tenant(), entra.add_tenant(), entra.add_tenant()]
    built = {tid: acquirer.client(tid) for tid in tenants}
    for tid in tenants[-2:]:
        assert acquirer.client(tid) is built[tid]  # kept: the two built last
    assert acquirer.client(tenants[0]) is not built[tenants[0]]  # the oldest went first...
    assert acquirer.client(tenants[0]) is not None  # ...and an evicted tenant is simply rebuilt


def test_multi_tenant_api_asks_each_callers_own_tenant(entra: Any) -> None:
    other_tid = entra.add_tenant()
    api = entra.register_app("saas-middle", secret="s3cret", scopes=["access_as_user"],
                             multi_tenant=True)
    down = entra.register_app("saas-down", scopes=["read"], multi_tenant=True)
    for tid in (entra.tenant_id, other_tid):
        entra.grant_consent(client=api, resource=down, scopes=["read"], tenant=tid)
    app = Flask("saas")
    app.config.update(OBO_AUTHORITY=entra.authority("organizations"),
                      OBO_CLIENT_ID=api.client_id, OBO_CLIENT_SECRET="s3cret",
                      OBO_ALLOWED_TENANTS=[entra.tenant_id, other_tid],
                      OBO_CA_BUNDLE=entra.ca_bundle,
                      OBO_DOWNSTREAM_APIS={"down": {"scopes": [f"{down.app_id_uri}/read"]}})
    FlaskOBO(app)

    @app.get("/token")
    def token_view() -> Any:
        return {"expires_on": acquire_token_for_user(api="down").expires_on}

    home = entra.add_user("alice")
    guest = entra.add_user("bob", tenant=other_tid)
    client = app.test_client()
    for user in (home, guest, home, guest):
        token = entra.issue_user_token(user, resource=api)
        answer = client.get("/token", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.get_json()
    calls = entra.calls("on_behalf_of")
    assert [c["tenant"] for c in calls] == [entra.tenant_id, other_tid,
                                            entra.tenant_id, other_tid]
    # No public list of MSAL apps: one per tenant, never /organizations, is what this asserts.
    assert sorted(app.extensions["obo"].acquirer._clients) == sorted(
        [entra.tenant_id, other_tid])
