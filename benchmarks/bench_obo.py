"""The cost of an on-behalf-of cache hit, and of a view that uses the downstream session.

    python -m benchmarks.bench_obo                 # defaults: 50 users, 20000 hits
    python -m benchmarks.bench_obo --hits 100000

1. An OBO cache hit in microseconds (median, p99), in-process backend:
   - ``acquirer``: ``TokenAcquirer.on_behalf_of`` (key, in-process front, clock check);
   - ``public``: ``acquire_token_for_user(api=...)`` inside a request whose token was
     validated (what a view calls: adds the request-state lookups);
   - ``backend``: the same with the in-process front off, so each hit reads Flask-Caching's
     SimpleCache (unpickle + JSON), plain and AES-GCM encrypted: the cost the front saves.
2. Requests per second, the WSGI app called in-process (no sockets): a bare Flask view, a
   validated view, and a view taking the ``DownstreamSession``'s Authorization header on a
   cache hit (acquisition and session preparation, no downstream call).
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from flask_obo import FlaskOBO, acquire_token_for_user, verify_token_in_request

from .fixture import BenchIdentity
from .inprocess import measure


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    return (statistics.median(ordered) / 1000,
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000)


def _time_calls(call: Callable[[int], object], hits: int, users: int) -> tuple[float, float]:
    for i in range(min(hits, 2000)):  # warm
        call(i % users)
    samples = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(hits):
            start = clock()
            call(i % users)
            samples.append(clock() - start)
    finally:
        gc.enable()
    return _percentiles(samples)


def _app(ident: BenchIdentity, **config: Any) -> Flask:
    app = Flask("bench_obo")
    app.config.update(ident.settings, **config)
    FlaskOBO(app)
    return app


def cache_hits(ident: BenchIdentity, hits: int) -> dict[str, tuple[float, float]]:
    users = len(ident.tokens)
    hashes = [hashlib.sha256(t.encode()).hexdigest() for t in ident.tokens]
    results: dict[str, tuple[float, float]] = {}
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    variants = {
        "acquirer (in-process front)": {},
        "backend only, plain": {"OBO_CACHE_LOCAL_SIZE": 0},
        "backend only, AES-GCM": {"OBO_CACHE_LOCAL_SIZE": 0, "OBO_CACHE_ENCRYPTION_KEY": key},
    }
    for label, config in variants.items():
        app = _app(ident, **config)
        acquirer = app.extensions["obo"].acquirer
        scopes = app.extensions["obo"].config.downstream_apis["down"].scopes
        with app.app_context():
            for i in range(users):  # fill: one real OBO call per user
                acquirer.on_behalf_of(ident.tokens[i], hashes[i], scopes, user=ident.oids[i])

            def hit(i: int, acquirer: Any = acquirer, scopes: Any = scopes) -> object:
                return acquirer.on_behalf_of(ident.tokens[i], hashes[i], scopes)

            results[label] = _time_calls(hit, hits, users)
        acquirer.close()

    app = _app(ident)
    contexts = []
    for token in ident.tokens:
        ctx = app.test_request_context(headers={"Authorization": f"Bearer {token}"})
        ctx.push()
        verify_token_in_request()
        acquire_token_for_user(api="down")  # fill
        contexts.append(ctx)
        ctx.pop()
    # One request context at a time, as in a view: the call under test is the public function.
    per_user = []
    for ctx in contexts:
        ctx.push()
        per_user.append(_time_calls(lambda _: acquire_token_for_user(api="down"),
                                    max(hits // users, 200), 1))
        ctx.pop()
    results["public acquire_token_for_user"] = (
        statistics.median(p[0] for p in per_user), statistics.median(p[1] for p in per_user))
    app.extensions["obo"].acquirer.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--hits", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with BenchIdentity(users=args.users) as ident:
        hits = cache_hits(ident, args.hits)
        obo_calls = ident.obo_calls()
        views = measure(ident, ("bare", "validate", "obo_hit"), requests=args.requests,
                        repeats=args.repeats)
        obo_calls_in_views = ident.obo_calls() - obo_calls
    print(f"OBO cache hit, {args.users} users, {args.hits} hits each variant")
    print(f"  {'variant':<36} {'median us':>10} {'p99 us':>8}")
    for label, (median, p99) in hits.items():
        print(f"  {label:<36} {median:>10.2f} {p99:>8.2f}")
    print(f"\nRequests per second, WSGI in-process ({args.requests} x {args.repeats})")
    bare = views["bare"]["median_us"]
    print(f"  {'view':<10} {'us/request':>11} {'req/s':>9} {'vs bare':>8}")
    for kind, row in views.items():
        us = row["median_us"]
        print(f"  {kind:<10} {us:>11.1f} {1e6 / us:>9.0f} {bare / us:>7.0%}")
    print(f"\nOBO calls to the identity provider during the view benchmark: "
          f"{obo_calls_in_views} (one per user, at warm-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
