"""Every ``OBO_`` configuration key: its type, default and validation, read once at init_app.

Errors are ``ConfigError`` (a ``RuntimeError``) whose message names the key, what was wrong
and what to set instead, so a misconfigured app fails at start, not at its first request.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = [
    "DEFAULTS",
    "KEYS",
    "MULTI_TENANT_SEGMENTS",
    "DownstreamApi",
    "Key",
    "OboConfig",
    "check_scopes",
    "check_unknown_keys",
    "is_guid",
]

log = logging.getLogger("flask_obo")

# Authority segments that stand for "any tenant": tokens carry the caller's own tid.
MULTI_TENANT_SEGMENTS = frozenset({"common", "organizations"})


@dataclass(frozen=True)
class Key:
    """One ``OBO_`` setting: its name, default, type and a one-line description.

    ``KEYS`` is the one list of flask-obo's settings: ``DEFAULTS``, the refusal of unknown
    ``OBO_`` keys, the README's table and the docs' configuration reference all come from it.
    """

    name: str
    default: Any
    type: str
    doc: str
    #: the default as the docs show it, where the value alone would not say what it means
    shown: str | None = None


KEYS: tuple[Key, ...] = (
    Key("OBO_AUTHORITY", None, "URL",
        "`https://login.microsoftonline.com/<tenant-id>`; `.../organizations` or `.../common` "
        "for a multi-tenant API", shown="required"),
    Key("OBO_CLIENT_ID", None, "GUID",
        "this API's application (client) id; `api://<client id>` is read as the client id",
        shown="required"),
    Key("OBO_AUDIENCES", None, "list of str",
        "further accepted `aud` values, such as a custom App ID URI; the client id and "
        "`api://<client id>` are always accepted", shown="none"),
    Key("OBO_ALLOWED_TENANTS", None, "list of str",
        "tenant ids allowed to call, or `[\"*\"]`; required for a multi-tenant authority",
        shown="the authority's tenant"),
    Key("OBO_ACCEPTED_TOKEN_VERSIONS", ("1.0", "2.0"), "list of str",
        "token versions, each checked against its own issuer form, from its own discovery "
        "document: while the v1.0 document cannot be had (an authority without one, such as "
        "B2C or External ID) v1.0 tokens get 503 and v2.0 tokens pass; `[\"2.0\"]` never asks "
        "for it"),
    Key("OBO_CLOCK_SKEW", 300, "int", "seconds of leeway on `exp` and `nbf`"),
    Key("OBO_ALGORITHMS", ("RS256",), "list of str",
        "allowed signing algorithms (asymmetric only; `none` and HS* never)"),
    Key("OBO_MAX_TOKEN_BYTES", 16384, "int", "larger tokens are refused before any parsing"),
    Key("OBO_CA_BUNDLE", None, "path",
        "a PEM file of an extra CA to trust for the authority (the emulator's in tests)"),
    Key("OBO_REALM", None, "str", "the `realm` of `WWW-Authenticate` challenges",
        shown="`api://<client id>`"),
    Key("OBO_PUBLIC_ENDPOINTS", (), "list of str",
        "endpoint names that need no token (or use `@public`)"),
    Key("OBO_HTTP_TIMEOUT", 10.0, "float", "seconds for calls to the authority"),
    Key("OBO_METADATA_REFRESH_INTERVAL", 12 * 3600, "int",
        "seconds between scheduled refreshes of discovery and JWKS"),
    Key("OBO_JWKS_MIN_REFETCH_INTERVAL", 300, "int",
        "at most one forced JWKS refetch (unknown `kid`) per this many seconds"),
    Key("OBO_VALIDATED_TOKEN_CACHE_SIZE", 10_000, "int",
        "validated tokens remembered by SHA-256 (0: off)"),
    Key("OBO_CLIENT_SECRET", None, "str", "client secret credential"),
    Key("OBO_CLIENT_CERTIFICATE", None, "dict",
        "`{\"private_key\": path-or-PEM, \"certificate\": path-or-PEM}` or "
        "`{\"pfx\": path-bytes-or-base64, \"password\": ...}`, optionally "
        "`\"send_x5c\": True`"),
    Key("OBO_CLIENT_ASSERTION", None, "callable or path",
        "a callable returning a signed client assertion, or the path of a file holding one "
        "(workload identity federation)"),
    Key("OBO_DOWNSTREAM_APIS", {}, "dict",
        "`{\"name\": {\"scopes\": [...], \"base_url\": ..., \"timeout\": ..., \"retries\": ..., "
        "\"app_only\": False}}`"),
    Key("OBO_CACHE", None, "dict",
        "Flask-Caching settings for the token cache (`{\"CACHE_TYPE\": \"RedisCache\", ...}`; "
        "backends that unpickle, such as memcached and `FileSystemCache`, are refused); "
        "`None`: in-process, or the `Cache` given to `FlaskOBO(cache=...)`"),
    Key("OBO_CACHE_KEY_PREFIX", "flask_obo:", "str", "prefix of token-cache keys"),
    Key("OBO_CACHE_ENCRYPTION_KEY", None, "str or list of str",
        "a key or a list of keys (32 bytes, URL-safe base64); the first encrypts, any decrypts"),
    Key("OBO_CACHE_EXPIRY_MARGIN", 60, "int",
        "an entry lives until the token's expiry minus this"),
    Key("OBO_CACHE_REFRESH_AHEAD", 300, "int",
        "inside this many seconds before expiry, the token is renewed in the background"),
    Key("OBO_CACHE_LOCK_TIMEOUT", 10.0, "float",
        "lifetime of the Redis lock around one identity-provider call; a request waits for "
        "another's call for the same key at most this plus 1 s plus three `OBO_HTTP_TIMEOUT`s"),
    Key("OBO_CACHE_LOCAL_SIZE", 4096, "int",
        "decoded entries kept in-process in front of the backend"),
    Key("OBO_DOWNSTREAM_TIMEOUT", 30.0, "float", "default timeout of downstream calls"),
    Key("OBO_DOWNSTREAM_RETRIES", 2, "int",
        "retries of idempotent downstream calls on 502/503/504, with backoff"),
    Key("OBO_CLIENT_CAPABILITIES", (), "list of str",
        "`[\"CP1\"]` declares to Entra ID that this API handles continuous access evaluation "
        "(CAE) claims challenges"),
    Key("OBO_LONG_RUNNING_IDLE_TTL", 90 * 24 * 3600, "int",
        "seconds a long-running session lives unused (as an Entra refresh token); each use "
        "renews it (at least 60)", shown="`7776000` (90 days)"),
    Key("OBO_PROBLEM_TYPE_BASE", "about:blank", "str",
        "the `type` of problem+json error bodies: `about:blank` (RFC 9457), or the address of "
        "your published copy of the errors page followed by `#`, to which the error's name is "
        "appended"),
    Key("OBO_TELEMETRY_INCLUDE_IDS", False, "bool",
        "put users' object ids and tenant ids on OpenTelemetry spans (never names, e-mail "
        "addresses or tokens)"),
)

#: Every key's default, as ``init_app`` writes it into ``app.config`` (``setdefault``).
DEFAULTS: dict[str, Any] = {key.name: key.default for key in KEYS}

# Flask's from_prefixed_env parses values as JSON: a secret of digits arrives as a number.
_FROM_ENV_HINT = (" (an environment variable read by app.config.from_prefixed_env() is parsed as "
                  "JSON: quote a value that looks like a number, e.g. FLASK_OBO_X='\"123\"')")

_BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "on": True,
                  "false": False, "0": False, "no": False, "off": False, "": False}

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def is_guid(value: str) -> bool:
    """Whether ``value`` is a GUID (tenant and client ids), in either case."""
    return _GUID.fullmatch(value) is not None


@dataclass(frozen=True)
class DownstreamApi:
    """One entry of ``OBO_DOWNSTREAM_APIS``."""

    name: str
    scopes: tuple[str, ...]
    base_url: str | None = None
    timeout: float = 30.0
    retries: int = 2
    app_only: bool = False


@dataclass(frozen=True)
class OboConfig:
    """The validated ``OBO_`` settings of one app."""

    authority: str  # https://host/<tenant>, no trailing slash, no /v2.0
    instance: str  # https://host
    tenant: str  # the authority's tenant segment (a GUID, a domain, common, organizations)
    client_id: str
    audiences: frozenset[str]
    allowed_tenants: frozenset[str] | None  # None: any ("*")
    accepted_versions: frozenset[str]
    clock_skew: int
    algorithms: tuple[str, ...]
    max_token_bytes: int
    ca_bundle: str | None
    realm: str
    public_endpoints: frozenset[str]
    http_timeout: float
    metadata_refresh_interval: float
    jwks_min_refetch_interval: float
    validated_cache_size: int
    client_secret: str | None = field(repr=False)
    client_certificate: Mapping[str, Any] | None = field(repr=False)
    client_assertion: Callable[[], str] | str | None = field(repr=False)
    downstream_apis: Mapping[str, DownstreamApi]
    # Flask-Caching settings may hold a Redis password (CACHE_REDIS_URL, CACHE_REDIS_PASSWORD).
    cache: Mapping[str, Any] | None = field(repr=False)
    cache_key_prefix: str
    cache_encryption_keys: tuple[bytes, ...] = field(repr=False)
    cache_expiry_margin: int
    cache_refresh_ahead: int
    cache_lock_timeout: float
    cache_local_size: int
    downstream_timeout: float
    downstream_retries: int
    client_capabilities: tuple[str, ...] = ()
    problem_type_base: str = "about:blank"
    long_running_idle_ttl: int = 90 * 24 * 3600
    telemetry_include_ids: bool = False

    @property
    def is_multi_tenant(self) -> bool:
        return self.tenant.lower() in MULTI_TENANT_SEGMENTS

    @property
    def has_credential(self) -> bool:
        return bool(self.client_secret or self.client_certificate or self.client_assertion)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> OboConfig:
        check_unknown_keys(config)
        get = _Getter(config)
        authority, instance, tenant = _parse_authority(get.raw("OBO_AUTHORITY"))
        client_id = _client_id(get.text("OBO_CLIENT_ID", required=True, hint="the Application "
                                        "(client) ID of this API's app registration"))
        # The client id and api://<client id> name this app whatever else is listed: a v2
        # token's aud is the client id, a v1 token's the App ID URI (api://<client id> unless
        # the registration set another, which OBO_AUDIENCES then adds).
        audiences = {client_id, f"api://{client_id}", *(get.str_list("OBO_AUDIENCES") or ())}
        allowed = _allowed_tenants(get.str_list("OBO_ALLOWED_TENANTS"), tenant)
        versions = get.str_list("OBO_ACCEPTED_TOKEN_VERSIONS") or ()
        if not versions or not set(versions) <= {"1.0", "2.0"}:
            raise ConfigError(
                f"OBO_ACCEPTED_TOKEN_VERSIONS={versions!r} is not valid: list '1.0', '2.0' or both."
            )
        algorithms = get.str_list("OBO_ALGORITHMS") or ()
        bad = [a for a in algorithms if not re.fullmatch(r"(RS|PS|ES)(256|384|512)", a)]
        if not algorithms or bad:
            raise ConfigError(
                f"OBO_ALGORITHMS contains {bad or 'nothing'}: only asymmetric algorithms "
                "(RS256, PS256, ES256, ...) are allowed; 'none' and HS* never are."
            )
        ca_bundle = get.text("OBO_CA_BUNDLE")
        if ca_bundle is not None and not os.path.isfile(ca_bundle):
            raise ConfigError(f"OBO_CA_BUNDLE={ca_bundle!r} is not a readable file: give the "
                              "path of a PEM file with the CA certificate(s) to trust.")
        secret = get.text("OBO_CLIENT_SECRET")
        certificate = get.raw("OBO_CLIENT_CERTIFICATE")
        if certificate is not None and not isinstance(certificate, Mapping):
            raise ConfigError(
                "OBO_CLIENT_CERTIFICATE must be a dict: {'private_key': <path or PEM>, "
                "'certificate': <path or PEM>} or {'pfx': <path, bytes or base64 text>, "
                "'password': ...}, optionally with 'send_x5c': True."
            )
        assertion = get.raw("OBO_CLIENT_ASSERTION")
        if assertion is not None and not (callable(assertion) or isinstance(assertion, str)):
            raise ConfigError("OBO_CLIENT_ASSERTION must be a callable returning a signed JWT, or "
                              "the path of a file holding one (e.g. AZURE_FEDERATED_TOKEN_FILE).")
        downstream_timeout = get.number("OBO_DOWNSTREAM_TIMEOUT", minimum=0.1)
        downstream_retries = get.integer("OBO_DOWNSTREAM_RETRIES", minimum=0, maximum=10)
        apis = _downstream_apis(get.raw("OBO_DOWNSTREAM_APIS"), downstream_timeout,
                                downstream_retries)
        cache = get.raw("OBO_CACHE")
        if cache is not None and not isinstance(cache, Mapping):
            raise ConfigError("OBO_CACHE must be a dict of Flask-Caching settings, e.g. "
                              "{'CACHE_TYPE': 'RedisCache', 'CACHE_REDIS_URL': 'redis://...'}, "
                              "or None for the in-process cache.")
        realm = get.text("OBO_REALM")
        problem_type_base = get.text("OBO_PROBLEM_TYPE_BASE") or "about:blank"
        if problem_type_base != "about:blank" and urlsplit(problem_type_base).scheme not in (
                "https", "http"):
            raise ConfigError(f"OBO_PROBLEM_TYPE_BASE={problem_type_base!r} is not a URL: use "
                              "'about:blank' or the address of your published errors page "
                              "followed by '#'.")
        return cls(
            authority=authority,
            instance=instance,
            tenant=tenant,
            client_id=client_id,
            audiences=frozenset(audiences),
            allowed_tenants=allowed,
            accepted_versions=frozenset(versions),
            clock_skew=get.integer("OBO_CLOCK_SKEW", minimum=0, maximum=3600),
            algorithms=tuple(algorithms),
            max_token_bytes=get.integer("OBO_MAX_TOKEN_BYTES", minimum=512),
            ca_bundle=ca_bundle,
            realm=realm if realm is not None else f"api://{client_id}",
            public_endpoints=frozenset(get.str_list("OBO_PUBLIC_ENDPOINTS") or ()),
            http_timeout=get.number("OBO_HTTP_TIMEOUT", minimum=0.1),
            metadata_refresh_interval=get.number("OBO_METADATA_REFRESH_INTERVAL", minimum=1),
            jwks_min_refetch_interval=get.number("OBO_JWKS_MIN_REFETCH_INTERVAL", minimum=0),
            validated_cache_size=get.integer("OBO_VALIDATED_TOKEN_CACHE_SIZE", minimum=0),
            client_secret=secret,
            client_certificate=certificate,
            client_assertion=assertion,
            downstream_apis=apis,
            cache=cache,
            cache_key_prefix=get.text("OBO_CACHE_KEY_PREFIX") or "",
            cache_encryption_keys=_encryption_keys(get.raw("OBO_CACHE_ENCRYPTION_KEY")),
            cache_expiry_margin=get.integer("OBO_CACHE_EXPIRY_MARGIN", minimum=0),
            cache_refresh_ahead=get.integer("OBO_CACHE_REFRESH_AHEAD", minimum=0),
            cache_lock_timeout=get.number("OBO_CACHE_LOCK_TIMEOUT", minimum=0.1),
            cache_local_size=get.integer("OBO_CACHE_LOCAL_SIZE", minimum=0),
            downstream_timeout=downstream_timeout,
            downstream_retries=downstream_retries,
            client_capabilities=get.str_list("OBO_CLIENT_CAPABILITIES") or (),
            problem_type_base=problem_type_base,
            long_running_idle_ttl=get.integer("OBO_LONG_RUNNING_IDLE_TTL", minimum=60),
            telemetry_include_ids=get.boolean("OBO_TELEMETRY_INCLUDE_IDS"),
        )


def check_unknown_keys(config: Mapping[str, Any]) -> None:
    """Refuse ``OBO_`` keys that ``KEYS`` does not declare: a misspelt setting would otherwise
    be ignored while its default silently applies."""
    unknown = sorted(k for k in config if isinstance(k, str) and k.startswith("OBO_")
                     and k not in DEFAULTS)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, DEFAULTS, n=1, cutoff=0.75)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise ConfigError(f"unknown flask-obo setting{'s' if len(unknown) > 1 else ''}: "
                      f"{', '.join(hints)}. Every OBO_ key is listed in the configuration "
                      "reference; remove or rename the others.")


def check_scopes(scopes: Sequence[str], where: str) -> None:
    """Refuse ``<resource>/.default`` next to other scopes (Entra answers AADSTS70011)."""
    defaults = [s for s in scopes if s == ".default" or s.endswith("/.default")]
    if defaults and len(scopes) > 1:
        raise ConfigError(f"{where} mixes {defaults[0]!r} with other scopes {list(scopes)!r}: ask "
                          "for '<resource>/.default' alone (every permission granted to this "
                          "API on that resource), or list the scopes without it.")


def _client_id(value: str | None) -> str:
    assert value is not None  # required=True raised otherwise
    if not value.lower().startswith("api://"):
        return value
    rest = value[len("api://"):].strip("/")
    if not is_guid(rest):
        raise ConfigError(f"OBO_CLIENT_ID={value!r} is an App ID URI: set OBO_CLIENT_ID to the "
                          "Application (client) ID (a GUID) and list this URI in OBO_AUDIENCES.")
    log.info("flask-obo: OBO_CLIENT_ID %r is the App ID URI of client id %s: using the client "
             "id", value, rest)
    return rest


class _Getter:
    """Typed reads of the app config with errors that name the key."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = config

    def raw(self, key: str) -> Any:
        return self._config.get(key, DEFAULTS[key])

    def text(self, key: str, *, required: bool = False, hint: str = "") -> str | None:
        value = self.raw(key)
        if value is None or value == "":
            if required:
                raise ConfigError(f"{key} is not set: set it to {hint}.")
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, not {type(value).__name__}"
                              f"{_FROM_ENV_HINT if isinstance(value, (int, float)) else ''}.")
        return value.strip()

    def str_list(self, key: str) -> tuple[str, ...] | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):  # also accept "a, b" or "a b" from environment variables
            value = [v for v in re.split(r"[\s,]+", value) if v]
        if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of strings, not {value!r}.")
        return tuple(v.strip() for v in value)

    def boolean(self, key: str) -> bool:
        """True or False; from environment variables also true/false, 1/0, yes/no, on/off."""
        value = self.raw(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # from_prefixed_env parses "1" as 1
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[value.strip().lower()]
        raise ConfigError(f"{key} must be True or False, not {value!r}.")

    def number(self, key: str, *, minimum: float | None = None,
               maximum: float | None = None) -> float:
        return _number(key, self.raw(key), minimum=minimum, maximum=maximum)

    def integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        return int(_number(key, self.raw(key), minimum=minimum, maximum=maximum, integer=True))


def _number(where: str, value: Any, *, minimum: float | None = None,
            maximum: float | None = None, integer: bool = False) -> float:
    """A finite number in range; strings from environment variables are parsed. ``True`` is
    not 1 here, and NaN (which compares false with every bound) is no number at all."""
    kind = "a whole number" if integer else "a number"
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or (integer and not number.is_integer()):
        raise ConfigError(f"{where} must be {kind}, not {value!r}.")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = (f"between {minimum:g} and {maximum:g}" if minimum is not None
                  and maximum is not None else f"at least {minimum:g}" if minimum is not None
                  else f"at most {maximum:g}")
        raise ConfigError(f"{where}={value!r} is out of range: use {kind} {bounds}.")
    return number


def _parse_authority(value: Any) -> tuple[str, str, str]:
    example = "https://login.microsoftonline.com/<tenant-id>"
    if not value or not isinstance(value, str):
        raise ConfigError(f"OBO_AUTHORITY is not set: set it to {example} (your Directory "
                          "(tenant) ID), or .../organizations for a multi-tenant API.")
    parts = urlsplit(value.strip())
    segments = [s for s in parts.path.split("/") if s]
    if segments and segments[-1].lower() == "v2.0":
        segments = segments[:-1]
    if parts.scheme != "https" or not parts.netloc or len(segments) != 1:
        raise ConfigError(f"OBO_AUTHORITY={value!r} is not an authority URL: use {example}.")
    if parts.query or parts.fragment:
        raise ConfigError(f"OBO_AUTHORITY={value!r} must not have a query or fragment.")
    instance = f"https://{parts.netloc}"
    return f"{instance}/{segments[0]}", instance, segments[0]


def _allowed_tenants(listed: tuple[str, ...] | None, tenant: str) -> frozenset[str] | None:
    multi = tenant.lower() in MULTI_TENANT_SEGMENTS
    if listed is None:
        if multi:
            raise ConfigError(
                f"OBO_AUTHORITY is multi-tenant ('{tenant}'), so OBO_ALLOWED_TENANTS is required: "
                "list the tenant IDs whose users may call this API, or ['*'] to allow any."
            )
        # Single tenant: tid must be the authority's own (checked only if it is a GUID;
        # a domain-named tenant is pinned by the issuer instead).
        return frozenset({tenant.lower()}) if is_guid(tenant) else None
    if "*" in listed:
        return None
    bad = [t for t in listed if not is_guid(t)]
    if bad:
        raise ConfigError(f"OBO_ALLOWED_TENANTS has {bad!r}: list tenant IDs (GUIDs) or '*'.")
    return frozenset(t.lower() for t in listed)


def _downstream_apis(value: Any, timeout: float, retries: int) -> dict[str, DownstreamApi]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("OBO_DOWNSTREAM_APIS must be a dict: {'graph': {'base_url': "
                          "'https://graph.microsoft.com/v1.0', 'scopes': ['User.Read']}}.")
    apis: dict[str, DownstreamApi] = {}
    for name, spec in value.items():
        where = f"OBO_DOWNSTREAM_APIS[{name!r}]"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} must be a dict with 'scopes' and optionally 'base_url'.")
        unknown = set(spec) - {"scopes", "base_url", "timeout", "retries", "app_only"}
        if unknown:
            raise ConfigError(f"{where} has unknown keys {sorted(unknown)}: use scopes, "
                              "base_url, timeout, retries, app_only.")
        scopes = spec.get("scopes")
        if isinstance(scopes, str):
            scopes = scopes.split()
        if not scopes or not all(isinstance(s, str) and s for s in scopes):
            raise ConfigError(f"{where}['scopes'] must list the downstream API's scopes, e.g. "
                              "['api://<downstream-client-id>/read'] or ['User.Read'].")
        check_scopes(scopes, f"{where}['scopes']")
        base_url = spec.get("base_url")
        if base_url is not None and (not isinstance(base_url, str)
                                     or urlsplit(base_url).scheme not in ("https", "http")):
            # Not quoted: a URL may carry credentials (user:password@, a key in the query).
            raise ConfigError(f"{where}['base_url'] must be an http(s) URL such as "
                              "'https://graph.microsoft.com/v1.0/'.")
        api_timeout = _number(f"{where}['timeout']", spec.get("timeout", timeout), minimum=0.1)
        api_retries = int(_number(f"{where}['retries']", spec.get("retries", retries), minimum=0,
                                  maximum=10, integer=True))
        apis[str(name)] = DownstreamApi(
            name=str(name),
            scopes=tuple(scopes),
            base_url=base_url.rstrip("/") + "/" if base_url else None,
            timeout=api_timeout,
            retries=api_retries,
            app_only=bool(spec.get("app_only", False)),
        )
    return apis


def _encryption_keys(value: Any) -> tuple[bytes, ...]:
    if value is None or value == "" or value == []:
        return ()
    items = [value] if isinstance(value, (str, bytes)) else value
    if not isinstance(items, Sequence):
        raise ConfigError("OBO_CACHE_ENCRYPTION_KEY must be a key or a list of keys.")
    keys = []
    for index, item in enumerate(items):
        raw: bytes | None = None
        if isinstance(item, (str, bytes)):
            text = item.decode("ascii", "replace") if isinstance(item, bytes) else item
            try:
                raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                raw = None
        if raw is None or len(raw) != 32:
            raise ConfigError(
                f"OBO_CACHE_ENCRYPTION_KEY[{index}] is not 32 bytes in URL-safe base64: make one "
                "with  python -c \"import os,base64;print(base64.urlsafe_b64encode("
                "os.urandom(32)).decode())\""
            )
        keys.append(raw)
    return tuple(keys)
