"""Per-request cost of each scenario's app without a server: the WSGI app called in a loop.

No sockets, no HTTP parsing, no load generator sharing the CPU: what is left is Flask plus the
protection under test, so the differences between scenarios are the protection's own cost, and
far less noisy than throughput on a busy machine. ``run.py`` reports it beside the server
numbers; by hand, with a profile of one scenario's hot path::

    python -m benchmarks.inprocess                       # every scenario, microseconds/request
    python -m benchmarks.inprocess --profile obo_hit     # cProfile of the cache-hit path
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from .apps import create
from .fixture import BenchIdentity

__all__ = ["INPROCESS_KINDS", "measure", "profile"]

# msal_obo is left out: its cost is the identity provider's round trip, measured under load.
INPROCESS_KINDS = ("bare", "validate", "authlib", "obo_hit")


def _environs(tokens: Iterable[str]) -> list[dict[str, Any]]:
    return [EnvironBuilder(path="/api/me", base_url="http://127.0.0.1:8000",
                           headers=[("Authorization", f"Bearer {token}")]).get_environ()
            for token in tokens]


def _driver(app: Flask, environs: list[dict[str, Any]]) -> Callable[[int], None]:
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)

    def run(n: int) -> None:
        count = len(environs)
        for i in range(n):
            body = app(dict(environs[i % count]), start_response)
            for _ in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        bad = [s for s in statuses if not s.startswith("200")]
        statuses.clear()
        if bad:
            raise RuntimeError(f"{len(bad)} requests failed in-process, e.g. {bad[0]}")

    return run


def measure(ident: BenchIdentity, kinds: Iterable[str] = INPROCESS_KINDS, *,
            requests: int = 3000, repeats: int = 5) -> dict[str, dict[str, float]]:
    """Microseconds per request for each kind: the median and the best of ``repeats`` batches.

    Batches of the kinds are interleaved, so a burst of load elsewhere hits all of them alike;
    time is this thread's CPU time, so what other processes take is not counted.
    """
    drivers = {}
    for kind in kinds:
        driver = _driver(create(kind, ident.settings), _environs(ident.tokens))
        driver(2 * len(ident.tokens))  # warm: keys fetched, every token seen, tokens cached
        drivers[kind] = driver
    samples: dict[str, list[float]] = {kind: [] for kind in drivers}
    for _ in range(repeats):
        for kind, driver in drivers.items():
            started = time.thread_time()
            driver(requests)
            samples[kind].append((time.thread_time() - started) / requests * 1e6)
    return {kind: {"median_us": round(statistics.median(values), 2),
                   "best_us": round(min(values), 2)} for kind, values in samples.items()}


def profile(ident: BenchIdentity, kind: str, *, requests: int = 20000, limit: int = 30,
            sort: str = "tottime") -> str:
    """A cProfile report of ``requests`` warm requests to ``kind``'s app."""
    driver = _driver(create(kind, ident.settings), _environs(ident.tokens))
    driver(2 * len(ident.tokens))
    profiler = cProfile.Profile()
    profiler.enable()
    driver(requests)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(sort).print_stats(limit)
    return f"{kind}: {requests} requests\n" + out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", choices=INPROCESS_KINDS)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumtime)")
    args = parser.parse_args(argv)
    with BenchIdentity(users=args.users) as ident:
        if args.profile:
            print(profile(ident, args.profile, sort=args.sort))
            return 0
        results = measure(ident, requests=args.requests, repeats=args.repeats)
    bare = results["bare"]["median_us"]
    print(f"{'scenario':<10} {'median us/req':>14} {'best':>8} {'over bare':>10}")
    for kind, row in results.items():
        print(f"{kind:<10} {row['median_us']:>14.1f} {row['best_us']:>8.1f} "
              f"{row['median_us'] - bare:>+10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
