"""The interactive endpoints on the emulator's Flask app: ``/authorize``, ``/{tenant}/login``
(where the pages' forms post), ``/logout``, and ``/`` (a page where a person can accept the
emulator's certificate). Pages forbid framing and load nothing; the session cookie is
``Secure; HttpOnly; SameSite=None``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from flask import Flask, Response, g, request

from .authorize import AuthorizeEndpoint
from .authorize_request import Outcome, PageError
from .pages import form_post_page, message_page

__all__ = ["register_routes"]

_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def _html(html: str, status: int) -> Response:
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _PAGE_CSP
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _to_response(outcome: Outcome, cookie_name: str) -> Response:
    if outcome.location is not None:
        response = Response(status=outcome.status, headers={"Location": outcome.location})
    elif outcome.form_post is not None:
        nonce = secrets.token_urlsafe(16)
        response = Response(form_post_page(*outcome.form_post, nonce=nonce), mimetype="text/html")
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'")
    else:
        response = _html(outcome.html or "", outcome.status)
    response.headers["Cache-Control"] = "no-store, no-cache"
    response.headers["Pragma"] = "no-cache"
    if outcome.session:
        response.set_cookie(cookie_name, outcome.session, path="/", secure=True, httponly=True,
                            samesite="None")
    elif outcome.session == "":
        response.delete_cookie(cookie_name, path="/", secure=True, httponly=True,
                               samesite="None")
    g.record.update(outcome.record)
    return response


def register_routes(app: Flask, endpoint: AuthorizeEndpoint, cookie_name: str) -> None:
    """Add ``/authorize``, ``/login`` (the pages' forms) and ``/logout`` to the emulator."""

    def answer(step: Callable[[str | None], Outcome]) -> Response:
        try:
            outcome = step(request.cookies.get(cookie_name))
        except PageError as err:
            g.record.update(outcome="page:error",
                            error_codes=[err.code] if err.code is not None else [])
            return _html(message_page(err.title, err.message, code=err.code), err.status)
        return _to_response(outcome, cookie_name)

    @app.get("/")
    def index() -> Response:
        # Somewhere for a person to accept the emulator's certificate in their browser.
        return _html(message_page("Entra ID emulator", "Your browser reaches the emulator. Go "
                                  "back to your application and sign in."), 200)

    @app.route("/<tenant>/oauth2/v2.0/authorize", methods=["GET", "POST"])
    def authorize(tenant: str) -> Response:
        params = request.values.to_dict(flat=True)
        return answer(lambda cookie: endpoint.authorize(tenant, params, cookie))

    @app.post("/<tenant>/login")
    def authorize_submit(tenant: str) -> Response:
        form = request.form.to_dict(flat=True)
        return answer(lambda cookie: endpoint.submit(tenant, form, cookie))

    @app.route("/<tenant>/oauth2/v2.0/logout", methods=["GET", "POST"])
    def logout(tenant: str) -> Response:
        params = request.values.to_dict(flat=True)
        return answer(lambda cookie: endpoint.logout(tenant, params, cookie))

