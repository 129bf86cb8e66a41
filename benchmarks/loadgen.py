"""Load generation in a process of its own: ``wrk`` when installed, else a Python fallback.

Both send ``GET <url>`` with ``Authorization: Bearer <token>``, cycling through the tokens of a
file (one per line), over keep-alive connections for a fixed duration, and report one dict:
requests, duration_s, rps, p50/p90/p99/mean/max latency in microseconds, errors, non_2xx.

The Python fallback, also usable by hand::

    python -m benchmarks.loadgen --url http://127.0.0.1:8000/api/me --tokens tokens.txt \\
        --connections 16 --duration 5 --warmup 1

runs one thread per connection (``http.client``, keep-alive) and prints its result as JSON.
Its latencies are exact (every request timed, percentiles by sorting); its own CPU use is
higher than wrk's, which on a small machine takes cycles from the server under test.

With ``--rate N`` it sends steady traffic instead of as much as the server takes: N requests a
second in all, each connection on its own schedule (a late request goes at once, and the
schedule goes on from there). ``--records FILE`` writes every request (start as epoch
seconds, latency in microseconds, status; 0 for no answer) as JSON, for the soak's phases.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["load", "python_command", "run_python", "run_wrk", "wrk_path"]

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_tokens.lua"


def wrk_path() -> str | None:
    return shutil.which("wrk")


def load(url: str, tokens_file: str, *, duration: float, connections: int, threads: int = 2,
         generator: str = "auto", warmup: float = 0.0) -> dict[str, Any]:
    """Run one load and return its result; ``generator``: "wrk", "python" or "auto"."""
    if generator == "auto":
        generator = "wrk" if wrk_path() else "python"
    if generator == "wrk":
        if warmup > 0:
            run_wrk(url, tokens_file, duration=warmup, connections=connections, threads=threads)
        return run_wrk(url, tokens_file, duration=duration, connections=connections,
                       threads=threads)
    return run_python(url, tokens_file, duration=duration, connections=connections,
                      warmup=warmup)


def run_wrk(url: str, tokens_file: str, *, duration: float, connections: int,
            threads: int = 2) -> dict[str, Any]:
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    seconds = max(1, round(duration))
    command = [wrk, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s",
               "--timeout", "10s", "-s", str(WRK_SCRIPT), url, "--", tokens_file]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30,
                         check=False)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line[len("BENCH_JSON "):])
            break
    else:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    result["errors"] = sum(result["errors"].values())
    result["rps"] = result["requests"] / result["duration_s"] if result["duration_s"] else 0.0
    result["generator"] = "wrk"
    return result


def python_command(url: str, tokens_file: str, *, duration: float, connections: int,
                   warmup: float = 0.0, rate: float | None = None,
                   records: str | None = None) -> list[str]:
    """The command line of the Python generator (run from the repository's root)."""
    command = [sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--tokens", tokens_file,
               "--connections", str(connections), "--duration", str(duration),
               "--warmup", str(warmup)]
    if rate:
        command += ["--rate", str(rate)]
    if records:
        command += ["--records", records]
    return command


def run_python(url: str, tokens_file: str, *, duration: float, connections: int,
               warmup: float = 0.0, rate: float | None = None,
               records: str | None = None) -> dict[str, Any]:
    """The Python generator, in a subprocess (never in the caller's process)."""
    command = python_command(url, tokens_file, duration=duration, connections=connections,
                             warmup=warmup, rate=rate, records=records)
    out = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent,
                         timeout=duration + warmup + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the Python load generator failed ({out.returncode}): "
                           f"{out.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# the Python generator ------------------------------------------------------------------------
class _Worker(threading.Thread):
    def __init__(self, host: str, port: int, path: str, headers: list[dict[str, str]],
                 offset: int, measure_from: float, stop_at: float,
                 interval: float | None = None, records: bool = False) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.path = host, port, path
        self.headers = headers
        self.offset = offset
        self.measure_from, self.stop_at = measure_from, stop_at
        self.interval = interval  # seconds between this connection's requests (None: no pause)
        self.latencies_ns: list[int] = []
        self.errors = 0
        self.non_2xx = 0
        #: (start, epoch seconds; latency, us; status, 0 for no answer) when ``records``
        self.records: list[tuple[float, int, int]] | None = [] if records else None

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=10)

    def run(self) -> None:
        headers, count = self.headers, len(self.headers)
        index = self.offset
        conn = self._connect()
        clock = time.perf_counter_ns
        measure_from = int(self.measure_from * 1e9)
        stop_at = int(self.stop_at * 1e9)
        record = self.latencies_ns.append
        step = int(self.interval * 1e9) if self.interval else 0
        # Paced connections start spread over one interval, not all at once.
        due = clock() + (step * self.offset // max(1, count)) % step if step else 0
        epoch_offset = time.time() - time.perf_counter()
        while True:
            if step:
                wait = due - clock()
                if wait > 0:
                    time.sleep(wait / 1e9)
                due = max(due + step, clock())
            started = clock()
            if started >= stop_at:
                break
            index = index + 1 if index + 1 < count else 0
            try:
                conn.request("GET", self.path, headers=headers[index])
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                if started >= measure_from:
                    self.errors += 1
                    if self.records is not None:
                        self.records.append((started / 1e9 + epoch_offset,
                                             (clock() - started) // 1000, 0))
                conn.close()
                conn = self._connect()
                continue
            if started >= measure_from:
                latency = clock() - started
                record(latency)
                if not 200 <= status < 300:
                    self.non_2xx += 1
                if self.records is not None:
                    self.records.append((started / 1e9 + epoch_offset, latency // 1000, status))
        conn.close()


def _percentile(sorted_values: list[int], percent: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(0, math.ceil(percent / 100 * len(sorted_values)) - 1)
    return sorted_values[rank] / 1000.0


def generate(url: str, tokens: list[str], *, connections: int, duration: float,
             warmup: float, rate: float | None = None,
             records: str | None = None) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("benchmarks send load to loopback only")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = [{"Authorization": f"Bearer {token}", "Connection": "keep-alive"}
               for token in tokens]
    now = time.perf_counter()
    measure_from = now + warmup
    stop_at = measure_from + duration
    interval = connections / rate if rate else None
    workers = [_Worker(parts.hostname, parts.port or 80, path, headers,
                       (i * len(headers) // connections if rate else i * 17) % len(headers),
                       measure_from, stop_at, interval, records is not None)
               for i in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if records is not None:
        every = sorted(r for worker in workers for r in worker.records or ())
        Path(records).write_text(json.dumps({"start": [r[0] for r in every],
                                             "latency_us": [r[1] for r in every],
                                             "status": [r[2] for r in every]}))
    latencies = sorted(ns for worker in workers for ns in worker.latencies_ns)
    requests = len(latencies)
    return {
        "requests": requests,
        "duration_s": duration,
        "rps": requests / duration,
        "p50_us": _percentile(latencies, 50),
        "p90_us": _percentile(latencies, 90),
        "p99_us": _percentile(latencies, 99),
        "mean_us": sum(latencies) / requests / 1000.0 if requests else 0.0,
        "max_us": latencies[-1] / 1000.0 if latencies else 0.0,
        "errors": sum(worker.errors for worker in workers),
        "non_2xx": sum(worker.non_2xx for worker in workers),
        "generator": "python",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", required=True, help="a file with one token per line")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rate", type=float, help="requests per second in all (steady traffic)")
    parser.add_argument("--records", help="write every request's start, latency and status here")
    args = parser.parse_args(argv)
    tokens = [line for line in Path(args.tokens).read_text().splitlines() if line]
    if not tokens:
        parser.error("the tokens file is empty")
    result = generate(args.url, tokens, connections=args.connections, duration=args.duration,
                      warmup=args.warmup, rate=args.rate, records=args.records)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
