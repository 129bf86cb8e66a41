"""Review findings: secrets kept out of reprs and tracebacks; state a forked worker can use."""

from __future__ import annotations

import os
import sys
import traceback

import pytest

from flask_obo._http import build_session
from flask_obo.config import OboConfig
from flask_obo.errors import InvalidToken
from flask_obo.validation import Authority

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"
PASSWORD = "hunter2-redis-password"


def _config(**extra: object) -> OboConfig:
    return OboConfig.from_mapping({"OBO_AUTHORITY": f"https://login.example/{TENANT}",
                                   "OBO_CLIENT_ID": CLIENT, **extra})


def test_config_repr_hides_the_cache_settings_and_their_password() -> None:
    config = _config(OBO_CACHE={"CACHE_TYPE": "RedisCache",
                                "CACHE_REDIS_URL": f"redis://:{PASSWORD}@redis:6379/0",
                                "CACHE_REDIS_PASSWORD": PASSWORD},
                     OBO_CLIENT_SECRET="a-client-secret")
    assert PASSWORD not in repr(config)
    assert "a-client-secret" not in repr(config)
    assert CLIENT in repr(config)  # still useful to print


def test_an_unexpected_validation_error_is_not_shown_with_the_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever an unforeseen error says (it may quote the token) must not reach the traceback
    # an app's error handler logs for the 401 (exc_info shows chained exceptions).
    from flask import Flask

    from flask_obo import FlaskOBO

    app = Flask("leaky")
    app.config.update(OBO_AUTHORITY=f"https://login.example/{TENANT}", OBO_CLIENT_ID=CLIENT)
    FlaskOBO(app)
    seen: list[BaseException] = []

    @app.errorhandler(InvalidToken)
    def keep(error: InvalidToken) -> object:
        seen.append(error)
        return error

    def explode(token: str) -> object:
        raise ValueError(f"cannot parse {token}")

    monkeypatch.setattr(app.extensions["obo"].validator, "validate_cached", explode)
    response = app.test_client().get("/", headers={"Authorization": "Bearer SECRET.TOKEN.PART"})
    assert response.status_code == 401
    shown = "".join(traceback.format_exception(seen[0]))
    assert "SECRET" not in shown


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_a_forked_worker_can_fetch_keys_although_the_parent_was_mid_refresh() -> None:
    authority = Authority(_config(), build_session())
    authority._lock.acquire()  # a refresh thread of the parent holds it at the fork
    authority._refreshing = True
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            usable = authority._lock.acquire(timeout=2) and not authority._refreshing
            os._exit(0 if usable else 1)
    finally:
        authority._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_redis_url_that_does_not_parse_is_refused_without_quoting_its_password() -> None:
    from flask import Flask

    from flask_obo import ConfigError, FlaskOBO

    app = Flask("bad-url")
    app.config.update(OBO_AUTHORITY=f"https://login.example/{TENANT}", OBO_CLIENT_ID=CLIENT,
                      OBO_CLIENT_SECRET="s3cret", OBO_CACHE={
                          "CACHE_TYPE": "RedisCache",
                          # an unencoded '/' in the password cuts the host part short
                          "CACHE_REDIS_URL": f"redis://:{PASSWORD}/x@localhost:6379/0"})
    with pytest.raises(ConfigError) as caught:
        FlaskOBO(app)
    shown = "".join(traceback.format_exception(caught.value))
    assert "hunter2" not in shown
    assert "URL-encoded" in str(caught.value)
