"""Calling downstream APIs as the caller, or as the app.

- ``api.py``: ``@requires_downstream``, ``@requires_app_token`` and the public functions
  beneath them;
- ``session.py``: ``DownstreamSession`` (one request's view of a pooled session: the caller's
  token, base_url, retries, the claims-challenge retry) and the app's ``DownstreamPools``.
"""

from .api import (
    acquire_app_token,
    acquire_token_on_behalf_of,
    get_app_session,
    get_downstream_session,
    requires_app_token,
    requires_downstream,
)
from .session import DownstreamPools, DownstreamSession

__all__ = [
    "DownstreamPools",
    "DownstreamSession",
    "acquire_app_token",
    "acquire_token_on_behalf_of",
    "get_app_session",
    "get_downstream_session",
    "requires_app_token",
    "requires_downstream",
]
