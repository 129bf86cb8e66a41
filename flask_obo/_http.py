"""The one way flask-obo builds a requests session.

requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override ``Session.verify`` (the environment
wins over the session in ``merge_environment_settings``), so a session that must trust an
extra CA (the emulator's, a corporate one) pins its trust here instead. Proxies from the
environment still apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ._fork import reset_after_fork

__all__ = ["PinnedTrustSession", "build_session"]

DEFAULT_USER_AGENT = "flask-obo"

class PinnedTrustSession(requests.Session):
    """A session whose ``verify`` is not overridden by the environment's CA bundle."""

    def __init__(self, ca_bundle: str | None = None) -> None:
        super().__init__()
        self.pinned_verify = ca_bundle
        if ca_bundle is not None:
            self.verify = ca_bundle
        # Built at init_app, it may have opened connections before a pre-forking server
        # forks; a child must not share those sockets with its parent or siblings.
        reset_after_fork(self)

    def after_fork_in_child(self) -> None:
        self.close()  # empties the pools; the next request opens a connection of its own

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: Mapping[str, str] | None,
        stream: bool | None,
        verify: bool | str | None,
        cert: Any,
    ) -> Any:
        settings = super().merge_environment_settings(
            url,
            proxies,  # type: ignore[arg-type]
            stream,
            verify,
            cert,
        )
        # A per-call verify=False/path is the caller's explicit choice; otherwise the pin wins.
        if self.pinned_verify is not None and verify in (None, True):
            settings["verify"] = self.pinned_verify
        return settings


def build_session(
    ca_bundle: str | None = None,
    *,
    pool_maxsize: int = 16,
    retries: Retry | int | None = 0,
    headers: Mapping[str, str] | None = None,
    mount_prefixes: Iterable[str] = ("https://", "http://"),
) -> PinnedTrustSession:
    """Build a pooled session that trusts ``ca_bundle`` (if given) whatever the environment says.

    Build it once and share it: the pool is the point. ``retries`` follows urllib3's Retry.
    """
    session = PinnedTrustSession(ca_bundle)
    adapter = HTTPAdapter(
        pool_connections=4,
        pool_maxsize=pool_maxsize,
        max_retries=retries if retries is not None else 0,
    )
    for prefix in mount_prefixes:
        session.mount(prefix, adapter)
    session.headers["User-Agent"] = DEFAULT_USER_AGENT
    if headers:
        session.headers.update(headers)
    return session
