"""An authorization request as Entra's v2 ``/authorize`` reads it, and how answers go back.

Errors that cannot be trusted to the redirect URI (unknown tenant or client, an unregistered
redirect URI) are :class:`PageError`: shown on a page. Every later error is a
:class:`RedirectError`: sent to the redirect URI as ``error`` and ``error_description``
(``AADSTSnnnnn: ...``), with the ``state``, in the ``response_mode`` asked for (``query``, the
default for codes, ``fragment`` or ``form_post``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .directory import RESERVED_TENANTS, App, Directory, Tenant, User
from .errors import EntraError, entra_error_body
from .grants import _asks_step_up
from .scopes import ScopeRequest, parse_scope

__all__ = [
    "PROMPTS",
    "RESPONSE_MODES",
    "Outcome",
    "PageError",
    "RedirectError",
    "SignInRequest",
    "error_response",
    "resolve_client",
    "resolve_tenant",
    "respond",
    "validate_request",
]

RESPONSE_MODES = ("query", "fragment", "form_post")
PROMPTS = ("login", "none", "consent", "select_account")
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{43,128}")


class PageError(Exception):
    """An error shown on a page: the redirect URI cannot be trusted (yet)."""

    def __init__(self, code: int | None, message: str, *, title: str = "Sign in",
                 status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.title = title
        self.status = status


class RedirectError(Exception):
    """An error sent to the redirect URI."""

    def __init__(self, error: str, code: int, message: str) -> None:
        super().__init__(f"{error}: AADSTS{code}: {message}")
        self.error = error
        self.code = code
        self.message = message


@dataclass
class Outcome:
    """What the HTTP layer answers. Exactly one of ``html``, ``location`` or ``form_post``.

    ``session`` is a cookie value to set (``""`` clears the cookie, ``None`` leaves it).
    ``record`` adds to the call log: never a code or a password.
    """

    html: str | None = None
    status: int = 200
    location: str | None = None
    form_post: tuple[str, dict[str, str]] | None = None
    session: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class SignInRequest:
    """An authorization request that passed validation, and how far the person got."""

    tenant_segment: str
    tenant: Tenant | None  # None for /common and /organizations
    client: App
    redirect_uri: str
    platform: str
    response_mode: str
    state: str | None
    nonce: str | None
    scope: ScopeRequest
    code_challenge: str | None
    code_challenge_method: str | None
    prompt: str | None
    login_hint: str | None
    domain_hint: str | None
    wants_mfa: bool
    wants_client_info: bool
    handle: str | None = None  # the ``ctx`` of its pages, once it shows one
    user: User | None = None
    amr: tuple[str, ...] = ()
    auth_time: float = 0.0
    consent_done: bool = False


def _redirect_error(err: EntraError) -> RedirectError:
    return RedirectError(err.error, err.code, err.message)


def resolve_tenant(directory: Directory, path_tenant: str) -> Tenant | None:
    """The tenant of the path (None for common/organizations); PageError if unknown."""
    if path_tenant.lower() in ("common", "organizations"):
        return None
    tenant = (directory.tenant(path_tenant)
              if path_tenant.lower() not in RESERVED_TENANTS else None)
    if tenant is None:
        raise PageError(90002, f"Tenant '{path_tenant}' not found. Check to make sure you "
                        "have the correct tenant ID and are signing into the correct cloud.")
    return tenant


def resolve_client(directory: Directory, client_id: str | None, tenant: Tenant | None,
                   path_tenant: str) -> App:
    """The app asking; PageError if unknown or not in the tenant."""
    if not client_id:
        raise PageError(900144, "The request body must contain the following parameter: "
                        "'client_id'.")
    client = directory.app(client_id)
    if client is None or (tenant and not directory.app_visible_in(
            client, tenant.tenant_id)):
        where = tenant.tenant_id if tenant else path_tenant
        raise PageError(700016, f"Application with identifier '{client_id}' was not found "
                        f"in the directory '{where}'. This can happen if the application "
                        "has not been installed by the administrator of the tenant or "
                        "consented to by any user in the tenant. You may have sent your "
                        "authentication request to the wrong tenant.")
    return client


def validate_request(directory: Directory, params: Mapping[str, str], tenant: Tenant | None,
                     path_tenant: str, client: App, redirect_uri: str, platform: str,
                     mode: str) -> SignInRequest:
    """The rest of the request, once errors may go to the redirect URI (RedirectError)."""
    response_type = params.get("response_type")
    if not response_type:
        raise RedirectError("invalid_request", 900144, "The request body must contain the "
                            "following parameter: 'response_type'.")
    if response_type.split() != ["code"]:
        raise RedirectError("unsupported_response_type", 700054, f"response_type "
                            f"'{response_type}' is not enabled for the application. (The "
                            "emulator issues authorization codes: response_type=code.)")
    try:
        scope = parse_scope(params.get("scope"), directory)
        wants_mfa = _asks_step_up(params.get("claims"))
    except EntraError as err:
        raise _redirect_error(err) from err
    if scope.resource is not None and tenant is not None and not \
            directory.app_visible_in(scope.resource, tenant.tenant_id):
        raise RedirectError("invalid_resource", 500011, f"The resource principal named "
                            f"{scope.identifier} was not found in the tenant named "
                            f"{tenant.tenant_id}.")
    prompt = params.get("prompt") or None
    if prompt is not None and prompt not in PROMPTS:
        raise RedirectError("invalid_request", 9002313, f"Invalid request. The prompt "
                            f"value '{prompt}' is not supported: use login, none, consent "
                            "or select_account.")
    challenge, method = _pkce(params, platform)
    return SignInRequest(
        tenant_segment=path_tenant, tenant=tenant, client=client, redirect_uri=redirect_uri,
        platform=platform, response_mode=mode, state=params.get("state"),
        nonce=params.get("nonce"), scope=scope, code_challenge=challenge,
        code_challenge_method=method, prompt=prompt, login_hint=params.get("login_hint"),
        domain_hint=params.get("domain_hint"), wants_mfa=wants_mfa,
        wants_client_info=params.get("client_info") == "1",
    )


def _pkce(params: Mapping[str, str], platform: str) -> tuple[str | None, str | None]:
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or None
    if challenge is None:
        if method is not None:
            raise RedirectError("invalid_request", 900144, "The request body must contain "
                                "the following parameter: 'code_challenge'.")
        if platform == "spa":
            raise RedirectError("invalid_request", 9002325, "Proof Key for Code Exchange "
                                "is required for cross-origin authorization code "
                                "redemption.")
        return None, None
    method = method or "plain"
    if method not in ("S256", "plain"):
        raise RedirectError("invalid_request", 50149, f"Invalid code_challenge_method "
                            f"'{method}': use S256.")
    if platform == "spa" and method != "S256":
        raise RedirectError("invalid_request", 50149, "Invalid code_challenge_method "
                            "'plain': single-page applications must use S256.")
    if not _CHALLENGE.fullmatch(challenge):
        raise RedirectError("invalid_request", 501491, "Invalid size of Code_Challenge "
                            "parameter.")
    return challenge, method


def respond(redirect_uri: str, mode: str, fields: dict[str, str],
            record: dict[str, Any]) -> Outcome:
    """Send ``fields`` back to the app as ``mode`` says (a redirect, or a self-posting form)."""
    if mode == "form_post":
        return Outcome(form_post=(redirect_uri, fields), record=record)
    parts = urlsplit(redirect_uri)
    if mode == "fragment":
        return Outcome(location=urlunsplit(parts._replace(fragment=urlencode(fields))),
                       status=302, record=record)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(fields.items())
    return Outcome(location=urlunsplit(parts._replace(query=urlencode(query))), status=302,
                   record=record)


def error_response(base: str, redirect_uri: str, mode: str, state: str | None,
                   err: RedirectError, record: dict[str, Any]) -> Outcome:
    """``err`` back to the app, with Entra's ``error_description`` and the ``state``."""
    body = entra_error_body(EntraError(err.error, err.code, err.message),
                            correlation_id=None, error_uri_base=base)
    fields = {"error": err.error, "error_description": body["error_description"],
              "error_uri": body["error_uri"]}
    if state is not None:
        fields["state"] = state
    record.update(outcome="error", error=err.error, error_codes=[err.code])
    return respond(redirect_uri, mode, fields, record)
