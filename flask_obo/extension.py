"""``FlaskOBO``: registration, per-app state and the blueprint that guards every request."""

from __future__ import annotations

import copy
import functools
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, Flask, Request, request

from ._http import build_session
from ._refusals import RefusalLog
from .acquisition import create_acquirer
from .cli import obo_cli
from .config import DEFAULTS, OboConfig
from .context import verify_request
from .downstream.session import DownstreamPools
from .errors import ConfigError
from .state import ErrorRenderer, OboState, get_state
from .validation import create_validator

if TYPE_CHECKING:
    from flask_caching import Cache

__all__ = ["FlaskOBO", "public"]

log = logging.getLogger("flask_obo")

F = TypeVar("F", bound=Callable[..., Any])

_PUBLIC_ATTR = "_flask_obo_public"


def public(view: F) -> F:
    """Mark a view as needing no token (health checks, discovery documents)."""
    setattr(view, _PUBLIC_ATTR, True)
    return view


class FlaskOBO:
    """Protects a Flask app's views with Entra ID bearer tokens and calls APIs on the user's behalf.

    One object may serve several apps (app factories, tests); nothing app-specific is kept on it.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        cache: Cache | None = None,
        error_renderer: ErrorRenderer | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._cache = cache
        self._error_renderer = error_renderer
        # Epoch seconds for every token lifetime, schedule and retry window; tests pass one
        # they control.
        self._clock = clock
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if "obo" in app.extensions:
            raise RuntimeError(
                "FlaskOBO is already registered on this app: call init_app once per app."
            )
        for key, value in DEFAULTS.items():
            # A copy: one app's OBO_DOWNSTREAM_APIS edited in place is not every app's.
            app.config.setdefault(key, copy.copy(value))
        config = OboConfig.from_mapping(app.config)
        if config.downstream_apis and not config.has_credential:
            raise ConfigError(
                "OBO_DOWNSTREAM_APIS is set but the app has no credential: set OBO_CLIENT_SECRET, "
                "OBO_CLIENT_CERTIFICATE or OBO_CLIENT_ASSERTION."
            )
        http = build_session(config.ca_bundle)
        state = OboState(
            config=config,
            http=http,
            validator=create_validator(config, http, clock=self._clock),
            error_renderer=self._error_renderer,
            refusals=RefusalLog(clock=self._clock or time.monotonic),
        )
        # Credentials are loaded (and refused) here, not at the first request.
        state.acquirer = create_acquirer(app, config, http, self._cache, clock=self._clock,
                                         refusals=state.refusals)
        if state.acquirer is not None:
            state.pools = DownstreamPools(config)
        app.extensions["obo"] = state
        app.register_blueprint(_blueprint(app, state))
        if "obo" not in app.cli.commands:
            app.cli.add_command(obo_cli)

    @staticmethod
    def exempt(blueprints: Iterable[Blueprint | str], app: Flask | None = None) -> None:
        """Make whole blueprints public (no token needed)."""
        state = get_state(app)
        for bp in blueprints:
            state.public_blueprints.add(bp if isinstance(bp, str) else bp.name)
        state.public_endpoint_cache.clear()


def _is_public(app: Flask, req: Request, state: OboState) -> bool:
    rule = req.url_rule
    if rule is None:  # no route matched: challenge anyway, so 404s reveal nothing
        return False
    # A CORS preflight carries no credentials: Flask's own OPTIONS answer (which runs no view)
    # needs none. A view that implements OPTIONS itself is guarded like any other method.
    if req.method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
        return True
    endpoint = req.endpoint
    if endpoint is None:
        return False
    public = state.public_endpoint_cache.get(endpoint)
    if public is None:
        public = _endpoint_is_public(app, req, state, endpoint)
        state.public_endpoint_cache[endpoint] = public
    return public


def _endpoint_is_public(app: Flask, req: Request, state: OboState, endpoint: str) -> bool:
    view = app.view_functions.get(endpoint)
    if _is_static_file_view(view):  # by what the view is: any view may be named "static"
        return True
    if endpoint in state.config.public_endpoints:
        return True
    if req.blueprint and set(req.blueprints) & state.public_blueprints:
        return True
    return bool(getattr(view, _PUBLIC_ATTR, False))


_STATIC_METHODS = (Flask.send_static_file, Blueprint.send_static_file)


def _is_static_file_view(view: Any) -> bool:
    """Flask's static-file views: a blueprint's (its bound ``send_static_file``), any route to
    ``app.send_static_file``, and the app's own static route (a lambda in ``Flask.__init__``
    that calls it, recognised by its code object)."""
    if getattr(view, "__func__", None) in _STATIC_METHODS:
        return True
    code = getattr(view, "__code__", None)
    return code is not None and code is _flask_static_route_code()


@functools.cache
def _flask_static_route_code() -> Any:
    probe = Flask(__name__, static_folder="static")  # a throwaway app, for its static route
    return probe.view_functions["static"].__code__


def _blueprint(app: Flask, state: OboState) -> Blueprint:
    """A fresh blueprint per app (registration stays independent between apps) whose guard
    knows its app's state: no context lookup of the app on every request. The app is held
    weakly, as Flask's own static route does, so the app and its guard form no cycle."""
    app_ref = weakref.ref(app)

    def guard() -> None:
        served = app_ref()
        assert served is not None  # it is serving this request
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        if not _is_public(served, req, state):
            verify_request(served, req, state)

    bp = Blueprint("obo", __name__)
    bp.before_app_request(guard)
    return bp
