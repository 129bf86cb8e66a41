"""``OboTokenCache``: hashed keys, TTLs, encryption at rest and key rotation, entries that do not
decode or never expire (misses, never errors), a failing backend (bypassed, logged once), the
bounded in-process front, single flight and refresh ahead; and where the backend comes from.

Lifetimes pass on the cache's clock (``OboTokenCache(clock=...)``); a test that needs threads to
overlap holds them on events, never on a sleep.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask_caching import Cache
from flask_caching.backends.simplecache import SimpleCache
from support.timing import Clock

from flask_obo.cache import AccessToken, OboTokenCache, cache_key
from flask_obo.cache._codec import EntryCodec
from flask_obo.errors import ConfigError, FlightTimeout
from flask_obo.extension import FlaskOBO

TOKEN = "eyJ0eXAiOiJKV1QifQ." + "x" * 600 + ".signature-part-of-the-token"


def make_cache(backend: Any = None, **kwargs: Any) -> OboTokenCache:
    return OboTokenCache(SimpleCache(threshold=1000) if backend is None else backend, **kwargs)


def token(lifetime: float = 3600, value: str = TOKEN, clock: Clock | None = None) -> AccessToken:
    now = clock() if clock is not None else time.time()
    return AccessToken(value, now + lifetime, ("api://down/read",))


class RecordingBackend(SimpleCache):
    """A SimpleCache that remembers the timeout of every write: the TTL a shared backend gets."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: dict[str, int | None] = {}

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        self.timeouts[key] = timeout
        return bool(super().set(key, value, timeout))


class CountingBackend(SimpleCache):
    """A SimpleCache whose ``reads_reached`` is set once it has been read ``expected`` times:
    the moment every concurrent caller has missed."""

    def __init__(self, expected: int) -> None:
        super().__init__(threshold=1000)
        self.expected = expected
        self.reads = 0
        self.reads_reached = threading.Event()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            self.reads += 1
            if self.reads >= self.expected:
                self.reads_reached.set()
        return super().get(key)


def key_of(user: str = "alice", **parts: Any) -> str:
    args = {"kind": "obo", "client_id": "client", "tenant": "tid",
            "subject": f"hash-of-{user}", "scopes": ("api://down/read",)}
    args.update(parts)
    return cache_key("flask_obo:", **args)


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def test_keys_are_hashes_that_separate_every_part() -> None:
    base = key_of()
    assert base.startswith("flask_obo:") and len(base) == len("flask_obo:") + 64
    assert "hash-of-alice" not in base
    variants = [key_of("bob"), key_of(tenant="other"), key_of(client_id="other"),
                key_of(scopes=("api://down/write",)),
                key_of(kind="app")]
    assert len({base, *variants}) == len(variants) + 1
    assert key_of(tenant="TID") == key_of(tenant="tid")  # tenant ids are case-insensitive


def test_access_token_repr_hides_the_token() -> None:
    value = token()
    assert TOKEN not in repr(value) and TOKEN not in str(value)
    assert value.authorization == "Bearer " + TOKEN


def test_entry_ttl_is_expiry_minus_margin(clock: Clock) -> None:
    backend = RecordingBackend()
    cache = make_cache(backend, expiry_margin=60, refresh_ahead=300, clock=clock)
    stored = cache.set(key_of(), token(3600, clock=clock))
    assert backend.timeouts[key_of()] == 3600 - 60
    # refresh-ahead begins refresh_ahead seconds before the entry's own end
    assert abs(stored.refresh_on - (stored.expires_on - 60 - 300)) < 0.01


def test_token_shorter_than_the_margin_is_not_cached(caplog: pytest.LogCaptureFixture) -> None:
    backend = RecordingBackend()
    cache = make_cache(backend, expiry_margin=60)
    with caplog.at_level(logging.WARNING, logger="flask_obo.cache"):
        cache.set(key_of(), token(30))
    assert backend.timeouts == {} and not backend.has(key_of())
    assert cache.get(key_of()) is None
    assert "OBO_CACHE_EXPIRY_MARGIN" in caplog.text


