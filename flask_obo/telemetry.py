"""OpenTelemetry metrics and spans (the ``[otel]`` extra, opentelemetry-api only).

flask-obo records through the global meter and tracer providers: the application's SDK and
exporters decide where it goes. Without an SDK the API's no-op providers make it nearly free;
without the extra every function here does nothing. The only module that imports opentelemetry.

Metrics (docs/guides/telemetry.md lists every attribute):

- ``flask_obo.token.validations``: accepted and refused bearer tokens;
- ``flask_obo.downstream_token.acquisitions``: downstream tokens by source, grant and API;
- ``flask_obo.identity_provider.duration``: each token request to Entra ID, in seconds;
- ``flask_obo.cache.errors``: failed operations of a shared token-cache backend.

The counters sit on the per-request path, so they are observable counters over in-process
tallies: an SDK's synchronous counter costs several microseconds per ``add`` (a time stamp, an
exemplar check, the attributes copied and hashed, a lock), a tally (``_tally.py``) one
increment in a dict of the thread's own; the SDK sums the tallies when it collects. Attribute
sets are built once.

Spans: one around each identity-provider call and each downstream call, children of the current
span (opentelemetry-instrumentation-flask's request span where it runs); the downstream call
carries the trace context through the global propagator (W3C ``traceparent`` by default), which
writes nothing where no SDK records the span.

Privacy: attribute values come from fixed vocabularies (outcomes, reason codes, grants), the
configured API names, Entra's error code and AADSTS numbers, and the downstream host: never a
token, a secret, a key, a URL path, a name or an e-mail. The user's object id and tenant id go
on spans only with ``OBO_TELEMETRY_INCLUDE_IDS``, and never on metrics (one series per user).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ._tally import Attributes, Series, SeriesMemo, Tally

try:
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the [otel] extra is not installed
    AVAILABLE = False
else:
    AVAILABLE = True

if TYPE_CHECKING:
    import requests

    from .validation import TokenClaims

__all__ = [
    "ACQUISITIONS",
    "AVAILABLE",
    "CACHE_ERRORS",
    "IDP_DURATION",
    "IDP_DURATION_BUCKETS",
    "SCOPE",
    "VALIDATIONS",
    "cache_error",
    "downstream_call",
    "identity_provider_call",
    "inject_context",
    "token_acquired",
    "validation_accepted",
    "validation_refused",
]

T = TypeVar("T")

SCOPE = "flask_obo"
VALIDATIONS = "flask_obo.token.validations"
ACQUISITIONS = "flask_obo.downstream_token.acquisitions"
IDP_DURATION = "flask_obo.identity_provider.duration"
CACHE_ERRORS = "flask_obo.cache.errors"
#: Seconds: a token request takes tens of milliseconds to seconds, up to OBO_HTTP_TIMEOUT.
IDP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                        7.5, 10.0, 30.0)

# A label from outside our code (Entra's error, an exception's class) is kept only when it
# looks like a code (``invalid_grant:AADSTS65001``): anything else could be a message, or worse.
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}(?::[A-Z0-9,]{1,64})?")
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                           "TRACE", "PATCH"})


def safe_label(value: object) -> str:
    """``value`` when it looks like a code, else ``"unrecognized"``."""
    text = str(value)
    return text if _LABEL.fullmatch(text) else "unrecognized"


if AVAILABLE:
    # Proxies until the application sets its providers; then they record into them.
    _meter = metrics.get_meter(SCOPE)
    _tracer = trace.get_tracer(SCOPE)


def _counter(name: str, unit: str, description: str) -> Tally:
    """A tally, read by an observable counter ``name`` when the SDK collects."""
    tally = Tally(enabled=AVAILABLE)
    if AVAILABLE:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(count, series.attributes)
                    for series, count in tally.totals().items()]

        _meter.create_observable_counter(name, callbacks=[observe], unit=unit,
                                         description=description)
    return tally


_validations = _counter(VALIDATIONS, "{validation}",
                        "Bearer tokens checked: accepted or refused, with the reason code")
_acquisitions = _counter(ACQUISITIONS, "{token}",
                         "Downstream tokens handed out: from the cache or the identity provider")
_cache_errors = _counter(CACHE_ERRORS, "{error}",
                         "Operations of the shared token-cache backend that failed")
if AVAILABLE:
    _idp_duration = _meter.create_histogram(
        IDP_DURATION, unit="s", description="Token requests to the identity provider",
        explicit_bucket_boundaries_advisory=IDP_DURATION_BUCKETS)

_ACCEPTED: dict[bool, Series] = {
    cached: Series({"flask_obo.outcome": "accepted", "flask_obo.cached": cached})
    for cached in (False, True)}


def _refused_attributes(reason: str) -> Attributes:
    return {"flask_obo.outcome": "refused", "flask_obo.reason": reason,
            "flask_obo.cached": False}


def _acquisition_attributes(source: str, grant: str, api: str | None) -> Attributes:
    attributes: Attributes = {"flask_obo.source": source, "flask_obo.grant": grant}
    if api is not None:
        attributes["flask_obo.api"] = api
    return attributes


_refused = SeriesMemo(lambda reason: _refused_attributes(safe_label(reason)),
                 lambda reason: _refused_attributes("other"))
_acquired = SeriesMemo(_acquisition_attributes,
                  lambda source, grant, api: _acquisition_attributes(source, grant, "other"))
_cache_failed = SeriesMemo(lambda operation: {"flask_obo.operation": safe_label(operation)},
                      lambda operation: {"flask_obo.operation": "other"})


# validation ----------------------------------------------------------------------------------
def validation_accepted(cached: bool, claims: TokenClaims | None = None) -> None:
    """A token was accepted. With ``claims`` (``OBO_TELEMETRY_INCLUDE_IDS``), the request's
    current span gets the caller's ids."""
    _validations.add(_ACCEPTED[cached])
    if claims is not None and AVAILABLE:
        span = trace.get_current_span()
        if span.is_recording():
            _set_ids(span, claims.oid, claims.tid)


