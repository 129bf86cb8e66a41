"""Redirect URIs as Entra registers and matches them, per platform.

- ``spa`` (single-page application) and ``web``: ``https://...``, or ``http://`` on a loopback
  host (``localhost``, ``127.0.0.1``, ``[::1]``); no fragment. Matched exactly.
- ``public`` (mobile and desktop applications): any absolute URI, custom schemes included.
  A loopback ``http://localhost/...`` or ``http://127.0.0.1/...`` matches on any port
  (RFC 8252 7.3): MSAL Python's interactive sign-in listens on a port it picks.

One URI is registered on one platform only, as in the Entra admin center.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from .directory import App

__all__ = ["LOOPBACK_HOSTS", "check_redirect_uris", "redirect_platform"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _check_browser_uri(uri: str, platform: str) -> None:
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ValueError(f"{platform} redirect URI {uri!r} must not contain a fragment")
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)
    if not secure or not parts.netloc:
        raise ValueError(f"{platform} redirect URI {uri!r} must be https:// (http:// only on "
                         "localhost or 127.0.0.1)")


def check_redirect_uris(spa: Iterable[str], web: Iterable[str],
                        public: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """Validate registrations; returns them as tuples (spa, web, public). Raises ValueError."""
    spa_uris, web_uris, public_uris = tuple(spa), tuple(web), tuple(public)
    for uri in spa_uris:
        _check_browser_uri(uri, "spa")
    for uri in web_uris:
        _check_browser_uri(uri, "web")
    for uri in public_uris:
        if not urlsplit(uri).scheme:
            raise ValueError(f"public client redirect URI {uri!r} must be an absolute URI")
    seen: set[str] = set()
    for uri in (*spa_uris, *web_uris, *public_uris):
        if uri in seen:
            raise ValueError(f"redirect URI {uri!r} is registered on more than one platform")
        seen.add(uri)
    return spa_uris, web_uris, public_uris


def _loopback_match(registered: str, candidate: str) -> bool:
    reg, cand = urlsplit(registered), urlsplit(candidate)
    return (reg.scheme == cand.scheme == "http" and reg.hostname in LOOPBACK_HOSTS
            and reg.hostname == cand.hostname and (reg.path or "/") == (cand.path or "/")
            and reg.query == cand.query)


def redirect_platform(app: App, uri: str) -> str | None:
    """The platform ``uri`` is registered on for ``app`` ("spa", "web", "public"), or None."""
    if uri in app.spa_redirect_uris:
        return "spa"
    if uri in app.web_redirect_uris:
        return "web"
    if uri in app.public_client_redirect_uris or any(
            _loopback_match(reg, uri) for reg in app.public_client_redirect_uris):
        return "public"
    return None

