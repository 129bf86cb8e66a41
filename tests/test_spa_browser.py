"""The SPA sample end to end in a real browser: Debian's Chromium, driven by Playwright through
its executable path (no browser download), running MSAL.js from npm against the emulator, the
middle tier and the downstream API.

Chromium trusts the emulator's key only (``--ignore-certificate-errors-spki-list``), starts
with a fresh profile per test, and reaches nothing but loopback. Screenshots of every step
land in ``test-artifacts/spa-browser/<test>/`` (git-ignored).

Where Chromium, the playwright package or ``samples/spa/node_modules`` is missing, these tests
skip and say why; with ``CI=true`` they fail instead (``make test`` installs all three).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flask_obo.testing import App, EntraEmulator, LoopbackServer, User
from flask_obo.testing.pytest_plugin import EntraTestHelper

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
MSAL_JS = ROOT / "samples/spa/node_modules/@azure/msal-browser/lib/msal-browser.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "spa-browser"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 20_000  # a failure guard: each wait returns as soon as the page shows the state

pytestmark = pytest.mark.browser


def _missing() -> str | None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not MSAL_JS.is_file():
        return "MSAL.js is not installed: run `npm ci` in samples/spa"
    return None


@pytest.fixture(scope="module")
def browser_ready() -> None:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)


@dataclass
class Stack:
    """The emulator, both sample APIs and the SPA, as a person would run them."""

    emu: EntraEmulator
    spa: App
    middle: App
    down: App
    origin: str


@pytest.fixture(scope="module")
def stack(browser_ready: None, entra_emulator: EntraEmulator) -> Iterator[Stack]:
    from samples import downstream_api, middle_tier, spa_server

    emu = entra_emulator
    middle = emu.register_app("browser middle-tier", secret="mt-secret",
                              scopes=["access_as_user"])
    down = emu.register_app("browser downstream", scopes=["read"], roles=["Reader"])
    emu.grant_consent(client=middle, resource=down, scopes=["read"], roles=["Reader"])
    base = {"OBO_AUTHORITY": emu.authority(), "OBO_CA_BUNDLE": emu.ca_bundle}
    # The SPA's origin names its port, so its server is bound before its app is built.
    page = LoopbackServer(None, host="localhost")
    origin = page.url.rstrip("/")
    spa = emu.register_app("SPA sample",
                           spa_redirect_uris=[f"{origin}/", f"{origin}/redirect.html"])
    downstream = LoopbackServer(downstream_api.create_app(
        {**base, "OBO_CLIENT_ID": down.client_id}))
    api = LoopbackServer(middle_tier.create_app({
        **base, "OBO_CLIENT_ID": middle.client_id, "OBO_CLIENT_SECRET": "mt-secret",
        "OBO_DOWNSTREAM_APIS": {"profile": {"base_url": f"{downstream.url}v1.0/",
                                            "scopes": [f"{down.app_id_uri}/read"]}},
        "CORS_ORIGINS": [origin],
    }))
    page.app = spa_server.create_app({
        "SPA_AUTHORITY": emu.authority(), "SPA_CLIENT_ID": spa.client_id,
        "SPA_API_SCOPE": f"{middle.app_id_uri}/access_as_user",
        "SPA_API_URL": api.url.rstrip("/"),
    })
    with page, downstream, api:
        yield Stack(emu, spa, middle, down, origin)


@pytest.fixture(scope="module")
def playwright_driver(browser_ready: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


class Spa:
    """One browser (a fresh profile) on the SPA, with a screenshot per step."""

    def __init__(self, page: Any, stack: Stack, shots: Path) -> None:
        self.page = page
        self.stack = stack
        self.shots = shots
        self.step = 0
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(str(error)))

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(self.shots / f"{self.step:02d}-{name}.png"),
                             full_page=True)

    def wait(self, selector: str, state: str = "visible") -> Any:
        return self.page.wait_for_selector(selector, state=state, timeout=WAIT_MS)

    def text(self, selector: str) -> str:
        return str(self.page.text_content(selector) or "").strip()

    def open(self) -> None:
        self.page.goto(self.stack.origin + "/")
        self.ready()
        self.shot("spa")

    def ready(self) -> None:
        """Wait until the SPA has handled the page load (a redirect's response included)."""
        self.wait("body[data-ready=true]", state="attached")

    def leave(self, action: Callable[[], Any]) -> None:
        """Run ``action``, which navigates away, and wait for the SPA to be back and ready."""
        self.page.evaluate("() => { document.body.dataset.ready = 'left'; }")
        action()
        self.ready()

    def sign_in(self, user: User, password: str) -> None:
        self.page.click("#signIn")
        self.wait("#i0116")
        assert self.page.input_value("#i0116") == ""
        self.page.fill("#i0116", user.username)
        self.page.fill("#i0118", password)
        self.shot("sign-in-page")
        self.page.click("#idSIButton9")

    def consent(self, accept: bool = True) -> None:
        self.wait("#consentForm")
        self.shot("consent")
        self.page.click("#idSIButton9" if accept else "#idBtn_Back")
        self.ready()

    def call_api(self) -> None:
        self.page.click("#callApi")


@pytest.fixture
def open_spa(stack: Stack, playwright_driver: Any,
             request: pytest.FixtureRequest) -> Iterator[Callable[[], Spa]]:
    """``open_spa()``: a fresh Chromium profile on the SPA's page."""
    shots = ARTIFACTS / re.sub(r"[^\w.-]", "_", request.node.name)
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    contexts: list[Any] = []
    spas: list[Spa] = []

    def launch() -> Spa:
        profile = tempfile.mkdtemp(prefix="spa-browser-")
        context = playwright_driver.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=[
                *CHROMIUM_FLAGS,
                f"--ignore-certificate-errors-spki-list={stack.emu.certificate_spki_sha256}"])
        contexts.append((context, profile))
        page = context.pages[0] if context.pages else context.new_page()
        spa = Spa(page, stack, shots)
        spas.append(spa)
        spa.open()
        return spa

    try:
        yield launch
    finally:
        for context, profile in contexts:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
    for spa in spas:
        assert spa.problems == [], f"the page threw: {spa.problems}"


