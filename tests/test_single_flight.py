"""Concurrent callers of one key share one call, and each gets an exception of its own.

A follower of a failed flight receives a fresh exception of the leader's type with the same
public fields (an ``OboError``'s status, reason, extra and headers), never the leader's object:
its traceback holds the leader's frames, whose locals hold the leader's bearer token, and an
error reporter that records locals (Sentry's default) would ship it in another request's
report.
"""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flask_obo._single_flight import SingleFlight  # the unit under test: no public door
from flask_obo.errors import ClaimsChallenge, IdentityProviderUnavailable, OboError

WORKERS = 6


def _locals_in(exc: BaseException) -> list[Any]:
    """Every local of every frame an exception's traceback, cause and context reach."""
    found: list[Any] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        for frame, _ in traceback.walk_tb(current.__traceback__):
            found.extend(frame.f_locals.values())
        pending.extend([current.__cause__, current.__context__])
    return found


def _race(flights: SingleFlight[str], make_error: Any) -> tuple[list[BaseException], int]:
    """WORKERS callers of one key at once, each with a secret of its own in its frame; the
    call fails once the test lets it. Returns (each caller's exception, calls made)."""
    start = threading.Barrier(WORKERS)
    leading, go = threading.Event(), threading.Event()
    calls: list[int] = []

    def call(secret: str) -> str:
        calls.append(1)
        leading.set()
        go.wait(10)  # meanwhile the other callers, past the barrier too, join the flight
        raise make_error(secret)

    def caller(index: int) -> BaseException:
        secret = f"bearer-token-of-user-{index}"
        start.wait(10)
        try:
            flights.run("key", lambda: call(secret), timeout=10)
        except BaseException as exc:  # what each caller got is the subject
            return exc
        raise AssertionError("the flight did not fail")

    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(caller, i) for i in range(WORKERS)]
        assert leading.wait(10)
        go.set()
        return [f.result() for f in futures], len(calls)


@pytest.mark.parametrize("make_error", [
    lambda secret: IdentityProviderUnavailable(reason="timeout", retry_after=7,
                                               extra={"aadsts": [50000]}),
    lambda secret: ClaimsChallenge(claims='{"access_token":{}}', reason="interaction_required",
                                   authorization_uri="https://login.example/authorize"),
    lambda secret: RuntimeError("the identity provider's library failed"),
], ids=["503", "claims-challenge", "unexpected"])
def test_each_follower_gets_an_exception_of_its_own(make_error: Any) -> None:
    errors, calls = _race(SingleFlight(), make_error)
    assert calls < WORKERS  # some callers followed another's call
    assert len({id(e) for e in errors}) == WORKERS  # yet no two callers share an object
    leader = errors[0]
    for index, error in enumerate(errors):
        own = f"bearer-token-of-user-{index}"
        assert type(error) is type(leader) and error.args == leader.args
        if isinstance(leader, OboError):
            assert isinstance(error, OboError)
            assert (error.code, error.reason, error.description) == (
                leader.code, leader.reason, leader.description)
            assert error.extra == leader.extra
            assert error is leader or error.extra is not leader.extra
            assert error.get_headers() == leader.get_headers()
            assert error.get_body() == leader.get_body()
        secrets = {v for v in _locals_in(error) if isinstance(v, str) and v.startswith("bearer")}
        assert secrets <= {own}, f"caller {index}'s exception holds another caller's token"
