"""Concurrent callers of one key share one call, and each gets an exception of its own.

A follower of a failed flight receives a fresh exception of the leader's type with the same
public fields (an ``OboError``'s status, reason, extra and headers), never the leader's object:
its traceback holds the leader's frames, whose locals hold the leader's bearer token, and an
error reporter that records locals (Sentry's default) would ship it in another request's
report.
"""

from __future__ import annotations

import sys
import threading
import traceback
from typing import Any

import pytest
from support.timing import wait_for

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


def _waiting(thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked in an ``Event.wait`` (a follower waiting for the flight).
    Read from its stack (``sys._current_frames``): SingleFlight says nothing of its waiters."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code is threading.Event.wait.__code__:
            return True
        frame = frame.f_back
    return False


def _race(flights: SingleFlight[str], make_error: Any) -> tuple[list[BaseException], int]:
    """One caller leads a call of one key; WORKERS - 1 more join its flight while it runs, each
    with a secret of its own in its frame; then the call fails. Returns (each caller's
    exception, the calls made)."""
    go = threading.Event()
    calls: list[int] = []
    errors: dict[int, BaseException] = {}

    def call(secret: str) -> str:
        calls.append(1)
        go.wait(10)  # the flight stays open until every follower waits on it
        raise make_error(secret)

    def caller(index: int) -> None:
        secret = f"bearer-token-of-user-{index}"
        try:
            flights.run("key", lambda: call(secret), timeout=10)
        except BaseException as exc:  # what each caller got is the subject
            errors[index] = exc

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(WORKERS)]
    threads[0].start()
    assert wait_for(lambda: calls and flights.in_flight("key"))
    for thread in threads[1:]:
        thread.start()
    assert wait_for(lambda: all(_waiting(t) for t in threads[1:]))
    go.set()
    for thread in threads:
        thread.join(10)
    assert sorted(errors) == list(range(WORKERS)), "a caller's flight did not fail"
    return [errors[i] for i in range(WORKERS)], len(calls)


@pytest.mark.parametrize("make_error", [
    lambda secret: IdentityProviderUnavailable(reason="timeout", retry_after=7,
                                               extra={"aadsts": [50000]}),
    lambda secret: ClaimsChallenge(claims='{"access_token":{}}', reason="interaction_required",
                                   authorization_uri="https://login.example/authorize"),
    lambda secret: RuntimeError("the identity provider's library failed"),
], ids=["503", "claims-challenge", "unexpected"])
def test_each_follower_gets_an_exception_of_its_own(make_error: Any) -> None:
    errors, calls = _race(SingleFlight(), make_error)
    assert calls == 1  # every other caller followed the leader's call
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
