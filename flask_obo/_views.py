"""How flask-obo's decorators call the view they wrap, decided once, when they decorate it.

A plain function is called as it is; a coroutine function goes through the app's
``ensure_sync`` (so async views work), as Flask itself would call it. Asking the app for
every request would cost a context lookup and an ``iscoroutinefunction`` per call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flask import current_app

__all__ = ["runner"]


def runner(view: Callable[..., Any]) -> Callable[..., Any]:
    """What calls ``view``: itself, or a function that runs it through ``ensure_sync``."""
    if not inspect.iscoroutinefunction(view):
        return view

    def run_async(*args: Any, **kwargs: Any) -> Any:
        return current_app.ensure_sync(view)(*args, **kwargs)

    return run_async
