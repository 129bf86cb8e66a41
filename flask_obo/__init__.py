"""flask-obo: protected Flask web APIs that call downstream APIs on behalf of the user.

The public names live here; each comes from the module that owns its concern.
"""

from ._http import build_session
from .authorization import (
    requires_roles,
    requires_scopes,
    requires_scopes_or_roles,
    verify_roles,
    verify_scopes,
    verify_scopes_or_roles,
)
from .cache import AccessToken
from .context import current_token, get_assertion, get_current_token, verify_token_in_request
from .downstream import (
    DownstreamSession,
    acquire_token_for_app,
    acquire_token_for_user,
    get_app_session,
    get_user_session,
    requires_downstream,
    requires_downstream_for_app,
)
from .errors import (
    ClaimsChallenge,
    ConfigError,
    ConsentRequired,
    DownstreamUnavailable,
    FlaskOBOError,
    IdentityProviderUnavailable,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LongRunningSessionExpired,
    MissingToken,
    OboError,
    ServerMisconfigured,
    SessionKeyInUse,
    TokenCacheUnavailable,
    UpstreamAuthError,
)
from .extension import FlaskOBO, public
from .long_running import (
    acquire_token_for_long_running_process,
    get_long_running_session,
    start_long_running_process,
    stop_long_running_process,
)
from .validation import TokenClaims

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "ClaimsChallenge",
    "ConfigError",
    "ConsentRequired",
    "DownstreamSession",
    "DownstreamUnavailable",
    "FlaskOBO",
    "FlaskOBOError",
    "IdentityProviderUnavailable",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "LongRunningSessionExpired",
    "MissingToken",
    "OboError",
    "ServerMisconfigured",
    "SessionKeyInUse",
    "TokenCacheUnavailable",
    "TokenClaims",
    "UpstreamAuthError",
    "acquire_token_for_app",
    "acquire_token_for_long_running_process",
    "acquire_token_for_user",
    "build_session",
    "current_token",
    "get_app_session",
    "get_assertion",
    "get_current_token",
    "get_long_running_session",
    "get_user_session",
    "public",
    "requires_downstream",
    "requires_downstream_for_app",
    "requires_roles",
    "requires_scopes",
    "requires_scopes_or_roles",
    "start_long_running_process",
    "stop_long_running_process",
    "verify_roles",
    "verify_scopes",
    "verify_scopes_or_roles",
    "verify_token_in_request",
]