def validation_refused(reason: str | None) -> None:
    """A token (or its absence) was refused, for ``reason`` (the errors reference's code)."""
    _validations.add(_refused.get(reason or "unknown"))


# acquisition -----------------------------------------------------------------------------------
def token_acquired(source: str, grant: str, api: str | None) -> None:
    """A downstream token was handed out (``source``: cache, identity_provider, refresh_ahead);
    ``api`` is the configured API's name, None for a view that gave scopes."""
    _acquisitions.add(_acquired.get(source, grant, api))


def identity_provider_call(grant: str, call: Callable[[], T],
                           outcome: Callable[[Any, BaseException | None], tuple[str, str]],
                           ids: tuple[str, str] | None = None) -> T:
    """``call()`` (one token request) under a span, its duration recorded.

    ``outcome(result, exception)`` names how it went: ``("success", "")``, ``("refused",
    "<Entra's error>:AADSTS<code>")`` or ``("failed", "<reason>")``. ``ids``: (user object id,
    tenant id) for the span, only with ``OBO_TELEMETRY_INCLUDE_IDS``.
    """
    if not AVAILABLE:
        return call()
    with _tracer.start_as_current_span(
            "flask_obo.identity_provider", kind=SpanKind.CLIENT,
            attributes={"flask_obo.grant": grant},
            # The exception's message (maybe Entra's description) must stay out of the span.
            record_exception=False, set_status_on_exception=False) as span:
        if ids is not None and span.is_recording():
            _set_ids(span, *ids)
        started = time.perf_counter()
        try:
            result = call()
        except BaseException as exc:
            _idp_done(span, grant, started, *outcome(None, exc))
            raise
        _idp_done(span, grant, started, *outcome(result, None))
        return result


def _idp_done(span: Any, grant: str, started: float, outcome: str, error: str) -> None:
    attributes = {"flask_obo.grant": grant, "flask_obo.outcome": outcome}
    if error:
        attributes["flask_obo.error"] = safe_label(error)
    _idp_duration.record(time.perf_counter() - started, attributes)
    if span.is_recording():
        span.set_attributes(attributes)
        if outcome != "success":
            span.set_status(Status(StatusCode.ERROR))


# the token cache -----------------------------------------------------------------------------
def cache_error(operation: str) -> None:
    """A shared cache backend failed on ``operation`` (get, set, delete)."""
    _cache_errors.add(_cache_failed.get(operation))


# downstream calls ----------------------------------------------------------------------------
def downstream_call(send: Callable[[], requests.Response], method: str, url: str,
                    api: str | None, ids: tuple[str, str] | None = None) -> requests.Response:
    """``send()`` (one downstream request) under a client span named after HTTP's conventions,
    without the URL's path or query (they may name a user)."""
    if not AVAILABLE:
        return send()
    parts = urlsplit(url)
    verb = method.upper()
    attributes: dict[str, str | int] = {
        "http.request.method": verb if verb in _HTTP_METHODS else "_OTHER",
        "server.address": parts.hostname or "",
        "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        "url.scheme": parts.scheme,
    }
    if api is not None:
        attributes["flask_obo.api"] = api
    with _tracer.start_as_current_span(
            "flask_obo.downstream", kind=SpanKind.CLIENT, attributes=attributes,
            record_exception=False, set_status_on_exception=False) as span:
        if ids is not None and span.is_recording():
            _set_ids(span, *ids)
        try:
            response = send()
        except BaseException as exc:
            if span.is_recording():
                span.set_attribute("error.type", safe_label(getattr(exc, "reason", None)
                                                            or type(exc).__name__))
                span.set_status(Status(StatusCode.ERROR))
            raise
        if span.is_recording():
            status = response.status_code
            span.set_attribute("http.response.status_code", status)
            if status >= 400:  # a client span's 4xx is an error too (HTTP conventions)
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
        return response


def inject_context(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context into an outgoing request's headers."""
    if AVAILABLE:
        propagate.inject(headers)


def _set_ids(span: Any, user: str | None, tenant: str | None) -> None:
    if user and user != "app":
        span.set_attribute("enduser.id", user)
    if tenant:
        span.set_attribute("flask_obo.tenant_id", tenant)
