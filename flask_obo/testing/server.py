"""The emulator's HTTP surface (a Flask app) and the threaded HTTPS server that runs it.

Routes, per tenant (a GUID, a verified domain, ``common`` or ``organizations``):

- ``GET  /{tenant}/v2.0/.well-known/openid-configuration`` and ``/{tenant}/.well-known/...`` (v1)
- ``GET  /{tenant}/discovery/v2.0/keys`` and ``/{tenant}/discovery/keys``
- ``POST /{tenant}/oauth2/v2.0/token`` (and the v1 ``/{tenant}/oauth2/token`` with ``resource=``)
- ``GET|POST /{tenant}/oauth2/v2.0/authorize``, ``POST /{tenant}/login`` (its pages' forms) and
  ``GET|POST /{tenant}/oauth2/v2.0/logout``: the interactive sign-in (see ``authorize.py``)
- ``GET  /common/userrealm/{user}``: the realm MSAL's username/password flow asks for
- ``GET  /common/discovery/instance``: instance discovery, for clients told to ask the emulator
- ``GET|POST /oidc/userinfo`` (and the v1 ``/{tenant}/openid/userinfo``): OIDC UserInfo
- ``GET  /error?code=N``: where ``error_uri`` points

TLS handshakes happen in the worker threads (not in the accept loop), so one stuck client
cannot stall the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from .authorize import AuthorizeEndpoint
from .authorize_http import register_routes
from .calls import CallLog, redact_form
from .cors import register_cors
from .directory import Directory
from .discovery import TENANT_PLACEHOLDER, userrealm_document, v1_configuration, v2_configuration
from .errors import EntraError, entra_error_body
from .faults import Fault, FaultInjector
from .grants import TokenEndpoint, grant_name
from .tokens import KeyRing
from .userinfo import UserInfoError, userinfo

__all__ = ["EmulatorServer", "Services", "build_app"]

logger = logging.getLogger("flask_obo.testing")

_CATEGORIES = {
    "discovery_v2": "discovery", "discovery_v1": "discovery", "jwks_v2": "jwks",
    "jwks_v1": "jwks", "token_v2": "token", "token_v1": "token", "userrealm": "userrealm",
    "authorize": "authorize", "instance_discovery": "discovery", "userinfo": "userinfo",
    "userinfo_v1": "userinfo", "authorize_submit": "authorize", "logout": "logout",
}
# Entra's metadata answers: cacheable for a day, readable from browsers (MSAL.js fetches them).
_METADATA_HEADERS = (("Cache-Control", "max-age=86400, private"),
                     ("Access-Control-Allow-Origin", "*"))
_GARBAGE = b'{"token_type": "Bearer", "access_token": "eyJ0eXAiOiJKV1Qi\x00<html>oops'


class DropConnection(BaseException):
    """Raised to close the connection without an answer (a ``drop`` fault).

    A BaseException so that neither Flask nor werkzeug turns it into a 500.
    """


@dataclass
class Services:
    """What the routes need from the emulator."""

    base: str
    directory: Directory
    keyring: KeyRing
    token_endpoint: TokenEndpoint
    faults: FaultInjector
    calls: CallLog
    authorize: AuthorizeEndpoint
    session_cookie: str = "ESTSAUTH"
    internal_errors: list[str] = field(default_factory=list)


def _tenant_segments(services: Services, segment: str) -> tuple[str, str] | None:
    """(segment for endpoint URLs, tenant for the issuer) or None for an unknown tenant."""
    if segment.lower() in ("common", "organizations"):
        return segment.lower(), TENANT_PLACEHOLDER
    tenant = services.directory.tenant(segment)
    return (tenant.tenant_id, tenant.tenant_id) if tenant else None


def _json(body: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
    response = jsonify(body)
    response.status_code = status
    for name, value in headers:
        response.headers[name] = value
    return response


def _error(services: Services, err: EntraError) -> Response:
    body = entra_error_body(err, correlation_id=g.get("correlation_id"),
                            trace_id=g.get("trace_id"), error_uri_base=services.base)
    response = _json(body, err.status, err.headers.items())
    response.headers["Cache-Control"] = "no-store, no-cache"
    response.headers["Pragma"] = "no-cache"
    return response


def _unknown_tenant(services: Services, segment: str) -> Response:
    return _error(services, EntraError(
        "invalid_tenant", 90002, f"Tenant '{segment}' not found. Check to make sure you have "
        "the correct tenant ID and are signing into the correct cloud."))


def _apply_fault(services: Services, fault: Fault) -> Response | None:
    g.record["fault"] = fault.kind
    if fault.kind == "delay":
        time.sleep(fault.delay)
        return None
    if fault.kind == "hold" and fault.hold is not None:
        fault.hold.wait()
        return None
    if fault.kind == "drop":
        g.record["status"] = None
        services.calls.add(g.record)
        g.recorded = True
        raise DropConnection()
    if fault.kind == "malformed":
        return Response(_GARBAGE, status=200, content_type="application/json")
    if fault.kind == "json":  # json.dumps writes NaN and Infinity, as a broken server might
        return Response(json.dumps(fault.body), status=fault.status,
                        content_type="application/json; charset=utf-8")
    error = "server_error" if fault.status == 500 else "temporarily_unavailable"
    err = EntraError(error, 50000, "There was an error issuing a token or an issue with our "
                     "sign-in service (a fault injected in the emulator).", status=fault.status)
    if fault.retry_after is not None:
        err.headers["Retry-After"] = str(fault.retry_after)
    return _error(services, err)


def _v1_response(body: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The v1 endpoint's shape: numbers as strings, ``expires_on``, ``resource``."""
    out = dict(body)
    if "expires_in" in out:
        now = int(time.time())
        out["expires_on"] = str(now + int(out["expires_in"]))
        out["not_before"] = str(now)
        out["expires_in"] = str(out["expires_in"])
        out["ext_expires_in"] = str(out.get("ext_expires_in", out["expires_in"]))
    if form.get("resource"):
        out["resource"] = form["resource"]
    return out


