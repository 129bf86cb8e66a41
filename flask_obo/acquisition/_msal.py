"""MSAL's plumbing: its HTTP client, a token cache and an HTTP cache that keep nothing, and the
exceptions on the way to the identity provider turned into the answers clients get.

- ``MsalHttp`` is MSAL's ``http_client``: the app's pooled session (trusting
  ``OBO_CA_BUNDLE``) with ``OBO_HTTP_TIMEOUT``; a 429 or 5xx becomes ``IdpHttpError`` carrying
  its Retry-After, before MSAL parses (or logs) a body.
- ``NoStore`` as MSAL's ``http_cache`` turns off its throttling replay: MSAL would answer one
  user's 5xx to every user of the same scopes for seconds, and replay a 400 (say, consent
  missing) for a minute after an admin fixed it.
- ``NoTokenCache``: ``acquire_token_for_user`` never reads MSAL's cache, which would
  otherwise keep every user's tokens for ever; ``OboTokenCache`` is the cache.
- ``result_error``: Entra's error answers (as MSAL returns them) as the errors clients get:
  a claims challenge, consent, an invalid assertion, or this API's own fault;
  ``refresh_error`` the same for a refresh token of a long-running session, whose refusal
  ends the session (``LongRunningSessionExpired``, saying why).
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import msal
import requests

from ..errors import (
    ClaimsChallenge,
    ConsentRequired,
    CredentialUnavailable,
    IdentityProviderUnavailable,
    InvalidToken,
    LongRunningSessionExpired,
    OboError,
    UpstreamAuthError,
)

__all__ = ["CLIENT_FAULT_CODES", "IdpHttpError", "MsalHttp", "NoStore", "NoTokenCache",
           "call_outcome", "error_codes", "exception_error", "refresh_error", "result_error",
           "with_capabilities"]


def exception_error(exc: Exception) -> OboError:
    """An exception on the way to the identity provider, as the answer the client gets."""
    if isinstance(exc, IdpHttpError):
        return IdentityProviderUnavailable(reason=f"http_{exc.status}", retry_after=exc.retry_after)
    if isinstance(exc, requests.Timeout):
        return IdentityProviderUnavailable(reason="timeout")
    if isinstance(exc, requests.ConnectionError):
        return IdentityProviderUnavailable(reason="unreachable")
    if isinstance(exc, CredentialUnavailable):
        return UpstreamAuthError(reason="credential_unavailable")
    if isinstance(exc, (requests.RequestException, ValueError, KeyError,
                        msal.exceptions.MsalServiceError)):
        # Malformed JSON, incomplete discovery metadata, an HTTP error MSAL raised itself.
        return IdentityProviderUnavailable(reason="malformed_response")
    return UpstreamAuthError(reason=type(exc).__name__)


def call_outcome(result: Any, exc: BaseException | None) -> tuple[str, str]:
    """How one token request went, for telemetry: ``("success", "")``; ``("refused",
    "<Entra's error>[:AADSTS<code>,...]")`` for Entra's error answer; ``("failed", "<reason>")``
    where no usable answer came (``exc``, already one of ours: a timeout, a 5xx, a malformed
    body, discovery that failed)."""
    if exc is not None:
        return "failed", getattr(exc, "reason", None) or type(exc).__name__
    if not isinstance(result, Mapping) or not (result.get("error") or result.get("access_token")):
        return "failed", "malformed_response"
    if result.get("error"):
        codes = ",".join(f"AADSTS{c}" for c in sorted(error_codes(result)))
        return "refused", f"{result['error']}:{codes}" if codes else str(result["error"])
    return "success", ""


# AADSTS codes of invalid_grant that are about this app's own credential, not the user's token.
CLIENT_FAULT_CODES = frozenset({700016, 700024, 700027, 7000112, 7000215, 7000222, 700025})
_CONSENT_CODES = frozenset({65001, 65004})


def result_error(result: Mapping[str, Any], *, authority: str, client_id: str,
                 scopes: tuple[str, ...], app_only: bool) -> OboError:
    """An error answer of MSAL (Entra's JSON error), as the answer the client gets."""
    error = str(result.get("error", ""))
    codes = error_codes(result)
    suberror = str(result.get("suberror", ""))
    claims = result.get("claims")
    extra = {"aadsts": sorted(codes)} if codes else None
    if error in ("temporarily_unavailable", "server_error"):
        return IdentityProviderUnavailable(reason=error, extra=extra)
    if codes & CLIENT_FAULT_CODES or error in ("invalid_client", "unauthorized_client"):
        return UpstreamAuthError(reason=error or "invalid_client", extra=extra)
    if app_only:
        return UpstreamAuthError(reason=error or "unknown", extra=extra)
    if codes & _CONSENT_CODES or "consent_required" in (error, suberror):
        consent_uri = (f"{authority}/oauth2/v2.0/authorize?client_id="
                       f"{quote(client_id)}&response_type=code&scope="
                       f"{quote(' '.join(scopes))}&prompt=consent")
        return ConsentRequired(scopes=scopes, consent_uri=consent_uri, extra=extra)
    if isinstance(claims, str) and claims and error in ("interaction_required",
                                                        "invalid_grant"):
        return ClaimsChallenge(claims=claims, authorization_uri=(
            f"{authority}/oauth2/v2.0/authorize"), reason=error, extra=extra)
    if error in ("interaction_required", "invalid_grant"):
        return InvalidToken("The identity provider refused this token for on-behalf-of: "
                            "sign in again.", reason=error, extra=extra)
    return UpstreamAuthError(reason=error or "unknown", extra=extra)


# Why Entra refuses a refresh token, by AADSTS code: (reason, what the message says).
_REFRESH_REFUSALS: tuple[tuple[frozenset[int], str, str], ...] = (
    (frozenset({50173, 50133}), "revoked", "revoked (the user's password changed, or their "
     "sessions were revoked)"),
    (frozenset({70008, 700082, 700084, 70043}), "expired", "expired"),
    (frozenset({50057, 50034}), "user_disabled", "refused: the user account is disabled or "
     "gone"),
    (_CONSENT_CODES, "consent_withdrawn", "refused: consent to the downstream API was "
     "withdrawn"),
    (frozenset({50076, 50079, 50078, 50158, 53003}), "interaction_required", "refused until "
     "the user signs in again (MFA or conditional access)"),
)


def refresh_error(result: Mapping[str, Any]) -> OboError:
    """An error answer to a long-running session's refresh token. A refusal of the grant ends
    the session; a failure of the identity provider or of this API's credential does not."""
    error = str(result.get("error", ""))
    codes = error_codes(result)
    extra = {"aadsts": sorted(codes)} if codes else None
    if error not in ("invalid_grant", "interaction_required") or codes & CLIENT_FAULT_CODES:
        if error in ("temporarily_unavailable", "server_error"):
            return IdentityProviderUnavailable(reason=error, extra=extra)
        return UpstreamAuthError(reason=error or "unknown", extra=extra)
    reason, why = "refused", "refused"
    for known, name, text in _REFRESH_REFUSALS:
        if codes & known:
            reason, why = name, text
            break
    else:
        if error == "interaction_required" or result.get("claims"):
            reason, why = _REFRESH_REFUSALS[-1][1:]
    listed = ", ".join(f"AADSTS{c}" for c in sorted(codes)) or error
    return LongRunningSessionExpired(
        f"The identity provider {why} the long-running session's refresh token ({listed}): "
        "the user must sign in again, and the job be started anew.", reason=reason, extra=extra)


def with_capabilities(capabilities: tuple[str, ...], claims: str | None) -> str | None:
    """``claims`` (a claims challenge's JSON) with the client capabilities merged in, as MSAL
    does for the grants it wraps (it does not for a refresh token given to it)."""
    if not capabilities:
        return claims
    merged = json.loads(claims) if claims else {}
    if not isinstance(merged, dict):
        merged = {}
    access = merged.get("access_token")
    merged["access_token"] = {**(access if isinstance(access, dict) else {}),
                              "xms_cc": {"values": list(capabilities)}}
    return json.dumps(merged)


def error_codes(result: Mapping[str, Any]) -> frozenset[int]:
    """The AADSTS numbers of an error answer."""
    codes = result.get("error_codes")
    if isinstance(codes, list):
        return frozenset(c for c in codes if isinstance(c, int))
    # At most 9 ASCII digits: int() of a 5000-digit run (an identity provider's garbage)
    # would raise, and a 500 would follow.
    found = re.findall(r"AADSTS([0-9]{1,9})", str(result.get("error_description", "")))
    return frozenset(int(c) for c in found[:3])


class IdpHttpError(Exception):
    """The identity provider answered 429 or 5xx: retry later (no body is parsed)."""

    def __init__(self, status: int, retry_after: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class MsalHttp:
    """MSAL's ``http_client``: the pooled session with a timeout, 429/5xx raised as errors."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self._session = session
        self._timeout = timeout

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None,
             **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return _checked(self._session.post(url, params=params, data=data, headers=headers,
                                           **kwargs))

    def get(self, url: str, params: Any = None, headers: Any = None,
            **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return _checked(self._session.get(url, params=params, headers=headers, **kwargs))

    def close(self) -> None:
        """The session belongs to the extension: MSAL does not close it."""


def _checked(response: requests.Response) -> requests.Response:
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        response.close()
        raise IdpHttpError(response.status_code, retry_after)
    return response


def _retry_after(value: str | None, default: int = 5) -> int:
    if not value:
        return default
    value = value.strip()
    if value.isascii() and value.isdigit():
        # Capped before int(): a value past 4300 digits would make int() raise.
        return max(1, min(int(value[:6]), 300)) if len(value) <= 6 else 300
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return default
    return max(1, min(int(when - time.time()), 300))


class NoStore(dict):  # type: ignore[type-arg]
    """MSAL's ``http_cache`` that keeps nothing: no replayed (throttled) error responses."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class NoTokenCache(msal.TokenCache):  # type: ignore[misc]
    """MSAL's token cache that keeps nothing: tokens live in ``OboTokenCache`` only."""

    def add(self, event: Any, now: Any = None) -> None:
        pass


class _WithholdResponseBody(logging.Filter):
    """MSAL logs an unparsable token response verbatim; it may hold part of a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Token response is not in json format") and record.args:
            record.args = (f"<{len(str(record.args[0]))} characters withheld by flask-obo>",)  # type: ignore[index]
        return True


logging.getLogger("msal.oauth2cli.oauth2").addFilter(_WithholdResponseBody())