def test_never_serves_past_expiry_minus_margin(clock: Clock) -> None:
    backend = SimpleCache()
    cache = make_cache(backend, expiry_margin=60, refresh_ahead=0, clock=clock)
    cache.set(key_of(), token(3600, clock=clock))
    clock.advance(3600 - 60 - 1)
    assert cache.get(key_of()) is not None
    clock.advance(2)
    assert cache.get(key_of()) is None  # neither the front nor the backend serves it
    assert make_cache(backend, expiry_margin=60, clock=clock).get(key_of()) is None


def test_encrypted_round_trip_keeps_no_token_in_the_backend() -> None:
    backend = SimpleCache()
    keys = [base64.urlsafe_b64decode(new_key())]
    make_cache(backend, encryption_keys=keys).set(key_of(), token())
    stored = backend.get(key_of())
    assert b"signature-part" not in stored and b"eyJ0eXAi" not in stored
    fresh = make_cache(backend, encryption_keys=keys)  # another process: empty front
    found = fresh.get(key_of())
    assert found is not None and found.token == TOKEN


def test_key_rotation() -> None:
    backend = SimpleCache()
    old, new, unknown = (base64.urlsafe_b64decode(new_key()) for _ in range(3))
    make_cache(backend, encryption_keys=[old]).set(key_of("alice"), token(value="A" * 40))
    rotated = make_cache(backend, encryption_keys=[new, old])
    assert rotated.get(key_of("alice")).token == "A" * 40  # type: ignore[union-attr]
    rotated.set(key_of("bob"), token(value="B" * 40))  # written under the new key
    assert make_cache(backend, encryption_keys=[new]).get(key_of("bob")).token == "B" * 40  # type: ignore[union-attr]
    assert make_cache(backend, encryption_keys=[old]).get(key_of("bob")) is None
    assert make_cache(backend, encryption_keys=[unknown]).get(key_of("alice")) is None


