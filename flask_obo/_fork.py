"""One hook for what a forked worker (gunicorn --preload) must not inherit from its parent.

A child starts with copies of the parent's locks (held by threads that do not exist in it),
its in-flight calls and its pooled sockets (shared with the parent and every sibling). Objects
that hold such things register here; in the child, each one's ``after_fork_in_child`` runs
before anything else does.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "reset_after_fork"]


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None: ...


_OBJECTS: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def reset_after_fork(obj: ForkAware) -> None:
    """Call ``obj.after_fork_in_child()`` in every child forked while ``obj`` lives."""
    _OBJECTS.add(obj)


def _in_child() -> None:
    for obj in list(_OBJECTS):
        obj.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)
