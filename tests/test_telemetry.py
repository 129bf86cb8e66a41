"""OpenTelemetry metrics and spans, read through the SDK's in-memory reader and exporter over
real flows against the emulator: validation accepted and refused, on-behalf-of miss then hit,
app tokens, Entra refusing and failing, a shared cache backend going down, and downstream calls
under opentelemetry-instrumentation-flask's request span, with W3C trace context sent on.
Nothing recorded carries a token, a secret, a name or an e-mail.

OpenTelemetry's global providers can be set once per process: one session-wide SDK setup
(``otel``) records everything; each test reads what changed during it (``telemetry``).
flask_obo was imported before the providers were set, so its instruments are the API's proxies
until then, as in an application that configures OpenTelemetry after its imports.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask, jsonify
from flask.testing import FlaskClient
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from werkzeug.serving import make_server

from flask_obo import (
    ConfigError,
    DownstreamSession,
    FlaskOBO,
    current_token,
    requires_downstream,
    requires_downstream_for_app,
)
from flask_obo import _tally as tally_module
from flask_obo import telemetry as otel_names
from flask_obo._tally import Series, Tally
from flask_obo.testing import App
from flask_obo.testing.redis_server import RedisServer, RedisUnavailable

SECRET = "telemetry-middle-secret~with.chars"
Key = tuple[tuple[str, Any], ...]


def key(attributes: dict[str, Any]) -> Key:
    return tuple(sorted(attributes.items()))


# -- the SDK, once per process -------------------------------------------------------------------

@dataclass
class Recorded:
    """The session's in-memory reader and exporter, read as differences since a mark."""

    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter
    before: dict[str, dict[Key, float]] = field(default_factory=dict)

    def points(self) -> dict[str, dict[Key, float]]:
        """Per metric: attribute set -> value (counters) or count (histograms)."""
        found: dict[str, dict[Key, float]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    into = found.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        value = getattr(point, "count", None)
                        into[key(dict(point.attributes or {}))] = (
                            value if value is not None else point.value)
        return found

    def mark(self) -> None:
        self.exporter.clear()
        self.before = self.points()

    def delta(self, name: str) -> dict[Key, float]:
        """What ``name`` recorded since the mark, by attribute set (changes only)."""
        before = self.before.get(name, {})
        now = self.points().get(name, {})
        return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture(scope="session")
def otel() -> Iterator[Recorded]:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics.set_meter_provider(meter_provider)
    trace.set_tracer_provider(tracer_provider)
    assert metrics.get_meter_provider() is meter_provider, "a meter provider was set before"
    assert trace.get_tracer_provider() is tracer_provider, "a tracer provider was set before"
    yield Recorded(reader, exporter)
    # The globals stay set for the rest of the session; shut down, they record nothing more.
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def telemetry(otel: Recorded) -> Recorded:
    otel.mark()
    return otel


# -- a downstream API that shows what it received, and the middle tier calling it -----------------

@dataclass
class Echo:
    url: str
    received: list[dict[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    """A downstream API that answers 200 with the trace context it was sent (no token check:
    it records the Authorization it received, for the leak scan)."""
    state: dict[str, Echo] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen = {"traceparent": environ.get("HTTP_TRACEPARENT"),
                "authorization": environ.get("HTTP_AUTHORIZATION")}
        with state["echo"].lock:
            state["echo"].received.append(seen)
        status = "404 Not Found" if environ["PATH_INFO"].endswith("/missing") else "200 OK"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps({"traceparent": seen["traceparent"]}).encode()]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["echo"] = Echo(url=f"http://127.0.0.1:{server.port}/")
    yield state["echo"]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@dataclass
class Middle:
    app: Flask
    registration: App
    down: App
    client: FlaskClient
    entra: Any

    def token_for(self, user: Any, **kwargs: Any) -> str:
        return str(self.entra.issue_user_token(user, resource=self.registration,
                                               scopes=["access_as_user"], **kwargs))

    def get(self, path: str, token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.get(path, headers=headers)


MakeMiddle = Callable[..., Middle]


@pytest.fixture
def make_otel_middle(entra: Any, echo: Echo) -> Iterator[MakeMiddle]:
    """``make_otel_middle(instrument=False, consent=True, **OBO_config)``: a middle tier whose
    downstream API "echo" is the echo server. With ``instrument``, the app is instrumented by
    opentelemetry-instrumentation-flask before FlaskOBO, so the request span exists when the
    token is checked."""
    built: list[Flask] = []

    def make(*, instrument: bool = False, consent: bool = True, **config: Any) -> Middle:
        registration = entra.register_app("otel-middle", secret=SECRET,
                                          scopes=["access_as_user"])
        down = entra.register_app("otel-down", scopes=["read"], roles=["Reader"])
        if consent:
            entra.grant_consent(client=registration, resource=down, scopes=["read"],
                                roles=["Reader"])
        scope = f"{down.app_id_uri}/read"
        app = Flask(f"otel-middle-{registration.client_id[:8]}")
        if instrument:
            FlaskInstrumentor().instrument_app(app)
        app.config.update(
            OBO_AUTHORITY=entra.authority(), OBO_CLIENT_ID=registration.client_id,
            OBO_CA_BUNDLE=entra.ca_bundle, OBO_CLIENT_SECRET=SECRET,
            OBO_DOWNSTREAM_APIS={"echo": {"base_url": echo.url, "scopes": [scope],
                                          "retries": 0}},
            **config)
        FlaskOBO(app)

        @app.get("/me")
        def me() -> Any:
            return jsonify(oid=current_token.oid)

        @app.get("/call/<path:path>")
        @requires_downstream(api="echo")
        def call(path: str, downstream: DownstreamSession) -> Any:
            answer = downstream.get(path)
            return jsonify(status=answer.status_code, body=answer.json())

        @app.get("/scopes")
        @requires_downstream([scope])
        def by_scopes(downstream: DownstreamSession) -> Any:
            answer = downstream.get(echo.url + "ok")
            return jsonify(status=answer.status_code)

        @app.get("/as-app")
        @requires_downstream_for_app(api="echo")
        def as_app(downstream: DownstreamSession) -> Any:
            answer = downstream.get("ok")
            return jsonify(status=answer.status_code)

        built.append(app)
        return Middle(app, registration, down, app.test_client(), entra)

    yield make
    for app in built:
        app.extensions["obo"].close()


# -- metrics -------------------------------------------------------------------------------------

ACCEPTED = {"flask_obo.outcome": "accepted"}
REFUSED = {"flask_obo.outcome": "refused", "flask_obo.cached": False}


def test_validations_are_counted_accepted_or_refused_with_the_reason(
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any) -> None:
    middle = make_otel_middle()
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
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any) -> None:
    middle = make_otel_middle()
    user = entra.add_user("obo")
    token = middle.token_for(user)
    for _ in range(3):
        answer = middle.get("/call/ok", token)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    assert len(entra.calls("on_behalf_of")) == 1
    obo = {"flask_obo.grant": "on_behalf_of", "flask_obo.api": "echo"}
    assert telemetry.delta(otel_names.ACQUISITIONS) == {
        key({**obo, "flask_obo.source": "identity_provider"}): 1,
        key({**obo, "flask_obo.source": "cache"}): 2,
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
        assert attributes["flask_obo.api"] == "echo"
        assert attributes["http.request.method"] == "GET"
        assert attributes["http.response.status_code"] == 200
        assert attributes["server.address"] == "127.0.0.1"
        assert "enduser.id" not in attributes  # ids only with OBO_TELEMETRY_INCLUDE_IDS
        assert not any("url" in name and name != "url.scheme" for name in attributes)


def test_app_tokens_and_raw_scopes_are_told_apart(
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any) -> None:
    middle = make_otel_middle()
    token = middle.token_for(entra.add_user("apps"))
    for path in ("/as-app", "/as-app", "/scopes"):
        answer = middle.get(path, token)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    assert telemetry.delta(otel_names.ACQUISITIONS) == {
        key({"flask_obo.source": "identity_provider", "flask_obo.grant": "client_credentials",
             "flask_obo.api": "echo"}): 1,
        key({"flask_obo.source": "cache", "flask_obo.grant": "client_credentials",
             "flask_obo.api": "echo"}): 1,
        # A view that named scopes, not a configured API: no api attribute.
        key({"flask_obo.source": "identity_provider", "flask_obo.grant": "on_behalf_of"}): 1,
    }


def test_an_entra_refusal_records_its_error_and_aadsts_code_only(
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any) -> None:
    middle = make_otel_middle(consent=False)
    answer = middle.get("/call/ok", middle.token_for(entra.add_user("consent")))
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
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any) -> None:
    middle = make_otel_middle()
    token = middle.token_for(entra.add_user("fault"))
    entra.faults.inject("token", "status", status=503, retry_after=1)
    answer = middle.get("/call/ok", token)
    assert answer.status_code == 503, answer.get_data(as_text=True)
    failed = {"flask_obo.grant": "on_behalf_of", "flask_obo.outcome": "failed",
              "flask_obo.error": "http_503"}
    assert telemetry.delta(otel_names.IDP_DURATION) == {key(failed): 1}
    [span] = telemetry.spans("flask_obo.identity_provider")
    assert span.status.status_code is StatusCode.ERROR
    assert telemetry.spans("flask_obo.downstream") == []  # no token, no downstream call

    answer = middle.get("/call/ok", token)  # Entra is back
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert telemetry.delta(otel_names.IDP_DURATION)[key(
        {"flask_obo.grant": "on_behalf_of", "flask_obo.outcome": "success"})] == 1


def test_discovery_failing_on_a_tenants_first_call_is_timed_as_failed(
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any) -> None:
    middle = make_otel_middle()
    token = middle.token_for(entra.add_user("discovery"))
    assert middle.get("/me", token).status_code == 200  # the validator has its metadata
    entra.faults.inject("discovery", "status", status=503)  # MSAL's, for its first call
    answer = middle.get("/call/ok", token)
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert entra.calls("on_behalf_of") == []
    assert telemetry.delta(otel_names.IDP_DURATION) == {key(
        {"flask_obo.grant": "on_behalf_of", "flask_obo.outcome": "failed",
         "flask_obo.error": "http_503"}): 1}


@pytest.mark.redis
def test_a_shared_cache_backend_failing_is_counted_by_operation(
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any) -> None:
    try:
        redis = RedisServer().start()
    except RedisUnavailable as exc:
        pytest.skip(f"redis-server could not start ({exc})")
    try:
        middle = make_otel_middle(OBO_CACHE={"CACHE_TYPE": "RedisCache",
                                             "CACHE_REDIS_URL": redis.url})
        first = middle.get("/call/ok", middle.token_for(entra.add_user("redis1")))
        assert first.status_code == 200, first.get_data(as_text=True)
        assert telemetry.delta(otel_names.CACHE_ERRORS) == {}
        redis.stop()
        answer = middle.get("/call/ok", middle.token_for(entra.add_user("redis2")))
        assert answer.status_code == 200, answer.get_data(as_text=True)  # bypassed, not a 500
    finally:
        redis.close()
    # The failed read; the backend is then bypassed for a few seconds, so no more attempts.
    assert telemetry.delta(otel_names.CACHE_ERRORS) == {key({"flask_obo.operation": "get"}): 1}


# -- spans under the Flask instrumentation ---------------------------------------------------------

def test_downstream_span_is_a_child_of_the_request_span_and_its_context_is_sent_on(
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any, echo: Echo) -> None:
    middle = make_otel_middle(instrument=True)
    answer = middle.get("/call/ok", middle.token_for(entra.add_user("trace")))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    [server] = [s for s in telemetry.exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    [idp] = telemetry.spans("flask_obo.identity_provider")
    [call] = telemetry.spans("flask_obo.downstream")
    request = server.get_span_context()
    # The token is acquired before the call: both are children of the request, not nested.
    for span in (idp, call):
        assert span.context.trace_id == request.trace_id
        assert span.parent is not None and span.parent.span_id == request.span_id
    sent = answer.get_json()["body"]["traceparent"]
    context = call.get_span_context()
    assert context.trace_flags.sampled
    assert sent == (f"00-{context.trace_id:032x}-{context.span_id:016x}-"
                    f"{int(context.trace_flags):02x}")


def test_a_downstream_refusal_marks_the_span_as_an_error(
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any) -> None:
    middle = make_otel_middle()
    answer = middle.get("/call/missing", middle.token_for(entra.add_user("404")))
    assert answer.get_json()["status"] == 404
    [call] = telemetry.spans("flask_obo.downstream")
    assert call.status.status_code is StatusCode.ERROR
    assert dict(call.attributes or {})["error.type"] == "404"


def test_ids_go_on_spans_only_when_the_operator_opts_in(
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any) -> None:
    middle = make_otel_middle(instrument=True, OBO_TELEMETRY_INCLUDE_IDS=True)
    user = entra.add_user("ids")
    answer = middle.get("/call/ok", middle.token_for(user))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    ids = {"enduser.id": user.oid, "flask_obo.tenant_id": user.tenant_id}
    [server] = [s for s in telemetry.exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    for span in (server, *telemetry.spans("flask_obo.identity_provider"),
                 *telemetry.spans("flask_obo.downstream")):
        attributes = dict(span.attributes or {})
        assert {k: attributes.get(k) for k in ids} == ids, span.name
    for name in (otel_names.VALIDATIONS, otel_names.ACQUISITIONS, otel_names.IDP_DURATION):
        for attributes in telemetry.delta(name):  # never on metrics: one series per user
            assert not {k for k, _ in attributes} & set(ids), name


# -- nothing secret, nothing personal ------------------------------------------------------------

WINDOW = 20


def _pieces(secret: str) -> set[str]:
    """The secret, and every 20-character piece of it: of a JWT's signature, which is its own
    (every token of one issuer starts with the same header)."""
    text = secret.rsplit(".", 1)[1] if secret.count(".") == 2 else secret
    return {secret} | {text[i:i + WINDOW] for i in range(len(text) - WINDOW + 1)}


def test_no_token_secret_name_or_email_is_ever_recorded(
        telemetry: Recorded, make_otel_middle: MakeMiddle, entra: Any, echo: Echo) -> None:
    encryption_key = Fernet.generate_key().decode()
    middle = make_otel_middle(instrument=True, OBO_TELEMETRY_INCLUDE_IDS=True,
                              OBO_CACHE_ENCRYPTION_KEY=encryption_key)
    unconsented = make_otel_middle(consent=False)
    user = entra.add_user("leak.check@contoso.test", name="Leaky McLeakface")
    token = middle.token_for(user)
    forbidden: dict[str, str] = {"client secret": SECRET, "cache key": encryption_key,
                                 "assertion": token, "e-mail": user.username,
                                 "name": user.name}
    hostile = {"expired": middle.token_for(user, lifetime=-3600),
               "bad signature": token[:-8] + "AAAAAAAA",
               "garbage": "not-a-token-" + secrets.token_urlsafe(40)}
    forbidden.update({f"hostile token ({label})": bad for label, bad in hostile.items()})
    before = len(echo.received)
    for path in ("/call/ok", "/call/ok", "/as-app", "/scopes", "/call/missing"):
        assert middle.get(path, token).status_code == 200
    for bad in hostile.values():
        assert middle.get("/me", bad).status_code == 401
    assert unconsented.get("/call/ok", unconsented.token_for(user)).status_code == 403
    entra.faults.inject("token", "malformed")
    assert middle.get("/call/ok", middle.token_for(user)).status_code == 503
    for index, seen in enumerate(echo.received[before:]):  # what the downstream API was sent
        forbidden[f"downstream token #{index}"] = str(seen["authorization"])

    data = telemetry.reader.get_metrics_data()
    texts = [data.to_json() if data else ""]
    spans = telemetry.exporter.get_finished_spans()
    texts += [span.to_json() for span in spans]
    assert {s.name for s in spans} >= {"flask_obo.identity_provider", "flask_obo.downstream"}
    haystack = "\n".join(texts)
    assert user.oid in haystack  # opted in: the ids are there, so the scan reads the right text
    leaks = sorted(label for label, secret in forbidden.items()
                   if any(piece in haystack for piece in _pieces(secret)))
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
def test_include_ids_setting_reads_booleans(make_otel_middle: MakeMiddle, value: Any,
                                            expected: bool) -> None:
    middle = make_otel_middle(OBO_TELEMETRY_INCLUDE_IDS=value)
    assert middle.app.extensions["obo"].config.telemetry_include_ids is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, ["yes"]])
def test_include_ids_setting_refuses_what_is_not_a_boolean(make_otel_middle: MakeMiddle,
                                                           value: Any) -> None:
    with pytest.raises(ConfigError, match="OBO_TELEMETRY_INCLUDE_IDS must be True or False"):
        make_otel_middle(OBO_TELEMETRY_INCLUDE_IDS=value)
