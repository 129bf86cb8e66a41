"""``DownstreamStandIn``: a downstream API for tests, served for real on loopback, that checks
every token it receives as a real resource would, and records who called.

::

    down = emu.register_app("downstream", scopes=["read"], roles=["Reader"])
    with DownstreamStandIn(emu, down) as api:      # or the pytest fixture ``downstream_api``
        app.config["OBO_DOWNSTREAM_APIS"] = {"down": {"base_url": api.url,
                                                      "scopes": [api.scope("read")]}}
        ...                                        # the middle tier calls it over HTTP
        call = api.calls[-1]                       # method, path, status, claims, token
        assert call.claims["oid"] == alice.oid and call.claims["azp"] == middle.client_id

Every request's bearer token is validated against the emulator by flask-obo itself: signature
(keys from the emulator's JWKS), issuer, audience (the stand-in's registration), expiry, and
one of the stand-in's delegated ``scopes`` or, for an app-only token, one of its ``roles``. A
token that passes gets a 200 JSON answer describing the caller (``oid``, ``tid``, ``scp``,
``roles``, ``azp``, ``amr``, ``app_only``, ``token`` as a ``sha256:`` fingerprint, the
``cookies`` it sent, ``method`` and ``path``), whatever the path; one that does not gets
flask-obo's own 401 or 403. Every call is recorded in :attr:`DownstreamStandIn.calls`, with the
caller's validated claims and never the raw token.

:meth:`~DownstreamStandIn.answer_next` scripts the next answers instead (an error status, a
claims challenge, a cookie, a slow answer); :meth:`~DownstreamStandIn.stop` and
:meth:`~DownstreamStandIn.start` take it off the network and back (connections refused).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request

from ..authorization import requires_scopes_or_roles
from ..context import current_token, get_current_token
from ..extension import FlaskOBO
from .calls import fingerprint
from .directory import App
from .loopback import LoopbackServer
from .tls import ServerTLS

if TYPE_CHECKING:
    from .emulator import EntraEmulator

__all__ = ["DownstreamCall", "DownstreamStandIn"]


@dataclass(frozen=True)
class DownstreamCall:
    """One request the stand-in answered."""

    method: str
    path: str
    status: int
    #: the validated token's claims (``None`` when the token was refused or missing)
    claims: Mapping[str, Any] | None
    #: ``sha256:<prefix>`` of the bearer token, to tell tokens apart (``None`` without one)
    token: str | None
    #: flask-obo's reason code when the stand-in refused the call (``"audience"``,
    #: ``"expired"``, ``"missing_scope"``...)
    reason: str | None = None

    @property
    def oid(self) -> str | None:
        return None if self.claims is None else self.claims.get("oid")


@dataclass(frozen=True)
class _Answer:
    status: int | None
    headers: Mapping[str, str]
    body: Any
    delay: float


@dataclass
class DownstreamStandIn:
    """A stand-in for the downstream API ``registration`` of ``emulator``; see the module doc.

    :param scopes: the delegated scopes a user token needs one of (default: every scope the
        registration exposes).
    :param roles: the app roles an app-only token needs one of (default: the registration's).
    :param tls: serve HTTPS with a CA of its own (:attr:`ca_bundle`) instead of HTTP.
    """

    emulator: EntraEmulator
    registration: App
    scopes: Iterable[str] | None = None
    roles: Iterable[str] | None = None
    tls: bool = False
    #: every call answered, oldest first
    calls: list[DownstreamCall] = field(default_factory=list, init=False)
    #: the Flask app (validation by FlaskOBO, the recording, the answers)
    app: Flask = field(init=False, repr=False)
    #: the base URL for ``OBO_DOWNSTREAM_APIS[...]["base_url"]``, with a trailing slash
    url: str = field(init=False)
    #: the PEM file of the stand-in's own CA when ``tls``, else None
    ca_bundle: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: deque[_Answer] = deque()
        self._tls_dir: Any = None
        ssl_context = None
        if self.tls:
            self._tls_dir = tempfile.TemporaryDirectory(prefix="downstream-stand-in-")
            server_tls = ServerTLS(self._tls_dir.name)
            self.ca_bundle = server_tls.ca_bundle
            ssl_context = server_tls.server_context()
        self.app = self._build_app()
        self._server = LoopbackServer(self.app, ssl_context=ssl_context).start()
        self.url = self._server.url

    # configuration helpers -------------------------------------------------------------------
    def scope(self, name: str) -> str:
        """The full name of one of its scopes: ``api://<client id>/<name>``."""
        return f"{self.registration.app_id_uri}/{name}"

    # scripted answers ------------------------------------------------------------------------
    def answer_next(self, *, status: int | None = None, headers: Mapping[str, str] | None = None,
                    body: Any = None, delay: float = 0.0, count: int = 1) -> None:
        """Answer the next ``count`` calls that carry a valid token with ``status`` (``None``:
        the usual 200 answer), ``headers`` (a claims challenge, a cookie...) and ``body`` (a
        dict is sent as JSON, text as text), after ``delay`` seconds."""
        if count < 1:
            raise ValueError("count must be at least 1")
        answer = _Answer(status, dict(headers or {}), body, delay)
        with self._lock:
            self._answers.extend([answer] * count)

    def clear_answers(self) -> None:
        """Forget the scripted answers not used yet."""
        with self._lock:
            self._answers.clear()

    # lifecycle -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Close the port: the middle tier's connections are refused until :meth:`start`."""
        self._server.stop()

    def start(self) -> DownstreamStandIn:
        """Serve again, on the same port."""
        self._server.start()
        return self

    def close(self) -> None:
        """Stop serving for good, and release the app's resources."""
        self._server.stop()
        self.app.extensions["obo"].close()
        if self._tls_dir is not None:
            self._tls_dir.cleanup()

    def __enter__(self) -> DownstreamStandIn:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # the app ---------------------------------------------------------------------------------
    def _build_app(self) -> Flask:
        reg = self.registration
        app = Flask(f"downstream-stand-in-{reg.client_id[:8]}")
        tenant = "organizations" if reg.multi_tenant else reg.tenant_id
        app.config.update(OBO_AUTHORITY=self.emulator.authority(tenant),
                          OBO_CLIENT_ID=reg.client_id, OBO_CA_BUNDLE=self.emulator.ca_bundle)
        if reg.multi_tenant:
            app.config["OBO_ALLOWED_TENANTS"] = "*"
        FlaskOBO(app)
        scopes = tuple(reg.scopes if self.scopes is None else self.scopes)
        roles = tuple(reg.roles if self.roles is None else self.roles)

        @app.route("/", defaults={"path": ""}, methods=_METHODS)
        @app.route("/<path:path>", methods=_METHODS)
        @requires_scopes_or_roles(scopes=scopes, roles=roles)
        def answer(path: str) -> Response:
            scripted = self._next_answer()
            if scripted is None:
                return jsonify(self._describe_caller())
            if scripted.delay:
                time.sleep(scripted.delay)
            if scripted.status is None and scripted.body is None:
                response = jsonify(self._describe_caller())
            elif isinstance(scripted.body, Mapping):
                response = jsonify(scripted.body)
            else:
                response = Response(scripted.body or "", content_type="text/plain")
            if scripted.status is not None:
                response.status_code = scripted.status
            response.headers.update(scripted.headers)
            return response

        @app.after_request
        def record(response: Response) -> Response:
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header[:7].lower() == "bearer " else ""
            try:
                claims: Mapping[str, Any] | None = _plain(get_current_token())
            except RuntimeError:  # refused, or no token
                claims = None
            reason = None
            if response.status_code >= 400 and response.is_json:
                body = response.get_json(silent=True)
                reason = body.get("reason") if isinstance(body, dict) else None
            call = DownstreamCall(request.method, request.path, response.status_code, claims,
                                  fingerprint(token) if token else None, reason)
            with self._lock:
                self.calls.append(call)
            return response

        return app

    def _next_answer(self) -> _Answer | None:
        with self._lock:
            return self._answers.popleft() if self._answers else None

    def _describe_caller(self) -> dict[str, Any]:
        header = request.headers.get("Authorization", "")
        return {
            "oid": current_token.oid, "tid": current_token.tid,
            "name": current_token.get("name"),
            "preferred_username": current_token.get("preferred_username"),
            "scp": sorted(current_token.scopes), "roles": sorted(current_token.roles),
            "azp": current_token.client_id, "amr": list(current_token.get("amr", ())),
            "app_only": current_token.is_app_only, "token": fingerprint(header[7:].strip()),
            "cookies": dict(request.cookies), "method": request.method, "path": request.path,
        }


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


def _plain(value: Any) -> Any:
    """Frozen claims as plain JSON-like values (dicts and lists)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list, frozenset)):
        return [_plain(v) for v in value]
    return value
