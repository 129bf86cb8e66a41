"""What one line of ``flask obo check`` is, and how an app adds checks of its own.

A leaf module: the modules that own a concern define its check (a function of the app's
``OboState`` yielding ``CheckResult`` objects) without importing the command, and ``cli.py`` lists
them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import OboState

__all__ = ["EXTRA_CHECKS", "Check", "CheckResult", "register_check"]


@dataclass(frozen=True)
class CheckResult:
    """One line of ``flask obo check``: what was checked, whether it is fine, what to do."""

    ok: bool
    title: str
    detail: str = ""
    #: a problem worth knowing that does not make the check fail
    warning: bool = False


Check = Callable[["OboState"], Iterable[CheckResult]]

#: Checks added with ``register_check``; ``flask obo check`` runs them after its own.
EXTRA_CHECKS: list[Check] = []


def register_check(check: Check) -> Check:
    """Add a check of the app's own to ``flask obo check`` (once); usable as a decorator."""
    if check not in EXTRA_CHECKS:
        EXTRA_CHECKS.append(check)
    return check
