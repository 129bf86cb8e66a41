"""Memory at scale: many distinct users (10,000 by default) through the on-behalf-of path.

    python -m benchmarks.bench_memory                 # 10,000 users: a minute or two
    python -m benchmarks.bench_memory --users 1500    # a quick run, the same checks

Each user's token goes through ``TokenAcquirer.on_behalf_of`` (real MSAL over real HTTPS to the
emulator, in this process: one RSA signature per user), then the run checks what the design
promises at that scale: MSAL's own token cache holds nothing; ours holds one entry per user in
the Flask-Caching backend, each living until its token's expiry minus the margin; the bounded
in-process front stays at its bound; one MSAL app serves the tenant. It reports the cache's own
bytes per user and the process's resident memory before and after (which also holds the
emulator and its call log). ``make bench`` runs it as part of its micro benchmarks; the test
suite keeps a small version of the same checks (tests/test_obo_flow.py).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from flask_obo import FlaskOBO
from flask_obo.testing import EntraEmulator

SECRET = "bench-memory-secret"
MARGIN = 60


def _rss_mib() -> float:
    """The resident set size now, in MiB (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(users: int = 10_000, local_size: int = 256, threads: int = 8) -> dict[str, Any]:
    with EntraEmulator() as emu:
        middle = emu.register_app("memory-middle", secret=SECRET, scopes=["access_as_user"])
        down = emu.register_app("memory-downstream", scopes=["read"])
        emu.grant_consent(client=middle, resource=down, scopes=["read"])
        app = Flask("bench-memory")
        app.config.update(OBO_AUTHORITY=emu.authority(), OBO_CLIENT_ID=middle.client_id,
                          OBO_CLIENT_SECRET=SECRET, OBO_CA_BUNDLE=emu.ca_bundle,
                          OBO_CACHE_LOCAL_SIZE=local_size, OBO_CACHE_EXPIRY_MARGIN=MARGIN)
        FlaskOBO(app)
        acquirer = app.extensions["obo"].acquirer
        accounts = [emu.add_user(f"m{i}@contoso.test") for i in range(users)]
        tokens = [emu.issue_user_token(u, resource=middle, scopes=["access_as_user"])
                  for u in accounts]
        scopes = (f"{down.app_id_uri}/read",)

        def one(index: int) -> str:
            token = tokens[index]
            return str(acquirer.on_behalf_of(token, hashlib.sha256(token.encode()).hexdigest(),
                                             scopes, user=accounts[index].oid).token)

        gc.collect()
        rss_before = _rss_mib()
        started = time.time()
        with ThreadPoolExecutor(threads) as pool:
            issued = list(pool.map(one, range(users)))
        elapsed = time.time() - started
        gc.collect()
        rss_after = _rss_mib()
        obo_calls = len(emu.calls("on_behalf_of"))

        backend = acquirer.cache.backend
        # SimpleCache keeps (expiry, pickled value) per key; a benchmark may look inside it.
        stored = {k: v for k, v in backend._cache.items() if k.startswith("flask_obo:")}
        lifetime = emu.obo_token_lifetime or emu.token_lifetime
        cache_bytes = sum(len(k) + len(v) for k, (_, v) in stored.items())
        front = len(acquirer.cache.local.entries)
        served_again = one(0) == issued[0] and len(emu.calls("on_behalf_of")) == obo_calls
        checks = {
            "one distinct downstream token per user": len(set(issued)) == users,
            "one OBO call per user": obo_calls == users,
            "MSAL's token cache holds nothing": acquirer.msal_cache_size() == 0,
            "one MSAL app for the tenant": len(acquirer._clients) == 1,
            "one cache entry per user": len(stored) == users,
            "each entry lives until its expiry minus the margin": all(
                started + lifetime - MARGIN - 2 <= expires <= time.time() + lifetime - MARGIN + 1
                for expires, _ in stored.values()),
            f"the in-process front holds at most {local_size}": front <= local_size,
            "a repeated user is served from the cache": served_again,
        }
    return {
        "users": users,
        "seconds": round(elapsed, 1),
        "cache_bytes_per_user": round(cache_bytes / max(users, 1)),
        "front_entries": front,
        "rss_before_mib": round(rss_before, 1),
        "rss_after_mib": round(rss_after, 1),
        "rss_growth_kib_per_user": round((rss_after - rss_before) * 1024 / max(users, 1), 2),
        "checks": checks,
        "ok": all(checks.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--local-size", type=int, default=256,
                        help="OBO_CACHE_LOCAL_SIZE: the in-process front's bound")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    result = run(args.users, args.local_size, args.threads)
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
