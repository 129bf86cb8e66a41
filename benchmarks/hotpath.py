"""Where flask-obo's per-request time goes: its hot path taken apart, step by step.

    python -m benchmarks.hotpath              # the breakdown, microseconds per request
    python -m benchmarks.hotpath --profile    # plus cProfile of flask_obo's own functions

Each step runs inside a freshly pushed request context (as in a real request: ``g`` is empty,
nothing validated yet). The guard's cost is its time minus the bare push and pop; each later
step's is its time after the guard minus the guard's. Every step is timed as the best of many
batches, the steps interleaved, in CPU time of the measuring thread (what other processes on
a shared machine take is not counted). Only public functions are called, so the breakdown
stays valid as the internals change:

- ``request context``: push and pop of a Flask request context (the baseline);
- ``before_request (guard)``: ``app.preprocess_request()``: the extension's guard, which
  finds the view not public and validates the bearer token (a repeated token: cache hit);
- ``validator (cache hit)``: ``TokenValidator.validate_cached`` alone, outside Flask;
- ``verify_token_in_request`` (again, after the guard): what each decorator pays;
- ``get_user_session``: building the per-request session view;
- ``acquire_token_for_user``: the public cache-hit acquisition;
- ``session.authorization``: session plus acquisition, as ``@requires_downstream`` views do.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from flask_obo import acquire_token_for_user, get_user_session, verify_token_in_request

from .apps import DOWNSTREAM_API, create
from .fixture import BenchIdentity

__all__ = ["breakdown", "profile_flask_obo"]


def _time_interleaved(steps: dict[str, Callable[[int], None]], n: int,
                      repeats: int) -> dict[str, float]:
    """Best batch of each step, the steps' batches interleaved so load elsewhere hits all."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.thread_time_ns()
            step(n)
            samples[name].append((time.thread_time_ns() - started) / n / 1000)
    return {name: min(values) for name, values in samples.items()}


def _in_context(app: Flask, environs: list[dict[str, Any]],
                body: Callable[[], object]) -> Callable[[int], None]:
    count = len(environs)

    def step(n: int) -> None:
        for i in range(n):
            ctx = app.request_context(dict(environs[i % count]))
            ctx.push()
            try:
                body()
            finally:
                ctx.pop()

    return step


def _environs(tokens: list[str]) -> list[dict[str, Any]]:
    return [EnvironBuilder(path="/api/me", base_url="http://127.0.0.1:8000",
                           headers=[("Authorization", f"Bearer {t}")]).get_environ()
            for t in tokens]


def breakdown(ident: BenchIdentity, *, n: int = 3000, repeats: int = 15) -> dict[str, float]:
    """Microseconds per request of each step of the hot path (see the module docstring)."""
    app = create("obo_hit", ident.settings)
    environs = _environs(ident.tokens)
    client = app.test_client()
    for token in ident.tokens:  # keys fetched, every token validated once, OBO cache filled
        if client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code != 200:
            raise RuntimeError("the obo_hit app refused a benchmark token")
    validator = app.extensions["obo"].validator

    def guard_then(call: Callable[[], object]) -> Callable[[], object]:
        def body() -> object:
            app.preprocess_request()
            return call()
        return body

    def nothing() -> None:
        return None

    steps: dict[str, Callable[[int], None]] = {
        "request context": _in_context(app, environs, nothing),
        "before_request (guard)": _in_context(app, environs, app.preprocess_request),
        "verify_token_in_request again": _in_context(
            app, environs, guard_then(verify_token_in_request)),
        "get_user_session": _in_context(
            app, environs, guard_then(lambda: get_user_session(DOWNSTREAM_API))),
        "acquire_token_for_user": _in_context(
            app, environs, guard_then(lambda: acquire_token_for_user(api=DOWNSTREAM_API))),
        "session.authorization": _in_context(
            app, environs, guard_then(lambda: get_user_session(DOWNSTREAM_API)
                                      .authorization)),
    }
    tokens = ident.tokens

    def validator_only(k: int) -> None:
        for i in range(k):
            validator.validate_cached(tokens[i % len(tokens)])

    steps["validator"] = validator_only
    t = _time_interleaved(steps, n, repeats)
    base, guard = t["request context"], t["before_request (guard)"]
    return {
        "request context push+pop (baseline)": round(base, 2),
        "before_request guard incl. validation": round(guard - base, 2),
        "  of which TokenValidator.validate_cached": round(t["validator"], 2),
        "verify_token_in_request, again": round(t["verify_token_in_request again"] - guard, 2),
        "get_user_session": round(t["get_user_session"] - guard, 2),
        "acquire_token_for_user (cache hit)": round(t["acquire_token_for_user"]
                                                        - guard, 2),
        "get_user_session().authorization": round(t["session.authorization"] - guard, 2),
    }


def profile_flask_obo(ident: BenchIdentity, kind: str = "obo_hit", *, requests: int = 20000,
                      limit: int = 25) -> str:
    """cProfile of ``requests`` warm requests, restricted to flask_obo's functions."""
    app = create(kind, ident.settings)
    environs = _environs(ident.tokens)

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        if not status.startswith("200"):
            raise RuntimeError(f"{kind} answered {status}")

    def run(k: int) -> None:
        for i in range(k):
            for _ in app(dict(environs[i % len(environs)]), start_response):
                pass

    run(2 * len(environs))
    profiler = cProfile.Profile()
    profiler.enable()
    run(requests)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats("flask_obo", limit)
    return (f"{kind}: {requests} requests; profiler overhead inflates every number, compare "
            f"them with each other\n" + out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("-n", type=int, default=3000, help="requests per batch")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    with BenchIdentity(users=args.users) as ident:
        steps = breakdown(ident, n=args.n)
        print(f"{'step (a repeated token, a cached downstream token)':<48}{'us/request':>11}")
        for name, value in steps.items():
            print(f"{name:<48}{value:>11.2f}")
        if args.profile:
            for kind in ("validate", "obo_hit"):
                print()
                print(profile_flask_obo(ident, kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
