"""On-behalf-of end to end: real MSAL over real HTTPS to the emulator, a real downstream API.

One OBO call per user and scope set, then the cache; each user's own token downstream; a new
OBO after expiry; refresh ahead of expiry without making a request wait; one OBO call for
concurrent first requests; MSAL's own cache stays empty however many users come.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from flask_obo.signals import downstream_token_acquired

if TYPE_CHECKING:
    from obo_fixtures import Downstream, MakeMiddle

pytest_plugins = ["obo_fixtures"]


def test_first_request_does_obo_then_the_cache_serves(make_middle: MakeMiddle, entra: Any,
                                                       downstream: Downstream) -> None:
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


@pytest.fixture
def short_obo_lifetime(entra_emulator: Any) -> Iterator[int]:
    before = entra_emulator.obo_token_lifetime
    entra_emulator.obo_token_lifetime = 4
    yield 4
    entra_emulator.obo_token_lifetime = before


def test_after_expiry_a_new_obo_happens(make_middle: MakeMiddle, entra: Any,
                                        short_obo_lifetime: int) -> None:
    middle = make_middle(OBO_CACHE_EXPIRY_MARGIN=1, OBO_CACHE_REFRESH_AHEAD=0)
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    first = middle.get("/profile", token).get_json()["downstream"]["token"]
    assert middle.get("/profile", token).get_json()["downstream"]["token"] == first
    assert len(middle.obo_calls()) == 1

    time.sleep(short_obo_lifetime - 1 + 0.2)  # past expiry minus the margin
    renewed = middle.get("/profile", token).get_json()["downstream"]
    assert len(middle.obo_calls()) == 2
    assert renewed["token"] != first
    assert renewed["oid"] == alice.oid


def test_refresh_ahead_renews_in_the_background(make_middle: MakeMiddle, entra: Any,
                                                short_obo_lifetime: int) -> None:
    # Lifetime 4 s, margin 1 s: usable for 3 s, refreshed once 1.5 s of that remain.
    middle = make_middle(OBO_CACHE_EXPIRY_MARGIN=1, OBO_CACHE_REFRESH_AHEAD=60)
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    first = middle.get("/profile", token).get_json()["downstream"]["token"]
    time.sleep(1.7)
    entra.faults.inject("token", "delay", delay=0.8)  # the refresh is slow...
    started = time.perf_counter()
    during = middle.get("/profile", token).get_json()["downstream"]["token"]
    assert time.perf_counter() - started < 0.6  # ...but this request did not wait for it
    assert during == first  # the still-valid token kept serving
    middle.acquirer.cache.close()  # wait for the background refresh to be stored
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
        response = client.get("/profile", headers={"Authorization": f"Bearer {token}"})
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
        client = middle.app.test_client()
        response = client.get("/profile", headers={"Authorization": f"Bearer {tokens[oid]}"})
        assert response.status_code == 200, response.get_json()
        return oid, response.get_json()["downstream"]["oid"]

    with downstream_token_acquired.connected_to(record, sender=middle.app), \
            ThreadPoolExecutor(12) as pool:
        for caller, seen in pool.map(call, work):
            assert seen == caller
    assert len(middle.obo_calls()) == len(users)
    assert sources.count("identity_provider") == len(users)
    assert len(sources) == len(work)


def test_msal_cache_stays_empty_and_ours_is_ttl_bound(make_middle: MakeMiddle, entra: Any,
                                                      downstream: Downstream) -> None:
    """Distinct users through the OBO path: MSAL's in-memory cache holds nothing, ours holds
    one TTL-bound entry per user in Flask-Caching and a bounded in-process front.

    The acceptance size, 10,000 users, takes about a minute and a quarter (a real MSAL call and
    a real RSA signature per user); MEMORY_ACCEPTANCE_USERS=1500 makes a quick local run with
    the same assertions.
    """
    users_count = int(os.environ.get("MEMORY_ACCEPTANCE_USERS", "10000"))
    middle = make_middle(OBO_CACHE_LOCAL_SIZE=256, OBO_CACHE_EXPIRY_MARGIN=60)
    acquirer = middle.acquirer
    users = [entra.add_user(f"m{i}") for i in range(users_count)]
    tokens = [middle.token_for(u) for u in users]
    scopes = (downstream.read_scope,)

    def one(index: int) -> str:
        token = tokens[index]
        with middle.app.test_request_context(headers={"Authorization": f"Bearer {token}"}):
            return str(acquirer.on_behalf_of(token, hashlib.sha256(token.encode()).hexdigest(),
                                             scopes, user=users[index].oid).token)

    started = time.time()
    with ThreadPoolExecutor(8) as pool:
        issued = list(pool.map(one, range(users_count)))
    assert len(set(issued)) == users_count  # one distinct downstream token per user
    assert len(middle.obo_calls()) == users_count
    assert acquirer.msal_cache_size() == 0
    assert len(acquirer._clients) == 1  # one MSAL app for the tenant, reused

    backend = acquirer.cache.backend
    stored = {k: v for k, v in backend._cache.items() if k.startswith("flask_obo:")}
    assert len(stored) == users_count
    lifetime = 3600  # the emulator's default
    for expires, _ in stored.values():  # each entry dies with its token, minus the margin
        assert started + lifetime - 60 - 2 <= expires <= time.time() + lifetime - 60 + 1
    assert len(acquirer.cache.local.entries) <= 256
    # Served from the cache now, without the identity provider:
    assert one(0) == issued[0]
    assert len(middle.obo_calls()) == users_count


def test_multi_tenant_api_asks_each_callers_own_tenant(entra: Any) -> None:
    from flask import Flask

    from flask_obo import FlaskOBO, acquire_token_for_user

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
    assert sorted(app.extensions["obo"].acquirer._clients) == sorted(
        [entra.tenant_id, other_tid])  # one MSAL app per tenant, never /organizations
