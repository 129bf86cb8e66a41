"""Reports: a Celery job that calls the downstream API as the user, for as long as it takes.

The view (``middle_tier.py``, ``POST /api/reports``) starts a long-running session and queues
``build_report`` with its key; the job then works page by page, long after the user's own token
has expired, each page a call to the downstream API as that user. ``GET /api/reports/<id>``
shows its progress, to that user only.

``celery_init_app`` is Flask's documented pattern: one Celery app sharing the Flask app's
configuration (``app.config["CELERY"]``), every task run inside ``app.app_context()``, so
flask-obo's functions find the app. A worker runs ``celery -A samples.worker worker``.

The session key is a capability: it travels to the worker as a task argument (in the broker,
which is as private as the token cache) and is hidden from Celery's logs with ``argsrepr``;
the job never returns it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from celery import Celery, Task, shared_task
from celery.result import AsyncResult
from flask import Flask, current_app

from flask_obo import (
    LongRunningSessionExpired,
    get_long_running_session,
    start_long_running_process,
    stop_long_running_process,
)

MAX_PAGES = 20
MAX_INTERVAL = 60.0


def celery_init_app(app: Flask) -> Celery:
    """A Celery app configured from ``app.config["CELERY"]`` whose tasks run in the app."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def start_report(api: str, owner: str, user_token_expires: float, pages: int,
                 interval: float) -> str:
    """Inside the request: a session for ``api``, and the job queued. Returns the report id."""
    celery_app: Celery = current_app.extensions["celery"]
    session_key = start_long_running_process(api)
    report_id = str(uuid.uuid4())
    progress = {"owner": owner, "pages": pages, "done": 0, "calls": [], "outcome": None,
                "user_token_expires": user_token_expires}
    # Known to its owner from the start, before a worker has picked it up.
    celery_app.backend.store_result(report_id, progress, "QUEUED")
    build_report.apply_async(
        (session_key, api, progress, interval), task_id=report_id,
        argsrepr=f"('<session key>', {api!r}, ..., {interval!r})")  # no key in any log
    return report_id


def report_status(report_id: str, owner: str) -> dict[str, Any] | None:
    """The report's progress, if ``owner`` owns it (None: not theirs, or no such report)."""
    result = AsyncResult(report_id, app=current_app.extensions["celery"])
    info = result.info if isinstance(result.info, dict) else {}
    if info.get("owner") != owner:
        return None
    return {"state": result.state, **{k: v for k, v in info.items() if k != "owner"}}


@shared_task(bind=True)
def build_report(self: Task, session_key: str, api: str, progress: dict[str, Any],
                 interval: float) -> dict[str, Any]:
    """Page by page, as the user; the session is stopped when the report is done or fails."""
    try:
        downstream = get_long_running_session(session_key, api)
        for page in range(1, int(progress["pages"]) + 1):
            if page > 1:
                time.sleep(interval)  # the slow part of a real report
            answer = downstream.get("me")
            answer.raise_for_status()
            saw = answer.json()
            now = time.time()
            progress["calls"].append({
                "page": page, "at": now, "oid": saw["oid"], "azp": saw["azp"],
                "user_token_expired": now > float(progress["user_token_expires"])})
            progress["done"] = page
            self.update_state(state="PROGRESS", meta=progress)
        progress["outcome"] = "complete"
    except LongRunningSessionExpired as ended:  # at once, with the reason: no retry helps
        progress.update(outcome="session ended", reason=ended.reason,
                        message=ended.description)
    finally:
        stop_long_running_process(session_key)
    return progress
