"""Nothing secret leaks: full flows at DEBUG, searched for every secret in every form.

The flows: validation (success and many failures), on-behalf-of through real MSAL with a
secret, a PEM certificate and a PFX (success, cache hits), and OBO failures (consent, an MFA
challenge, a revoked session, identity-provider faults). The secrets: the client secret, the
certificate's private key and PFX password, every user assertion, every token the emulator
issued (access, ID and refresh tokens, read off the wire), and every token the downstream API
received. Each is looked for raw, in base64 (standard and URL-safe, at every alignment), URL
encoded, and, for JWTs, as any 20-character piece of the signature. The places: every log record
(message, args, exception text, extra fields) of every logger with the root at DEBUG (msal and
urllib3 included), every response body and header, every exception flask-obo raised (str, repr,
chained causes), every signal payload, and the token cache's keys.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from flask import Flask, jsonify, request
from flask_caching import Cache
from support.apps import build_middle
from support.jose import attacker_rsa_key, authority_signing_key, compose, resign, sign_with

from flask_obo import ConfigError, FlaskOBO, current_token, requires_downstream, signals
from flask_obo.config import OboConfig
from flask_obo.errors import InvalidToken
from flask_obo.testing import DownstreamStandIn, make_client_certificate

_STANDARD_RECORD_FIELDS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime"}
WINDOW = 20


# -- what is secret, in every form ---------------------------------------------------------------

class Secrets:
    """Known secrets and the needles derived from them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.needles: dict[str, str] = {}  # needle -> label
        self.windows: dict[str, str] = {}  # 20-char piece -> label

    def add(self, label: str, value: str | bytes | None, *, jwt: bool = False) -> None:
        if not value:
            return
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
        needles = {text, quote(text, safe=""), quote_plus(text)}
        for offset in range(3):  # base64 of the value at each alignment it could sit at
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                encoded = encode(raw[offset:]).decode().rstrip("=")
                needles.add(encoded[: max(0, len(encoded) - 4)])
        with self._lock:
            for needle in needles:
                if len(needle) >= 12:
                    self.needles.setdefault(needle, label)
            if jwt and text.count(".") == 2:
                signature = text.rsplit(".", 1)[1]
                for start in range(len(signature) - WINDOW + 1):
                    self.windows.setdefault(signature[start:start + WINDOW], label)

    def add_pem(self, label: str, pem: str) -> None:
        self.add(label, pem)
        body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
        self.add(label + " (base64 body)", body)
        with self._lock:
            for line in pem.splitlines():
                if len(line) >= 40 and not line.startswith("-----"):
                    self.needles.setdefault(line, label + " (a line)")
            for start in range(len(body) - WINDOW + 1):
                self.windows.setdefault(body[start:start + WINDOW], label + " (a piece)")

    def find(self, haystack: str) -> list[str]:
        found = [f"{label}: {needle[:12]}..." for needle, label in list(self.needles.items())
                 if needle in haystack]
        windows = self.windows
        for start in range(len(haystack) - WINDOW + 1):
            label = windows.get(haystack[start:start + WINDOW])
            if label is not None:
                found.append(f"{label}: a 20-character piece")
                break
        return found


# -- where secrets could show up ---------------------------------------------------------------

