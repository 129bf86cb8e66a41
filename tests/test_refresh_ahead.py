"""Refresh-ahead never makes a request wait on work that has not begun, and its queue is bounded.

A refresh is queued for a few worker threads; it claims its key's flight only when a worker
starts it. A request whose token is no longer usable therefore waits only on a refresh that is
running; one merely queued (behind a backlog after a mass cold start or an identity-provider
latency spike) does not hold it. When the queue is full a refresh is dropped: the token it
would renew is still usable, and the next request for it asks again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from flask_caching.backends.simplecache import SimpleCache

from flask_obo._single_flight import SingleFlight  # sized small here to saturate it
from flask_obo.cache import AccessToken, OboTokenCache, cache_key


def _key(user: str) -> str:
    return cache_key("flask_obo:", "obo", "client", "tid", f"hash-of-{user}", ("api://d/read",))


def _token(value: str) -> AccessToken:
    return AccessToken(value * 8, time.time() + 3600, ("api://d/read",))


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    released = threading.Event()
    yield released
    released.set()  # never leave a worker blocked, whatever the test's outcome


def _busy(cache: OboTokenCache, gate: threading.Event, user: str = "busy") -> None:
    """Occupy the cache's one refresh worker until ``gate`` opens."""
    started = threading.Event()

    def blocking() -> AccessToken:
        started.set()
        gate.wait(30)
        return _token(user)

    assert cache.refresh_in_background(_key(user), blocking)
    assert started.wait(10)


def _recording(calls: list[str], user: str) -> Callable[[], AccessToken]:
    def fetch() -> AccessToken:
        calls.append(user)
        return _token(user)

    return fetch


def test_a_request_does_not_wait_on_a_queued_refresh(gate: threading.Event) -> None:
    # With a refresh queued (not begun) for alice, her request would otherwise wait for it
    # (the worker is held until the gate opens): wait_timeout, 3 s, then FlightTimeout, a 503
    # while the identity provider answers. It fetches at once instead.
    cache = OboTokenCache(SimpleCache(), wait_timeout=3)
    cache.flights = SingleFlight(background_workers=1)
    _busy(cache, gate)
    background: list[str] = []
    assert cache.refresh_in_background(_key("alice"), _recording(background, "alice"))
    token, fetched = cache.get_or_fetch(_key("alice"), lambda: _token("direct"))
    assert fetched and token.token == "direct" * 8
    gate.set()
    cache.close()
    assert background == []  # the refresh, begun later, found the fresh token: no second call
    assert cache.get(_key("alice")).token == "direct" * 8  # type: ignore[union-attr]


def test_a_request_waits_on_a_refresh_that_is_running(gate: threading.Event) -> None:
    cache = OboTokenCache(SimpleCache(), wait_timeout=30)
    cache.flights = SingleFlight(background_workers=1)
    _busy(cache, gate, user="alice")  # alice's own refresh, running
    direct: list[str] = []
    result: list[AccessToken] = []
    waiter = threading.Thread(target=lambda: result.append(
        cache.get_or_fetch(_key("alice"), _recording(direct, "direct"))[0]))
    waiter.start()
    gate.set()
    waiter.join(30)
    assert direct == [] and result[0].token == "alice" * 8  # one identity-provider call


def test_refreshes_beyond_the_bounded_queue_are_dropped_then_asked_again(
        gate: threading.Event) -> None:
    cache = OboTokenCache(SimpleCache())
    cache.flights = SingleFlight(background_workers=1, max_queued=2)
    _busy(cache, gate)
    calls: list[str] = []
    assert cache.refresh_in_background(_key("bob"), _recording(calls, "bob"))
    assert cache.refresh_in_background(_key("carol"), _recording(calls, "carol"))
    assert not cache.refresh_in_background(_key("bob"), _recording(calls, "bob"))  # queued
    assert not cache.refresh_in_background(_key("dave"), _recording(calls, "dave"))  # full
    gate.set()
    cache.close()
    assert sorted(calls) == ["bob", "carol"]
    assert cache.refresh_in_background(_key("dave"), _recording(calls, "dave"))  # room again
    cache.close()
    assert sorted(calls) == ["bob", "carol", "dave"]


def test_the_cache_counts_what_waited_on_the_identity_provider() -> None:
    cache = OboTokenCache(SimpleCache())
    cache.get_or_fetch(_key("alice"), lambda: _token("alice"))  # a miss: it waited
    for _ in range(3):
        cache.get_or_fetch(_key("alice"), lambda: _token("again"))  # hits
    assert cache.refresh_in_background(_key("bob"), lambda: _token("bob"))
    cache.close()
    assert (cache.stats.waited, cache.stats.refreshes) == (1, 1)
