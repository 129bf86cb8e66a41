"""The HTML pages a person sees during an interactive sign-in: sign-in, account picker,
one-time code, consent, errors, signed out, and the ``form_post`` response.

The forms carry the field names and element ids of Entra's own pages (``loginfmt`` in
``#i0116``, ``passwd`` in ``#i0118``, the ``#idSIButton9`` button, ``otc`` for the code), so
that browser tests written against Entra find their way here too. Every value from a request
is HTML-escaped; the pages load nothing from elsewhere and run no script (only the
``form_post`` page does, under a CSP nonce).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

__all__ = [
    "account_picker_page",
    "consent_page",
    "form_post_page",
    "message_page",
    "one_time_code_page",
    "signin_page",
]

_STYLE = """
body{font-family:"Segoe UI",system-ui,sans-serif;background:#f2f2f2;margin:0;color:#1b1b1b}
main{max-width:440px;margin:8vh auto;background:#fff;padding:44px;box-shadow:0 2px 6px #0003}
.brand{font-weight:600;color:#5e5e5e;margin-bottom:16px}
h1{font-size:24px;font-weight:600;margin:0 0 12px}
label{display:block;margin-top:12px;font-size:14px}
input[type=email],input[type=password],input[type=text]{width:100%;box-sizing:border-box;
border:0;border-bottom:1px solid #666;padding:6px 0;font-size:15px;margin-top:4px}
.actions{margin-top:24px;text-align:right}
button,input[type=submit]{background:#0067b8;color:#fff;border:0;padding:6px 20px;
font-size:15px;min-width:108px;cursor:pointer;margin-left:6px}
button.secondary{background:#ccc;color:#1b1b1b}
.error{color:#e81123;font-size:14px;margin-top:8px}
.hint{color:#5e5e5e;font-size:13px;margin-top:16px}
ul{padding-left:20px}
.account{display:block;width:100%;text-align:left;background:#fff;color:#1b1b1b;
border:1px solid #ccc;padding:10px;margin:6px 0}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><div class=\"brand\">Microsoft Entra ID (emulator)</div>{body}</main>"
        "</body></html>\n"
    )


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                   for k, v in fields.items())


def _error(message: str | None) -> str:
    return f'<div class="error" id="error" role="alert">{escape(message)}</div>' if message else ""


def signin_page(*, action: str, ctx: str, app_name: str, tenant_name: str,
                login_hint: str | None = None, domain_hint: str | None = None,
                error: str | None = None) -> str:
    placeholder = f"someone@{domain_hint}" if domain_hint else "Email, phone, or Skype"
    body = (
        f"<h1>Sign in</h1><p>to continue to <b id=\"appName\">{escape(app_name)}</b></p>"
        f'<form method="post" action="{escape(action)}" id="signinForm" autocomplete="on">'
        f"{_hidden({'ctx': ctx, 'step': 'signin'})}"
        '<label for="i0116">Email, phone, or Skype</label>'
        '<input type="email" name="loginfmt" id="i0116" autocomplete="username" required '
        f'placeholder="{escape(placeholder)}" value="{escape(login_hint or "")}">'
        '<label for="i0118">Password</label>'
        '<input type="password" name="passwd" id="i0118" autocomplete="current-password">'
        f"{_error(error)}"
        '<div class="actions"><input type="submit" id="idSIButton9" value="Sign in"></div>'
        f"</form><p class=\"hint\">Organization: {escape(tenant_name)}</p>"
    )
    return _page("Sign in to your account", body)


def account_picker_page(*, action: str, ctx: str, app_name: str,
                        accounts: Iterable[tuple[str, str, str]]) -> str:
    """``accounts``: (oid, display name, user name) of each account signed in."""
    buttons = "".join(
        f'<button type="submit" class="account" name="account" value="{escape(oid)}">'
        f"<b>{escape(name)}</b><br>{escape(upn)}</button>"
        for oid, name, upn in accounts)
    body = (
        f"<h1>Pick an account</h1><p>to continue to <b>{escape(app_name)}</b></p>"
        f'<form method="post" action="{escape(action)}" id="pickForm">'
        f"{_hidden({'ctx': ctx, 'step': 'pick'})}{buttons}"
        '<button type="submit" class="account" name="account" value="other" id="otherTile">'
        "Use another account</button></form>"
    )
    return _page("Pick an account", body)


def one_time_code_page(*, action: str, ctx: str, username: str,
                       error: str | None = None) -> str:
    body = (
        f"<h1>Enter code</h1><p id=\"otcUser\">{escape(username)}</p>"
        "<p>Your organization needs more information to keep your account secure. Enter the "
        "code from your authenticator app.</p>"
        f'<form method="post" action="{escape(action)}" id="otcForm">'
        f"{_hidden({'ctx': ctx, 'step': 'otc'})}"
        '<label for="idTxtBx_SAOTCC_OTC">Code</label>'
        '<input type="text" name="otc" id="idTxtBx_SAOTCC_OTC" inputmode="numeric" '
        'autocomplete="one-time-code" required>'
        f"{_error(error)}"
        '<div class="actions"><input type="submit" id="idSubmit_SAOTCC_Continue" '
        'value="Verify"></div></form>'
        '<p class="hint">Emulator: demo users have no authenticator; their one-time code is '
        "the one printed by <code>make demo-browser</code> (set per user with "
        "<code>add_user(..., one_time_code=...)</code>).</p>"
    )
    return _page("Enter code", body)


def consent_page(*, action: str, ctx: str, app_name: str, username: str,
                 permissions: Iterable[str]) -> str:
    items = "".join(f"<li>{escape(p)}</li>" for p in permissions)
    body = (
        f"<h1>Permissions requested</h1><p>{escape(username)}</p>"
        f"<p><b id=\"consentApp\">{escape(app_name)}</b> would like to:</p>"
        f'<ul id="permissions">{items}</ul>'
        "<p class=\"hint\">Accepting lets this app use these permissions as you. You can "
        "change this later (emulator: <code>revoke_consent</code>).</p>"
        f'<form method="post" action="{escape(action)}" id="consentForm">'
        f"{_hidden({'ctx': ctx, 'step': 'consent'})}"
        '<div class="actions">'
        '<button type="submit" name="consent" value="decline" id="idBtn_Back" '
        'class="secondary">Cancel</button>'
        '<button type="submit" name="consent" value="accept" id="idSIButton9">Accept</button>'
        "</div></form>"
    )
    return _page("Permissions requested", body)


def message_page(title: str, message: str, *, code: int | None = None) -> str:
    detail = (f'<p class="hint" id="errorCode">AADSTS{code}</p>' if code is not None else "")
    body = f"<h1 id=\"title\">{escape(title)}</h1><p id=\"message\">{escape(message)}</p>{detail}"
    return _page(title, body)


def form_post_page(action: str, fields: Mapping[str, str], nonce: str) -> str:
    """The ``response_mode=form_post`` answer: a form that posts itself to the redirect URI."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Working...</title></head><body>"
        f'<form method="post" name="hiddenform" action="{escape(action)}">{_hidden(fields)}'
        "<noscript><p>Script is disabled. Click Submit to continue.</p>"
        '<input type="submit" value="Submit"></noscript></form>'
        f'<script nonce="{escape(nonce)}">document.forms[0].submit();</script>'
        "</body></html>\n"
    )
