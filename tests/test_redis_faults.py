"""Redis failing under the token cache, injected on a real redis-server: down at start, killed
mid-run, hung (SIGSTOP). The documented behaviour, each time:

- every request is answered 200 with the caller's own token (short Redis timeouts, then the
  backend is bypassed for a few seconds): on-behalf-of goes straight to the identity provider
  and the in-process cache keeps serving what it holds (so a user already served needs no new
  call);
- the outage is logged once (an ERROR, not one per request), and no log line holds a token;
- when Redis is back, entries are shared again once the bypass is over (5 s on FlaskOBO's
  clock, which the tests move): another instance reads them without calling the identity
  provider.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from support.apps import MakeMiddle, Middle
from support.redis import leaks, raw_values
from support.timing import Clock, wait_for

from flask_obo.testing.redis_server import RedisServer

pytestmark = pytest.mark.redis

BYPASS_SECONDS = 5  # documented: the backend is bypassed for 5 s after a failure

@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="flask_obo")
    yield caplog


def served(middle: Middle, token: str, oid: str) -> None:
    """Asserts the caller gets their own downstream answer."""
    answer = middle.profile(token)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["downstream"]["oid"] == oid


def outage_errors(logs: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in logs.records
            if r.name.startswith("flask_obo") and r.levelno >= logging.ERROR]


def assert_no_token_logged(logs: pytest.LogCaptureFixture, downstream_tokens: list[str],
                           assertions: list[str]) -> None:
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in logs.records)
    assert leaks(text.encode(), [*downstream_tokens, *assertions]) == []


def assert_sharing_resumes(make: MakeMiddle, middle: Middle, server: RedisServer,
                           entra: Any, clock: Clock) -> None:
    """While the bypass lasts, Redis is left alone though it is back; after it, new entries
    reach Redis again, and another instance reads them."""
    attempts = itertools.count()
    last: dict[str, Any] = {}

    def stored_again() -> bool:
        user = entra.add_user(f"after{next(attempts)}")
        token = middle.token_for(user)
        before = set(raw_values(server.url))
        served(middle, token, user.oid)
        last.update(user=user, token=token)
        return bool(set(raw_values(server.url)) - before)

    assert not stored_again(), "Redis was used again before the bypass was over"
    clock.advance(BYPASS_SECONDS - 1)
    assert not stored_again(), "Redis was used again before the bypass was over"

    def past_the_bypass() -> bool:
        clock.advance(BYPASS_SECONDS)  # past the window the last failure (if any) opened
        return stored_again()

    assert wait_for(past_the_bypass, timeout=10, interval=0.05), "entries never reached Redis"
    calls = len(middle.obo_calls())
    served(make(server.url, clock=clock), last["token"], last["user"].oid)
    assert len(middle.obo_calls()) == calls


def test_redis_down_at_start(make_redis_middle: MakeMiddle, redis_server: RedisServer,
                             entra: Any, downstream_tokens: list[str],
                             logs: pytest.LogCaptureFixture, clock: Clock) -> None:
    redis_server.stop()
    middle = make_redis_middle(redis_server.url, clock=clock)  # init_app does not need Redis
    users = [entra.add_user(f"user{i}") for i in range(3)]
    tokens = [middle.token_for(user) for user in users]
    for _ in range(2):
        for user, token in zip(users, tokens):
            served(middle, token, user.oid)
    assert len(middle.obo_calls()) == 3  # the second round came from the in-process cache
    errors = outage_errors(logs)
    assert len(errors) == 1 and "RedisCache" in errors[0], errors

    redis_server.start()
    assert_sharing_resumes(make_redis_middle, middle, redis_server, entra, clock)
    assert_no_token_logged(logs, downstream_tokens, tokens)


def test_redis_killed_mid_run(make_redis_middle: MakeMiddle, redis_server: RedisServer,
                              entra: Any, downstream_tokens: list[str],
                              logs: pytest.LogCaptureFixture, clock: Clock) -> None:
    middle = make_redis_middle(redis_server.url, clock=clock)
    alice, bob = entra.add_user("alice"), entra.add_user("bob")
    tokens = [middle.token_for(alice), middle.token_for(bob)]
    served(middle, tokens[0], alice.oid)
    assert raw_values(redis_server.url) and not outage_errors(logs)

    redis_server.stop()  # killed: with no persistence its entries are gone with it
    served(middle, tokens[0], alice.oid)
    assert len(middle.obo_calls()) == 1  # alice's token is still served in-process
    for _ in range(3):
        served(middle, tokens[1], bob.oid)
    assert len(middle.obo_calls()) == 2  # bob: one direct call, then the in-process fallback
    assert len(outage_errors(logs)) == 1

    redis_server.start()
    assert_sharing_resumes(make_redis_middle, middle, redis_server, entra, clock)
    assert_no_token_logged(logs, downstream_tokens, tokens)


def test_redis_hung(make_redis_middle: MakeMiddle, redis_server: RedisServer, entra: Any,
                    clock: Clock, downstream_tokens: list[str],
                    logs: pytest.LogCaptureFixture) -> None:
    middle = make_redis_middle(redis_server.url, clock=clock)
    other_instance = make_redis_middle(redis_server.url, clock=clock)
    alice = entra.add_user("alice")
    users = [entra.add_user(f"user{i}") for i in range(3)]
    tokens = {user.oid: middle.token_for(user) for user in [alice, *users]}
    served(middle, tokens[alice.oid], alice.oid)

    redis_server.pause()  # connections open, nothing answers
    try:
        for user in users:
            served(middle, tokens[user.oid], user.oid)
        served(middle, tokens[alice.oid], alice.oid)
        assert len(middle.obo_calls()) == 4  # one each; alice's still served in-process
        # An instance that never saw alice: Redis times out, it calls the identity provider.
        served(other_instance, tokens[alice.oid], alice.oid)
        assert len(middle.obo_calls()) == 5
        errors = outage_errors(logs)
        assert len(errors) == 2 and all("TimeoutError" in e for e in errors), errors  # one each
    finally:
        redis_server.resume()
    assert_sharing_resumes(make_redis_middle, middle, redis_server, entra, clock)
    assert_no_token_logged(logs, downstream_tokens, list(tokens.values()))
