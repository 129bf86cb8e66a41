"""Per-request cost of bearer-token validation, beside a bare Flask view.

    python -m benchmarks.bench_validation [--iterations N] [--rounds R]

Requests go straight into each app's WSGI callable (no sockets, no test client), so the
numbers are Flask's own work plus flask-obo's. Scenarios:

- ``bare view``: a Flask view with no extension and no token;
- ``repeated token``: FlaskOBO, one token sent again and again (the validated-token cache);
- ``new token``: FlaskOBO, a different token each request (full validation: parse, RS256
  signature, claims); the keys are already held, so there is no network call either way;
- ``hook only``: flask-obo's before-request guard alone, inside a request context (what the
  extension adds to each request, without Flask's own work);
- ``validator only``: ``TokenValidator.validate`` without Flask, repeated and new.

Each scenario runs ``rounds`` times, interleaved; the table shows the best round's mean CPU
time per request (this thread's CPU time, so that other processes on a busy machine count less)
and the overhead over the bare view.
Only loopback: the tokens come from an in-process EntraEmulator.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request
from werkzeug.test import EnvironBuilder

from flask_obo.context import current_token
from flask_obo.extension import FlaskOBO
from flask_obo.state import get_state
from flask_obo.testing import EntraEmulator

BODY = "00000000-0000-0000-0000-000000000000"


def _bare_app() -> Flask:
    app = Flask("bare")

    @app.get("/me")
    def me() -> str:
        return BODY

    return app


def _protected_app(emu: EntraEmulator, client_id: str) -> Flask:
    app = Flask("protected")
    app.config.update(OBO_AUTHORITY=emu.authority(), OBO_CLIENT_ID=client_id,
                      OBO_CA_BUNDLE=emu.ca_bundle)
    FlaskOBO(app)

    @app.get("/me")
    def me() -> str:
        return current_token.oid or BODY

    return app


def _environ(token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    environ: dict[str, Any] = EnvironBuilder(path="/me", headers=headers).get_environ()
    return environ


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    if not status.startswith("200"):
        raise AssertionError(f"benchmark request failed: {status}")
    return None


def _call(app: Flask, environ: dict[str, Any]) -> None:
    body = app.wsgi_app(dict(environ), _start_response)
    for _ in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _measure(scenarios: dict[str, tuple[Callable[[], None], int]],
             rounds: int) -> dict[str, float]:
    """Best mean per call (us) of each scenario; rounds interleave scenarios so that a
    disturbance of the machine hits them all alike."""
    best = {name: float("inf") for name in scenarios}
    for _ in range(rounds):
        for name, (run, iterations) in scenarios.items():
            start = time.thread_time_ns()
            for _ in range(iterations):
                run()
            best[name] = min(best[name], (time.thread_time_ns() - start) / iterations / 1000)
    return best


def _cycle(items: list[Any]) -> Callable[[], Any]:
    iterator = iter(items)

    def next_item() -> Any:
        return next(iterator)

    return next_item


def run(iterations: int = 20_000, rounds: int = 7, new_tokens: int = 500) -> dict[str, float]:
    """Run every scenario; returns microseconds per request by scenario name."""
    with EntraEmulator() as emu:
        api = emu.register_app("bench-api", scopes=["access_as_user"])
        user = emu.add_user("bench")
        bare, protected = _bare_app(), _protected_app(emu, api.client_id)
        token = emu.issue_user_token(user, resource=api)
        bare_env, token_env = _environ(None), _environ(token)
        _call(protected, token_env)  # fetch the metadata and keys once, as a warm app has
        validator = get_state(protected).validator
        # Every "new" request needs a token never seen before: mint them all up front.
        next_env = _cycle([_environ(emu.issue_user_token(user, resource=api))
                           for _ in range(new_tokens * rounds)])
        next_token = _cycle([emu.issue_user_token(user, resource=api)
                             for _ in range(new_tokens * rounds)])
        results = _measure({
            "bare view": (lambda: _call(bare, bare_env), iterations),
            "repeated token": (lambda: _call(protected, token_env), iterations),
            "new token": (lambda: _call(protected, next_env()), new_tokens),
            "validator only, repeated": (lambda: validator.validate(token), iterations),
            "validator only, new": (lambda: validator.validate(next_token()), new_tokens),
        }, rounds)
        with protected.test_request_context(headers={"Authorization": f"Bearer {token}"}):
            state_of_request = request._get_current_object().__dict__

            def hook_only() -> None:  # the guard as Flask calls it, on a fresh request
                state_of_request.pop("_flask_obo_verified", None)  # what the guard keeps
                protected.preprocess_request()

            results.update(_measure({"hook only, repeated": (hook_only, iterations)}, rounds))
        return results


def report(results: dict[str, float]) -> str:
    bare = results["bare view"]
    lines = [f"{'scenario':<28}{'us/request':>12}{'overhead':>12}"]
    for name, value in results.items():
        overhead = value - bare if name in ("repeated token", "new token") else None
        extra = f"{overhead:>+11.1f}" if overhead is not None else f"{'':>11}"
        lines.append(f"{name:<28}{value:>12.1f} {extra}")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--new-tokens", type=int, default=500)
    args = parser.parse_args(list(argv) if argv is not None else None)
    results = run(args.iterations, args.rounds, args.new_tokens)
    print(report(results))
    return results


if __name__ == "__main__":
    main()
