"""The long-running middle tier as a Celery worker, for test_long_running_celery:
``celery -A long_running_worker:celery_app worker``.

Its settings come from the environment, as a deployment's would (Flask's
``from_prefixed_env``): ``FLASK_OBO_AUTHORITY``, ``FLASK_OBO_CACHE`` (JSON), ...,
``FLASK_CELERY`` (JSON: broker_url, result_backend). The Celery app is the samples' (Flask's
documented pattern). Tasks return what the job saw, never a session key or a raw token.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import redis
from flask import Flask

from flask_obo import (
    FlaskOBO,
    LongRunningSessionExpired,
    acquire_token_for_long_running_process,
    get_long_running_session,
)
from samples.reports import celery_init_app

flask_app = Flask("long-running-worker")
flask_app.config.from_prefixed_env()
FlaskOBO(flask_app)
celery_app = celery_init_app(flask_app)


def _ended(exc: LongRunningSessionExpired) -> dict[str, Any]:
    return {"error": type(exc).__name__, "reason": exc.reason, "message": exc.description}


@celery_app.task
def call_downstream(session_key: str) -> dict[str, Any]:
    """The downstream API's ``/me``, as the session's user."""
    try:
        answer = get_long_running_session(session_key, "down").get("me")
    except LongRunningSessionExpired as exc:
        return _ended(exc)
    saw = answer.json()
    return {"status": answer.status_code, "oid": saw["oid"], "azp": saw["azp"],
            "token": saw["token"], "at": time.time()}


@celery_app.task
def acquire_together(session_key: str, barrier: str, parties: int) -> dict[str, Any]:
    """Wait until ``parties`` tasks stand at ``barrier`` (a Redis counter and list), then
    acquire the session's token at the same moment as the others."""
    client = redis.Redis.from_url(flask_app.config["CELERY"]["broker_url"])
    if client.incr(barrier) == parties:
        client.rpush(f"{barrier}:go", *["go"] * parties)
    if client.blpop([f"{barrier}:go"], timeout=30) is None:
        return {"error": "the other tasks never reached the barrier"}
    started = time.time()
    token = acquire_token_for_long_running_process(session_key)
    return {"started": started, "done": time.time(),
            "token": hashlib.sha256(token.token.encode()).hexdigest()}
