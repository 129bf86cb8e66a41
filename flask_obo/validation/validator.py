"""``TokenValidator``: a raw bearer token in, ``TokenClaims`` out, or ``InvalidToken`` raised.

Checks run cheapest first, and nothing attacker-controlled is trusted before the signature is:
size, shape (a JWE is refused by name), header (alg allow-list; jwk/jku/x5u/x5c and any crit
refused), the key from the authority's jwks_uri only, the signature, then the claims (ver, iss
per version and tenant, aud, tid, exp/nbf with the skew, scp or roles, and the client: azp
in v2.0, appid in v1.0, which ID tokens never carry).

A token seen before (the same bytes) is answered from a bounded LRU keyed by its SHA-256,
which costs one hash and one dict lookup: exp is still checked on every request and the whole
cache is dropped when the authority's key set changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NoReturn, TypeGuard

from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jws import JWSRegistry

from .._http import PinnedTrustSession
from .._refusals import clean
from ..config import OboConfig, is_guid
from ..errors import InvalidToken
from .authority import Authority, UnknownSigningKey
from .claims import TokenClaims

__all__ = ["REASONS", "TokenValidator", "create_validator"]

log = logging.getLogger("flask_obo.validation")

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
# The last character of a segment whose length is 2 or 3 (mod 4) may only take these values.
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
_MAX_HEADER_CHARS = 2048
_MAX_TIME = 1e11  # year 5138
# Headers that would let a token name its own key, or change how it is processed.
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c")
# The claim naming the client an access token was issued to, per token version.
_CLIENT_CLAIM = {"1.0": "appid", "2.0": "azp"}

# reason code -> the short, fixed description sent to the client (never token content).
REASONS: dict[str, str] = {
    "too_large": "The token is larger than this API accepts.",
    "malformed": "The token is not a well-formed signed JWT.",
    "encrypted": "Encrypted tokens (JWE) are not accepted; send a signed access token.",
    "algorithm": "The token's signing algorithm is not accepted.",
    "forbidden_header": "The token header names its own key (jwk, jku, x5u or x5c); "
                        "keys come only from the authority.",
    "critical_header": "The token has a critical header parameter this API does not support.",
    "unknown_key": "The token is signed with a key the authority does not publish.",
    "signature": "The token signature is invalid.",
    "version": "The token version is not accepted.",
    "issuer": "The token issuer is not accepted.",
    "audience": "The token is not meant for this API (audience).",
    "tenant": "The token's tenant is not allowed.",
    "no_expiry": "The token has no valid expiry (exp).",
    "expired": "The token has expired.",
    "not_yet_valid": "The token is not valid yet (nbf).",
    "not_access_token": "The token is not an access token: it names no client (azp or appid) "
                        "or has neither scp nor roles.",
    "claims": "The token has invalid claims.",
}


def _reject(reason: str, detail: str | None = None) -> NoReturn:
    # Often raised while handling a decoder's error: the reason code is the whole story, and
    # a traceback need not show the decoder's complaint about attacker-sent bytes. ``detail``
    # goes to the server log only (values that came in the request pass through ``clean``).
    raise InvalidToken(REASONS[reason], reason=reason, log_detail=detail) from None


class TokenValidator:
    """Validates access tokens for one app's configuration; safe to share between threads."""

    def __init__(
        self,
        config: OboConfig,
        authority: Authority,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.authority = authority
        self._clock = clock
        self._algorithms = frozenset(config.algorithms)
        # joserfc's algorithm objects, looked up once: the registry enforces the allow-list.
        registry = JWSRegistry(algorithms=list(config.algorithms), strict_check_header=False)
        self._alg_models: dict[str, JWSAlgModel] = {
            alg: registry.get_alg(alg) for alg in config.algorithms}
        self._skew = config.clock_skew
        self._audiences = config.audiences
        self._allowed_tenants = config.allowed_tenants
        self._versions = config.accepted_versions
        self._max_size = config.max_token_bytes
        self._cache_size = config.validated_cache_size
        # sha256(token) -> (claims, exp + skew)
        self._cache: OrderedDict[bytes, tuple[TokenClaims, float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_generation = 0

    def validate(self, token: str) -> TokenClaims:
        """The claims of a valid token; raises ``InvalidToken`` (401) with a reason otherwise.

        May raise ``IdentityProviderUnavailable`` (503) while the authority's keys were never
        fetched. Usable outside a request (no Flask context needed).
        """
        return self.validate_cached(token)[0]

    def validate_cached(self, token: str) -> tuple[TokenClaims, bool]:
        """Like ``validate``; the bool says whether the validated-token cache answered."""
        if len(token) > self._max_size:
            _reject("too_large", f"{len(token)} characters, more than OBO_MAX_TOKEN_BYTES="
                                 f"{self._max_size}")
        try:
            data = token.encode("ascii")
        except (UnicodeEncodeError, AttributeError):
            _reject("malformed")
        digest = hashlib.sha256(data).digest()
        now = self._clock()
        authority = self.authority
        authority.tick()
        if self._cache_generation != authority.generation:
            self._drop_cache(authority.generation)
        entry = self._cache.get(digest)
        if entry is not None:
            if now > entry[1]:  # its signature was checked; only time has run out
                _reject("expired", f"exp {_when(entry[0].expires_at)} is "
                                   f"{now - entry[0].expires_at:.0f} s ago, more than "
                                   f"OBO_CLOCK_SKEW={self._skew}")
            try:  # noqa: SIM105 - the hot path: try costs nothing, suppress() an object
                self._cache.move_to_end(digest)
            except KeyError:  # evicted by another thread meanwhile
                pass
            return entry[0], True
        claims, generation = self._validate_new(token, data, digest.hex(), now)
        self._remember(digest, claims, generation)
        return claims, False

    # -- the full validation -------------------------------------------------------------

    def _validate_new(self, token: str, data: bytes, token_hash: str,
                      now: float) -> tuple[TokenClaims, int]:
        """The claims, and the generation of the key set whose key verified the signature."""
        segments = token.split(".")
        if len(segments) == 5:
            _reject("encrypted")
        if len(segments) != 3:
            _reject("malformed", f"{len(segments)} dot-separated segment(s), not a JWS's 3")
        header_segment, payload_segment, signature_segment = segments
        if not header_segment or not payload_segment:
            _reject("malformed", "an empty header or payload segment")
        header = _decode_header(header_segment)
        if "enc" in header:
            _reject("encrypted")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            _reject("algorithm", f"alg {clean(alg)} is not in OBO_ALGORITHMS "
                                 f"{sorted(self._algorithms)}")
        if any(name in header for name in _FORBIDDEN_HEADERS):
            _reject("forbidden_header", "header has "
                    + ", ".join(n for n in _FORBIDDEN_HEADERS if n in header))
        # We implement no JWS extension, so any crit (and the b64 extension) is unsupported.
        if "crit" in header or header.get("b64", True) is not True:
            _reject("critical_header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 256:
            _reject("unknown_key", f"kid {clean(kid)} is not a key id")
        if not signature_segment:
            _reject("signature")
        try:
            key, generation = self.authority.signing_key(kid)
        except UnknownSigningKey:
            _reject("unknown_key", f"kid {clean(kid)} is not in the authority's keys (a token "
                                   "of another authority, or of a key not published yet)")
        # The header is already parsed and checked above, so joserfc's algorithm is called
        # directly rather than through jws.deserialize_compact (which would parse it again).
        alg_model = self._alg_models[alg]
        signature = _b64decode(signature_segment, "signature")
        try:
            alg_model.check_key(key)  # key type, curve, use and alg fit this algorithm
            verified = alg_model.verify(data[:data.rindex(b".")], signature, key)
        except (JoseError, ValueError, TypeError):
            verified = False
        if not verified:
            _reject("signature", f"the signature does not verify with key {clean(kid)}")
        claims = _decode_json(_b64decode(payload_segment))
        self._check_claims(claims, now)
        return TokenClaims(claims, token_hash=token_hash), generation

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        # The signature has been verified: these values are the authority's, yet still pass
        # through clean() on their way to the log (built only when a check fails).
        version = claims.get("ver")
        if not isinstance(version, str) or version not in self._versions:
            _reject("version", f"ver {clean(version)} is not in OBO_ACCEPTED_TOKEN_VERSIONS "
                               f"{sorted(self._versions)} (client {_client(claims)})")
        tid = claims.get("tid")
        if not isinstance(tid, str) or not is_guid(tid):
            _reject("tenant", f"tid {clean(tid)} is not a tenant id (client {_client(claims)})")
        expected_issuer = self.authority.issuer(version, tid)
        iss = claims.get("iss")
        if expected_issuer is None or iss != expected_issuer:
            _reject("issuer", f"iss {clean(iss)} is not the issuer expected of a v{version} "
                              f"token of tenant {tid}: {clean(expected_issuer)} (the authority "
                              f"is OBO_AUTHORITY={self.config.authority}; "
                              f"client {_client(claims)})")
        # Entra access tokens have exactly one audience: a list would also be meant for another
        # API, which could replay it here.
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud not in self._audiences:
            _reject("audience", f"aud {clean(aud)} is not this API; accepted: "
                                f"{', '.join(sorted(self._audiences))} (OBO_CLIENT_ID, "
                                f"OBO_AUDIENCES); the client {_client(claims)} asked for a "
                                "token for another API")
        if self._allowed_tenants is not None and tid.lower() not in self._allowed_tenants:
            _reject("tenant", f"tid {tid} is not in OBO_ALLOWED_TENANTS "
                              f"{sorted(self._allowed_tenants)} (client {_client(claims)})")
        exp = claims.get("exp")
        if not _is_time(exp):
            _reject("no_expiry", f"exp {clean(exp)} is not a time (client {_client(claims)})")
        if now > exp + self._skew:
            _reject("expired", f"exp {_when(exp)} is {now - exp:.0f} s ago, more than "
                               f"OBO_CLOCK_SKEW={self._skew} (client {_client(claims)})")
        nbf = claims.get("nbf")
        if nbf is not None and (not _is_time(nbf) or nbf - self._skew > now):
            _reject("not_yet_valid", f"nbf {_when(nbf) if _is_time(nbf) else clean(nbf)} is "
                                     "in the future by more than "
                                     f"OBO_CLOCK_SKEW={self._skew}: check this host's clock")
        scp, roles = claims.get("scp"), claims.get("roles")
        if scp is not None and not isinstance(scp, str):
            _reject("claims", f"scp is a {type(scp).__name__}, not a string "
                              f"(client {_client(claims)})")
        if roles is not None and not (isinstance(roles, list)
                                      and all(isinstance(r, str) for r in roles)):
            _reject("claims", f"roles is not a list of strings (client {_client(claims)})")
        if not (scp and scp.strip()) and not roles:
            _reject("not_access_token", f"neither scp nor roles: an ID token or a token of "
                                        f"another kind (client {_client(claims)})")
        # An access token names the client that requested it; an ID token (which may carry
        # roles) never does: its client is its audience.
        client = claims.get(_CLIENT_CLAIM[version])
        if not isinstance(client, str) or not client:
            _reject("not_access_token", f"no {_CLIENT_CLAIM[version]} claim naming the client: "
                                        f"an ID token (aud {clean(aud)}) or a token of another "
                                        "kind")

    # -- the validated-token cache -------------------------------------------------------

    def _remember(self, digest: bytes, claims: TokenClaims, generation: int) -> None:
        # Only a token verified with the key set still current may be remembered.
        if self._cache_size <= 0 or generation != self.authority.generation:
            return
        with self._cache_lock:
            if generation != self._cache_generation:
                self._cache.clear()
                self._cache_generation = generation
            self._cache[digest] = (claims, claims.expires_at + self._skew)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _drop_cache(self, generation: int) -> None:
        with self._cache_lock:
            if self._cache_generation != generation:
                self._cache.clear()
                self._cache_generation = generation


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _client(claims: dict[str, Any]) -> str:
    """The calling app, as a refusal's log line names it."""
    return clean(claims.get("azp") or claims.get("appid"))


def _decode_header(segment: str) -> dict[str, Any]:
    if len(segment) > _MAX_HEADER_CHARS:
        _reject("malformed")
    return _decode_json(_b64decode(segment))


def _b64decode(segment: str, reason: str = "malformed") -> bytes:
    """Strict base64url: its alphabet, no padding, and canonical (unused low bits zero), so
    that no two spellings decode to the same bytes."""
    rest = len(segment) % 4
    if (not _SEGMENT.fullmatch(segment) or rest == 1
            or (rest and segment[-1] not in _CANONICAL_LAST[rest])):
        _reject(reason)
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except ValueError:
        _reject(reason)


def _decode_json(raw: bytes) -> dict[str, Any]:
    try:
        # JOSE JSON is UTF-8 (RFC 7519 section 7.2); json.loads(bytes) would also take UTF-16/32.
        value = _JSON.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        _reject("malformed")
    if not isinstance(value, dict):
        _reject("malformed")
    return value


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")  # json.loads would accept NaN and Infinity


# Built once: json.loads with any option builds a new decoder per call.
_JSON = json.JSONDecoder(parse_constant=_not_json)


def _is_time(value: Any) -> TypeGuard[float]:
    # A NumericDate in a sane range: also keeps inf, NaN and 10**400 out of float arithmetic.
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 <= value < _MAX_TIME)


def create_validator(config: OboConfig, http: PinnedTrustSession, *,
                     clock: Callable[[], float] | None = None) -> TokenValidator:
    """The validator ``FlaskOBO.init_app`` stores in ``app.extensions["obo"]``; ``clock``
    (epoch seconds) drives token lifetimes and the authority's schedule alike."""
    if clock is None:
        return TokenValidator(config, Authority(config, http))
    return TokenValidator(config, Authority(config, http, clock=clock), clock=clock)
