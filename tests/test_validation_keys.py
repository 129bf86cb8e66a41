"""Signing keys: rotation without a restart, the rate-limited refetch on unknown kids, an
authority outage before and after start, scheduled refresh (in a forked worker too), an
authority that never stops answering, and the validated-token cache.

These tests rotate keys and break the authority, so they use an emulator of their own."""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from support.apps import build_api
from support.checks import assert_invalid, bearer
from support.timing import Clock, wait_for

from flask_obo.extension import FlaskOBO
from flask_obo.signals import token_validated
from flask_obo.state import get_state
from flask_obo.testing import App, EntraEmulator, LoopbackServer, User
from flask_obo.testing.tls import ServerTLS
from flask_obo.validation import TokenValidator


@pytest.fixture
def emu(private_emulator: EntraEmulator) -> Iterator[EntraEmulator]:
    yield private_emulator
    private_emulator.faults.clear()


@pytest.fixture
def api(emu: EntraEmulator) -> App:
    return emu.register_app(f"api-{uuid.uuid4().hex[:6]}", scopes=["access_as_user"])


@pytest.fixture
def alice(emu: EntraEmulator) -> User:
    return emu.add_user(f"alice-{uuid.uuid4().hex[:6]}")


def status(app: Flask, token: str) -> int:
    return app.test_client().get("/me", headers=bearer(token)).status_code


def test_key_rotation_without_restart(emu: EntraEmulator, api: App, alice: User) -> None:
    app = build_api(emu, api)
    before = emu.issue_user_token(alice, resource=api)
    assert status(app, before) == 200
    fetches = emu.call_count("jwks")
    emu.rotate_keys()
    after = emu.issue_user_token(alice, resource=api)
    assert status(app, after) == 200  # the unknown kid triggered one refetch
    assert emu.call_count("jwks") == fetches + 1
    assert status(app, before) == 200  # the old key is still published
    assert status(app, after) == 200
    assert emu.call_count("jwks") == fetches + 1


def test_flood_of_unknown_kids_is_one_refetch(emu: EntraEmulator, api: App,
                                              alice: User) -> None:
    app = build_api(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=300)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    fetches = emu.call_count("jwks")
    for _ in range(40):
        forged = emu.sign({"aud": api.client_id}, {"kid": uuid.uuid4().hex})
        response = app.test_client().get("/me", headers=bearer(forged))
        assert_invalid(response, api, "unknown_key")
    assert emu.call_count("jwks") <= fetches + 1


