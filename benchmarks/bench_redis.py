"""The token cache on Redis: requests per second on a cache hit, and Redis memory per entry.

    python -m benchmarks.bench_redis                  # 2 rounds of 4 s per scenario
    python -m benchmarks.bench_redis --quick          # 1 round of 2 s

1. Requests per second on an OBO cache hit through gunicorn (2 workers x 4 threads, gthread),
   ``benchmarks.apps:create("obo_hit")`` on 127.0.0.1, loaded from another process (wrk if
   installed, else ``benchmarks.loadgen``'s Python generator) cycling through 50 users' tokens:

   - ``inprocess``: the default in-process backend;
   - ``redis``: ``OBO_CACHE`` RedisCache (key derived from the client secret): after a worker's
     first request for a user, the hit is served by the in-process front;
   - ``redis_no_front``: the same with ``OBO_CACHE_LOCAL_SIZE=0``: every hit is a Redis GET and
     an AES-GCM decryption, the cost a worker pays for a user it has not served yet.

   Each is checked first (every user's token answers with that user's oid; a token for another
   API is refused) and warmed up; rounds alternate the order. The identity provider calls made
   meanwhile are counted: one per user in all for the Redis scenarios (the cache is shared),
   one per user and worker in-process.
2. Redis memory per cached user-and-scope entry: ``--entries`` entries written through the app's
   token cache (the production codec and TTL), each holding a real downstream token from the
   emulator; ``INFO memory`` used_memory before and after, and ``MEMORY USAGE`` of one key.

Results on stdout and in benchmarks/results/redis.json. Everything stays on loopback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from flask import Flask

from . import loadgen
from .fixture import BenchIdentity
from .run import GunicornServer, Scenario, summarise, warm_and_measure

RESULTS = Path(__file__).resolve().parent / "results"


def scenarios(redis_url: str) -> list[Scenario]:
    redis_cache = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_url}
    return [
        Scenario("inprocess", "obo_hit", "OBO cache hit, in-process backend"),
        Scenario("redis", "obo_hit", "OBO cache hit, RedisCache (in-process front)",
                 env={"OBO_CACHE": redis_cache}),
        Scenario("redis_no_front", "obo_hit", "OBO cache hit, RedisCache, every hit a GET",
                 env={"OBO_CACHE": redis_cache, "OBO_CACHE_LOCAL_SIZE": "0"}),
    ]


def throughput(args: argparse.Namespace, ident: BenchIdentity, redis_url: str) -> list[Any]:
    def load(url: str, duration: float) -> dict[str, Any]:
        return loadgen.load(url, ident.tokens_file, duration=duration,
                            connections=args.connections, generator=args.loadgen)

    with ExitStack() as stack:
        servers: dict[str, GunicornServer] = {}
        stack.callback(lambda: [server.stop() for server in servers.values()])
        for scenario in scenarios(redis_url):
            servers[scenario.name] = GunicornServer(scenario, ident.settings, ident.workdir,
                                                    workers=args.workers, threads=args.threads)
        warm, runs = warm_and_measure(servers, ident, args, load)
        return [summarise(name, runs[name], warm[name])
                | {"obo_calls_total": warm[name]["obo_calls"]
                   + sum(r["obo_calls"] for r in runs[name])} for name in servers]


def memory(ident: BenchIdentity, redis_url: str, entries: int) -> dict[str, Any]:
    import redis

    from flask_obo import FlaskOBO, acquire_token_for_user

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    app = Flask("bench-redis-memory")
    app.config.update(ident.settings, OBO_CACHE={"CACHE_TYPE": "RedisCache",
                                                 "CACHE_REDIS_URL": redis_url})
    FlaskOBO(app)
    state = app.extensions["obo"]
    cache = state.acquirer.cache
    with app.test_request_context(headers={"Authorization": f"Bearer {ident.tokens[0]}"}):
        token = acquire_token_for_user(api="down")  # a real downstream token
    client.flushall()
    time.sleep(0.2)
    before = int(client.info("memory")["used_memory"])
    scopes = token.scopes
    keys = []
    for i in range(entries):
        subject = hashlib.sha256(f"user-{i}".encode()).hexdigest()
        key = cache.key("obo", state.config.client_id, state.config.tenant, subject, scopes)
        cache.set(key, token)
        keys.append(cache.backend.name(key))
    after = int(client.info("memory")["used_memory"])
    usage = [int(client.memory_usage(k, samples=0)) for k in keys[:50]]
    value_bytes = [int(client.strlen(k)) for k in keys[:50]]
    state.acquirer.close()
    return {
        "entries": entries,
        "keys_in_redis": int(client.dbsize()),
        "token_chars": len(token.token),
        "key_chars": len(keys[0]),
        "value_bytes": statistics.median(value_bytes),
        "memory_usage_per_key": statistics.median(usage),
        "used_memory_delta_per_entry": round((after - before) / entries, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s")
    parser.add_argument("--output", type=Path, default=RESULTS / "redis.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 1.0
    from flask_obo.testing.redis_server import RedisServer, RedisUnavailable

    try:
        server = RedisServer().start()
    except RedisUnavailable as exc:
        print(f"bench_redis needs redis-server: {exc}", file=sys.stderr)
        return 2
    generator = args.loadgen if args.loadgen != "auto" else (
        "wrk" if loadgen.wrk_path() else "python")
    print(f"bench_redis: {os.cpu_count()} CPUs, gunicorn {args.workers} workers x "
          f"{args.threads} threads, {generator} with {args.connections} connections, "
          f"{args.users} users", flush=True)
    try:
        with BenchIdentity(users=args.users) as ident:
            rows = throughput(args, ident, server.url)
            mem = memory(ident, server.url, args.entries)
    finally:
        server.close()
    results = {"settings": {k: str(v) for k, v in vars(args).items()}, "generator": generator,
               "scenarios": rows, "memory": mem}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")

    base = next(r["rps"] for r in rows if r["scenario"] == "inprocess")
    print(f"\n{'scenario':<16}{'req/s':>9}{'vs in-process':>15}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'OBO calls':>11}")
    for row in rows:
        print(f"{row['scenario']:<16}{row['rps']:>9.0f}{row['rps'] / base:>15.2f}"
              f"{row['p50_us'] / 1000:>9.2f}{row['p99_us'] / 1000:>9.2f}"
              f"{row['obo_calls_total']:>11}")
    print(f"\nRedis memory per cached entry ({mem['entries']} entries, token "
          f"{mem['token_chars']} chars, value {mem['value_bytes']:.0f} bytes): "
          f"{mem['used_memory_delta_per_entry']:.0f} bytes (used_memory), "
          f"{mem['memory_usage_per_key']:.0f} bytes (MEMORY USAGE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
