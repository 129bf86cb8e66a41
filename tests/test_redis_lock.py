"""The cross-process lock on a real Redis: released only by its holder, waiters bounded, a dead
holder's lock expires and a waiter calls the identity provider itself; instances that share a
Redis (each with its own in-process single flight, as processes have) make one identity-provider
call per user between them, for first requests and for refreshes ahead of expiry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask_caching.backends.rediscache import RedisCache
from support.apps import MakeMiddle
from support.redis import raw_values, redis_client
from support.timing import wait_for

from flask_obo.cache import AccessToken, OboTokenCache
from flask_obo.cache._redis_lock import RedisLocks
from flask_obo.cache._redis_store import RedisEntryStore
from flask_obo.testing.redis_server import RedisServer

pytestmark = pytest.mark.redis


def store_on(server: RedisServer) -> RedisEntryStore:
    return RedisEntryStore(RedisCache(host=redis_client(server.url)))


def test_only_the_holder_releases(redis_server: RedisServer) -> None:
    locks = RedisLocks(store_on(redis_server), ttl=0.3, wait=0)
    name = locks.name("flask_obo:k")
    assert locks.acquire(name, "first")
    assert not locks.acquire(name, "second")  # held
    redis = redis_client(redis_server.url)
    assert wait_for(lambda: redis.get(name) is None)  # it expired (its holder is slow, or dead)
    assert locks.acquire(name, "second")
    assert not locks.release(name, "first")  # too late: not its lock any more
    assert redis_client(redis_server.url).get(name) == b"second"
    assert locks.release(name, "second")
    assert redis_client(redis_server.url).get(name) is None


def test_a_waiter_takes_the_lock_when_the_holder_releases(redis_server: RedisServer) -> None:
    locks = RedisLocks(store_on(redis_server), ttl=5, wait=5)
    held, release, waiter_got = threading.Event(), threading.Event(), threading.Event()

    def holder() -> None:
        with locks("flask_obo:k") as got:
            assert got
            held.set()
            release.wait(10)

    def waiter() -> None:
        with locks("flask_obo:k") as got:
            if got:
                waiter_got.set()

    holding = threading.Thread(target=holder)
    holding.start()
    assert held.wait(5)
    waiting = threading.Thread(target=waiter)
    waiting.start()
    assert not waiter_got.wait(0.3)  # nobody else gets the lock while it is held...
    release.set()
    assert waiter_got.wait(5)  # ...and the waiter gets it once released
    for thread in (holding, waiting):
        thread.join()


def test_a_waiter_gives_up_after_its_wait(redis_server: RedisServer,
                                          caplog: pytest.LogCaptureFixture) -> None:
    locks = RedisLocks(store_on(redis_server), ttl=5, wait=0.3)
    assert locks.acquire(locks.name("flask_obo:k"), "a live but slow holder")
    started = time.monotonic()
    with locks("flask_obo:k") as got:
        waited = time.monotonic() - started
    assert not got and waited >= 0.25  # it waited its wait, then went on without the lock
    assert "still held" in caplog.text


def test_a_dead_holders_lock_expires_and_a_waiter_calls_the_idp(
        make_redis_middle: MakeMiddle, redis_server: RedisServer, entra: Any) -> None:
    first = make_redis_middle(redis_server.url, OBO_CACHE_LOCK_TIMEOUT=1)
    alice = entra.add_user("alice")
    token = first.token_for(alice)
    assert first.profile(token).status_code == 200
    (entry,) = raw_values(redis_server.url)
    # A process took the lock for this entry's refill and died: its lock stays until it expires.
    client = redis_client(redis_server.url)
    client.delete(entry)
    client.set(entry + b":lock", b"a dead process", px=1000)

    second = make_redis_middle(redis_server.url, OBO_CACHE_LOCK_TIMEOUT=1)
    started = time.monotonic()
    answer = second.profile(token)
    waited = time.monotonic() - started
    assert answer.status_code == 200 and answer.get_json()["downstream"]["oid"] == alice.oid
    assert waited >= 0.7  # until the dead holder's lock expired
    assert len(second.obo_calls()) == 2  # the waiter called the identity provider itself
    assert set(raw_values(redis_server.url)) == {entry}  # refilled; its own lock released


def _concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_instances_sharing_redis_make_one_call_per_user(
        make_redis_middle: MakeMiddle, redis_server: RedisServer, entra: Any) -> None:
    instances = [make_redis_middle(redis_server.url) for _ in range(3)]
    users = [entra.add_user(f"user{i}") for i in range(4)]
    tokens = {user.oid: instances[0].token_for(user) for user in users}
    # A slow identity provider: every instance's first request is waiting while the call runs.
    entra.faults.inject("token", "delay", delay=0.4, count=len(users) + 1)

    def profile(instance: Any, oid: str) -> Callable[[], Any]:
        def call() -> Any:
            answer = instance.app.test_client().get(
                "/profile", headers={"Authorization": f"Bearer {tokens[oid]}"})
            return oid, answer.status_code, answer.get_json()
        return call

    def as_app(instance: Any) -> Callable[[], Any]:
        def call() -> Any:
            answer = instance.app.test_client().get(
                "/as-app", headers={"Authorization": f"Bearer {tokens[users[0].oid]}"})
            return "app", answer.status_code, answer.get_json()
        return call

    calls = [profile(instance, user.oid) for user in users for instance in instances
             for _ in range(3)] + [as_app(instance) for instance in instances for _ in range(2)]
    results = _concurrently(calls)
    for who, status, body in results:
        assert status == 200, body
        if who != "app":
            assert body["downstream"]["oid"] == who  # each user's own token
    obo = entra.calls("on_behalf_of")
    assert len(obo) == len(users)
    assert len({call["user"] for call in obo}) == len(users)
    assert len(entra.calls("client_credentials")) == 1


def test_one_refresh_ahead_of_expiry_between_processes(redis_server: RedisServer) -> None:
    store = store_on(redis_server)
    processes = [OboTokenCache(store, lock_factory=RedisLocks(store, ttl=5), refresh_ahead=300,
                               expiry_margin=0) for _ in range(3)]
    key = "flask_obo:refresh-test"
    now = time.time()
    # An entry whose refresh is due (as another process wrote it).
    store.set(key, processes[0].codec.encode(key, ("old-token", now + 100, now - 1, ("s",))), 100)
    fetches: list[str] = []
    all_started = threading.Event()

    def fetch() -> AccessToken:
        fetches.append("call")
        all_started.wait(5)  # hold the lock until every process has started its refresh
        return AccessToken("new-token", time.time() + 3600, ("s",))

    for cache in processes:
        assert cache.get(key).refresh_on <= time.time()  # each serves the old token...
    started = [cache.refresh_in_background(key, fetch) for cache in processes]
    all_started.set()
    for cache in processes:
        cache.close()  # waits for the background refreshes
    assert all(started) and len(fetches) == 1  # ...and they refreshed it once between them
    assert all(cache.get(key).token == "new-token" for cache in processes)
