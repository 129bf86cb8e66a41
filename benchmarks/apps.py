"""The WSGI apps under test, one per scenario, configured from the environment.

gunicorn imports them by factory: ``gunicorn 'benchmarks.apps:create("validate")'``.

Every scenario answers ``GET /api/me`` with a short text body of the same length (the caller's
oid, or a fixed GUID for the bare view), so that only the protection differs:

- ``bare``: a plain Flask view, no extension, no token.
- ``validate``: FlaskOBO guarding every view (a validation-only API: no credential).
- ``authlib``: Authlib's ResourceProtector with its RFC 9068 JWT bearer validator, adapted to
  Entra's claims (Entra puts the client in ``azp``, has no ``jti``, and types its tokens
  ``JWT`` rather than ``at+jwt``); the JWKS is fetched once at start.
- ``obo_hit``: FlaskOBO plus ``@requires_downstream``; the view takes the session's
  Authorization header (the token acquisition, a cache hit after the first request per user)
  and does not call the downstream API, so the number compares with the bare view.
  ``OBO_CACHE`` in the environment (JSON) selects a shared backend such as Redis.
- ``soak``: ``obo_hit`` that also writes its worker's token-cache counters to
  ``$SOAK_STATS_DIR/<pid>.json`` every second (``benchmarks.soak`` reads them).
- ``msal_obo``: the pattern of Microsoft's Flask OBO sample (Azure-Samples/
  ms-identity-python-on-behalf-of): a module-wide MSAL ConfidentialClientApplication and
  ``acquire_token_for_user`` on every request. The token is validated by FlaskOBO here
  (the sample re-downloads the JWKS and verifies with python-jose on every request, which
  would only make it slower), so the difference to ``obo_hit`` is the OBO caching alone.

Settings (environment): OBO_AUTHORITY, OBO_CLIENT_ID, OBO_CA_BUNDLE, OBO_CLIENT_SECRET,
OBO_DOWNSTREAM_APIS and OBO_CACHE (JSON), OBO_CACHE_ENCRYPTION_KEY. Values starting with
``{`` or ``[`` are parsed as JSON.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response

__all__ = ["KINDS", "create", "load_settings"]

KINDS = ("bare", "validate", "authlib", "obo_hit", "soak", "msal_obo")
DOWNSTREAM_API = "down"
BARE_BODY = "00000000-0000-0000-0000-000000000000"  # as long as an oid: equal-sized answers


def load_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """OBO_* settings from the environment (JSON-looking values parsed), then ``overrides``."""
    settings: dict[str, Any] = {}
    for key, value in os.environ.items():
        if key.startswith("OBO_"):
            settings[key] = json.loads(value) if value.startswith(("[", "{")) else value
    settings.update(overrides or {})
    return settings


def _text(body: str) -> Response:
    return Response(body, mimetype="text/plain")


def create(kind: str, config: Mapping[str, Any] | None = None) -> Flask:
    """The app for scenario ``kind`` (one of ``KINDS``); ``config`` overrides the environment."""
    builders = {"bare": _bare, "validate": _validate, "authlib": _authlib,
                "obo_hit": _obo_hit, "soak": _soak, "msal_obo": _msal_obo}
    if kind not in builders:
        raise ValueError(f"unknown benchmark app {kind!r}; choose one of {', '.join(KINDS)}")
    app = Flask(f"bench_{kind}")
    builders[kind](app, load_settings(config))
    return app


def _bare(app: Flask, settings: dict[str, Any]) -> None:
    @app.get("/health")
    def health() -> Response:
        return _text("ok")

    @app.get("/api/me")
    def me() -> Response:
        return _text(BARE_BODY)


def _with_obo(app: Flask, settings: dict[str, Any], *, credential: bool) -> None:
    from flask_obo import FlaskOBO, public

    if not credential:
        settings = {k: v for k, v in settings.items()
                    if k not in ("OBO_CLIENT_SECRET", "OBO_DOWNSTREAM_APIS", "OBO_CACHE")}
    app.config.update(settings)
    FlaskOBO(app)

    @app.get("/health")
    @public
    def health() -> Response:
        return _text("ok")


def _validate(app: Flask, settings: dict[str, Any]) -> None:
    from flask_obo import current_token

    _with_obo(app, settings, credential=False)

    @app.get("/api/me")
    def me() -> Response:
        return _text(current_token.oid or "")


def _obo_hit(app: Flask, settings: dict[str, Any]) -> None:
    from flask_obo import DownstreamSession, current_token, requires_downstream

    _with_obo(app, settings, credential=True)

    @app.get("/api/me")
    @requires_downstream(api=DOWNSTREAM_API)
    def me(downstream: DownstreamSession) -> Response:
        # The acquisition a real view does before its downstream call; no call is made.
        if not downstream.authorization:
            return Response("no token", status=502)
        return _text(current_token.oid or "")


def _soak(app: Flask, settings: dict[str, Any]) -> None:
    import threading

    _obo_hit(app, settings)
    directory = os.environ["SOAK_STATS_DIR"]
    started: set[int] = set()  # pids whose writer runs: one per worker, begun after the fork
    lock = threading.Lock()

    def write_stats() -> None:
        cache = app.extensions["obo"].acquirer.cache
        path = os.path.join(directory, f"{os.getpid()}.json")
        while True:
            stats = {"pid": os.getpid(), "waited": cache.stats.waited,
                     "refreshes": cache.stats.refreshes, "dropped": cache.flights.dropped,
                     "time": time.time()}
            with open(path + ".tmp", "w") as out:
                json.dump(stats, out)
            os.replace(path + ".tmp", path)
            time.sleep(1)

    @app.before_request
    def start_writer() -> None:
        if os.getpid() not in started:
            with lock:
                if os.getpid() not in started:
                    started.add(os.getpid())
                    threading.Thread(target=write_stats, daemon=True).start()


def _msal_obo(app: Flask, settings: dict[str, Any]) -> None:
    import msal
    from flask import request

    from flask_obo import build_session, current_token

    _with_obo(app, settings, credential=False)
    scopes = list(settings["OBO_DOWNSTREAM_APIS"][DOWNSTREAM_API]["scopes"])
    # As in the sample: one ConfidentialClientApplication for the process, MSAL's default
    # in-memory token cache (which acquire_token_for_user does not read).
    client = msal.ConfidentialClientApplication(
        settings["OBO_CLIENT_ID"], client_credential=settings["OBO_CLIENT_SECRET"],
        authority=settings["OBO_AUTHORITY"], instance_discovery=False,
        http_client=build_session(settings.get("OBO_CA_BUNDLE"), pool_maxsize=32),
    )

    @app.get("/api/me")
    def me() -> Response:
        assertion = request.headers["Authorization"].split(" ", 1)[1]
        result = client.acquire_token_on_behalf_of(user_assertion=assertion, scopes=scopes)
        if "access_token" not in result:
            return Response(str(result.get("error")), status=502)
        return _text(current_token.oid or "")


def _authlib(app: Flask, settings: dict[str, Any]) -> None:
    # Authlib may warn about its deprecated authlib.jose; not this benchmark's concern.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"authlib(\.|$)")
    warnings.filterwarnings("ignore", message=r".*authlib\.jose.*")
    from authlib.integrations.flask_oauth2 import (  # type: ignore[import-untyped]
        ResourceProtector,
        current_token,
    )
    from joserfc.jwk import KeySet

    from flask_obo import build_session

    validator_class = _entra_validator_class()
    authority = str(settings["OBO_AUTHORITY"]).rstrip("/")
    http = build_session(settings.get("OBO_CA_BUNDLE"))
    metadata = http.get(f"{authority}/v2.0/.well-known/openid-configuration", timeout=10).json()
    keys = KeySet.import_key_set(http.get(metadata["jwks_uri"], timeout=10).json())
    http.close()
    client_id = str(settings["OBO_CLIENT_ID"])
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(validator_class(
        keys, issuer=metadata["issuer"], resource_server=client_id))

    @app.get("/health")
    def health() -> Response:
        return _text("ok")

    @app.get("/api/me")
    @require_oauth()  # type: ignore[untyped-decorator]
    def me() -> Response:
        return _text(str(current_token.get("oid", "")))


def _entra_validator_class() -> type[Any]:
    from authlib.oauth2.rfc6750.errors import InvalidTokenError  # type: ignore[import-untyped]
    from authlib.oauth2.rfc9068 import JWTBearerTokenValidator  # type: ignore[import-untyped]
    from authlib.oauth2.rfc9068.claims import (  # type: ignore[import-untyped]
        JWTAccessTokenClaims,
    )
    from joserfc import jwt
    from joserfc.errors import JoseError

    class EntraAccessTokenClaims(JWTAccessTokenClaims):  # type: ignore[misc]
        def validate(self, now: Any = None, leeway: int = 0) -> None:
            # RFC 9068 wants typ at+jwt; Entra's access tokens say JWT. The claims still count.
            super(JWTAccessTokenClaims, self).validate(now, leeway)

    class EntraJWTBearerTokenValidator(JWTBearerTokenValidator):  # type: ignore[misc]
        """RFC 9068's validator with Entra's claim names; keys fetched once, at start."""

        def __init__(self, keys: Any, **kwargs: Any) -> None:
            self._keys = keys
            super().__init__(**kwargs)

        def get_jwks(self) -> Any:
            return self._keys

        def authenticate_token(self, token_string: str) -> Any:
            options: dict[str, Any] = {
                "iss": {"essential": True, "value": self.issuer},
                "exp": {"essential": True},
                "aud": {"essential": True, "value": self.resource_server},
                "sub": {"essential": True},
                "azp": {"essential": True},
                "iat": {"essential": True},
            }
            try:
                token = jwt.decode(token_string, key=self._keys, algorithms=["RS256"])
            except (JoseError, ValueError) as exc:
                raise InvalidTokenError(realm=self.realm,
                                        extra_attributes=self.extra_attributes) from exc
            return EntraAccessTokenClaims(token.claims, token.header, options)

    return EntraJWTBearerTokenValidator
