"""``make soak``: flask-obo under steady traffic for minutes, through token rotations and an
identity provider that slows down, with its memory watched.

    python -m benchmarks.soak [--minutes 10] [--users 1000] [--rate 200] [--slow-seconds 60]

What it runs (everything on 127.0.0.1, against the Entra emulator in this process):

1. A middle tier under gunicorn (2 ``gthread`` workers x 4 threads) with the token cache on
   Redis (a throwaway ``redis-server``, AES-GCM on), 1,000 users, and downstream tokens that
   live 2 minutes (the emulator's ``obo_token_lifetime``; ``OBO_CACHE_EXPIRY_MARGIN`` 10 s and
   ``OBO_CACHE_REFRESH_AHEAD`` 30 s, the defaults scaled to that lifetime), so every user's
   token is renewed every 80 s or so.
2. A bare Flask view under the same gunicorn settings and the same steady load, for the
   latency to compare with.
3. Warm-up: every user once, then the steady load for ``--warmup`` seconds.
4. ``--minutes`` of steady traffic (``--rate`` requests a second over ``--connections``
   keep-alive connections, the users' tokens in turn), then the identity provider slowed to
   ``--slow-delay`` seconds per token request (the emulator's delay fault) for
   ``--slow-seconds``, then ``--recovery-seconds`` more of normal service.

What it reports, per phase: requests and failures (no answer, or not 2xx); identity-provider
(on-behalf-of) calls against users x rotations; requests that waited on the identity provider
(the token cache's ``stats.waited`` of each worker, which counts every acquisition the cache
could not answer at once); p50/p99 latency against the bare view's; the RSS of each worker at
the start of the steady phase, once every token has been renewed (one rotation in: what a
worker holds is steady from there, and growth after it is what a leak would show) and at the
end. Results also go to benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import loadgen
from .fixture import BenchIdentity
from .run import RESULTS, ROOT, GunicornServer, Scenario, _children, _interrupt, _redis, get

__all__ = ["main"]

OBO_LIFETIME = 120  # seconds a downstream token lives
EXPIRY_MARGIN = 10
REFRESH_AHEAD = 30
# A token stored at t is usable until t + lifetime - margin and renewed from then - refresh.
ROTATION = OBO_LIFETIME - EXPIRY_MARGIN - REFRESH_AHEAD


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _worker_stats(directory: str, pids: list[int]) -> dict[int, dict[str, Any]]:
    found = {}
    for pid in pids:
        try:
            found[pid] = json.loads(Path(directory, f"{pid}.json").read_text())
        except (OSError, ValueError):
            found[pid] = {"waited": 0, "refreshes": 0, "dropped": 0}
    return found


def _waited(stats: dict[int, dict[str, Any]]) -> int:
    return sum(s["waited"] for s in stats.values())


def _percentile(values: list[int], percent: float) -> float:
    """The ``percent`` percentile of latencies in microseconds, in milliseconds."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * percent / 100) - 1)] / 1000


def _phase(records: dict[str, list[Any]], start: float, end: float) -> dict[str, Any]:
    latencies, failed = [], 0
    for began, latency, status in zip(records["start"], records["latency_us"],
                                      records["status"]):
        if start <= began < end:
            latencies.append(latency)
            failed += not 200 <= status < 300
    return {"requests": len(latencies), "failed": failed,
            "p50_ms": round(_percentile(latencies, 50), 2),
            "p99_ms": round(_percentile(latencies, 99), 2),
            "max_ms": round(max(latencies, default=0) / 1000, 1)}


