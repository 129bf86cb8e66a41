"""The interactive sign-in: ``/authorize`` (authorization code with PKCE), the pages a person
answers on the way (sign-in, account picker, one-time code, consent), and end-session. How a
request is read and answered is in ``authorize_request.py``; the routes in ``authorize_http.py``.

As Entra's v2 endpoint:

- PKCE: ``S256`` or ``plain``; a redirect URI registered as a single-page app (``spa``)
  requires ``S256``.
- ``prompt``: ``login`` always asks for the password, ``select_account`` shows the accounts of
  the session, ``consent`` always shows the consent page, ``none`` never shows a page and answers
  ``login_required`` (AADSTS50058), ``interaction_required`` or ``consent_required`` instead.
  With no prompt, a session with one account (or the one ``login_hint`` names) signs in
  silently.
- ``login_hint`` fills in the user name (and picks the account of the session);
  ``domain_hint`` is shown as the expected domain.
- ``claims`` asking for MFA (``capolids``, ``acrs``, ``amr`` or ``acr`` on the access token, the
  challenge a middle tier passes on), or a user's per-resource MFA policy, adds the one-time code
  page; the tokens' ``amr`` then holds ``mfa``. Each user's code is set by ``add_user(...,
  one_time_code=...)`` (``DEFAULT_ONE_TIME_CODE`` unless given).
- Consent: a page listing the requested permissions that neither an admin, the user nor the
  resource's pre-authorization has granted. Accept records the user's consent; Cancel sends
  ``consent_required`` (AADSTS65004: the user declined).
- The sign-in session is a cookie on the emulator's host (``ESTSAUTH_<port>``: cookies do not
  tell ports apart), ``Secure; HttpOnly; SameSite=None`` so that silent renewal in an iframe
  (``prompt=none``) sends it. End-session clears it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .authorize_request import (
    RESPONSE_MODES,
    Outcome,
    PageError,
    RedirectError,
    SignInRequest,
    error_response,
    resolve_client,
    resolve_tenant,
    respond,
    validate_request,
)
from .claims import client_info
from .codes import (
    CODE_LIFETIME,
    AuthorizationCode,
    CodeStore,
    PendingSignIns,
    SignedInAccount,
    SignInSession,
    SignInSessions,
)
from .directory import App, Directory, User
from .pages import (
    account_picker_page,
    consent_page,
    message_page,
    one_time_code_page,
    signin_page,
)
from .redirects import redirect_platform
from .tokens import TokenRejected, TokenService, amr_for

__all__ = ["DEFAULT_ONE_TIME_CODE", "AuthorizeEndpoint"]

DEFAULT_ONE_TIME_CODE = "123456"
_OIDC_PERMISSIONS = {
    "openid": "Sign you in",
    "profile": "View your basic profile",
    "email": "View your email address",
    "offline_access": "Maintain access to data you have given it access to",
}


class AuthorizeEndpoint:
    """``/{tenant}/oauth2/v2.0/authorize``, its pages, and ``/{tenant}/oauth2/v2.0/logout``."""

    def __init__(self, directory: Directory, codes: CodeStore, tokens: TokenService,
                 base: str) -> None:
        self.directory = directory
        self.codes = codes
        self.tokens = tokens
        self.base = base
        self.sessions = SignInSessions()
        self.pending: PendingSignIns[SignInRequest] = PendingSignIns()

    # /authorize ----------------------------------------------------------------------------
    def authorize(self, path_tenant: str, params: Mapping[str, str],
                  cookie: str | None) -> Outcome:
        """Start a sign-in. Raises PageError for what must not go to the redirect URI."""
        tenant = resolve_tenant(self.directory, path_tenant)
        client = resolve_client(self.directory, params.get("client_id"), tenant, path_tenant)
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise PageError(900144, "The request body must contain the following parameter: "
                            "'redirect_uri'.")
        platform = redirect_platform(client, redirect_uri)
        if platform is None:
            raise PageError(50011, f"The redirect URI '{redirect_uri}' specified in the request "
                            "does not match the redirect URIs configured for the application "
                            f"'{client.client_id}'. Make sure the redirect URI sent in the "
                            "request matches one added to your application (emulator: "
                            "register_app(..., spa_redirect_uris=[...]) or web_/public_client_"
                            "redirect_uris).")
        mode = params.get("response_mode") or "query"
        state = params.get("state")
        record: dict[str, Any] = {"client_id": client.client_id, "prompt": params.get("prompt"),
                                  "platform": platform, "session": self.sessions.get(cookie)
                                  is not None}
        if mode not in RESPONSE_MODES:
            return error_response(self.base, redirect_uri, "query", state, RedirectError(
                "invalid_request", 9002313, f"Invalid request. The response_mode '{mode}' is "
                "not supported: use query, fragment or form_post."), record)
        try:
            req = validate_request(self.directory, params, tenant, path_tenant, client,
                                   redirect_uri, platform, mode)
            return self._advance(req, cookie, record)
        except RedirectError as err:
            return error_response(self.base, redirect_uri, mode, state, err, record)

    # the steps -----------------------------------------------------------------------------
    def _advance(self, req: SignInRequest, cookie: str | None,
                 record: dict[str, Any]) -> Outcome:
        """Show the next page the request needs, or finish it with a code."""
        if req.user is None:
            page = self._choose_account(req, cookie)
            if page is not None:
                return self._show(req, page, record, cookie)
        user = req.user
        assert user is not None
        record["user"] = user.username
        if self._needs_mfa(req, user):
            if req.prompt == "none":
                raise RedirectError("interaction_required", 50076, "Due to a configuration "
                                    "change made by your administrator, or because you moved "
                                    "to a new location, you must use multi-factor "
                                    "authentication to access the resource.")
            if not user.mfa_passes:
                raise RedirectError("access_denied", 500121, "Authentication failed during "
                                    "strong authentication request.")
            return self._show(req, "otc", record)
        missing = self._missing_consent(req, user)
        if not req.consent_done and (missing or req.prompt == "consent"):
            if req.prompt == "none":
                raise RedirectError("consent_required", 65001, f"The user or administrator "
                                    "has not consented to use the application with ID "
                                    f"'{req.client.client_id}' named '{req.client.name}'. Send "
                                    "an interactive authorization request for this user and "
                                    "resource.")
            return self._show(req, "consent", record)
        return self._finish(req, record)

    def _accounts(self, req: SignInRequest, cookie: str | None) -> list[SignedInAccount]:
        """The session's accounts that can still sign in here."""
        session = self.sessions.get(cookie)
        out = []
        for account in list(session.accounts.values()) if session else []:
            user = self.directory.user(account.oid)
            revoked = user is not None and user.sessions_revoked_at is not None and \
                account.auth_time < user.sessions_revoked_at
            if user is None or not user.enabled or revoked:
                continue
            if req.tenant is not None and account.tenant_id != req.tenant.tenant_id:
                continue
            out.append(account)
        return out

    def _choose_account(self, req: SignInRequest, cookie: str | None) -> str | None:
        """Pick the session's account for ``req`` (setting ``req.user``), or name a page."""
        if req.prompt == "login":
            return "signin"
        accounts = self._accounts(req, cookie)
        if req.prompt == "select_account":
            return "pick" if accounts else "signin"
        chosen: SignedInAccount | None = None
        if req.login_hint:
            hint = req.login_hint.lower()
            chosen = next((a for a in accounts if self._username(a).lower() == hint), None)
        elif len(accounts) == 1:
            chosen = accounts[0]
        elif len(accounts) > 1:
            if req.prompt == "none":
                raise RedirectError("interaction_required", 16000, "Multiple user identities "
                                    "are available for the current request; send login_hint.")
            return "pick"
        if chosen is None:
            if req.prompt == "none":
                raise RedirectError("login_required", 50058, "A silent sign-in request was "
                                    "sent but no user is signed in.")
            return "signin"
        self._use_account(req, chosen)
        return None

    def _username(self, account: SignedInAccount) -> str:
        user = self.directory.user(account.oid)
        return user.username if user else ""

    def _use_account(self, req: SignInRequest, account: SignedInAccount) -> None:
        req.user = self.directory.user(account.oid)
        req.amr, req.auth_time = account.amr, account.auth_time

    def _needs_mfa(self, req: SignInRequest, user: User) -> bool:
        policy = req.scope.resource is not None and \
            req.scope.resource.client_id in user.mfa_required_for
        return (req.wants_mfa or policy) and "mfa" not in req.amr

    def _missing_consent(self, req: SignInRequest, user: User) -> list[str]:
        resource = req.scope.resource
        if resource is None:
            return []
        granted = self.directory.granted_scopes(tenant_id=user.tenant_id, client=req.client,
                                                resource=resource, user=user)
        if req.scope.default:
            return [] if granted else list(resource.scopes)
        return [s for s in req.scope.names if s not in granted]

    def _show(self, req: SignInRequest, page: str, record: dict[str, Any],
              cookie: str | None = None, error: str | None = None) -> Outcome:
        if req.handle is None:
            req.handle = self.pending.add(req)
        action = f"/{req.tenant_segment}/login"
        record["outcome"] = f"page:{page}"
        if page == "signin":
            tenant_name = req.tenant.name if req.tenant else "Any organization"
            html = signin_page(action=action, ctx=req.handle, app_name=req.client.name,
                               tenant_name=tenant_name, login_hint=req.login_hint,
                               domain_hint=req.domain_hint, error=error)
        elif page == "pick":
            tiles = []
            for account in self._accounts(req, cookie):
                user = self.directory.user(account.oid)
                if user is not None:
                    tiles.append((user.oid, user.name, user.username))
            html = account_picker_page(action=action, ctx=req.handle, app_name=req.client.name,
                                       accounts=tiles)
        elif page == "otc":
            assert req.user is not None
            html = one_time_code_page(action=action, ctx=req.handle,
                                      username=req.user.username, error=error)
        else:
            assert req.user is not None
            html = consent_page(action=action, ctx=req.handle, app_name=req.client.name,
                                username=req.user.username, permissions=self._permissions(req))
        return Outcome(html=html, record=record)

    def _permissions(self, req: SignInRequest) -> list[str]:
        out = [_OIDC_PERMISSIONS[s] for s in ("openid", "profile", "email", "offline_access")
               if s in req.scope.oidc]
        resource = req.scope.resource
        if resource is not None:
            names = resource.scopes if req.scope.default else req.scope.names
            out.extend(f"Access {resource.name} as you ({name})" for name in names)
        return out

    def _finish(self, req: SignInRequest, record: dict[str, Any]) -> Outcome:
        user = req.user
        assert user is not None
        if not self.directory.app_visible_in(req.client, user.tenant_id):
            raise RedirectError("unauthorized_client", 700016, f"Application with identifier "
                                f"'{req.client.client_id}' was not found in the directory "
                                f"'{user.tenant_id}'.")
        now = time.time()
        raw = self.codes.issue(AuthorizationCode(
            client_id=req.client.client_id, redirect_uri=req.redirect_uri,
            platform=req.platform, tenant_id=user.tenant_id, oid=user.oid,
            scope=req.scope.raw, nonce=req.nonce, code_challenge=req.code_challenge,
            code_challenge_method=req.code_challenge_method, amr=req.amr,
            auth_time=req.auth_time or now, expires_at=now + CODE_LIFETIME))
        self.pending.remove(req.handle)
        fields = {"code": raw}
        if req.wants_client_info:
            fields["client_info"] = client_info(user, user.tenant_id)
        if req.state is not None:
            fields["state"] = req.state
        fields["session_state"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user.oid}:{now}"))
        record["outcome"] = "code"
        return respond(req.redirect_uri, req.response_mode, fields, record)

    # the pages' answers --------------------------------------------------------------------
    def submit(self, path_tenant: str, form: Mapping[str, str], cookie: str | None) -> Outcome:
        """A page's form came back (``step``: signin, pick, otc or consent)."""
        req = self.pending.get(form.get("ctx"))
        if req is None or req.tenant_segment != path_tenant:
            raise PageError(None, "This sign-in request has expired or is unknown. Go back to "
                            "the application and sign in again.", title="Sign-in expired")
        step = form.get("step", "")
        record: dict[str, Any] = {"client_id": req.client.client_id, "step": step}
        current = cookie
        try:
            if step == "signin":
                outcome, current = self._signin_step(req, form, current, record)
            elif step == "pick":
                outcome = self._pick_step(req, form, current, record)
            elif step == "otc":
                outcome, current = self._otc_step(req, form, current, record)
            elif step == "consent":
                outcome = self._consent_step(req, form, current, record)
            else:
                raise PageError(None, f"Unknown sign-in step {step!r}.")
        except RedirectError as err:
            self.pending.remove(req.handle)
            outcome = error_response(self.base, req.redirect_uri, req.response_mode, req.state, err,
                                           record)
        if req.user is not None:
            outcome.record.setdefault("user", req.user.username)
        if current != cookie:
            outcome.session = current
        return outcome

    def _signin_step(self, req: SignInRequest, form: Mapping[str, str], cookie: str | None,
                     record: dict[str, Any]) -> tuple[Outcome, str | None]:
        username = (form.get("loginfmt") or "").strip()
        user = self.directory.user_by_name(username) if username else None
        if username:
            req.login_hint = username  # the page shows what was typed
        wrong_tenant = user is not None and req.tenant is not None and \
            user.tenant_id != req.tenant.tenant_id
        if user is None or wrong_tenant or not user.check_password(form.get("passwd") or ""):
            record["error_codes"] = [50126]
            return self._show(req, "signin", record, error="Your account or password is "
                              "incorrect. (AADSTS50126)"), cookie
        if not user.enabled:
            record["error_codes"] = [50057]
            return self._show(req, "signin", record, error="Your account has been disabled. "
                              "(AADSTS50057)"), cookie
        now = time.time()
        req.user, req.amr, req.auth_time = user, tuple(amr_for(False)), now
        cookie = self._remember(cookie, SignedInAccount(user.oid, user.tenant_id, now, req.amr))
        return self._advance(req, cookie, record), cookie

    def _pick_step(self, req: SignInRequest, form: Mapping[str, str], cookie: str | None,
                   record: dict[str, Any]) -> Outcome:
        choice = form.get("account")
        account = next((a for a in self._accounts(req, cookie) if a.oid == choice), None)
        if account is None:  # "Use another account"
            return self._show(req, "signin", record)
        self._use_account(req, account)
        return self._advance(req, cookie, record)

    def _otc_step(self, req: SignInRequest, form: Mapping[str, str], cookie: str | None,
                  record: dict[str, Any]) -> tuple[Outcome, str | None]:
        user = req.user
        if user is None:
            raise PageError(None, "Sign in first.")
        if not user.check_one_time_code(form.get("otc") or ""):
            record["error_codes"] = [50181]
            return self._show(req, "otc", record, error="That code didn't work. Check the "
                              "code and try again."), cookie
        req.amr = tuple(amr_for(True))
        cookie = self._remember(cookie, SignedInAccount(user.oid, user.tenant_id,
                                                        req.auth_time or time.time(), req.amr))
        return self._advance(req, cookie, record), cookie

    def _consent_step(self, req: SignInRequest, form: Mapping[str, str], cookie: str | None,
                      record: dict[str, Any]) -> Outcome:
        user = req.user
        if user is None:
            raise PageError(None, "Sign in first.")
        if form.get("consent") != "accept":
            raise RedirectError("consent_required", 65004, "User declined to consent to "
                                "access the app.")
        resource = req.scope.resource
        if resource is not None:
            names = resource.scopes if req.scope.default else req.scope.names
            self.directory.grant(tenant_id=user.tenant_id, client=req.client,
                                 resource=resource, scopes=names, user=user)
        req.consent_done = True
        record["consented"] = True
        return self._advance(req, cookie, record)

    def _remember(self, cookie: str | None, account: SignedInAccount) -> str:
        """Add (or refresh) ``account`` in the browser's session; returns the cookie value."""
        session = self.sessions.get(cookie)
        if session is None or cookie is None:
            session = SignInSession()
            cookie = self.sessions.add(session)
        session.accounts[account.oid] = account
        return cookie

    # end-session ---------------------------------------------------------------------------
    def logout(self, path_tenant: str, params: Mapping[str, str],
               cookie: str | None) -> Outcome:
        """Sign the browser out; back to ``post_logout_redirect_uri`` if it is registered."""
        resolve_tenant(self.directory, path_tenant)
        self.sessions.remove(cookie)
        record: dict[str, Any] = {"outcome": "signed_out"}
        target = params.get("post_logout_redirect_uri")
        if target and self._registered_anywhere(target, self._logout_client(params)):
            parts = urlsplit(target)
            query = parse_qsl(parts.query, keep_blank_values=True)
            if params.get("state"):
                query.append(("state", params["state"]))
            return Outcome(location=urlunsplit(parts._replace(query=urlencode(query))),
                           status=302, session="", record=record)
        return Outcome(html=message_page("You signed out of your account", "It's a good idea "
                                         "to close all browser windows."),
                       session="", record=record)

    def _logout_client(self, params: Mapping[str, str]) -> App | None:
        if params.get("client_id"):
            return self.directory.app(params["client_id"])
        hint = params.get("id_token_hint")
        if hint:
            try:
                _, claims = self.tokens.verify(hint)
            except TokenRejected:
                return None
            aud = claims.get("aud")
            return self.directory.app(aud) if isinstance(aud, str) else None
        return None

    def _registered_anywhere(self, uri: str, client: App | None) -> bool:
        """``uri`` is a redirect URI of ``client`` (or, with no client named, of any app: what
        MSAL.js sends names none)."""
        apps = [client] if client is not None else self.directory.apps()
        return any(redirect_platform(app, uri) is not None for app in apps)
