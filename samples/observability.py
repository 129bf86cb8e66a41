"""Metrics for Prometheus: OpenTelemetry's SDK with its Prometheus reader, on ``/metrics``.

flask-obo records through OpenTelemetry's global meter provider (``pip install
flask-obo[otel]``). ``start_metrics`` sets one whose ``PrometheusMetricReader`` registers with
prometheus_client's registry, once per process, where the process starts; ``add_metrics_endpoint``
serves that registry. Without opentelemetry-sdk and opentelemetry-exporter-prometheus installed
both do nothing. In production, let only your Prometheus reach ``/metrics`` (it is public here).
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from flask import Flask, Response

from flask_obo import public

try:
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # the samples still run, without /metrics
    METRICS = False
else:
    METRICS = True


def start_metrics(service: str) -> bool:
    """Set the global meter provider with a Prometheus reader; False where not installed."""
    if not METRICS:
        return False
    metrics.set_meter_provider(MeterProvider(
        resource=Resource.create({SERVICE_NAME: service}),
        metric_readers=[PrometheusMetricReader()]))
    return True


def add_metrics_endpoint(app: Flask) -> None:
    """``GET /metrics``: the Prometheus exposition of prometheus_client's registry."""
    if not METRICS:
        return

    @app.get("/metrics")
    @public
    def prometheus_metrics() -> Response:
        return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)


@dataclass(frozen=True)
class TokenFigures:
    """What an operator's dashboard shows, read from a /metrics page."""

    from_cache: float
    acquisitions: float
    identity_provider_calls: float

    @property
    def cache_hit_ratio(self) -> float:
        return self.from_cache / self.acquisitions if self.acquisitions else 0.0


def scrape(base_url: str) -> TokenFigures | None:
    """The cache-hit ratio and identity-provider call count from ``base_url``/metrics, as
    Prometheus names them (dots become underscores; counters end in ``_total``)."""
    if not METRICS:
        return None
    answer = requests.get(f"{base_url}/metrics", timeout=5)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    from_cache = acquisitions = idp_calls = 0.0
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "flask_obo_downstream_token_acquisitions_total":
                acquisitions += sample.value
                if sample.labels.get("flask_obo_source") == "cache":
                    from_cache += sample.value
            elif sample.name == "flask_obo_identity_provider_duration_seconds_count":
                idp_calls += sample.value
    return TokenFigures(from_cache, acquisitions, idp_calls)