@pytest.mark.parametrize("encrypted", [True, False])
def test_undecodable_entries_are_misses(encrypted: bool) -> None:
    backend = SimpleCache()
    keys = [base64.urlsafe_b64decode(new_key())] if encrypted else []
    writer = make_cache(backend, encryption_keys=keys)
    writer.set(key_of("alice"), token())
    good = backend.get(key_of("alice"))
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    planted: list[Any] = [tampered, good[: len(good) // 2], b"", b"\x07junk", "a string",
                          {"t": TOKEN}, 42, b'\x00{"v":1,"t":"x"}']
    for value in planted:
        backend.set(key_of("mallory"), value)
        assert make_cache(backend, encryption_keys=keys).get(key_of("mallory")) is None
    # alice's entry moved under bob's key is not bob's token
    backend.set(key_of("bob"), good)
    assert make_cache(backend, encryption_keys=keys).get(key_of("bob")) is None


def test_plaintext_entries_are_refused_once_encryption_is_on() -> None:
    backend = SimpleCache()
    make_cache(backend).set(key_of(), token())
    assert make_cache(backend).get(key_of()) is not None
    on = make_cache(backend, encryption_keys=[base64.urlsafe_b64decode(new_key())])
    assert on.get(key_of()) is None


@pytest.mark.parametrize("expiry", ["NaN", '"nan"', "Infinity", '"inf"'])
def test_an_entry_whose_expiry_is_not_a_finite_time_is_a_miss(expiry: str) -> None:
    key = "flask_obo:" + "ab" * 32
    backend = SimpleCache()
    body = '{"v":1,"k":"' + key[-16:] + '","t":"eyJ.x.y","e":' + expiry + ',"r":0,"s":["read"]}'
    backend.set(key, b"\x00" + body.encode(), 300)
    assert EntryCodec().decode(key, backend.get(key)) is None
    assert OboTokenCache(backend).get(key) is None


def test_a_well_formed_plain_entry_is_still_served(clock: Clock) -> None:
    key = "flask_obo:" + "cd" * 32
    backend = SimpleCache()
    expires = clock() + 3600
    body = json.dumps({"v": 1, "k": key[-16:], "t": "eyJ.x.y", "e": expires, "r": 0,
                       "s": ["read"]})
    backend.set(key, b"\x00" + body.encode(), 300)
    found = OboTokenCache(backend, clock=clock).get(key)
    assert found is not None and found.token == "eyJ.x.y" and found.expires_on == expires


class BrokenBackend:
    """A backend that is down: every call raises, as a Redis client does."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self, *args: Any) -> Any:
        self.calls += 1
        raise ConnectionError("backend down")

    get = set = delete = _fail


def test_failing_backend_is_bypassed_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    backend = BrokenBackend()
    cache = make_cache(backend)
    fetched: list[int] = []

    def fetch() -> AccessToken:
        fetched.append(1)
        return token()

    with caplog.at_level(logging.ERROR, logger="flask_obo.cache"):
        _, was_fetched = cache.get_or_fetch(key_of(), fetch)
        for _ in range(50):
            again, was_fetched_again = cache.get_or_fetch(key_of(), fetch)
            assert again.token == TOKEN and not was_fetched_again
    assert was_fetched and fetched == [1]  # the in-process front kept serving
    errors = [r for r in caplog.records if r.name == "flask_obo.cache"]
    assert len(errors) == 1
    assert "ConnectionError" in errors[0].getMessage() and TOKEN not in caplog.text
    assert backend.calls <= 2  # then bypassed for a while, not hammered


def test_front_is_bounded() -> None:
    cache = make_cache(local_size=3)
    for user in range(10):
        cache.set(key_of(str(user)), token())
    assert len(cache.local.entries) == 3
    assert cache.get(key_of("0")) is not None  # evicted from the front, found in the backend
    assert len(cache.local.entries) == 3


def test_single_flight_one_fetch_for_concurrent_misses() -> None:
    backend = CountingBackend(expected=16 + 1)  # each caller's miss, and the leader's re-check
    cache = make_cache(backend)
    calls: list[int] = []
    start = threading.Barrier(16)

    def fetch() -> AccessToken:
        calls.append(1)
        assert backend.reads_reached.wait(10), "not every caller missed"  # all are waiting now
        return token()

    def worker(_: int) -> tuple[str, bool]:
        start.wait()
        found, fetched = cache.get_or_fetch(key_of(), fetch)
        return found.token, fetched

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(worker, range(16)))
    assert len(calls) == 1
    assert [r[0] for r in results] == [TOKEN] * 16
    assert sum(r[1] for r in results) == 1


def test_single_flight_shares_the_error_and_caches_nothing() -> None:
    backend = CountingBackend(expected=8 + 1)
    cache = make_cache(backend)
    start = threading.Barrier(8)
    calls: list[int] = []

    class Down(Exception):
        pass

    def fetch() -> AccessToken:
        calls.append(1)
        assert backend.reads_reached.wait(10), "not every caller missed"
        raise Down()

    def worker(_: int) -> str:
        start.wait()
        try:
            cache.get_or_fetch(key_of(), fetch)
        except Down:
            return "down"
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(worker, range(8))) == ["down"] * 8
    assert len(calls) == 1
    assert cache.get(key_of()) is None
    assert cache.get_or_fetch(key_of(), token)[0].token == TOKEN  # the next call tries again


def test_a_follower_waits_a_bounded_time() -> None:
    cache = make_cache(wait_timeout=0.2)
    entered, release = threading.Event(), threading.Event()

    def slow() -> AccessToken:
        entered.set()
        release.wait(5)
        return token()

    leader = threading.Thread(target=cache.get_or_fetch, args=(key_of(), slow))
    leader.start()
    assert entered.wait(5)  # the leader's fetch is running
    with pytest.raises(FlightTimeout):
        cache.get_or_fetch(key_of(), slow)
    release.set()
    leader.join()


def test_forced_fetch_replaces_the_entry() -> None:
    cache = make_cache()
    cache.set(key_of(), token(value="old" * 10))
    fresh, fetched = cache.get_or_fetch(key_of() + ":claims-flight",
                                        lambda: token(value="new" * 10), store_key=key_of(),
                                        force=True)
    assert fetched and fresh.token == "new" * 10
    assert cache.get(key_of()).token == "new" * 10  # type: ignore[union-attr]


def test_refresh_in_background_keeps_serving_then_swaps(clock: Clock) -> None:
    cache = make_cache(expiry_margin=0, refresh_ahead=3000, clock=clock)
    cache.set(key_of(), token(3, value="old" * 10, clock=clock))  # refresh due after half its life
    clock.advance(1.6)
    current = cache.get(key_of())
    assert current is not None and current.refresh_on <= clock()
    gate = threading.Event()

    def fetch() -> AccessToken:
        gate.wait(5)
        return token(value="new" * 10)

    assert cache.refresh_in_background(key_of(), fetch)
    assert not cache.refresh_in_background(key_of(), fetch)  # one refresh at a time
    assert cache.get(key_of()).token == "old" * 10  # type: ignore[union-attr]
    gate.set()
    cache.close()
    assert cache.get(key_of()).token == "new" * 10  # type: ignore[union-attr]


def test_failed_background_refresh_keeps_the_current_token(clock: Clock) -> None:
    cache = make_cache(expiry_margin=0, refresh_ahead=3000, clock=clock)
    cache.set(key_of(), token(2, value="old" * 10, clock=clock))
    clock.advance(1.1)

    def fail() -> AccessToken:
        raise RuntimeError("identity provider down")

    assert cache.refresh_in_background(key_of(), fail)
    cache.close()
    assert cache.get(key_of()).token == "old" * 10  # type: ignore[union-attr]


# where the backend comes from ---------------------------------------------------------------
def _app(entra: Any, **config: Any) -> Flask:
    app = Flask(f"cache-{uuid.uuid4().hex[:6]}")
    app.config.update(OBO_AUTHORITY=entra.authority(), OBO_CLIENT_ID=str(uuid.uuid4()),
                      OBO_CA_BUNDLE=entra.ca_bundle, OBO_CLIENT_SECRET="s3cret", **config)
    return app


def test_the_apps_flask_caching_cache_is_used(entra: Any) -> None:
    app = _app(entra, CACHE_TYPE="SimpleCache")
    cache = Cache(app)
    FlaskOBO(app, cache=cache)
    with app.app_context():
        assert app.extensions["obo"].acquirer.cache.backend is cache.cache


def test_an_uninitialised_cache_is_refused(entra: Any) -> None:
    with pytest.raises(ConfigError, match="init_app"):
        FlaskOBO(_app(entra), cache=Cache())


def test_obo_cache_settings_build_a_backend(entra: Any) -> None:
    app = _app(entra, OBO_CACHE={"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 77})
    FlaskOBO(app)
    backend = app.extensions["obo"].acquirer.cache.backend
    assert isinstance(backend, SimpleCache)
    for i in range(200):
        backend.set(f"k{i}", i)
    assert sum(backend.has(f"k{i}") for i in range(200)) <= 77 + 1  # its threshold applies


@pytest.mark.parametrize(("settings", "message"), [
    ({"CACHE_THRESHOLD": 5}, "CACHE_TYPE"),
    ({"CACHE_TYPE": "NullCache"}, "NullCache"),
    ({"CACHE_TYPE": "no.such.Backend"}, "could not build"),
])
def test_bad_obo_cache_settings_fail_at_init_app(entra: Any, settings: dict[str, Any],
                                                 message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FlaskOBO(_app(entra, OBO_CACHE=settings))


def test_default_is_in_process(entra: Any) -> None:
    app = _app(entra)
    FlaskOBO(app)
    cache = app.extensions["obo"].acquirer.cache
    assert isinstance(cache.backend, SimpleCache) and not cache.shared


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_does_not_inherit_flights() -> None:
    """gunicorn --preload forks workers: a flight in progress in the parent has no leader in
    the child, which must lead its own call rather than wait for ever."""
    from flask_obo._single_flight import SingleFlight

    flights: SingleFlight[str] = SingleFlight()
    release = threading.Event()
    entered = threading.Event()

    def parent_call() -> str:
        entered.set()
        release.wait(5)
        return "p"

    leader = threading.Thread(target=flights.run, args=("k", parent_call), kwargs={"timeout": 5})
    leader.start()
    assert entered.wait(5)
    assert flights.in_flight("k")
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            result, led = flights.run("k", lambda: "child", timeout=0.5)
            code = 0 if (result, led) == ("child", True) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    release.set()
    leader.join()
    assert os.waitstatus_to_exitcode(status) == 0