def _paced(url: str, ident: BenchIdentity, args: argparse.Namespace, seconds: float,
           records: str | None = None) -> subprocess.Popen[str]:
    command = loadgen.python_command(url, ident.tokens_file, duration=seconds,
                                     connections=args.connections, rate=args.rate,
                                     records=records)
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed: {err.strip()[-500:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _wait(seconds: float, label: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {label} ({seconds:.0f} s)", flush=True)
    time.sleep(seconds)  # the runner paces the phases; the servers do the work


def soak(args: argparse.Namespace) -> dict[str, Any]:
    steady = args.minutes * 60
    total = steady + args.slow_seconds + args.recovery_seconds
    results: dict[str, Any] = {"settings": vars(args) | {"obo_token_lifetime": OBO_LIFETIME,
                                                         "expiry_margin": EXPIRY_MARGIN,
                                                         "refresh_ahead": REFRESH_AHEAD}}
    with ExitStack() as stack:
        ident = stack.enter_context(BenchIdentity(
            users=args.users, token_lifetime=int(total) + 3600,
            obo_token_lifetime=OBO_LIFETIME))
        redis_url = stack.enter_context(_redis())
        if redis_url is None:
            raise SystemExit("the soak needs redis-server (Debian: apt-get install redis-server)")
        stats_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="flask-obo-soak-"))
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        soak_env = {"OBO_CACHE": {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_url},
                    "OBO_CACHE_ENCRYPTION_KEY": key, "OBO_CACHE_EXPIRY_MARGIN": EXPIRY_MARGIN,
                    "OBO_CACHE_REFRESH_AHEAD": REFRESH_AHEAD}
        os.environ["SOAK_STATS_DIR"] = stats_dir  # inherited by gunicorn's workers
        servers: list[GunicornServer] = []
        stack.callback(lambda: [server.stop() for server in servers])
        app = GunicornServer(Scenario("soak", "soak", "flask-obo soak", env=soak_env),
                             ident.settings, ident.workdir, workers=2, threads=4)
        bare = GunicornServer(Scenario("bare", "bare", "bare view", protected=False),
                              ident.settings, ident.workdir, workers=2, threads=4)
        servers += [app, bare]
        app.wait_ready()
        bare.wait_ready()
        bare_seconds = min(args.bare_seconds, steady)
        print(f"  {time.strftime('%H:%M:%S')} the bare view under the same load "
              f"({bare_seconds:.0f} s)", flush=True)
        results["bare"] = _finish(_paced(bare.url + "/api/me", ident, args, bare_seconds),
                                  bare_seconds + 60)
        bare.stop()

        print(f"  {time.strftime('%H:%M:%S')} every user's first request ({args.users} OBO "
              "calls)", flush=True)
        for token, oid in zip(ident.tokens, ident.oids):
            status, body = get(app.url, "/api/me", token)
            if status != 200 or body != oid:
                raise RuntimeError(f"a valid token got {status} {body[:200]!r}")

        print(f"  {time.strftime('%H:%M:%S')} warm-up ({args.warmup:.0f} s)", flush=True)
        _finish(_paced(app.url + "/api/me", ident, args, args.warmup), args.warmup + 60)
        workers = sorted(_children(app.process.pid))
        rss_start = {pid: _rss_kib(pid) for pid in workers}
        time.sleep(1.5)  # the workers write their counters every second
        marks: dict[str, tuple[float, int, int]] = {}

        def mark(name: str) -> None:
            marks[name] = (time.time(), ident.obo_calls(),
                           _waited(_worker_stats(stats_dir, workers)))

        records_file = os.path.join(ident.workdir, "records.json")
        mark("steady")
        load = _paced(app.url + "/api/me", ident, args, total, records_file)
        print(f"  {time.strftime('%H:%M:%S')} steady traffic, {args.rate:g} req/s "
              f"({steady:.0f} s)", flush=True)
        began = time.monotonic()
        rss_samples: list[tuple[float, dict[int, int]]] = []
        while (left := steady - (time.monotonic() - began)) > 0:
            time.sleep(min(10.0, left))
            rss_samples.append((time.monotonic() - began,
                                {pid: _rss_kib(pid) for pid in workers}))
        ident.emulator.faults.inject("token", "delay", count=10**7, delay=args.slow_delay)
        mark("slow")
        _wait(args.slow_seconds, f"identity provider slowed to {args.slow_delay:g} s per call")
        ident.emulator.faults.clear()
        mark("recovery")
        _wait(args.recovery_seconds, "recovery")
        generated = _finish(load, 120)
        time.sleep(1.5)
        mark("end")
        final_stats = _worker_stats(stats_dir, workers)
        rss_end = {pid: _rss_kib(pid) for pid in workers}
        records = json.loads(Path(records_file).read_text())

    phases = {}
    names = ["steady", "slow", "recovery"]
    for name, following in zip(names, [*names[1:], "end"]):
        start, obo_start, waited_start = marks[name]
        end, obo_end, waited_end = marks[following]
        row = _phase(records, start, end)
        seconds = end - start
        row.update(seconds=round(seconds, 1), obo_calls=obo_end - obo_start,
                   waited=waited_end - waited_start,
                   expected_obo_calls=round(args.users * seconds / ROTATION))
        phases[name] = row
    # Once every token has been renewed (one rotation, and a margin), what the workers hold
    # is steady: growth from there on is what a leak would show.
    settled = next((rss for at, rss in rss_samples if at >= ROTATION + 30), rss_start)
    results.update(
        phases=phases, generator=generated,
        rss_kib={str(pid): {"start": rss_start[pid], "settled": settled.get(pid, 0),
                            "end": rss_end.get(pid, 0)} for pid in workers},
        rss_samples_kib=[[round(at), {str(p): v for p, v in rss.items()}]
                         for at, rss in rss_samples],
        workers={str(pid): final_stats[pid] for pid in workers},
    )
    return results


def table(results: dict[str, Any]) -> str:
    bare = results["bare"]
    lines = [f"{'phase':<11}{'seconds':>8}{'requests':>10}{'failed':>8}{'OBO calls':>11}"
             f"{'users x rot.':>13}{'waited':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>9}",
             f"{'bare view':<11}{bare['duration_s']:>8.0f}{bare['requests']:>10}"
             f"{bare['errors'] + bare['non_2xx']:>8}{'':>11}{'':>13}{'':>8}"
             f"{bare['p50_us'] / 1000:>8.2f}{bare['p99_us'] / 1000:>8.2f}"
             f"{bare['max_us'] / 1000:>9.1f}"]
    for name, row in results["phases"].items():
        lines.append(f"{name:<11}{row['seconds']:>8.0f}{row['requests']:>10}{row['failed']:>8}"
                     f"{row['obo_calls']:>11}{row['expected_obo_calls']:>13}{row['waited']:>8}"
                     f"{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}{row['max_ms']:>9.1f}")
    lines.append("")
    for pid, rss in results["rss_kib"].items():
        lines.append(f"worker {pid}: RSS {rss['start'] / 1024:.1f} MiB at the start of the "
                     f"steady phase ({_growth(rss['start'], rss['end']):+.1f} % at the end), "
                     f"{rss['settled'] / 1024:.1f} MiB once every token was renewed, "
                     f"{rss['end'] / 1024:.1f} MiB at the end "
                     f"({_growth(rss['settled'], rss['end']):+.1f} %); refreshes queued "
                     f"{results['workers'][pid]['refreshes']}, dropped "
                     f"{results['workers'][pid]['dropped']}")
    return "\n".join(lines)


def _growth(before: int, after: int) -> float:
    return (after - before) / before * 100 if before else 0.0


def verdicts(results: dict[str, Any]) -> list[str]:
    steady, recovery = results["phases"]["steady"], results["phases"]["recovery"]
    growth = max(_growth(r["settled"], r["end"]) for r in results["rss_kib"].values())
    checks = [
        ("no failed request while the identity provider answers normally",
         steady["failed"] + recovery["failed"] == 0,
         f"{steady['failed']} steady, {recovery['failed']} recovery"),
        ("no request waited on the identity provider in the steady phase",
         steady["waited"] == 0, f"{steady['waited']}"),
        ("identity-provider calls within users x rotations",
         steady["obo_calls"] <= steady["expected_obo_calls"] * 1.1,
         f"{steady['obo_calls']} for {steady['expected_obo_calls']}"),
        ("worker memory flat within 10 % once every token was renewed", growth <= 10,
         f"largest growth {growth:+.1f} %"),
    ]
    return [f"  {'met   ' if ok else 'MISSED'} {what}: {detail}" for what, ok, detail in checks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float,
                        default=float(os.environ.get("SOAK_MINUTES", "10")),
                        help="steady traffic (default 10, or $SOAK_MINUTES); 0 skips the soak")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200, help="requests per second")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--bare-seconds", type=float, default=60)
    parser.add_argument("--slow-seconds", type=float, default=60)
    parser.add_argument("--slow-delay", type=float, default=3.0,
                        help="seconds the identity provider takes per token request meanwhile")
    parser.add_argument("--recovery-seconds", type=float, default=60)
    parser.add_argument("--output", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        print("soak skipped (--minutes 0)")
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"flask-obo soak: {args.users} users, {args.rate:g} req/s, {args.minutes:g} min steady, "
          f"then {args.slow_seconds:g} s of a {args.slow_delay:g} s identity provider, "
          f"{args.recovery_seconds:g} s recovery; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results = soak(args)
    results["loadavg_end"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(table(results))
    print("\ntargets:")
    print("\n".join(verdicts(results)))
    print(f"\nrotation every ~{ROTATION} s per user (tokens live {OBO_LIFETIME} s); results in "
          f"{args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
