"""Long-running sessions: a background job (Celery, RQ, a thread) acts as a user for hours.

- ``api.py``: the public functions (start, acquire, session, stop);
- ``sessions.py``: ``LongRunningSessions``, one app's sessions: on-behalf-of with
  ``offline_access``, refresh-token redemption under the Redis lock, errors that end a session;
- ``_store.py``: the sealed session entries on Redis and their compare-and-set writes.
"""

from .api import (
    acquire_token_for_long_running_process,
    get_long_running_session,
    start_long_running_process,
    stop_long_running_process,
)
from .sessions import LongRunningSessions

__all__ = [
    "LongRunningSessions",
    "acquire_token_for_long_running_process",
    "get_long_running_session",
    "start_long_running_process",
    "stop_long_running_process",
]
