"""A person at the emulator's sign-in pages, without a browser: for tests of the auth code flow.

::

    flow = emu.public_client(app).initiate_auth_code_flow(scopes, redirect_uri=...)
    person = emu.interactive_sign_in()          # keeps its own session cookie, like a browser
    done = person.complete(flow["auth_uri"], username="alice@contoso.test", password="pw")
    result = app.acquire_token_by_auth_code_flow(flow, done.params)

``complete`` answers every page the emulator shows (sign-in, account picker, one-time code,
consent) until the emulator sends the browser back to the redirect URI, and returns where to
and with what (``code`` and ``state``, or ``error``), whatever the ``response_mode``. ``open``
and ``submit`` take one step at a time, for tests about a page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from flask_obo._http import build_session

__all__ = ["InteractiveSignIn", "Page", "SignInIncomplete"]

_FORMS = {"signinForm": "signin", "pickForm": "pick", "otcForm": "otc",
          "consentForm": "consent"}


class _FormReader(HTMLParser):
    """The first form of a page: its id, action and fields; plus the error and title shown."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id: str | None = None
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.buttons: list[dict[str, str]] = []  # name, value, id, text
        self.in_button = False
        self.in_form = False
        self.capture: str | None = None
        self.texts: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.form_id, self.action, self.in_form = a.get("id"), a.get("action", ""), True
        elif self.in_form and tag == "input" and a.get("name"):
            if a.get("type") != "submit":
                self.fields[a["name"]] = a.get("value", "")
        elif self.in_form and tag == "button" and a.get("name"):
            self.buttons.append({"name": a["name"], "value": a.get("value", ""),
                                 "id": a.get("id", ""), "text": ""})
            self.in_button = True
        if a.get("id") in ("error", "message", "title"):
            self.capture = a["id"]
            self.texts[self.capture] = ""
        elif tag == "h1":
            self.capture = "h1"
            self.texts["h1"] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False
        if tag == "button":
            self.in_button = False
        if tag in ("div", "p", "h1"):
            self.capture = None

    def handle_data(self, data: str) -> None:
        if self.in_button and self.buttons:
            self.buttons[-1]["text"] += data
        if self.capture:
            self.texts[self.capture] += data


@dataclass
class Page:
    """One answer of the emulator, as a person's browser would see it."""

    response: requests.Response
    kind: str  # signin | pick | otc | consent | redirect | message
    action: str | None = None  # where the page's form posts
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[dict[str, str]] = field(default_factory=list)  # name, value, id, text
    heading: str = ""
    error: str | None = None  # the message shown on the page, if any
    redirect_uri: str | None = None  # for kind "redirect": where the browser goes back to
    params: dict[str, str] = field(default_factory=dict)  # ... and with what


class SignInIncomplete(AssertionError):
    """The emulator showed something other than what ``complete`` was told to expect."""


class InteractiveSignIn:
    """Drives the emulator's sign-in pages over HTTPS, keeping the session cookie."""

    def __init__(self, ca_bundle: str, base_url: str) -> None:
        self.session = build_session(ca_bundle)
        self.base_url = base_url

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> InteractiveSignIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # one step at a time ------------------------------------------------------------------------
    def open(self, url: str) -> Page:
        """GET ``url`` (an authorize or logout URL) without following the redirect back."""
        return self._read(self.session.get(url, allow_redirects=False, timeout=30))

    def submit(self, page: Page, **fields: str) -> Page:
        """Post ``page``'s form with ``fields`` added (``loginfmt``, ``passwd``, ``otc``,
        ``consent``, ``account``, ...)."""
        if page.action is None:
            raise SignInIncomplete(f"the {page.kind} page has no form")
        url = urljoin(self.base_url + "/", page.action)
        return self._read(self.session.post(url, data={**page.fields, **fields},
                                             allow_redirects=False, timeout=30))

    def _read(self, response: requests.Response) -> Page:
        if response.status_code in (301, 302, 303):
            location = response.headers["Location"]
            if location.startswith(self.base_url) or location.startswith("/"):
                return self.open(urljoin(self.base_url + "/", location))
            parts = urlsplit(location)
            params = dict(parse_qsl(parts.fragment or parts.query, keep_blank_values=True))
            back = location.split("#", 1)[0] if parts.fragment else location.split("?", 1)[0]
            return Page(response, "redirect", redirect_uri=back, params=params)
        reader = _FormReader()
        reader.feed(response.text if "html" in response.headers.get("Content-Type", "") else "")
        if reader.form_id is None and reader.action and reader.fields:  # form_post's answer
            return Page(response, "redirect", redirect_uri=reader.action,
                        params=dict(reader.fields))
        kind = _FORMS.get(reader.form_id or "", "message")
        error = reader.texts.get("error") or (reader.texts.get("message")
                                              if kind == "message" else None)
        return Page(response, kind, action=reader.action, fields=reader.fields,
                    buttons=reader.buttons, heading=reader.texts.get("h1", "").strip(),
                    error=error.strip() if error else None)

    # the whole way -----------------------------------------------------------------------------
    def complete(self, auth_uri: str, *, username: str | None = None,
                 password: str | None = None, one_time_code: str | None = None,
                 consent: bool = True, max_steps: int = 10) -> Page:
        """Answer every page until the emulator redirects back; returns that redirect.

        Raises :class:`SignInIncomplete` when a page needs something not given (a password
        when the session did not sign the user in, a one-time code) or shows an error.
        """
        page = self.open(auth_uri)
        for _ in range(max_steps):
            if page.kind == "redirect":
                return page
            if page.error is not None and page.kind in ("signin", "otc", "message"):
                raise SignInIncomplete(f"the {page.kind} page says: {page.error}")
            page = self._answer(page, username, password, one_time_code, consent)
        raise SignInIncomplete(f"no redirect after {max_steps} pages (last: {page.kind})")

    def _answer(self, page: Page, username: str | None, password: str | None,
                one_time_code: str | None, consent: bool) -> Page:
        if page.kind == "signin":
            if username is None or password is None:
                raise SignInIncomplete("the sign-in page asks for a username and password")
            return self.submit(page, loginfmt=username, passwd=password)
        if page.kind == "pick":
            return self.submit(page, account=self._pick(page, username))
        if page.kind == "otc":
            if one_time_code is None:
                raise SignInIncomplete("the page asks for a one-time code (MFA)")
            return self.submit(page, otc=one_time_code)
        if page.kind == "consent":
            return self.submit(page, consent="accept" if consent else "decline")
        raise SignInIncomplete(f"unexpected page: {page.heading or page.kind}")

    @staticmethod
    def _pick(page: Page, username: str | None) -> str:
        """The account tile of ``username``, else "Use another account"."""
        for button in page.buttons:
            if username and button["value"] != "other" and \
                    username.lower() in button["text"].lower():
                return button["value"]
        return "other"
