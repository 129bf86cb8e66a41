"""The middle-tier API: validates the caller's token, then calls the downstream API as the user.

    python -m samples.middle_tier --port 5001

Configuration (environment or .env): OBO_AUTHORITY, OBO_CLIENT_ID, OBO_CLIENT_SECRET (or a
certificate), and OBO_DOWNSTREAM_APIS, e.g.
    OBO_DOWNSTREAM_APIS={"profile": {"base_url": "http://127.0.0.1:5002/v1.0/",
                                      "scopes": ["api://<downstream-client-id>/read"]}}
Against Microsoft Graph: {"graph": {"base_url": "https://graph.microsoft.com/v1.0/",
                                     "scopes": ["User.Read"]}}
A browser app on another origin (samples/spa) needs CORS: CORS_ORIGINS=http://localhost:5173
(Flask-CORS settings, e.g. a JSON list of origins).

Reports (long-running jobs on Celery, ``reports.py``) need a shared token cache and a broker:
    OBO_CACHE={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": "redis://127.0.0.1:6379/0"}
    CELERY_BROKER_URL=redis://127.0.0.1:6379/1  CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/2
and a worker: ``celery -A samples.worker worker``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from flask_cors import CORS

from flask_obo import (
    DownstreamSession,
    current_token,
    requires_downstream,
    requires_downstream_for_app,
    requires_scopes,
)

from .observability import add_metrics_endpoint, start_metrics
from .settings import load_settings, protected_app, serve

DOWNSTREAM = "profile"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = protected_app(__name__, {**load_settings("CORS_"), **(config or {})})
    if app.config.get("CORS_ORIGINS"):
        # Only the configured origins; the SPA must read the claims challenge's header.
        CORS(app, expose_headers=["WWW-Authenticate"])
    add_metrics_endpoint(app)  # flask-obo's OpenTelemetry metrics, for Prometheus

    @app.get("/api/profile")
    @requires_scopes("access_as_user")
    @requires_downstream(api=DOWNSTREAM)
    def profile(downstream: DownstreamSession) -> tuple[dict[str, Any], int]:
        # The session carries this user's downstream token; the first call per user does OBO,
        # later ones are served from the cache.
        return _what_downstream_saw(downstream)

    @app.get("/api/service-status")
    @requires_scopes("access_as_user")
    @requires_downstream_for_app(api=DOWNSTREAM)
    def service_status(downstream: DownstreamSession) -> tuple[dict[str, Any], int]:
        # An app-only token (client credentials): the downstream API sees the middle tier
        # itself, with the app roles it was granted, not the user.
        return _what_downstream_saw(downstream)

    if os.environ.get("CELERY_BROKER_URL"):
        _add_reports(app)
    return app


def _add_reports(app: Flask) -> None:
    from .reports import MAX_INTERVAL, MAX_PAGES, celery_init_app, report_status, start_report

    app.config["CELERY"] = {
        "broker_url": os.environ["CELERY_BROKER_URL"],
        "result_backend": os.environ.get("CELERY_RESULT_BACKEND",
                                         os.environ["CELERY_BROKER_URL"]),
        "task_ignore_result": False,
        "broker_connection_retry_on_startup": True,
    }
    celery_init_app(app)

    @app.post("/api/reports")
    @requires_scopes("access_as_user")
    def new_report() -> tuple[dict[str, Any], int]:
        # A long-running session and a Celery job: the job acts as the user for hours.
        body = request.get_json(silent=True) or {}
        try:
            pages = min(max(int(body.get("pages", 3)), 1), MAX_PAGES)
            interval = min(max(float(body.get("interval", 1.0)), 0.0), MAX_INTERVAL)
        except (TypeError, ValueError):
            return {"error": "pages and interval must be numbers"}, 400
        report_id = start_report(DOWNSTREAM, current_token.oid or "", current_token.expires_at,
                                 pages, interval)
        return {"id": report_id, "status": f"/api/reports/{report_id}"}, 202

    @app.get("/api/reports/<report_id>")
    @requires_scopes("access_as_user")
    def report(report_id: str) -> tuple[dict[str, Any], int]:
        status = report_status(report_id, current_token.oid or "")
        if status is None:  # another user's report is no report at all
            return {"error": "no such report"}, 404
        return status, 200


def _what_downstream_saw(downstream: DownstreamSession) -> tuple[dict[str, Any], int]:
    answer = downstream.get("me")
    if not answer.ok:  # the downstream API's own refusal, passed on as a gateway error
        return {"caller": current_token.oid, "downstream_status": answer.status_code}, 502
    return {"caller": current_token.oid, "downstream_saw": answer.json()}, 200


def main() -> None:
    start_metrics("middle-tier")  # the OpenTelemetry SDK, once per process, before the app
    serve(create_app, __doc__, 5001)


if __name__ == "__main__":
    main()