def test_concurrent_unknown_kid_is_fetched_once(emu: EntraEmulator, api: App,
                                                alice: User) -> None:
    app = build_api(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=0)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    emu.rotate_keys()
    tokens = [emu.issue_user_token(alice, resource=api) for _ in range(8)]
    fetches = emu.call_count("jwks")
    emu.faults.inject("jwks", "delay", delay=0.3)
    results: list[int] = []
    threads = [threading.Thread(target=lambda t=t: results.append(status(app, t)))
               for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    assert emu.call_count("jwks") == fetches + 1


def test_retired_key_invalidates_cached_tokens(emu: EntraEmulator, api: App,
                                               alice: User) -> None:
    app = build_api(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=0)
    old = emu.issue_user_token(alice, resource=api)
    assert status(app, old) == 200
    assert status(app, old) == 200  # now in the validated-token cache
    emu.rotate_keys()
    emu.retire_old_keys()
    new = emu.issue_user_token(alice, resource=api)
    assert status(app, new) == 200  # refetch: the key set changed, the cache is dropped
    response = app.test_client().get("/me", headers=bearer(old))
    assert_invalid(response, api, "unknown_key")


def test_outage_after_start_keeps_validating(emu: EntraEmulator, api: App,
                                             alice: User) -> None:
    app = build_api(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=0)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    emu.faults.inject("*", "status", count=1000, status=503)
    # New tokens signed with a key already held: validated without the authority.
    for _ in range(3):
        assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    # A key that appeared during the outage cannot be fetched: a clean 401, never a 500.
    emu.rotate_keys()
    rotated = emu.issue_user_token(alice, resource=api)
    assert_invalid(app.test_client().get("/me", headers=bearer(rotated)), api, "unknown_key")
    emu.faults.clear()
    assert status(app, rotated) == 200  # back: the next unknown kid refetches


def test_failed_scheduled_refresh_keeps_the_keys(emu: EntraEmulator, api: App, alice: User,
                                                 clock: Clock) -> None:
    app = build_api(emu, api, obo=FlaskOBO(clock=clock), OBO_METADATA_REFRESH_INTERVAL=60)
    token = emu.issue_user_token(alice, resource=api)
    assert status(app, token) == 200
    emu.faults.inject("*", "drop", count=1000)
    clock.advance(61)
    attempts = emu.faults.pending()
    assert status(app, token) == 200  # due: a background refresh starts, and fails
    assert wait_for(lambda: emu.faults.pending() < attempts)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200


def test_scheduled_refresh_picks_up_new_keys(emu: EntraEmulator, api: App, alice: User,
                                             clock: Clock) -> None:
    app = build_api(emu, api, obo=FlaskOBO(clock=clock), OBO_METADATA_REFRESH_INTERVAL=60,
                    OBO_JWKS_MIN_REFETCH_INTERVAL=3600)
    token = emu.issue_user_token(alice, resource=api)
    assert status(app, token) == 200
    new_kid = emu.rotate_keys()
    clock.advance(61)
    assert status(app, token) == 200  # served from the cache; starts the refresh
    authority = get_state(app).validator.authority
    assert wait_for(lambda: new_kid in (authority.metadata.keys if authority.metadata else {}))


def test_authority_down_at_start_gives_503_then_recovers(emu: EntraEmulator, api: App,
                                                         alice: User) -> None:
    emu.faults.inject("discovery", "status", status=500)
    app = build_api(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=0)  # the app starts anyway
    token = emu.issue_user_token(alice, resource=api)
    response = app.test_client().get("/me", headers=bearer(token))
    assert response.status_code == 503
    assert "WWW-Authenticate" not in response.headers
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json["reason"] == "authority_unavailable"
    # A token that is malformed is still refused as such, without the authority.
    emu.faults.inject("*", "status", status=500)
    assert app.test_client().get("/me", headers=bearer("x.y")).status_code == 401
    emu.faults.clear()
    assert status(app, token) == 200


def test_initial_fetch_failures_are_rate_limited(emu: EntraEmulator, api: App,
                                                 alice: User) -> None:
    emu.faults.inject("*", "status", count=1000, status=503)
    app = build_api(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=300)
    token = emu.issue_user_token(alice, resource=api)
    before = emu.faults.pending()
    for _ in range(20):
        assert status(app, token) == 503
    assert before - emu.faults.pending() == 1  # one attempt, then 503 without trying


def test_no_network_call_per_request(emu: EntraEmulator, api: App, alice: User) -> None:
    app = build_api(emu, api)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    calls = emu.call_count()
    for _ in range(10):
        assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    assert emu.call_count() == calls


def test_repeated_token_is_served_from_the_cache(emu: EntraEmulator, api: App,
                                                 alice: User) -> None:
    app = build_api(emu, api)
    token = emu.issue_user_token(alice, resource=api)
    seen: list[tuple[bool, str]] = []

    def receiver(sender: Flask, claims: Any, cached: bool) -> None:
        seen.append((cached, claims.oid))

    with token_validated.connected_to(receiver, app):
        assert status(app, token) == 200
        assert status(app, token) == 200
    assert seen == [(False, alice.oid), (True, alice.oid)]


def test_cached_token_still_expires(emu: EntraEmulator, api: App, alice: User,
                                    clock: Clock) -> None:
    app = build_api(emu, api, OBO_CLOCK_SKEW=30)
    state = get_state(app)
    validator = TokenValidator(state.config, state.validator.authority, clock=clock)
    token = emu.issue_user_token(alice, resource=api, lifetime=60)
    assert validator.validate_cached(token)[1] is False
    assert validator.validate_cached(token)[1] is True
    clock.advance(60 + 31)
    with pytest.raises(Exception, match="expired") as caught:
        validator.validate(token)
    assert getattr(caught.value, "reason", None) == "expired"


def test_cache_is_bounded(emu: EntraEmulator, api: App, alice: User) -> None:
    app = build_api(emu, api, OBO_VALIDATED_TOKEN_CACHE_SIZE=3)
    validator = get_state(app).validator
    tokens = [emu.issue_user_token(alice, resource=api) for _ in range(5)]
    for token in tokens:
        validator.validate(token)
    assert validator.validate_cached(tokens[-1])[1] is True
    assert validator.validate_cached(tokens[0])[1] is False  # evicted (least recently used)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_a_forked_worker_refreshes_keys_although_the_parent_was_mid_refresh(
        emu: EntraEmulator, api: App, alice: User, clock: Clock) -> None:
    """gunicorn --preload forks workers: a refresh the parent had in progress (its lock held,
    the refresh flagged as running) must not stop the child from fetching keys, now or later."""
    app = build_api(emu, api, obo=FlaskOBO(clock=clock), OBO_METADATA_REFRESH_INTERVAL=60)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    authority = get_state(app).validator.authority
    hold = emu.faults.hold("discovery")
    clock.advance(61)
    authority.tick()  # the scheduled refresh starts in a thread, and waits on the emulator
    assert hold.wait_reached(), "the parent's refresh never reached the emulator"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            done: list[Any] = []
            refresh = threading.Thread(target=lambda: done.append(authority.refresh()),
                                       daemon=True)
            refresh.start()
            refresh.join(5)  # a lock inherited held would block it for ever
            before = authority.metadata
            clock.advance(61)
            authority.tick()  # a refresh flag inherited set would never start another
            refreshed = wait_for(lambda: authority.metadata is not before, timeout=5)
            code = 0 if done and refreshed else 2
        finally:
            os._exit(code)
    try:
        _, exit_status = os.waitpid(pid, 0)
    finally:
        hold.release()
    assert os.waitstatus_to_exitcode(exit_status) == 0


def test_an_endless_authority_answer_is_cut_off_not_read_whole(
        emu: EntraEmulator, api: App, alice: User, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A misbehaving or hostile authority cannot make the API read an unbounded document."""
    sent: list[int] = []

    def endless(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])

        def body() -> Iterator[bytes]:
            chunk = b" " * 65536
            for _ in range(16 * 1024):  # up to 1 GiB unless the client hangs up first
                yield chunk
                sent.append(len(chunk))

        return body()

    tls = ServerTLS(str(tmp_path))
    token = emu.issue_user_token(alice, resource=api)  # well formed: its keys are looked up
    with LoopbackServer(endless, ssl_context=tls.server_context()) as server:
        app = build_api(None, None, OBO_AUTHORITY=f"{server.url}{uuid.uuid4()}",
                        OBO_CLIENT_ID=api.client_id, OBO_CA_BUNDLE=tls.ca_bundle)
        with caplog.at_level(logging.ERROR, logger="flask_obo"):
            response = app.test_client().get("/me", headers=bearer(token))
    assert response.status_code == 503
    assert response.json is not None and response.json["reason"] == "authority_unavailable"
    assert "more than" in caplog.text
    assert sum(sent) < 64 * 1024 * 1024  # it stopped reading near the 1 MiB cap
