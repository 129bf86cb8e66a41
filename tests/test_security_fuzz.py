"""Property-based fuzzing of the Authorization header and of each token segment.

Whatever arrives, a protected view answers with a clean client error (400 or 401 with a
problem+json body, 403 for a token without the scope): never a 500, never a 200. Examples are
derandomized so CI runs are reproducible; counts are kept moderate so the module runs fast.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from support.apps import build_api
from support.jose import authority_signing_key, b64url, claims_of, header_of, sign_with

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Claims the validator checks: every replacement below has a type that can never be valid.
CHECKED = ("iss", "aud", "tid", "ver", "exp", "nbf", "scp")


@dataclass
class Target:
    client: FlaskClient
    token: str
    signer: rsa.RSAPrivateKey
    kid: str
    oid: str

    @property
    def claims(self) -> dict[str, Any]:
        return claims_of(self.token)


@pytest.fixture(scope="module")
def target(entra_emulator: Any) -> Target:
    emu = entra_emulator
    tag = uuid.uuid4().hex[:8]
    api = emu.register_app(f"fuzz-api-{tag}", scopes=["access_as_user"])
    user = emu.add_user(f"fuzz-{tag}@contoso.test", password=uuid.uuid4().hex)
    token = emu.issue_user_token(user, resource=api, scopes=["access_as_user"])
    # The default refetch limit: random kids must not turn into a flood of JWKS fetches.
    app = build_api(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=300)
    signer, kid = authority_signing_key(emu)
    target = Target(app.test_client(), token, signer, kid, user.oid)
    control = _send(target, f"Bearer {token}")
    assert control.status_code == 200, control.get_data(as_text=True)
    return target


def _send(target: Target, authorization: str, path: str = "/scoped") -> Any:
    # A WSGI server hands header bytes over as latin-1 text: do the same.
    return target.client.get(path, environ_overrides={"HTTP_AUTHORIZATION": authorization})


def _as_server_would(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def _refused(response: Any, *statuses: int) -> None:
    allowed = statuses or (400, 401)
    assert response.status_code in allowed, (response.status_code,
                                             response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/problem+json"
    body = json.loads(response.get_data(as_text=True))
    assert body["status"] == response.status_code
    assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")  # 400s too


# -- the Authorization header ---------------------------------------------------------------------

@FUZZ
@given(st.text(max_size=300))
def test_any_text_header(target: Target, text: str) -> None:
    _refused(_send(target, _as_server_would(text)))


@FUZZ
@given(st.text(max_size=300))
def test_any_text_after_bearer(target: Target, text: str) -> None:
    _refused(_send(target, _as_server_would("Bearer " + text)))


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_header(target: Target, raw: bytes) -> None:
    _refused(_send(target, raw.decode("latin-1")))


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_after_bearer(target: Target, raw: bytes) -> None:
    _refused(_send(target, "Bearer " + raw.decode("latin-1")))


@settings(FUZZ, max_examples=60)
@given(st.text(min_size=1, max_size=40))
def test_non_latin1_header_through_the_test_client(target: Target, text: str) -> None:
    """Text a WSGI server could never produce still gets a clean refusal, never a 500."""
    response = target.client.get("/scoped", environ_overrides={
        "HTTP_AUTHORIZATION": "Bearer " + target.token[:20] + text})
    _refused(response)


# -- each segment of a genuine token --------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12,
)
segments = st.one_of(
    st.text(alphabet=B64URL, max_size=600),
    st.binary(max_size=400).map(b64url),
    json_values.map(lambda v: b64url(json.dumps(v))),
    st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "x5t", "enc", "jku", "b64"]),
                    json_values, max_size=5).map(lambda v: b64url(json.dumps(v))),
)


@FUZZ
@given(st.integers(min_value=0, max_value=2), segments)
def test_one_segment_replaced(target: Target, index: int, segment: str) -> None:
    parts = target.token.split(".")
    assume(parts[index] != segment)
    parts[index] = segment
    _refused(_send(target, "Bearer " + ".".join(parts)))


@FUZZ
@given(st.lists(segments, min_size=0, max_size=6))
def test_any_number_of_segments(target: Target, parts: list[str]) -> None:
    _refused(_send(target, "Bearer " + ".".join(parts)))


@FUZZ
@given(st.integers(min_value=0, max_value=2), st.data())
def test_one_segment_bit_flipped(target: Target, index: int, data: st.DataObject) -> None:
    parts = target.token.split(".")
    position = data.draw(st.integers(min_value=0, max_value=len(parts[index]) - 1))
    replacement = data.draw(st.sampled_from(B64URL).filter(lambda c: c != parts[index][position]))
    segment = parts[index]
    # Any change is refused, even one in the padding bits of the last character (a
    # non-canonical spelling of the same bytes).
    parts[index] = segment[:position] + replacement + segment[position + 1:]
    _refused(_send(target, "Bearer " + ".".join(parts)))


# -- genuinely signed tokens with hostile content --------------------------------------------------

def _never_valid(claim: str) -> Callable[[Any], bool]:
    """Values of a type this claim can never validly have."""
    if claim in ("exp", "nbf"):
        return lambda v: not (isinstance(v, (int, float)) and not isinstance(v, bool)) and (
            claim != "nbf" or v is not None)
    if claim == "aud":
        return lambda v: not isinstance(v, (str, list))
    return lambda v: not isinstance(v, str)


@FUZZ
@given(st.data())
def test_signed_with_mistyped_claims(target: Target, data: st.DataObject) -> None:
    names = data.draw(st.sets(st.sampled_from(CHECKED), min_size=1, max_size=3))
    claims = target.claims
    for name in sorted(names):
        claims[name] = data.draw(json_values.filter(_never_valid(name)), label=name)
    token = sign_with(target.signer, "RS256", header_of(target.token), claims)
    _refused(_send(target, "Bearer " + token), 401)


@FUZZ
@given(json_values)
def test_signed_payload_of_any_json(target: Target, payload: Any) -> None:
    token = sign_with(target.signer, "RS256", header_of(target.token), b64url(json.dumps(payload)))
    _refused(_send(target, "Bearer " + token), 401)


@FUZZ
@given(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "x5t", "enc", "b64", "cty",
                                        "zip", "x5c", "jku", "jwk", "x5u"]),
                       json_values, min_size=1, max_size=6))
def test_signed_with_any_header(target: Target, header: dict[str, Any]) -> None:
    genuine = header_of(target.token)
    assume(header.get("alg") != "RS256" or header.get("kid") != genuine["kid"]
           or any(k in header for k in ("crit", "enc", "b64", "zip", "x5c", "jku", "jwk", "x5u")))
    token = sign_with(target.signer, "RS256", header, target.claims)
    _refused(_send(target, "Bearer " + token), 401)


@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=12).filter(
    lambda k: k not in {"iss", "aud", "tid", "ver", "exp", "nbf", "iat", "scp", "roles", "oid",
                        "azp", "appid", "idtyp", "sub"}), json_values, max_size=6),
       st.sampled_from([-1e300, 0, 1.5, 2**63, -(2**63), math.pi]))
def test_signed_with_extra_claims_still_works(target: Target, extra: dict[str, Any],
                                              iat: float) -> None:
    """Odd extra claims (names, types, a strange iat) in a genuine token never cause a 500."""
    claims = {**target.claims, **extra, "iat": iat}
    token = sign_with(target.signer, "RS256", header_of(target.token), claims)
    response = _send(target, "Bearer " + token)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.get_json()["oid"] == target.oid