def _register_hooks(app: Flask, services: Services) -> None:
    @app.before_request
    def start_record() -> Response | None:
        g.correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
        g.trace_id = str(uuid.uuid4())
        category = _CATEGORIES.get(request.endpoint or "", "other")
        g.record = {
            "endpoint": category, "method": request.method, "path": request.path,
            "tenant": (request.view_args or {}).get("tenant"), "timestamp": time.time(),
            "correlation_id": g.correlation_id,
        }
        if category == "token":
            form = request.form.to_dict(flat=True)
            g.record.update(grant_type=form.get("grant_type"),
                            grant=grant_name(form.get("grant_type"), form),
                            client_id=form.get("client_id"), scope=form.get("scope"),
                            params=redact_form(form))
        fault = (services.faults.take(category, request.endpoint) if category != "other"
                 else None)
        return _apply_fault(services, fault) if fault else None

    @app.after_request
    def finish_record(response: Response) -> Response:
        response.headers["client-request-id"] = g.get("correlation_id", "")
        response.headers["x-ms-request-id"] = g.get("trace_id", "")
        if not g.get("recorded") and "record" in g:
            g.record["status"] = response.status_code
            services.calls.add(g.record)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 400
        if status == 405:
            return _error(services, EntraError(
                "invalid_request", 900561, f"The endpoint only accepts POST, OPTIONS requests. "
                f"Received a {request.method} request."))
        error = "not_found" if status == 404 else "invalid_request"
        return _error(services, EntraError(error, 900144 if status != 404 else 90000,
                                           exc.description or exc.name, status=status))

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        logger.exception("Entra emulator: internal error on %s %s", request.method, request.path)
        services.internal_errors.append(f"{request.method} {request.path}: {exc!r}")
        return _error(services, EntraError(
            "server_error", 50000, "There was an error issuing a token or an issue with our "
            "sign-in service (an internal error of the emulator; see its log).", status=500))