class Evidence:
    """Everything observable that must be clean: records, responses, exceptions, signals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[logging.LogRecord] = []
        self.responses: list[Any] = []
        self.exceptions: list[BaseException] = []
        self.signals: list[tuple[str, dict[str, Any]]] = []

    def texts(self) -> Iterator[tuple[str, str]]:
        with self._lock:
            records, responses = list(self.records), list(self.responses)
            exceptions, signals_ = list(self.exceptions), list(self.signals)
        for record in records:
            where = f"log record {record.name}:{record.levelname}"
            try:
                yield where, record.getMessage()
            except Exception as exc:  # a broken format string is a finding of its own
                yield where, f"{record.msg!r} % {record.args!r} -> {exc!r}"
            yield where + " args", repr(record.args)
            if record.exc_info:
                yield where + " exc_info", "".join(traceback.format_exception(*record.exc_info))
            if record.exc_text:
                yield where + " exc_text", record.exc_text
            if record.stack_info:
                yield where + " stack", record.stack_info
            extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_RECORD_FIELDS}
            if extras:
                yield where + " extra", repr(extras)
        for response in responses:
            headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
            yield f"response {response.status}", headers + "\n" + response.get_data(as_text=True)
        for exc in exceptions:
            chain: BaseException | None = exc
            while chain is not None:
                yield f"exception {type(chain).__name__}", f"{chain!s}\n{chain!r}"
                description = getattr(chain, "description", None)
                if isinstance(description, str):
                    yield f"exception {type(chain).__name__} description", description
                chain = chain.__cause__ or chain.__context__
            yield f"exception {type(exc).__name__} traceback", "".join(
                traceback.format_exception(exc))
        for name, payload in signals_:
            yield f"signal {name}", repr(payload)


class _Recorder(logging.Handler):
    def __init__(self, evidence: Evidence) -> None:
        super().__init__(logging.DEBUG)
        self.evidence = evidence

    def emit(self, record: logging.LogRecord) -> None:
        self.evidence.records.append(record)


@dataclass
class Stack:
    emu: Any
    secrets: Secrets
    evidence: Evidence
    middle: Flask
    middle_cert: Flask
    middle_pfx: Flask
    middle_reg: Any
    down_reg: Any
    downstream_tokens: list[str]  # raw, as the downstream API received them
    cache: Cache
    tag: str
    signer: Any
    client_secret: str

    def user(self, name: str, **kwargs: Any) -> tuple[Any, str]:
        """A new user and their token for the middle tier (a secret from now on)."""
        user = self.emu.add_user(f"leak-{name}-{uuid.uuid4().hex[:6]}@contoso.test", **kwargs)
        token = self.emu.issue_user_token(user, resource=self.middle_reg,
                                          scopes=["access_as_user"])
        self.secrets.add(f"assertion of {name}", token, jwt=True)
        return user, token

    def get(self, app: Flask, path: str, token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = app.test_client().get(path, headers=headers)
        self.evidence.responses.append(response)
        return response

    def cache_keys(self) -> list[str]:
        keys: list[str] = []
        for app in (self.middle, self.middle_cert, self.middle_pfx):
            acquirer = app.extensions["obo"].acquirer
            keys.extend(acquirer.cache.local.entries)
            backend = acquirer.cache.backend
            # cachelib's SimpleCache cannot list its keys: its dict is read directly.
            keys.extend(getattr(backend, "_cache", {}))
        return keys

    def assert_clean(self) -> None:
        for seen in self.downstream_tokens:
            self.secrets.add("a downstream token", seen, jwt=True)
        leaks = []
        for where, text in self.evidence.texts():
            for found in self.secrets.find(text):
                leaks.append(f"{where} shows {found}")
        for key in self.cache_keys():
            for found in self.secrets.find(key):
                leaks.append(f"cache key {key[:40]} shows {found}")
        assert not leaks, "secrets leaked:\n" + "\n".join(sorted(set(leaks))[:40])


def _recording_flask(evidence: Evidence) -> type[Flask]:
    class RecordingFlask(Flask):
        def handle_http_exception(self, e: Any) -> Any:
            evidence.exceptions.append(e)
            return super().handle_http_exception(e)

        def log_exception(self, exc_info: Any) -> None:
            evidence.exceptions.append(exc_info[1])
            super().log_exception(exc_info)

    return RecordingFlask


@pytest.fixture(scope="module")
def stack(entra_emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    emu = entra_emulator
    evidence = Evidence()
    recorder = _Recorder(evidence)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)  # what a user debugging their app does; no logger is forced
    box = Secrets()
    tag = uuid.uuid4().hex[:8]
    # A secret whose URL-encoded and base64 forms differ from it.
    secret = f"S3cr+t/{secrets.token_urlsafe(24)}=~!"
    box.add("client secret", secret)
    cert = make_client_certificate(f"leak-{tag}", pfx_passphrase=secrets.token_urlsafe(18))
    box.add_pem("certificate private key", cert.key_pem)
    box.add("PFX password", cert.pfx_passphrase)
    box.add("PFX bytes", base64.b64encode(cert.pfx).decode())
    cert_dir = tmp_path_factory.mktemp("leak-cert")
    (cert_dir / "key.pem").write_text(cert.key_pem)
    (cert_dir / "cert.pem").write_text(cert.cert_pem)
    (cert_dir / "cert.pfx").write_bytes(cert.pfx)

    middle_reg = emu.register_app(f"leak-middle-{tag}", secret=secret, scopes=["access_as_user"],
                                  certificate=cert.cert_pem)
    down_reg = emu.register_app(f"leak-down-{tag}", scopes=["read"])
    unconsented = emu.register_app(f"leak-unconsented-{tag}", scopes=["read"])
    emu.grant_consent(client=middle_reg, resource=down_reg, scopes=["read"])

    def capture_token_responses(response: Any, *args: Any, **kwargs: Any) -> None:
        if "/oauth2/" not in response.url:
            return
        try:
            body = response.json()
        except ValueError:
            return
        if isinstance(body, dict):
            for name in ("access_token", "id_token", "refresh_token"):
                box.add(f"{name} from the token endpoint", body.get(name), jwt=True)

    with DownstreamStandIn(emu, down_reg) as down:
        downstream_tokens: list[str] = []

        @down.app.before_request
        def keep_token() -> None:  # its calls keep hashes only: the raw tokens are needles here
            downstream_tokens.append(request.headers.get("Authorization", "")[7:])

        apis = {"down": {"base_url": down.url, "scopes": [down.scope("read")]},
                "unconsented": {"base_url": down.url,
                                "scopes": [f"{unconsented.app_id_uri}/read"]}}
        cls = _recording_flask(evidence)
        cache = Cache(config={"CACHE_TYPE": "SimpleCache"})
        middle = build_middle(emu, middle_reg, down, secret=secret, flask_class=cls, cache=cache,
                              OBO_DOWNSTREAM_APIS=apis)
        middle_cert = build_middle(emu, middle_reg, down, secret=None, flask_class=cls,
                                   OBO_DOWNSTREAM_APIS=apis, OBO_CLIENT_CERTIFICATE={
                                       "private_key": str(cert_dir / "key.pem"),
                                       "certificate": str(cert_dir / "cert.pem")})
        middle_pfx = build_middle(emu, middle_reg, down, secret=None, flask_class=cls,
                                  OBO_DOWNSTREAM_APIS=apis, OBO_CLIENT_CERTIFICATE={
                                      "pfx": str(cert_dir / "cert.pfx"),
                                      "password": cert.pfx_passphrase, "send_x5c": True})
        for app in (middle, middle_cert, middle_pfx):
            app.extensions["obo"].http.hooks["response"].append(capture_token_responses)

        def on_signal(name: str) -> Any:
            def receiver(sender: Any, **kwargs: Any) -> None:
                evidence.signals.append((name, kwargs))
            return receiver

        receivers = {name: on_signal(name) for name in signals.__all__}
        for name, receiver in receivers.items():
            getattr(signals, name).connect(receiver)

        @requires_downstream(api="down")
        def reprs(downstream: Any) -> Any:
            token = downstream.access_token
            # werkzeug documents _get_current_object: the claims object itself, not the proxy
            return jsonify(token=repr(current_token._get_current_object()),
                           token_str=str(current_token), session=repr(downstream),
                           access=repr(token), access_str=str(token))

        middle.add_url_rule("/reprs", "reprs", reprs)
        signer, _ = authority_signing_key(emu)
        yield Stack(emu, box, evidence, middle, middle_cert, middle_pfx, middle_reg, down_reg,
                    downstream_tokens, cache, tag, signer, secret)
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)
    root.removeHandler(recorder)
    root.setLevel(previous_level)


# -- the flows -----------------------------------------------------------------------------------

def test_capture_works(stack: Stack) -> None:
    """The net catches: DEBUG records of urllib3 reach it, and a planted secret is found."""
    _, token = stack.user("probe")
    response = stack.get(stack.middle, "/call/down/echo", token)
    assert response.status_code == 200, response.get_data(as_text=True)
    names = {r.name.split(".")[0] for r in stack.evidence.records}
    assert "urllib3" in names, names
    planted = logging.LogRecord("probe", logging.DEBUG, __file__, 0, "value %s",
                                (token[-40:],), None)
    assert stack.secrets.find(planted.getMessage()), "the 20-character scan missed a planted piece"
    assert stack.secrets.find("secret=" + quote_plus(stack.client_secret))
    assert stack.secrets.find(base64.b64encode(f"id:{stack.client_secret}".encode()).decode())
    stack.assert_clean()


def test_validation_flows_leak_nothing(stack: Stack) -> None:
    user, token = stack.user("val")
    assert stack.get(stack.middle, "/me", token).status_code == 200
    assert stack.get(stack.middle, "/me", token).status_code == 200  # validated-token cache hit
    attacker = attacker_rsa_key()
    expired = stack.emu.issue_user_token(user, resource=stack.middle_reg,
                                         scopes=["access_as_user"], lifetime=-3600)
    hostile = {
        "expired": expired,
        "wrong audience": resign(stack.signer, token, aud=str(uuid.uuid4())),
        "other tenant": resign(stack.signer, token, tid=str(uuid.uuid4())),
        "attacker key": sign_with(attacker, "RS256", {"alg": "RS256", "kid": "x"}, {"a": 1}),
        "alg none": compose({"alg": "none"}, {"sub": "x" * 40}, ""),
        "bad signature": token[:-8] + "AAAAAAAA",
        "jwe-shaped": token + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBB",
        "oversized": resign(stack.signer, token, pad="y" * 20_000),
        "garbage": "not-a-token-" + secrets.token_urlsafe(40),
        "id token": stack.emu.issue_id_token(user, stack.middle_reg),
        "no scope": resign(stack.signer, token, scp=None),
    }
    for label, bad in hostile.items():
        stack.secrets.add(f"hostile token ({label})", bad, jwt=True)
        response = stack.get(stack.middle, "/me", bad)
        assert response.status_code == 401, (label, response.get_data(as_text=True))
    stack.assert_clean()


def test_obo_success_with_a_secret_leaks_nothing(stack: Stack) -> None:
    user, token = stack.user("obo")
    for _ in range(3):  # one identity-provider call, then cache hits
        response = stack.get(stack.middle, "/call/down/echo", token)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["oid"] == user.oid
    response = stack.get(stack.middle, "/reprs", token)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert stack.cache_keys(), "the OBO token should have been cached"
    stack.assert_clean()


@pytest.mark.parametrize("which", ["pem", "pfx"])
def test_obo_with_a_certificate_leaks_nothing(stack: Stack, which: str) -> None:
    user, token = stack.user(f"cert-{which}")
    app = stack.middle_cert if which == "pem" else stack.middle_pfx
    response = stack.get(app, "/call/down/echo", token)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["oid"] == user.oid
    stack.assert_clean()


def test_consent_failure_leaks_nothing(stack: Stack) -> None:
    _, token = stack.user("consent")
    response = stack.get(stack.middle, "/call/unconsented/echo", token)
    assert response.status_code == 403, response.get_data(as_text=True)
    stack.assert_clean()


def test_mfa_challenge_leaks_nothing(stack: Stack) -> None:
    user, token = stack.user("mfa", mfa_required_for=[stack.down_reg])
    response = stack.get(stack.middle, "/call/down/echo", token)
    assert response.status_code == 401, response.get_data(as_text=True)
    assert 'error="insufficient_claims"' in response.headers["WWW-Authenticate"]
    with_mfa = stack.emu.issue_user_token(user, resource=stack.middle_reg,
                                          scopes=["access_as_user"], mfa=True)
    stack.secrets.add("assertion with mfa", with_mfa, jwt=True)
    response = stack.get(stack.middle, "/call/down/echo", with_mfa)
    assert response.status_code == 200, response.get_data(as_text=True)
    stack.assert_clean()


def test_revoked_session_leaks_nothing(stack: Stack) -> None:
    user, token = stack.user("revoked")
    stack.emu.revoke_user_sessions(user)
    response = stack.get(stack.middle, "/call/down/echo", token)
    assert response.status_code == 401, response.get_data(as_text=True)
    stack.assert_clean()


@pytest.mark.parametrize("kind", ["status", "drop", "malformed"])
def test_identity_provider_fault_leaks_nothing(stack: Stack, kind: str) -> None:
    user, token = stack.user(f"fault-{kind}")
    stack.emu.faults.inject("token", kind, status=500)
    try:
        response = stack.get(stack.middle, "/call/down/echo", token)
    finally:
        stack.emu.faults.clear()
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers.get("Retry-After")
    response = stack.get(stack.middle, "/call/down/echo", token)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["oid"] == user.oid
    stack.assert_clean()


def test_msal_and_urllib3_spoke_at_debug(stack: Stack) -> None:
    """Record what MSAL said at DEBUG (its messages were searched by every test above)."""
    by_logger: dict[str, int] = {}
    for record in stack.evidence.records:
        if record.levelno == logging.DEBUG:
            top = record.name.split(".")[0]
            by_logger[top] = by_logger.get(top, 0) + 1
    assert by_logger.get("urllib3"), by_logger
    stack.assert_clean()


# -- reprs and tracebacks ------------------------------------------------------------------------

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"
PASSWORD = "hunter2-redis-password"


def _config(**extra: object) -> OboConfig:
    return OboConfig.from_mapping({"OBO_AUTHORITY": f"https://login.example/{TENANT}",
                                   "OBO_CLIENT_ID": CLIENT, **extra})


def test_config_repr_hides_the_cache_settings_and_their_password() -> None:
    config = _config(OBO_CACHE={"CACHE_TYPE": "RedisCache",
                                "CACHE_REDIS_URL": f"redis://:{PASSWORD}@redis:6379/0",
                                "CACHE_REDIS_PASSWORD": PASSWORD},
                     OBO_CLIENT_SECRET="a-client-secret")
    assert PASSWORD not in repr(config)
    assert "a-client-secret" not in repr(config)
    assert CLIENT in repr(config)  # still useful to print


def test_an_unexpected_validation_error_is_not_shown_with_the_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever an unforeseen error says (it may quote the token) must not reach the traceback
    # an app's error handler logs for the 401 (exc_info shows chained exceptions).
    app = Flask("leaky")
    app.config.update(OBO_AUTHORITY=f"https://login.example/{TENANT}", OBO_CLIENT_ID=CLIENT)
    FlaskOBO(app)
    seen: list[BaseException] = []

    @app.errorhandler(InvalidToken)
    def keep(error: InvalidToken) -> object:
        seen.append(error)
        return error

    def explode(token: str) -> object:
        raise ValueError(f"cannot parse {token}")

    monkeypatch.setattr(app.extensions["obo"].validator, "validate_cached", explode)
    response = app.test_client().get("/", headers={"Authorization": "Bearer SECRET.TOKEN.PART"})
    assert response.status_code == 401
    shown = "".join(traceback.format_exception(seen[0]))
    assert "SECRET" not in shown


def test_a_redis_url_that_does_not_parse_is_refused_without_quoting_its_password() -> None:
    app = Flask("bad-url")
    app.config.update(OBO_AUTHORITY=f"https://login.example/{TENANT}", OBO_CLIENT_ID=CLIENT,
                      OBO_CLIENT_SECRET="s3cret", OBO_CACHE={
                          "CACHE_TYPE": "RedisCache",
                          # an unencoded '/' in the password cuts the host part short
                          "CACHE_REDIS_URL": f"redis://:{PASSWORD}/x@localhost:6379/0"})
    with pytest.raises(ConfigError) as caught:
        FlaskOBO(app)
    shown = "".join(traceback.format_exception(caught.value))
    assert "hunter2" not in shown
    assert "URL-encoded" in str(caught.value)
