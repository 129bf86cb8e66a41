"""What flask-obo recorded through OpenTelemetry, read from the SDK's in-memory reader and
exporter; and a Flask app instrumented by opentelemetry-instrumentation-flask.

OpenTelemetry's global providers can be set once per process: ``install_sdk`` sets them (the
session-wide ``otel`` fixture), and each test reads what changed since its ``mark()`` (the
``telemetry`` fixture). flask_obo is imported before they are set, so its instruments are the
API's proxies until then, as in an application that configures OpenTelemetry after its imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["InstrumentedFlask", "Recorded", "key"]

#: an attribute set, as a hashable key
Key = tuple[tuple[str, Any], ...]


def key(attributes: dict[str, Any]) -> Key:
    return tuple(sorted(attributes.items()))


@dataclass
class Recorded:
    """The session's in-memory reader and exporter, read as differences since a mark."""

    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter
    meter_provider: MeterProvider
    tracer_provider: TracerProvider
    before: dict[str, dict[Key, float]] = field(default_factory=dict)

    @classmethod
    def install_sdk(cls) -> Recorded:
        """Set the global meter and tracer providers, recording in memory (once a process)."""
        reader = InMemoryMetricReader()
        exporter = InMemorySpanExporter()
        meter_provider = MeterProvider(metric_readers=[reader])
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        metrics.set_meter_provider(meter_provider)
        trace.set_tracer_provider(tracer_provider)
        assert metrics.get_meter_provider() is meter_provider, "a meter provider was set before"
        assert trace.get_tracer_provider() is tracer_provider, "a tracer provider was set before"
        return cls(reader, exporter, meter_provider, tracer_provider)

    def shutdown(self) -> None:
        # The globals stay set for the rest of the process; shut down, they record nothing more.
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

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

    def server_spans(self) -> list[ReadableSpan]:
        """The request spans of opentelemetry-instrumentation-flask."""
        return [s for s in self.exporter.get_finished_spans() if s.kind is trace.SpanKind.SERVER]


class InstrumentedFlask(Flask):
    """A Flask app instrumented by opentelemetry-instrumentation-flask from its creation, so
    that it is instrumented before FlaskOBO (``make_middle(flask_class=InstrumentedFlask)``):
    the request span is open when the token is checked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        FlaskInstrumentor().instrument_app(self)