def build_app(services: Services) -> Flask:
    """The emulator's routes as a Flask app."""
    app = Flask("flask_obo.testing.emulator")
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.json.mimetype = "application/json; charset=utf-8"  # type: ignore[attr-defined]  # as Entra
    _register_hooks(app, services)
    register_cors(app)
    register_routes(app, services.authorize, services.session_cookie)

    def discovery(tenant: str, builder: Callable[[str, str, str], dict[str, Any]]) -> Response:
        segments = _tenant_segments(services, tenant)
        if segments is None:
            return _unknown_tenant(services, tenant)
        return _json(builder(services.base, *segments), headers=_METADATA_HEADERS)

    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def discovery_v2(tenant: str) -> Response:
        return discovery(tenant, v2_configuration)

    @app.get("/<tenant>/.well-known/openid-configuration")
    def discovery_v1(tenant: str) -> Response:
        return discovery(tenant, v1_configuration)

    @app.get("/<tenant>/discovery/v2.0/keys")
    def jwks_v2(tenant: str) -> Response:
        segments = _tenant_segments(services, tenant)
        if segments is None:
            return _unknown_tenant(services, tenant)
        return _json(services.keyring.jwks(f"{services.base}/{segments[1]}/v2.0"),
                     headers=_METADATA_HEADERS)

    @app.get("/<tenant>/discovery/keys")
    def jwks_v1(tenant: str) -> Response:
        if _tenant_segments(services, tenant) is None:
            return _unknown_tenant(services, tenant)
        return _json(services.keyring.jwks(None), headers=_METADATA_HEADERS)

    def token(tenant: str, *, v1: bool) -> Response:
        form = {}
        for key in request.form:
            values = request.form.getlist(key)
            if len(values) > 1:
                return _error(services, EntraError(
                    "invalid_request", 9000411,
                    f"The request is not properly formatted. The parameter '{key}' is duplicated."))
            form[key] = values[0]
        if not v1 and "resource" in form:
            return _error(services, EntraError(
                "invalid_request", 901002, "The 'resource' request parameter is not supported. "
                "(The v2.0 endpoint takes 'scope', e.g. '<App ID URI>/.default'.)"))
        if v1 and form.get("resource") and not form.get("scope"):
            form["scope"] = form["resource"].rstrip("/") + "/.default"
        try:
            body = services.token_endpoint.handle(
                tenant, form, request.headers.get("Authorization"), g.record,
                origin=request.headers.get("Origin"))
        except EntraError as err:
            g.record.update(error=err.error, error_codes=[err.code], suberror=err.suberror)
            return _error(services, err)
        if v1:
            body = _v1_response(body, form)
        response = _json(body)
        response.headers["Cache-Control"] = "no-store, no-cache"
        response.headers["Pragma"] = "no-cache"
        return response

    @app.post("/<tenant>/oauth2/v2.0/token")
    def token_v2(tenant: str) -> Response:
        return token(tenant, v1=False)

    @app.post("/<tenant>/oauth2/token")
    def token_v1(tenant: str) -> Response:
        return token(tenant, v1=True)

    @app.get("/<tenant>/discovery/instance")
    def instance_discovery(tenant: str) -> Response:
        # For clients pointed at the emulator for instance discovery (MSAL Python accepts a URL
        # as ``instance_discovery``): the emulator is its own, only, cloud instance.
        target = urlsplit(request.args.get("authorization_endpoint", ""))
        segment = target.path.strip("/").split("/")[0] if target.path.strip("/") else "common"
        host = urlsplit(services.base).netloc
        return _json({
            "tenant_discovery_endpoint":
                f"{services.base}/{segment}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host,
                          "aliases": [host]}],
        })

    @app.get("/<tenant>/userrealm/<path:username>")
    def userrealm(tenant: str, username: str) -> Response:
        domain = username.rpartition("@")[2]
        known = services.directory.user_by_name(username) is not None or (
            bool(domain) and services.directory.tenant(domain) is not None)
        return _json(userrealm_document(username, known))

    @app.route("/oidc/userinfo", methods=["GET", "POST"])
    def userinfo_v2() -> Response:
        return _userinfo(services)

    @app.route("/<tenant>/openid/userinfo", methods=["GET", "POST"])
    def userinfo_v1(tenant: str) -> Response:
        return _userinfo(services)

    @app.get("/error")
    def error_page() -> Response:
        code = request.args.get("code", "")
        return Response(f"AADSTS{code}: see the error_description of the response that linked "
                        "here (Entra ID emulator).\n", content_type="text/plain; charset=utf-8")

    return app


def _userinfo(services: Services) -> Response:
    try:
        body = userinfo(request.headers.get("Authorization"),
                        services.token_endpoint.factory.tokens, services.directory)
    except UserInfoError as exc:
        return _json(exc.body(), 401, [("WWW-Authenticate", exc.challenge)])
    return _json(body)


class _Handler(WSGIRequestHandler):
    """werkzeug's handler, quiet, and able to drop a connection on purpose."""

    def handle(self) -> None:
        try:
            super().handle()
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path only: a query string can carry an id_token_hint or a login_hint.
        logger.debug("%s %s -> %s", self.command, self.path.split("?", 1)[0], code)

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("werkzeug %s: " + message, type, *args)


class EmulatorServer(ThreadedWSGIServer):
    """A threaded werkzeug server on 127.0.0.1 whose sockets speak TLS."""

    def __init__(self, port: int, app: Any, ssl_context: ssl.SSLContext) -> None:
        # Bind here so that a busy port raises OSError (werkzeug would print and sys.exit).
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(128)
            super().__init__("127.0.0.1", port, app, handler=_Handler, fd=listener.fileno())
        finally:
            listener.close()  # werkzeug works on its own duplicate of the descriptor
        self._tls = ssl_context
        self.ssl_context = ssl_context  # werkzeug reads it for wsgi.url_scheme
        self._thread: threading.Thread | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        sock.settimeout(30)
        wrapped = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("Entra emulator: connection error from %s", client_address, exc_info=True)

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("werkzeug %s: " + message, type, *args)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"entra-emulator-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()
