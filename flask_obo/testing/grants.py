"""The token endpoint's grants, with Entra's semantics and error codes.

Supported: ``client_credentials``, ``urn:ietf:params:oauth:grant-type:jwt-bearer`` with
``requested_token_use=on_behalf_of`` (OBO), ``refresh_token``, ``password`` (ROPC) and
``authorization_code`` (see ``code_grant.py``, with the cross-origin rules for single-page
apps). The device code grant answers ``unsupported_grant_type``.

Consent: a client needs consent for a resource's delegated scopes: admin consent
(``grant_consent``), a user's own consent, or pre-authorization by the resource. A password
sign-in stands in for an interactive sign-in, where the user would consent, so ROPC records the
user's consent for the scopes it names.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from .calls import fingerprint
from .client_auth import ClientAuthenticator, ClientIdentity
from .code_grant import check_origin, redeem_code
from .directory import RESERVED_TENANTS, App, Directory, Tenant, User
from .errors import EntraError
from .issuance import TokenFactory, UserTokenRequest
from .scopes import ScopeRequest, parse_scope
from .tokens import TokenRejected, amr_for

__all__ = ["GRANT_JWT_BEARER", "TokenEndpoint", "grant_name"]

GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SKEW = 300
_STEP_UP_KEYS = ("capolids", "acrs", "amr", "acr")


def grant_name(grant_type: str | None, form: Mapping[str, str]) -> str:
    """A short name for a grant, as ``calls()`` filters on: ``on_behalf_of`` for OBO."""
    if grant_type == GRANT_JWT_BEARER:
        return "on_behalf_of" if form.get("requested_token_use") == "on_behalf_of" else "jwt_bearer"
    return grant_type or ""


def _missing(name: str) -> EntraError:
    return EntraError("invalid_request", 900144,
                      f"The request body must contain the following parameter: '{name}'.")


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def _span(seconds: float) -> str:
    """A duration as Entra writes it: ``d.hh:mm:ss``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}.{hours:02d}:{minutes:02d}:{secs:02d}"


def _consent_required(client: App, resource: App) -> EntraError:
    return EntraError(
        "invalid_grant", 65001,
        f"The user or administrator has not consented to use the application with ID "
        f"'{client.client_id}' named '{client.name}'. Send an interactive authorization request "
        f"for this user and resource ('{resource.name}').",
        suberror="consent_required",
    )


def _revoked(issued: float, valid_from: float) -> EntraError:
    return EntraError(
        "invalid_grant", 50173,
        f"The provided grant has expired due to it being revoked, a fresh auth token is needed. "
        f"The user might have changed or reset their password. The grant was issued on "
        f"'{_iso(issued)}' and the TokensValidFrom date (before which tokens are not valid) for "
        f"this user is '{_iso(valid_from)}'.",
    )


def _asks_step_up(claims_param: str | None) -> bool:
    """True when a ``claims`` request asks for MFA (capolids, acrs or amr on the access token)."""
    if not claims_param:
        return False
    try:
        parsed = json.loads(claims_param)
    except ValueError as exc:
        raise EntraError("invalid_request", 90019,
                         "The 'claims' parameter is not valid JSON.") from exc
    if not isinstance(parsed, dict):
        return False
    wanted = parsed.get("access_token") or parsed.get("id_token") or {}
    return isinstance(wanted, dict) and any(k in wanted for k in _STEP_UP_KEYS)