def _token_calls(stack: Stack, user: User, grant: str) -> list[dict[str, Any]]:
    return [c for c in stack.emu.calls(grant) if c.get("user") == user.username]


# the scenarios -------------------------------------------------------------------------------
def test_a_user_signs_in_and_sees_the_downstream_answer_with_their_oid(
        entra: EntraTestHelper, stack: Stack, open_spa: Callable[[], Spa]) -> None:
    alice = entra.add_user("alice", password="alice-pw")
    spa = open_spa()
    assert spa.wait("#signIn")
    spa.sign_in(alice, "alice-pw")
    spa.consent()
    spa.wait("#signedIn")
    assert spa.text("#account") == alice.username
    spa.shot("signed-in")
    spa.call_api()
    spa.wait("#result")
    spa.shot("downstream-answer")
    assert spa.text("#downstreamOid") == alice.oid
    assert spa.text("#downstreamAzp") == stack.middle.client_id  # OBO: the middle tier
    assert spa.text("#downstreamAmr") == "pwd"
    redeemed = _token_calls(stack, alice, "authorization_code")
    assert [(c["status"], c["platform"], c["origin"]) for c in redeemed] == [
        (200, "spa", stack.origin)]  # MSAL.js redeemed the code cross-origin


def test_the_mfa_claims_challenge_asks_for_the_one_time_code_then_the_call_succeeds(
        entra: EntraTestHelper, stack: Stack, open_spa: Callable[[], Spa]) -> None:
    bob = entra.add_user("bob", password="bob-pw", mfa_required_for=[stack.down],
                         one_time_code="424242")
    spa = open_spa()
    spa.sign_in(bob, "bob-pw")
    spa.consent()
    spa.wait("#signedIn")
    spa.call_api()  # 401 insufficient_claims -> acquireTokenRedirect({claims})
    spa.wait("#idTxtBx_SAOTCC_OTC")
    spa.shot("one-time-code")
    spa.page.fill("#idTxtBx_SAOTCC_OTC", "000000")
    spa.page.click("#idSubmit_SAOTCC_Continue")
    assert "didn't work" in spa.wait("#error").text_content()
    spa.shot("wrong-code")
    spa.page.fill("#idTxtBx_SAOTCC_OTC", "424242")
    spa.page.click("#idSubmit_SAOTCC_Continue")
    spa.wait("#result")
    spa.shot("downstream-answer-after-mfa")
    assert spa.text("#downstreamOid") == bob.oid
    assert spa.text("#downstreamAmr") == "pwd, mfa"
    authorize = [c for c in stack.emu.calls(endpoint="authorize")
                 if c.get("user") == bob.username]
    assert [c["outcome"] for c in authorize][-3:] == ["page:otc", "page:otc", "code"]


