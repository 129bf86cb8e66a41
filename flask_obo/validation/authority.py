"""The configured authority's OpenID metadata and signing keys: fetched, cached and refreshed.

Nothing is fetched at ``init_app``: an identity provider that is down when the app starts must
not stop it from starting. The first request that needs keys fetches them (one request at a
time; the others wait for it); until that works, requests get a 503 and a retry is attempted
at most every few seconds. After that, requests never wait on the network for known keys:

- metadata and keys are refreshed in a background thread every
  ``OBO_METADATA_REFRESH_INTERVAL`` seconds; a failed refresh keeps the keys already held;
- a key id never seen before triggers an immediate JWKS refetch (key rotation without a
  restart), but at most one such forced refetch per ``OBO_JWKS_MIN_REFETCH_INTERVAL``, so a
  flood of tokens with random key ids cannot become a flood of JWKS requests.

Keys are turned into joserfc key objects once per fetch, never per request.

Each token version is validated with the metadata it needs: v2.0 discovery (which names the
keys) is required; v1.0 discovery, fetched only when v1.0 tokens are accepted, names only the
v1.0 issuer. When it cannot be had (an outage, or an authority without v1.0, such as a B2C or
External ID tenant), v2.0 tokens are still validated; v1.0 tokens get a 503 while it is fetched
again on demand, at most every few seconds, and a failed refresh keeps the issuer held.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from joserfc.jwk import ECKey, Key, RSAKey

from .._fork import reset_after_fork
from .._http import PinnedTrustSession
from ..config import OboConfig
from ..errors import AuthorityError, IdentityProviderUnavailable

__all__ = ["Authority", "Metadata", "UnknownSigningKey"]

log = logging.getLogger("flask_obo.authority")

TENANT_PLACEHOLDER = "{tenantid}"
_MAX_DOCUMENT_BYTES = 1 << 20  # a JWKS is a few kB; refuse anything absurd
_FAILED_REFRESH_RETRY = 60.0  # seconds between background attempts while the authority fails
_INITIAL_RETRY = 5.0  # at most one initial fetch per this many seconds while it fails
# Public members only: a JWKS that (wrongly) carries private parts must not make us hold them.
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}


class UnknownSigningKey(Exception):
    """The token's key id is not in the authority's key set (even after a refetch)."""


@dataclass(frozen=True)
class Metadata:
    """One consistent snapshot of the authority: issuers per token version and the keys."""

    #: token version ("1.0"/"2.0") -> issuer, possibly holding ``{tenantid}`` (multi-tenant).
    issuers: Mapping[str, str]
    jwks_uri: str
    keys: Mapping[str, Key]  # kid -> key, public parts only
    generation: int  # bumped whenever the key set changes
    fingerprint: frozenset[tuple[str, str]]  # (kid, RFC 7638 thumbprint)
    #: accepted token version -> why its discovery document could not be had (no issuer held)
    unavailable: Mapping[str, str] = field(default_factory=dict)


class Authority:
    """Discovery and JWKS of one authority, shared by every request of one app."""

    def __init__(
        self,
        config: OboConfig,
        http: PinnedTrustSession,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._metadata: Metadata | None = None
        self._lock = threading.Lock()  # serialises fetches (single flight)
        self._flag_lock = threading.Lock()  # guards _refreshing only; never held across I/O
        self._refresh_due = math.inf  # monotonic time of the next scheduled refresh
        self._refreshing = False
        self._initial_retry_at = 0.0
        self._v1_retry_at = 0.0  # next on-demand attempt at a v1.0 document that failed
        self._last_forced_refetch = -math.inf
        reset_after_fork(self)

    def after_fork_in_child(self) -> None:
        # A forked worker inherits the parent's locks as they were: held by a refresh thread
        # that does not exist in the child, they would never be released, and the key set
        # would never be fetched again (a forced refetch would even wait forever).
        self._lock = threading.Lock()
        self._flag_lock = threading.Lock()
        self._refreshing = False

    # -- reading -------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Changes whenever the key set changes (0 before the first fetch)."""
        metadata = self._metadata
        return metadata.generation if metadata is not None else 0

    @property
    def metadata(self) -> Metadata | None:
        """The current snapshot, or None if nothing was fetched yet."""
        return self._metadata

    def issuer(self, version: str, tenant_id: str) -> str | None:
        """The exact issuer a token of ``version`` from ``tenant_id`` must carry; None for a
        version not accepted. Raises IdentityProviderUnavailable while the discovery document
        of an accepted version cannot be had."""
        metadata = self._require_metadata()
        template = metadata.issuers.get(version)
        if template is None:
            if version != "1.0" or version not in self._config.accepted_versions:
                return None  # v2.0's issuer comes with the keys: never missing
            template = self._v1_issuer_now()
        # Entra's rule for multi-tenant authorities: the template's {tenantid} is the token's tid.
        return template.replace(TENANT_PLACEHOLDER, tenant_id)

    def signing_key(self, kid: str) -> tuple[Key, int]:
        """The key for ``kid`` and the generation of the key set it is from; refetches the
        JWKS once for an unknown kid (rate-limited).

        Raises UnknownSigningKey, or IdentityProviderUnavailable if no keys were ever fetched.
        """
        metadata = self._require_metadata()
        key = metadata.keys.get(kid)
        if key is not None:
            return key, metadata.generation
        if self._clock() - self._last_forced_refetch >= self._config.jwks_min_refetch_interval:
            self._forced_refetch(kid)
            metadata = self._require_metadata()
            key = metadata.keys.get(kid)
            if key is not None:
                return key, metadata.generation
        raise UnknownSigningKey

    def tick(self) -> None:
        """Start a background refresh if one is due; costs one comparison when none is."""
        if self._clock() >= self._refresh_due:
            self._start_background_refresh()

    # -- fetching ------------------------------------------------------------------------

    def refresh(self) -> Metadata:
        """Fetch discovery and the JWKS now (blocking). Raises AuthorityError on failure."""
        with self._lock:
            return self._fetch_locked()

    def _require_metadata(self) -> Metadata:
        metadata = self._metadata
        if metadata is not None:
            if self._clock() >= self._refresh_due:
                self._start_background_refresh()
            return metadata
        return self._initial_fetch()

    def _initial_fetch(self) -> Metadata:
        with self._lock:
            if self._metadata is not None:  # another thread fetched while we waited
                return self._metadata
            now = self._clock()
            if now < self._initial_retry_at:
                raise self._unavailable(self._initial_retry_at - now)
            try:
                return self._fetch_locked()
            except AuthorityError as exc:
                delay = min(_INITIAL_RETRY, self._config.jwks_min_refetch_interval)
                self._initial_retry_at = self._clock() + delay
                log.error("flask-obo: cannot load the authority's metadata: %s", exc)
                raise self._unavailable(delay) from None

    def _unavailable(self, retry_after: float) -> IdentityProviderUnavailable:
        return IdentityProviderUnavailable(
            "The signing keys of the identity provider are not available yet; try again shortly.",
            reason="authority_unavailable",
            retry_after=max(1, math.ceil(retry_after)),
        )

    def _v1_issuer_now(self) -> str:
        """The v1.0 issuer template, fetched now: its document could not be had before. At most
        one attempt per few seconds; meanwhile, and on failure, IdentityProviderUnavailable."""
        with self._lock:
            metadata = self._metadata
            assert metadata is not None  # issuer() has it
            known = metadata.issuers.get("1.0")
            if known is not None:  # another thread fetched it while we waited
                return known
            now = self._clock()
            if now < self._v1_retry_at:
                raise self._unavailable(self._v1_retry_at - now)
            try:
                template = self._v1_issuer()
            except AuthorityError as exc:
                self._v1_failed(exc)
                raise self._unavailable(self._v1_retry_at - self._clock()) from None
            self._metadata = replace(metadata, issuers={**metadata.issuers, "1.0": template},
                                     unavailable={})
            log.info("flask-obo: the v1.0 discovery document was fetched: v1.0 tokens are "
                     "validated again")
            return template

    def _v1_failed(self, exc: AuthorityError) -> None:
        self._v1_retry_at = self._clock() + min(_INITIAL_RETRY,
                                                self._config.jwks_min_refetch_interval)
        log.warning("flask-obo: v1.0 tokens cannot be validated until the v1.0 discovery "
                    "document can be fetched (v2.0 tokens can): %s", exc)

    def _forced_refetch(self, kid: str) -> None:
        with self._lock:
            metadata = self._metadata
            if metadata is not None and kid in metadata.keys:
                return  # a concurrent refetch already brought it
            now = self._clock()
            if now - self._last_forced_refetch < self._config.jwks_min_refetch_interval:
                return  # a concurrent request used the allowance
            self._last_forced_refetch = now
            try:
                self._fetch_locked(discovery=metadata is None)
            except AuthorityError as exc:
                log.warning("flask-obo: JWKS refetch for an unknown key id failed; keeping the "
                            "keys held: %s", exc)

    def _start_background_refresh(self) -> None:
        with self._flag_lock:
            if self._refreshing or self._clock() < self._refresh_due:
                return
            self._refreshing = True
        thread = threading.Thread(target=self._background_refresh, name="flask-obo-metadata",
                                  daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had now: the next request will try again
            with self._flag_lock:
                self._refreshing = False

    def _background_refresh(self) -> None:
        try:
            with self._lock:
                self._fetch_locked()
        except AuthorityError as exc:
            retry = min(self._config.metadata_refresh_interval, _FAILED_REFRESH_RETRY)
            self._refresh_due = self._clock() + retry
            log.warning("flask-obo: metadata refresh failed; keeping the keys held and retrying "
                        "in %.0f s: %s", retry, exc)
        except Exception:  # a daemon thread must never die silently with the schedule stuck
            self._refresh_due = self._clock() + _FAILED_REFRESH_RETRY
            log.exception("flask-obo: unexpected error while refreshing metadata")
        finally:
            with self._flag_lock:
                self._refreshing = False

    def _fetch_locked(self, *, discovery: bool = True) -> Metadata:
        """Fetch (discovery and) keys and publish a new snapshot. Caller holds the lock."""
        previous = self._metadata
        issuers: Mapping[str, str]
        unavailable: Mapping[str, str]
        if discovery or previous is None:
            issuers, jwks_uri, unavailable = self._discover(previous)
        else:
            issuers, jwks_uri = previous.issuers, previous.jwks_uri
            unavailable = previous.unavailable
        keys, fingerprint = self._fetch_keys(jwks_uri)
        generation = 1
        if previous is not None:
            generation = previous.generation + (previous.fingerprint != fingerprint)
        metadata = Metadata(issuers=issuers, jwks_uri=jwks_uri, keys=keys,
                            generation=generation, fingerprint=fingerprint,
                            unavailable=unavailable)
        if previous is not None and previous.fingerprint != fingerprint:
            log.info("flask-obo: signing keys changed: %s", sorted(keys))
        self._metadata = metadata
        if discovery or previous is None:
            self._refresh_due = self._clock() + self._config.metadata_refresh_interval
        return metadata

    def _discover(self, previous: Metadata | None,
                  ) -> tuple[dict[str, str], str, dict[str, str]]:
        """(issuers by version, jwks_uri, why each missing accepted version is missing)."""
        authority = self._config.authority
        v2 = self._get_json(f"{authority}/v2.0/.well-known/openid-configuration",
                            "the v2.0 OpenID discovery document")
        issuers = {"2.0": _string_field(v2, "issuer", "v2.0 discovery")}
        jwks_uri = _string_field(v2, "jwks_uri", "v2.0 discovery")
        if urlsplit(jwks_uri).scheme != "https":
            raise AuthorityError(f"the discovery document's jwks_uri {jwks_uri!r} is not https.")
        unavailable: dict[str, str] = {}
        if "1.0" in self._config.accepted_versions:
            try:
                issuers["1.0"] = self._v1_issuer()
            except AuthorityError as exc:
                held = previous.issuers.get("1.0") if previous is not None else None
                if held is not None:  # a failed refresh keeps what it has
                    issuers["1.0"] = held
                    log.warning("flask-obo: keeping the v1.0 issuer held: %s", exc)
                else:
                    unavailable["1.0"] = str(exc)
                    self._v1_failed(exc)
        return issuers, jwks_uri, unavailable

    def _v1_issuer(self) -> str:
        """The v1.0 issuer, from the v1.0 discovery document: v1.0 tokens carry it
        (https://sts.windows.net/{tid}/ on Entra), and only that document states it reliably
        for every cloud."""
        try:
            v1 = self._get_json(f"{self._config.authority}/.well-known/openid-configuration",
                                "the v1.0 OpenID discovery document")
            return _string_field(v1, "issuer", "v1.0 discovery")
        except AuthorityError as exc:
            raise AuthorityError(f"{exc} If this API takes v2.0 tokens only, set "
                                 "OBO_ACCEPTED_TOKEN_VERSIONS=['2.0'].") from None

    def _fetch_keys(self, jwks_uri: str) -> tuple[dict[str, Key], frozenset[tuple[str, str]]]:
        document = self._get_json(jwks_uri, "the signing keys (JWKS)")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise AuthorityError(f"{jwks_uri} is not a JWKS: it has no 'keys' list.")
        keys: dict[str, Key] = {}
        for entry in entries:
            key = _import_signing_key(entry)
            if key is not None and key.kid is not None:
                keys[key.kid] = key
        if not keys:
            raise AuthorityError(f"{jwks_uri} holds no usable signing key (RSA or EC with a kid).")
        fingerprint = frozenset((kid, key.thumbprint()) for kid, key in keys.items())
        return keys, fingerprint

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        host = urlsplit(url).netloc
        try:
            response = self._http.get(url, timeout=self._config.http_timeout,
                                      allow_redirects=False, stream=True)
            with response:  # read at most the cap: a huge answer must not fill our memory
                body = response.raw.read(_MAX_DOCUMENT_BYTES + 1, decode_content=True)
        except requests.exceptions.SSLError:
            hint = (f"the CA in OBO_CA_BUNDLE={self._config.ca_bundle!r} did not verify it"
                    if self._config.ca_bundle else
                    "set OBO_CA_BUNDLE to the PEM file of the CA that issued its certificate")
            raise AuthorityError(f"TLS verification of {host} failed while fetching {what}: "
                                 f"{hint}.") from None
        except requests.exceptions.Timeout:
            raise AuthorityError(
                f"{host} did not answer within OBO_HTTP_TIMEOUT={self._config.http_timeout:g} s "
                f"while fetching {what}.") from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise AuthorityError(f"cannot reach {host} to fetch {what} "
                                 f"({type(exc).__name__}): check OBO_AUTHORITY, DNS and any "
                                 "proxy settings (HTTPS_PROXY).") from None
        if response.status_code != 200:
            detail = _error_description(body)
            if response.status_code in (400, 404):
                raise AuthorityError(
                    f"{url} answered HTTP {response.status_code}{detail}: check the tenant in "
                    f"OBO_AUTHORITY={self._config.authority!r}."
                )
            raise AuthorityError(f"{url} answered HTTP {response.status_code}{detail} while "
                                 f"fetching {what}; the authority may be down, try again.")
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise AuthorityError(f"{url} returned more than {_MAX_DOCUMENT_BYTES} bytes.")
        try:
            document = json.loads(body)
        except ValueError:
            raise AuthorityError(f"{url} did not return JSON ({what}): is OBO_AUTHORITY an "
                                 "OpenID Connect authority?") from None
        if not isinstance(document, dict):
            raise AuthorityError(f"{url} did not return a JSON object ({what}).")
        return document


def _string_field(document: Mapping[str, Any], name: str, where: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise AuthorityError(f"the {where} document has no '{name}'.")
    return value


def _error_description(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    text = body.get("error_description") if isinstance(body, dict) else None
    return f" ({text.splitlines()[0][:200]})" if isinstance(text, str) and text else ""


def _import_signing_key(entry: Any) -> Key | None:
    """A joserfc key from one JWKS entry, or None for entries we must not or cannot use."""
    if not isinstance(entry, dict):
        return None
    kty, kid = entry.get("kty"), entry.get("kid")
    if kty not in _PUBLIC_MEMBERS or not isinstance(kid, str) or not kid:
        return None
    if entry.get("use", "sig") != "sig":
        return None
    data: dict[str, Any] = {name: entry.get(name) for name in _PUBLIC_MEMBERS[kty]}
    if not all(isinstance(v, str) for v in data.values()):
        return None
    data.update(kty=kty, kid=kid, use="sig")
    if isinstance(entry.get("alg"), str):
        data["alg"] = entry["alg"]
    try:
        key: Key = RSAKey.import_key(data) if kty == "RSA" else ECKey.import_key(data)
        return key
    except Exception:  # a malformed key in the set must not hide the good ones
        log.warning("flask-obo: ignoring an unusable %s key %r in the JWKS", kty, kid[:64])
        return None