class TokenEndpoint:
    """``POST /{tenant}/oauth2/v2.0/token``."""

    def __init__(self, directory: Directory, factory: TokenFactory,
                 authenticator: ClientAuthenticator) -> None:
        self.directory = directory
        self.factory = factory
        self.auth = authenticator

    # entry point ---------------------------------------------------------------------------
    def handle(self, path_tenant: str, form: Mapping[str, str], authorization: str | None,
               record: MutableMapping[str, Any], *, origin: str | None = None) -> dict[str, Any]:
        """Run the grant; ``record`` collects what ``calls()`` reports. Raises EntraError.

        ``origin``: the request's ``Origin`` header (a browser's cross-origin request).
        """
        tenant = self._tenant(path_tenant)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _missing("grant_type")
        ctx = _Call(path_tenant, tenant, form, authorization, record, origin)
        if origin:
            record["origin"] = origin
        if grant_type == "authorization_code":
            return redeem_code(self, ctx)
        if grant_type == "refresh_token":
            return self._refresh_token(ctx)
        check_origin(False, origin)  # only a single-page app's grants are redeemed cross-origin
        if grant_type == "client_credentials":
            return self._client_credentials(ctx)
        if grant_type == GRANT_JWT_BEARER:
            if form.get("requested_token_use") != "on_behalf_of":
                raise _missing("requested_token_use")
            return self._on_behalf_of(ctx)
        if grant_type == "password":
            return self._password(ctx)
        raise EntraError(
            "unsupported_grant_type", 70003,
            f"The app requested an unsupported grant type '{grant_type}'. (The emulator signs "
            "users in with authorization_code, password or refresh_token.)",
        )

    def _tenant(self, path_tenant: str) -> Tenant | None:
        if path_tenant.lower() in ("common", "organizations"):
            return None
        tenant = None
        if path_tenant.lower() not in RESERVED_TENANTS:
            tenant = self.directory.tenant(path_tenant)
        if tenant is None:
            raise EntraError(
                "invalid_request", 90002,
                f"Tenant '{path_tenant}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.",
            )
        return tenant

    def _authenticate(
        self, ctx: _Call, tenant_id: str | None, *, allow_public: bool
    ) -> ClientIdentity:
        ident = self.auth.authenticate(ctx.form, ctx.authorization, path_tenant=ctx.path_tenant,
                                       tenant_id=tenant_id, allow_public=allow_public)
        ctx.record["client_auth"] = ident.method
        ctx.record["client_id"] = ident.app.client_id
        return ident

    def _resource(self, scope: ScopeRequest, tenant_id: str) -> App:
        resource = scope.require_resource()
        if not self.directory.app_visible_in(resource, tenant_id):
            raise EntraError(
                "invalid_resource", 500011,
                f"The resource principal named {scope.identifier} was not found in the tenant "
                f"named {tenant_id}. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant.",
            )
        return resource

    @staticmethod
    def _audience(scope: ScopeRequest, resource: App) -> str:
        # v2 tokens name the resource by client id; v1 tokens as the request named it.
        return scope.identifier if resource.access_token_version == 1 else resource.client_id

    def _delegated_scopes(self, scope: ScopeRequest, tenant_id: str, client: App,
                          resource: App, user: User) -> list[str]:
        granted = self.directory.granted_scopes(tenant_id=tenant_id, client=client,
                                                resource=resource, user=user)
        wanted = set(granted) if scope.default else set(scope.names)
        if not wanted or not wanted <= granted:
            raise _consent_required(client, resource)
        return [s for s in resource.scopes if s in wanted]

    def _check_mfa(self, user: User, tenant_id: str, resource: App, amr: list[str]) -> None:
        if resource.client_id in user.mfa_required_for and "mfa" not in amr:
            policy = self.directory.mfa_policy_id(tenant_id, resource)
            raise EntraError(
                "interaction_required", 50079,
                f"Due to a configuration change made by your administrator, or because you "
                f"moved to a new location, you must use multi-factor authentication to access "
                f"'{resource.client_id}'.",
                claims={"access_token": {"capolids": {"essential": True, "values": [policy]}}},
            )

    def _active_user(self, ctx: _Call, oid: str, tenant_id: str, since: float) -> User:
        """The enabled user ``oid``, whose sessions were not revoked after ``since`` (when the
        grant or assertion was issued)."""
        user = self.directory.user(oid)
        if user is None or not user.enabled:
            raise EntraError("invalid_grant", 50034, "The user account does not exist in the "
                             f"{tenant_id} directory, or is disabled.")
        ctx.record["user"] = user.username
        if user.sessions_revoked_at is not None and since < user.sessions_revoked_at:
            raise _revoked(since, user.sessions_revoked_at)
        return user

    def _user_token_request(self, scope: ScopeRequest, tenant_id: str, ident: ClientIdentity,
                            user: User, resource: App, amr: list[str]) -> UserTokenRequest:
        """What a user's access token will hold, once consent and MFA are checked."""
        scopes = self._delegated_scopes(scope, tenant_id, ident.app, resource, user)
        self._check_mfa(user, tenant_id, resource, amr)
        return UserTokenRequest(
            user=user, tenant_id=tenant_id, resource=resource,
            audience=self._audience(scope, resource), client=ident.app, client_acr=ident.acr,
            scopes=scopes, roles=sorted(user.app_roles.get(resource.client_id, set())), amr=amr,
            version=resource.access_token_version,
        )

    def _user_response(self, ctx: _Call, req: UserTokenRequest, scope: ScopeRequest,
                       auth_time: float, *, obo: bool = False, nonce: str | None = None,
                       spa_refresh_expires_at: float | None = None) -> dict[str, Any]:
        lifetimes = self.factory.lifetimes
        lifetime = lifetimes.obo_token_lifetime if obo else None
        return self.factory.user_response(
            req, scope_echo=scope.qualified(req.scopes), oidc=scope.oidc,
            want_client_info=ctx.form.get("client_info") == "1", auth_time=auth_time,
            lifetime=lifetime, nonce=nonce, spa_refresh_expires_at=spa_refresh_expires_at,
        )

    # grants --------------------------------------------------------------------------------
    def _client_credentials(self, ctx: _Call) -> dict[str, Any]:
        if ctx.tenant is None:
            raise EntraError("invalid_request", 50059, "No tenant-identifying information "
                             "found in either the request or implied by any provided credentials.")
        tid = ctx.tenant.tenant_id
        ident = self._authenticate(ctx, tid, allow_public=False)
        scope = parse_scope(ctx.form.get("scope"), self.directory)
        if not scope.default or scope.resource is None:
            raise EntraError(
                "invalid_scope", 1002012,
                f"The provided value for scope {scope.raw} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        resource = self._resource(scope, tid)
        granted = self.directory.granted_roles(tenant_id=tid, client=ident.app, resource=resource)
        roles = [r for r in resource.roles if r in granted]
        token, seconds = self.factory.app_access_token(
            client=ident.app, client_acr=ident.acr, tenant_id=tid, resource=resource,
            audience=self._audience(scope, resource), roles=roles,
            version=resource.access_token_version,
        )
        return {"token_type": "Bearer", "expires_in": seconds, "ext_expires_in": seconds,
                "access_token": token}

    def _on_behalf_of(self, ctx: _Call) -> dict[str, Any]:
        assertion = ctx.form.get("assertion")
        if not assertion:
            raise _missing("assertion")
        ctx.record["assertion"] = fingerprint(assertion)
        path_tid = ctx.tenant.tenant_id if ctx.tenant else None
        ident = self._authenticate(ctx, path_tid, allow_public=False)
        claims = self._verify_user_assertion(assertion, ident.app, path_tid)
        tid = str(claims["tid"])
        if not self.directory.app_visible_in(ident.app, tid):
            raise EntraError("unauthorized_client", 700016, f"Application with identifier "
                             f"'{ident.app.client_id}' was not found in the directory '{tid}'.")
        issued = self.factory.tokens.issued_at(claims) or 0.0
        user = self._active_user(ctx, str(claims.get("oid")), tid, issued)
        scope = parse_scope(ctx.form.get("scope"), self.directory)
        resource = self._resource(scope, tid)
        amr_claim = claims.get("amr")
        amr = [str(a) for a in amr_claim] if isinstance(amr_claim, list) else ["pwd"]
        req = self._user_token_request(scope, tid, ident, user, resource, amr)
        return self._user_response(ctx, req, scope, issued, obo=True)

    def _verify_user_assertion(self, assertion: str, client: App,
                               path_tid: str | None) -> dict[str, Any]:
        try:
            _, claims = self.factory.tokens.verify(assertion)
        except TokenRejected as exc:
            if exc.reason == "malformed":
                raise EntraError("invalid_request", 50027, exc.detail) from exc
            raise EntraError("invalid_grant", 50013, exc.detail) from exc
        parsed = self.factory.issuers.parse(str(claims.get("iss", "")))
        tenant = self.directory.tenant(parsed[0]) if parsed else None
        if parsed is None or tenant is None or claims.get("tid") != tenant.tenant_id:
            raise EntraError("invalid_grant", 50013, "Assertion failed signature validation. "
                             "[Reason - The issuer of the assertion is not valid.]")
        if path_tid is not None and path_tid != tenant.tenant_id:
            raise EntraError("invalid_grant", 50013, f"Assertion is for tenant "
                             f"'{tenant.tenant_id}', not the requested tenant '{path_tid}'.")
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or now >= exp or (
                isinstance(nbf, (int, float)) and nbf > now + _SKEW):
            expiry = _iso(exp) if isinstance(exp, (int, float)) else "(none)"
            raise EntraError(
                "invalid_grant", 500133,
                "Assertion is not within its valid time range. Ensure that the access token is "
                "not expired before using it for user assertion, or request a new token. "
                f"Current time: {_iso(now)}, expiry time of assertion {expiry}.",
            )
        aud = claims.get("aud")
        accepted = {client.client_id.lower(), client.app_id_uri.rstrip("/").lower()}
        if not isinstance(aud, str) or aud.rstrip("/").lower() not in accepted:
            raise EntraError(
                "invalid_grant", 50013,
                f"Assertion audience does not match the Client app presenting the assertion. The "
                f"audience in the assertion was '{aud}' and the expected audience is "
                f"'{client.client_id}' or one of the Application Uris of this application with "
                f"App ID '{client.client_id}'({client.name}).",
            )
        scp = claims.get("scp")
        if claims.get("idtyp") == "app" or not isinstance(scp, str) or not scp.strip():
            raise EntraError("invalid_grant", 90083, "Request is unsupported. The assertion is "
                             "not a delegated (user) access token: on-behalf-of needs a token "
                             "with 'scp'; app-only and ID tokens cannot be exchanged.")
        return claims

    def _refresh_token(self, ctx: _Call) -> dict[str, Any]:
        raw = ctx.form.get("refresh_token")
        if not raw:
            raise _missing("refresh_token")
        grant = self.factory.refresh_tokens.find(raw)
        if grant is None:
            raise EntraError("invalid_grant", 9002313,
                             "Invalid request. Request is malformed or invalid: the refresh "
                             "token is not one this service issued.")
        check_origin(grant.spa, ctx.origin)
        ident = self._authenticate(ctx, grant.tenant_id, allow_public=True)
        if ident.app.client_id != grant.client_id:
            raise EntraError("invalid_grant", 70000, "Provided grant is invalid or malformed: "
                             "the refresh token was issued to a different client.")
        if ctx.tenant is not None and ctx.tenant.tenant_id != grant.tenant_id:
            raise EntraError("invalid_grant", 70000, "Provided grant is invalid or malformed: "
                             "the refresh token was issued in another tenant.")
        if time.time() > grant.expires_at:
            raise EntraError("invalid_grant", 70008, "The provided authorization code or "
                             "refresh token has expired due to inactivity.")
        user = self._active_user(ctx, grant.oid, grant.tenant_id, grant.auth_time)
        max_age = self.factory.lifetimes.refresh_token_max_age
        if max_age is not None and time.time() - grant.auth_time > max_age:
            raise EntraError(
                "invalid_grant", 700082, f"The refresh token has expired due to inactivity. "
                f"The token was issued on {_iso(grant.auth_time)} and was inactive for "
                f"{_span(time.time() - grant.auth_time)}.")
        raw_scope = ctx.form.get("scope") or " ".join(
            [f"{grant.resource_identifier}/{s}" for s in grant.scopes] + ["offline_access"])
        scope = parse_scope(raw_scope, self.directory)
        resource = self._resource(scope, grant.tenant_id)
        req = self._user_token_request(scope, grant.tenant_id, ident, user, resource,
                                       list(grant.amr))
        return self._user_response(
            ctx, req, scope, grant.auth_time,
            spa_refresh_expires_at=grant.expires_at if grant.spa else None)

    def _password(self, ctx: _Call) -> dict[str, Any]:
        username, password = ctx.form.get("username"), ctx.form.get("password")
        if not username:
            raise _missing("username")
        if password is None:
            raise _missing("password")
        ctx.record["user"] = username
        path_tid = ctx.tenant.tenant_id if ctx.tenant else None
        ident = self._authenticate(ctx, path_tid, allow_public=True)
        user = self.directory.user_by_name(username)
        if user is None or (path_tid is not None and user.tenant_id != path_tid):
            raise EntraError("invalid_grant", 50034, f"The user account {{EUII Hidden}} does not "
                             f"exist in the {path_tid or ctx.path_tenant} directory. To sign "
                             "into this application, the account must be added to the directory.")
        tid = user.tenant_id
        if not self.directory.app_visible_in(ident.app, tid):
            raise EntraError("unauthorized_client", 700016, f"Application with identifier "
                             f"'{ident.app.client_id}' was not found in the directory '{tid}'.")
        if not user.check_password(password):
            raise EntraError("invalid_grant", 50126,
                             "Error validating credentials due to invalid username or password.")
        if not user.enabled:
            raise EntraError("invalid_grant", 50057, "The user account is disabled.")
        scope = parse_scope(ctx.form.get("scope"), self.directory)
        resource = self._resource(scope, tid)
        if scope.names:  # the user consents at sign-in
            self.directory.grant(tenant_id=tid, client=ident.app, resource=resource,
                                 scopes=scope.names, user=user)
        amr = amr_for(False)
        if _asks_step_up(ctx.form.get("claims")):
            if not user.mfa_passes:
                raise EntraError("invalid_grant", 500121,
                                 "Authentication failed during strong authentication request.")
            amr = amr_for(True)
        req = self._user_token_request(scope, tid, ident, user, resource, amr)
        return self._user_response(ctx, req, scope, time.time())


class _Call:
    """One token request being handled."""

    def __init__(self, path_tenant: str, tenant: Tenant | None, form: Mapping[str, str],
                 authorization: str | None, record: MutableMapping[str, Any],
                 origin: str | None = None) -> None:
        self.path_tenant = path_tenant
        self.tenant = tenant
        self.form = form
        self.authorization = authorization
        self.record = record
        self.origin = origin
