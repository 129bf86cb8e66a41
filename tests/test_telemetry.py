"""OpenTelemetry metrics and spans, read through the SDK's in-memory reader and exporter over
real flows against the emulator: validation accepted and refused, on-behalf-of miss then hit,
app tokens, a refresh ahead, a long-running session's tokens, Entra refusing and failing, a
shared cache backend going down, and downstream calls under opentelemetry-instrumentation-flask's
request span, with W3C trace context sent on.
Nothing recorded carries a token, a secret, a name or an e-mail.

The SDK is set once for the session (the ``otel`` fixture); each test reads what changed during
it (``telemetry``). The middle tier is the suite's (``make_middle``), calling the downstream
stand-in as ``down``; that stand-in, a FlaskOBO app too, counts its own validations in the same
process, so the tests that count validations make no downstream call.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import request
from opentelemetry.trace import SpanKind, StatusCode
from support.apps import MIDDLE_SECRET, MakeApp, MakeMiddle
from support.checks import bearer, leaked_fragment
from support.telemetry import InstrumentedFlask, Recorded, key
from support.timing import Clock

from flask_obo import (
    ConfigError,
    DownstreamSession,
    get_long_running_session,
    requires_downstream,
    start_long_running_process,
)
from flask_obo import _tally as tally_module
from flask_obo import telemetry as otel_names
from flask_obo._tally import Series, Tally
from flask_obo.testing import DownstreamStandIn
from flask_obo.testing.pytest_plugin import EntraTestHelper
from flask_obo.testing.redis_server import RedisServer

OBO = {"flask_obo.grant": "on_behalf_of", "flask_obo.api": "down"}
ACCEPTED = {"flask_obo.outcome": "accepted"}
REFUSED = {"flask_obo.outcome": "refused", "flask_obo.cached": False}


def add_scopes_view(app: Any, downstream_api: DownstreamStandIn) -> None:
    """``GET /by-scopes``: a view that names its downstream scopes itself, not an API."""

    @app.get("/by-scopes")
    @requires_downstream([downstream_api.scope("read")])
    def by_scopes(downstream: DownstreamSession) -> Any:
        return {"status": downstream.get(downstream_api.url + "me").status_code}


# -- metrics -------------------------------------------------------------------------------------

def test_validations_are_counted_accepted_or_refused_with_the_reason(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper) -> None:
    middle = make_middle()
    user = entra.add_user("val")
    token = middle.token_for(user)
    assert middle.get("/me", token).status_code == 200
    assert middle.get("/me", token).status_code == 200  # the validated-token cache
    assert middle.get("/me", middle.token_for(user, lifetime=-3600)).status_code == 401
    assert middle.get("/me", None).status_code == 401
    assert middle.get("/me", token[:-8] + "AAAAAAAA").status_code == 401
    assert telemetry.delta(otel_names.VALIDATIONS) == {
        key({**ACCEPTED, "flask_obo.cached": False}): 1,
        key({**ACCEPTED, "flask_obo.cached": True}): 1,
        key({**REFUSED, "flask_obo.reason": "expired"}): 1,
        key({**REFUSED, "flask_obo.reason": "missing"}): 1,
        key({**REFUSED, "flask_obo.reason": "signature"}): 1,
    }


def test_obo_miss_then_hits_count_one_identity_provider_call(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("obo"))
    for _ in range(3):
        answer = middle.get("/call/down/ok", token)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    assert len(middle.obo_calls()) == 1
    assert telemetry.delta(otel_names.ACQUISITIONS) == {
        key({**OBO, "flask_obo.source": "identity_provider"}): 1,
        key({**OBO, "flask_obo.source": "cache"}): 2,
    }
    assert telemetry.delta(otel_names.IDP_DURATION) == {
        key({"flask_obo.grant": "on_behalf_of", "flask_obo.outcome": "success"}): 1}
    [idp] = telemetry.spans("flask_obo.identity_provider")
    assert idp.kind is SpanKind.CLIENT and idp.status.status_code is StatusCode.UNSET
    assert dict(idp.attributes or {}) == {"flask_obo.grant": "on_behalf_of",
                                          "flask_obo.outcome": "success"}
    calls = telemetry.spans("flask_obo.downstream")
    assert len(calls) == 3
    for span in calls:
        attributes = dict(span.attributes or {})
        assert attributes["flask_obo.api"] == "down"
        assert attributes["http.request.method"] == "GET"
        assert attributes["http.response.status_code"] == 200
        assert attributes["server.address"] == "127.0.0.1"
        assert "enduser.id" not in attributes  # ids only with OBO_TELEMETRY_INCLUDE_IDS
        assert not any("url" in name and name != "url.scheme" for name in attributes)


def test_app_tokens_and_raw_scopes_are_told_apart(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper,
        downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    add_scopes_view(middle.app, downstream)
    token = middle.token_for(entra.add_user("apps"))
    for path in ("/as-app", "/as-app", "/by-scopes"):
        answer = middle.get(path, token)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    app_token = {"flask_obo.grant": "client_credentials", "flask_obo.api": "down"}
    assert telemetry.delta(otel_names.ACQUISITIONS) == {
        key({**app_token, "flask_obo.source": "identity_provider"}): 1,
        key({**app_token, "flask_obo.source": "cache"}): 1,
        # A view that named scopes, not a configured API: no api attribute.
        key({"flask_obo.source": "identity_provider", "flask_obo.grant": "on_behalf_of"}): 1,
    }


def test_a_refresh_ahead_is_counted_apart_from_the_request_it_served(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper,
        clock: Clock) -> None:
    # Lifetime 3600 s, margin 60 s, refresh ahead 300 s: refreshed once 3240 s have passed.
    middle = make_middle(clock=clock, OBO_CACHE_EXPIRY_MARGIN=60, OBO_CACHE_REFRESH_AHEAD=300)
    token = middle.token_for(entra.add_user("ahead"), lifetime=7200)
    assert middle.get("/call/down/ok", token).status_code == 200
    clock.advance(3300)
    assert middle.get("/call/down/ok", token).status_code == 200  # served; renewed behind
    middle.cache.close()  # waits for the background refresh
    assert len(middle.obo_calls()) == 2
    assert telemetry.delta(otel_names.ACQUISITIONS) == {
        key({**OBO, "flask_obo.source": "identity_provider"}): 1,
        key({**OBO, "flask_obo.source": "cache"}): 1,
        key({**OBO, "flask_obo.source": "refresh_ahead"}): 1,
    }


def test_an_entra_refusal_records_its_error_and_aadsts_code_only(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper) -> None:
    middle = make_middle(consent=False)
    answer = middle.get("/call/down/ok", middle.token_for(entra.add_user("consent")))
    assert answer.status_code == 403, answer.get_data(as_text=True)
    refused = {"flask_obo.grant": "on_behalf_of", "flask_obo.outcome": "refused",
               "flask_obo.error": "invalid_grant:AADSTS65001"}
    assert telemetry.delta(otel_names.IDP_DURATION) == {key(refused): 1}
    [span] = telemetry.spans("flask_obo.identity_provider")
    assert dict(span.attributes or {}) == refused
    assert span.status.status_code is StatusCode.ERROR and not span.status.description
    assert not span.events  # no exception recorded: its message is Entra's description
    assert telemetry.delta(otel_names.ACQUISITIONS) == {}


def test_an_entra_outage_is_timed_as_failed(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("fault"))
    entra.faults.inject("token", "status", status=503, retry_after=1)
    answer = middle.get("/call/down/ok", token)
    assert answer.status_code == 503, answer.get_data(as_text=True)
    failed = {"flask_obo.grant": "on_behalf_of", "flask_obo.outcome": "failed",
              "flask_obo.error": "http_503"}
    assert telemetry.delta(otel_names.IDP_DURATION) == {key(failed): 1}
    [span] = telemetry.spans("flask_obo.identity_provider")
    assert span.status.status_code is StatusCode.ERROR
    assert telemetry.spans("flask_obo.downstream") == []  # no token, no downstream call

    answer = middle.get("/call/down/ok", token)  # Entra is back
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert telemetry.delta(otel_names.IDP_DURATION)[key(
        {"flask_obo.grant": "on_behalf_of", "flask_obo.outcome": "success"})] == 1


def test_discovery_failing_on_a_tenants_first_call_is_timed_as_failed(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("discovery"))
    assert middle.get("/me", token).status_code == 200  # the validator has its metadata
    entra.faults.inject("discovery", "status", status=503)  # MSAL's, for its first call
    answer = middle.get("/call/down/ok", token)
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert middle.obo_calls() == []
    assert telemetry.delta(otel_names.IDP_DURATION) == {key(
        {"flask_obo.grant": "on_behalf_of", "flask_obo.outcome": "failed",
         "flask_obo.error": "http_503"}): 1}


@pytest.mark.redis
def test_a_shared_cache_backend_failing_is_counted_by_operation(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper,
        redis_server: RedisServer) -> None:
    middle = make_middle(redis_url=redis_server.url)
    first = middle.get("/call/down/ok", middle.token_for(entra.add_user("redis1")))
    assert first.status_code == 200, first.get_data(as_text=True)
    assert telemetry.delta(otel_names.CACHE_ERRORS) == {}
    redis_server.stop()
    answer = middle.get("/call/down/ok", middle.token_for(entra.add_user("redis2")))
    assert answer.status_code == 200, answer.get_data(as_text=True)  # bypassed, not a 500
    # The failed read; the backend is then bypassed for a few seconds, so no more attempts.
    assert telemetry.delta(otel_names.CACHE_ERRORS) == {key({"flask_obo.operation": "get"}): 1}


@pytest.mark.redis
def test_a_long_running_sessions_tokens_are_counted_as_refresh_token_grants(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper,
        redis_server: RedisServer, clock: Clock) -> None:
    middle = make_middle(redis_url=redis_server.url, clock=clock)
    middle.app.post("/jobs")(lambda: {"key": start_long_running_process("down")})
    started = middle.client.post("/jobs", headers=bearer(middle.token_for(entra.add_user("job"))))
    assert started.status_code == 200, started.get_data(as_text=True)
    clock.advance(2 * 3600)  # the session's first access token has expired
    with middle.app.app_context():  # a job: no request
        session = get_long_running_session(started.get_json()["key"], "down")
        for _ in range(2):
            assert session.get("me").status_code == 200
    redeemed = {"flask_obo.grant": "refresh_token", "flask_obo.api": "down"}
    assert telemetry.delta(otel_names.ACQUISITIONS) == {
        key({**redeemed, "flask_obo.source": "identity_provider"}): 1,
        key({**redeemed, "flask_obo.source": "cache"}): 1,
    }
    assert telemetry.delta(otel_names.IDP_DURATION) == {
        key({"flask_obo.grant": grant, "flask_obo.outcome": "success"}): 1
        for grant in ("on_behalf_of", "refresh_token")}  # the session's start, the redemption
    assert {dict(span.attributes or {}).get("flask_obo.api")
            for span in telemetry.spans("flask_obo.downstream")} == {"down"}


# -- spans under the Flask instrumentation ---------------------------------------------------------

def test_downstream_span_is_a_child_of_the_request_span_and_its_context_is_sent_on(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper,
        downstream: DownstreamStandIn) -> None:
    sent: list[str | None] = []
    downstream.app.before_request(lambda: sent.append(request.headers.get("traceparent")))
    middle = make_middle(flask_class=InstrumentedFlask)
    answer = middle.get("/call/down/ok", middle.token_for(entra.add_user("trace")))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    [server] = telemetry.server_spans()
    [idp] = telemetry.spans("flask_obo.identity_provider")
    [call] = telemetry.spans("flask_obo.downstream")
    request_span = server.get_span_context()
    # The token is acquired before the call: both are children of the request, not nested.
    for span in (idp, call):
        assert span.context.trace_id == request_span.trace_id
        assert span.parent is not None and span.parent.span_id == request_span.span_id
    context = call.get_span_context()
    assert context.trace_flags.sampled
    assert sent == [f"00-{context.trace_id:032x}-{context.span_id:016x}-"
                    f"{int(context.trace_flags):02x}"]


def test_a_downstream_refusal_marks_the_span_as_an_error(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper,
        downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    downstream.answer_next(status=404)
    answer = middle.get("/call/down/missing", middle.token_for(entra.add_user("404")))
    assert answer.status_code == 404
    [call] = telemetry.spans("flask_obo.downstream")
    assert call.status.status_code is StatusCode.ERROR
    assert dict(call.attributes or {})["error.type"] == "404"


def test_ids_go_on_spans_only_when_the_operator_opts_in(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper) -> None:
    middle = make_middle(flask_class=InstrumentedFlask, OBO_TELEMETRY_INCLUDE_IDS=True)
    user = entra.add_user("ids")
    answer = middle.get("/call/down/ok", middle.token_for(user))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    ids = {"enduser.id": user.oid, "flask_obo.tenant_id": user.tenant_id}
    [server] = telemetry.server_spans()
    for span in (server, *telemetry.spans("flask_obo.identity_provider"),
                 *telemetry.spans("flask_obo.downstream")):
        attributes = dict(span.attributes or {})
        assert {k: attributes.get(k) for k in ids} == ids, span.name
    for name in (otel_names.VALIDATIONS, otel_names.ACQUISITIONS, otel_names.IDP_DURATION):
        for attributes in telemetry.delta(name):  # never on metrics: one series per user
            assert not {k for k, _ in attributes} & set(ids), name


# -- nothing secret, nothing personal ------------------------------------------------------------

def test_no_token_secret_name_or_email_is_ever_recorded(
        telemetry: Recorded, make_middle: MakeMiddle, entra: EntraTestHelper,
        downstream: DownstreamStandIn, downstream_tokens: list[str]) -> None:
    encryption_key = Fernet.generate_key().decode()
    middle = make_middle(flask_class=InstrumentedFlask, OBO_TELEMETRY_INCLUDE_IDS=True,
                         OBO_CACHE_ENCRYPTION_KEY=encryption_key)
    add_scopes_view(middle.app, downstream)
    unconsented = make_middle(consent=False)
    user = entra.add_user("leak.check@contoso.test", name="Leaky McLeakface")
    token = middle.token_for(user)
    forbidden: dict[str, str] = {"client secret": MIDDLE_SECRET, "cache key": encryption_key,
                                 "assertion": token, "e-mail": user.username,
                                 "name": user.name}
    hostile = {"expired": middle.token_for(user, lifetime=-3600),
               "bad signature": token[:-8] + "AAAAAAAA",
               "garbage": "not-a-token-" + secrets.token_urlsafe(40)}
    forbidden.update({f"hostile token ({label})": bad for label, bad in hostile.items()})
    for path in ("/call/down/ok", "/call/down/ok", "/as-app", "/by-scopes"):
        assert middle.get(path, token).status_code == 200, path
    downstream.answer_next(status=404)
    assert middle.get("/call/down/missing", token).status_code == 404
    for bad in hostile.values():
        assert middle.get("/me", bad).status_code == 401
    assert unconsented.get("/call/down/ok", unconsented.token_for(user)).status_code == 403
    entra.faults.inject("token", "malformed")
    assert middle.get("/call/down/ok", middle.token_for(user)).status_code == 503
    forbidden.update({f"downstream token #{i}": sent for i, sent in enumerate(downstream_tokens)})

    data = telemetry.reader.get_metrics_data()
    spans = telemetry.exporter.get_finished_spans()
    assert {s.name for s in spans} >= {"flask_obo.identity_provider", "flask_obo.downstream"}
    haystack = "\n".join([data.to_json() if data else "", *(s.to_json() for s in spans)])
    assert user.oid in haystack  # opted in: the ids are there, so the scan reads the right text
    leaks = sorted(label for label, secret in forbidden.items()
                   if leaked_fragment(secret, haystack) is not None)
    assert not leaks, f"telemetry carries: {leaks}"


# -- the tallies under the counters -------------------------------------------------------------
# flask-obo's counters count in per-thread dicts without a lock; what threads do to them is not
# observable through a flow with certainty, so these tests drive the tally (private) directly.

def _count_in_threads(tally: Any, series: Any, threads: int, each: int,
                      hold: threading.Event | None = None) -> list[threading.Thread]:
    """Threads adding ``each`` at once; with ``hold``, returns once all have counted, while
    they stay alive until ``hold`` is set."""
    started = threading.Barrier(threads + 1)
    counted = threading.Barrier(threads + 1)

    def work() -> None:
        started.wait()
        for _ in range(each):
            tally.add(series)
        if hold is not None:
            counted.wait()
            hold.wait(timeout=30)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    started.wait()
    if hold is not None:
        counted.wait(timeout=30)
    return workers


def test_threads_counting_at_once_lose_nothing_and_finished_threads_are_settled() -> None:
    tally = Tally()
    series = Series({"k": "v"})
    for worker in _count_in_threads(tally, series, threads=8, each=20_000):
        worker.join()
    assert tally.totals() == {series: 160_000}
    assert tally._threads == []  # the finished threads' counts were settled, their dicts gone
    tally.add(series)
    assert tally.totals() == {series: 160_001}


def test_past_the_thread_bound_threads_share_one_locked_dict(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tally_module, "MAX_THREADS", 3)
    tally = Tally()
    series = Series({"k": "v"})
    hold = threading.Event()  # the threads stay alive: nothing can be settled
    workers = _count_in_threads(tally, series, threads=10, each=5_000, hold=hold)
    try:
        assert tally.totals() == {series: 50_000}
        assert len(tally._threads) == 3
    finally:
        hold.set()
        for worker in workers:
            worker.join()


def test_a_forked_worker_counts_from_zero() -> None:
    tally = Tally()
    series = Series({"k": "v"})
    tally.add(series)
    tally.after_fork_in_child()  # what _fork runs first thing in a child
    assert tally.totals() == {}
    tally.add(series)
    assert tally.totals() == {series: 1}


# -- without the extra, and the setting ------------------------------------------------------------

def test_without_opentelemetry_installed_nothing_is_recorded_and_calls_pass_through() -> None:
    script = """
