"""``OboState``: everything flask-obo keeps for one app, in ``app.extensions["obo"]``.

A leaf module: the extension builds the state, every other module reads it through
``get_state``, and none of them needs to import the extension to do so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Flask, current_app
from werkzeug.sansio.response import Response as SansIOResponse

from ._refusals import RefusalLog

if TYPE_CHECKING:
    from ._http import PinnedTrustSession
    from .acquisition import TokenAcquirer
    from .config import OboConfig
    from .downstream.session import DownstreamPools
    from .errors import OboError
    from .long_running import LongRunningSessions
    from .validation import TokenValidator

__all__ = ["ErrorRenderer", "OboState", "get_state"]

ErrorRenderer = Callable[["OboError"], SansIOResponse]


@dataclass(eq=False)
class OboState:
    """The app's configuration and the objects built from it once, at init_app."""

    config: OboConfig
    http: PinnedTrustSession  # pooled, trusts OBO_CA_BUNDLE; for the authority and MSAL
    validator: TokenValidator
    acquirer: TokenAcquirer | None = None  # None: a validation-only API (no credential)
    #: pooled sessions to the downstream APIs (None without an acquirer)
    pools: DownstreamPools | None = None
    error_renderer: ErrorRenderer | None = None
    public_blueprints: set[str] = field(default_factory=set)
    #: endpoint -> public? Decided once per endpoint: views cannot change after the first request.
    public_endpoint_cache: dict[str, bool] = field(default_factory=dict)
    #: (api, scopes) -> where a downstream session goes (``downstream.api``), resolved once
    downstream_targets: dict[object, object] = field(default_factory=dict)
    #: long-running sessions, built when the first is started or used (they need Redis)
    long_running: LongRunningSessions | None = None
    #: the log lines that explain refusals, rate-limited per reason
    refusals: RefusalLog = field(default_factory=RefusalLog)
    #: configuration mistakes already logged (each is logged once, however many requests hit it)
    reported_mistakes: set[str] = field(default_factory=set)

    def close(self) -> None:
        """Wait for background token refreshes, then release their threads and the pools
        (an app being torn down: tests, a worker's shutdown hook)."""
        if self.acquirer is not None:
            self.acquirer.close()
        if self.pools is not None:
            self.pools.close()


def get_state(app: Flask | None = None) -> OboState:
    """The app's flask-obo state; a clear RuntimeError where FlaskOBO was never initialised."""
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]  # once, not per use
    try:
        state: OboState = app.extensions["obo"]
    except KeyError:
        raise RuntimeError(
            "flask-obo is not initialised on this app: call FlaskOBO(app) or obo.init_app(app)."
        ) from None
    return state
