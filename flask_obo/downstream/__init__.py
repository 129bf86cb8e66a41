"""Calling downstream APIs as the caller, or as the app.

- ``api.py``: ``@requires_downstream``, ``@requires_downstream_for_app`` and the public functions
  beneath them;
- ``session.py``: ``DownstreamSession`` (one request's view of a pooled session: the caller's
  token, base_url, retries, the claims-challenge retry) and the app's ``DownstreamPools``.
"""

from .api import (
    acquire_token_for_app,
    acquire_token_for_user,
    get_app_session,
    get_user_session,
    requires_downstream,
    requires_downstream_for_app,
)
from .session import DownstreamPools, DownstreamSession

__all__ = [
    "DownstreamPools",
    "DownstreamSession",
    "acquire_token_for_app",
    "acquire_token_for_user",
    "get_app_session",
    "get_user_session",
    "requires_downstream",
    "requires_downstream_for_app",
]