import sys
sys.modules["opentelemetry"] = None  # what an interpreter without the [otel] extra sees
from flask_obo import telemetry
assert telemetry.AVAILABLE is False
telemetry.validation_accepted(True)
telemetry.validation_refused("expired")
telemetry.token_acquired("cache", "on_behalf_of", "graph")
telemetry.cache_error("get")
assert telemetry.identity_provider_call("on_behalf_of", lambda: 42, None) == 42
assert telemetry.downstream_call(lambda: "answer", "GET", "https://x.test/", None) == "answer"
headers = {}
telemetry.inject_context(headers)
assert headers == {}
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("true", True), ("off", False), (1, True), ("", False)])
def test_include_ids_setting_reads_booleans(make_app: MakeApp, value: Any,
                                            expected: bool) -> None:
    app = make_app(OBO_TELEMETRY_INCLUDE_IDS=value)
    assert app.extensions["obo"].config.telemetry_include_ids is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, ["yes"]])
def test_include_ids_setting_refuses_what_is_not_a_boolean(make_app: MakeApp,
                                                           value: Any) -> None:
    with pytest.raises(ConfigError, match="OBO_TELEMETRY_INCLUDE_IDS must be True or False"):
        make_app(OBO_TELEMETRY_INCLUDE_IDS=value)