def test_refusing_consent_gives_the_spa_a_clear_error(
        entra: EntraTestHelper, stack: Stack, open_spa: Callable[[], Spa]) -> None:
    carol = entra.add_user("carol", password="carol-pw")
    spa = open_spa()
    spa.sign_in(carol, "carol-pw")
    spa.consent(accept=False)
    error = spa.wait("#error").text_content()
    spa.shot("consent-refused")
    assert "You declined the permissions this app asked for" in error
    assert "AADSTS65004" in error
    assert spa.page.is_visible("#signIn")  # still signed out, free to try again
    assert _token_calls(stack, carol, "authorization_code") == []


def test_sign_out_ends_the_emulator_session(
        entra: EntraTestHelper, stack: Stack, open_spa: Callable[[], Spa]) -> None:
    dave = entra.add_user("dave", password="dave-pw")
    spa = open_spa()
    spa.sign_in(dave, "dave-pw")
    spa.consent()
    spa.wait("#signedIn")
    cookie = stack.emu.session_cookie
    assert cookie in {c["name"] for c in spa.page.context.cookies()}
    spa.leave(lambda: spa.page.click("#signOut"))
    spa.wait("#signIn")
    spa.shot("signed-out")
    assert cookie not in {c["name"] for c in spa.page.context.cookies()}
    spa.page.click("#signIn")  # no session left: the password is asked for again
    spa.wait("#i0116")
    spa.shot("sign-in-again")


def test_silent_renewal_redeems_the_refresh_token_and_prompt_none_reuses_the_session(
        entra: EntraTestHelper, stack: Stack, open_spa: Callable[[], Spa]) -> None:
    erin = entra.add_user("erin", password="erin-pw")
    spa = open_spa()
    spa.sign_in(erin, "erin-pw")
    spa.consent()
    spa.wait("#signedIn")
    renewed = spa.page.evaluate(
        "async () => (await app.acquireTokenSilent(tokenRequest({forceRefresh: true})))"
        ".account.username")
    assert renewed == erin.username
    refreshes = _token_calls(stack, erin, "refresh_token")
    assert [(c["status"], c["origin"]) for c in refreshes] == [(200, stack.origin)]
    # A top-level prompt=none: the emulator's session signs erin in without a page.
    spa.leave(lambda: spa.page.evaluate(
        "() => { app.loginRedirect(tokenRequest({prompt: 'none'})); }"))
    spa.wait("#signedIn")
    assert spa.text("#status") == "Signed in."
    silent = [c for c in stack.emu.calls(endpoint="authorize") if c.get("prompt") == "none"
              and c.get("user") == erin.username]
    assert [(c["session"], c["outcome"]) for c in silent] == [(True, "code")]
    spa.shot("signed-in-silently")
