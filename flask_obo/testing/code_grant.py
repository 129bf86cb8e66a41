"""The token endpoint's ``authorization_code`` grant, and the cross-origin rules of Entra's
token endpoint.

Redeeming a code checks, in Entra's order and with its codes: the code is known (else
AADSTS9002313), not yet redeemed (AADSTS54005), redeemed from the right kind of caller (below),
not expired (AADSTS70008), by the client it was issued to, authenticated as that client's
platform needs (a ``web`` redirect URI needs the app's secret or certificate), with the same
``redirect_uri`` (AADSTS50011) and the PKCE ``code_verifier`` that matches the challenge
(AADSTS501481).

Cross-origin rules (a browser sends ``Origin`` with a cross-origin request; servers do not):

- a code or refresh token issued to a single-page app (a ``spa`` redirect URI) is redeemed
  cross-origin only: without ``Origin``, AADSTS9002327;
- every other request to the token endpoint with an ``Origin`` is refused: AADSTS9002326.

Single-page apps' refresh tokens live 24 hours from the sign-in, however often they are
redeemed (``refresh_token_expires_in`` says how long is left); a new sign-in starts a new day.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

from .codes import AuthorizationCode
from .errors import EntraError
from .scopes import parse_scope

if TYPE_CHECKING:
    from .grants import TokenEndpoint, _Call

__all__ = ["SPA_REFRESH_TOKEN_LIFETIME", "check_origin", "redeem_code"]

SPA_REFRESH_TOKEN_LIFETIME = 24 * 3600


def check_origin(spa: bool, origin: str | None) -> None:
    """Entra's rule for who may redeem a grant: see the module docstring."""
    if spa and not origin:
        raise EntraError("invalid_request", 9002327, "Tokens issued for the 'Single-Page "
                         "Application' client-type may only be redeemed via cross-origin "
                         "requests.")
    if not spa and origin:
        raise EntraError("invalid_request", 9002326, "Cross-origin token redemption is "
                         "permitted only for the 'Single-Page Application' client-type. "
                         f"Request origin: '{origin}'.")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _verify_pkce(code: AuthorizationCode, verifier: str | None) -> None:
    if code.code_challenge is None:
        return
    if not verifier:
        if code.platform == "spa":
            raise EntraError("invalid_request", 9002325, "Proof Key for Code Exchange is "
                             "required for cross-origin authorization code redemption.")
        raise EntraError("invalid_request", 900144, "The request body must contain the "
                         "following parameter: 'code_verifier'.")
    if code.code_challenge_method == "S256":
        computed = _b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
    else:
        computed = verifier
    if not hmac.compare_digest(computed.encode(), code.code_challenge.encode()):
        raise EntraError("invalid_grant", 501481, "The Code_Verifier does not match the "
                         "code_challenge supplied in the authorization request.")


def _find(endpoint: TokenEndpoint, ctx: _Call) -> AuthorizationCode:
    raw = ctx.form.get("code")
    if not raw:
        raise EntraError("invalid_request", 900144, "The request body must contain the "
                         "following parameter: 'code'.")
    code, redeemed = endpoint.factory.codes.redeem(raw)
    if code is None:
        raise EntraError("invalid_grant", 9002313, "Invalid request. Request is malformed or "
                         "invalid: the authorization code is not one this service issued.")
    if redeemed:
        raise EntraError("invalid_grant", 54005, "OAuth2 Authorization code was already "
                         "redeemed, please retry with a new valid code or use an existing "
                         "refresh token.")
    return code


def redeem_code(endpoint: TokenEndpoint, ctx: _Call) -> dict[str, Any]:
    """``grant_type=authorization_code``. Raises EntraError."""
    code = _find(endpoint, ctx)
    ctx.record["platform"] = code.platform
    check_origin(code.platform == "spa", ctx.origin)
    if time.time() > code.expires_at:
        raise EntraError("invalid_grant", 70008, "The provided authorization code or refresh "
                         "token has expired due to inactivity. Send a new interactive "
                         "authorization request for this user and resource.")
    if ctx.tenant is not None and ctx.tenant.tenant_id != code.tenant_id:
        raise EntraError("invalid_grant", 70000, "Provided grant is invalid or malformed: the "
                         "authorization code was issued in another tenant.")
    ident = endpoint._authenticate(ctx, code.tenant_id, allow_public=code.platform != "web")
    if ident.app.client_id != code.client_id:
        raise EntraError("invalid_grant", 70000, "Provided grant is invalid or malformed: the "
                         "authorization code was issued to a different client.")
    redirect_uri = ctx.form.get("redirect_uri")
    if redirect_uri != code.redirect_uri:
        raise EntraError("invalid_grant", 50011, f"The redirect URI '{redirect_uri}' "
                         "specified in the request does not match the redirect URI used when "
                         "requesting the authorization code.")
    _verify_pkce(code, ctx.form.get("code_verifier"))
    user = endpoint._active_user(ctx, code.oid, code.tenant_id, code.auth_time)
    scope = parse_scope(ctx.form.get("scope") or code.scope, endpoint.directory)
    spa_expiry = time.time() + SPA_REFRESH_TOKEN_LIFETIME if code.platform == "spa" else None
    want_client_info = ctx.form.get("client_info") == "1"
    if scope.resource is None:  # a sign-in only: ID token (and refresh token), no API
        body: dict[str, Any] = {"token_type": "Bearer", "scope": " ".join(sorted(scope.oidc))}
        body.update(endpoint.factory.sign_in_tokens(
            user=user, tenant_id=code.tenant_id, client=ident.app, amr=code.amr,
            oidc=scope.oidc, want_client_info=want_client_info, auth_time=code.auth_time,
            nonce=code.nonce, spa_refresh_expires_at=spa_expiry))
        return body
    resource = endpoint._resource(scope, code.tenant_id)
    req = endpoint._user_token_request(scope, code.tenant_id, ident, user, resource,
                                       list(code.amr))
    return endpoint._user_response(ctx, req, scope, code.auth_time, nonce=code.nonce,
                                   spa_refresh_expires_at=spa_expiry)
