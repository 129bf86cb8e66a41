"""``make bench``: every scenario under gunicorn, loaded from another process, in one run.

    python -m benchmarks.run [--duration 3] [--rounds 5] [--connections 16] [--quick]

It starts the Entra emulator (in this process) with 50 users, one gunicorn server per scenario
(``benchmarks.apps``; 127.0.0.1 only), checks that each answers correctly and refuses a token
for another API, warms each up, then loads them in turn, round after round (order reversed
every round, so drifting machine load hits all alike), with ``wrk`` if installed, else the
Python generator of ``benchmarks.loadgen``. Then, with the servers stopped, the in-process
micro benchmarks. Results: a table on stdout, everything in benchmarks/results/latest.json.
See benchmarks/README.md for what each scenario and column means.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import loadgen
from .apps import BARE_BODY
from .fixture import BenchIdentity
from .hotpath import breakdown
from .inprocess import measure as measure_inprocess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGETS = {
    "validate_vs_bare": 0.95,
    "obo_hit_vs_bare": 0.95,
    "validate_vs_authlib": 1.2,
    "obo_hit_median_us": 10.0,
    "telemetry_overhead_pct": 3.0,
}


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # the benchmarks.apps factory argument
    title: str
    env: dict[str, Any] = field(default_factory=dict)
    protected: bool = True


def scenarios(redis_url: str | None, encryption_key: str) -> list[Scenario]:
    found = [
        Scenario("bare", "bare", "bare Flask view", protected=False),
        Scenario("validate", "validate", "flask-obo validation (repeated token)"),
        Scenario("authlib", "authlib", "Authlib ResourceProtector + RFC 9068 JWT validator"),
        Scenario("obo_hit", "obo_hit", "flask-obo OBO cache hit (in-process cache)"),
    ]
    if redis_url:
        found.append(Scenario("obo_hit_redis", "obo_hit",
                              "flask-obo OBO cache hit (Redis, shared by the workers)",
                              env={"OBO_CACHE": {"CACHE_TYPE": "RedisCache",
                                                 "CACHE_REDIS_URL": redis_url},
                                   "OBO_CACHE_ENCRYPTION_KEY": encryption_key}))
    found.append(Scenario("msal_obo", "msal_obo",
                          "MSAL OBO on every request (Microsoft's Flask sample)"))
    return found


# servers ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class GunicornServer:
    """One scenario's gunicorn on 127.0.0.1:<free port>; stopped by ``stop`` (SIGTERM)."""

    def __init__(self, scenario: Scenario, settings: dict[str, Any], log_dir: str, *,
                 workers: int, threads: int) -> None:
        self.scenario = scenario
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log_dir) / f"gunicorn-{scenario.name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OBO_")}
        for key, value in {**settings, **scenario.env}.items():
            env[key] = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        worker_args = (["--worker-class", "gthread", "--threads", str(threads)] if threads > 1
                       else ["--worker-class", "sync"])
        self.command = [
            sys.executable, "-m", "gunicorn", f'benchmarks.apps:create("{scenario.kind}")',
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), *worker_args,
            "--keep-alive", "30", "--timeout", "60", "--graceful-timeout", "5",
            "--log-level", "warning", "--error-logfile", str(self.log),
        ]
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn for {self.scenario.name} exited with "
                                   f"{self.process.returncode}:\n{self._log_tail()}")
            try:
                if get(self.url, "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn for {self.scenario.name} did not answer within "
                           f"{timeout} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> float:
        pid = self.process.pid
        return sum(_proc_cpu_seconds(p) for p in [pid, *_children(pid)])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def get(base: str, path: str, token: str | None = None) -> tuple[int, str]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def preflight(server: GunicornServer, ident: BenchIdentity) -> int:
    """Each user's token answers 200 with that user's oid; a token for another API and no
    token are refused. Returns the number of requests sent."""
    scenario = server.scenario
    for token, oid in zip(ident.tokens, ident.oids):
        status, body = get(server.url, "/api/me", token)
        expected = oid if scenario.protected else BARE_BODY
        if status != 200 or body != expected:
            raise RuntimeError(f"{scenario.name}: a valid token got {status} {body[:200]!r}")
    if scenario.protected:
        refused: list[tuple[str, str | None]] = [
            ("a token for another API", ident.wrong_audience_token), ("no token", None)]
        for label, bad in refused:
            status, body = get(server.url, "/api/me", bad)
            if status != 401:
                raise RuntimeError(f"{scenario.name} answered {status} to {label}: a benchmark "
                                   "of a protection that does not protect means nothing")
    return len(ident.tokens) + (2 if scenario.protected else 0)


# measuring -----------------------------------------------------------------------------------
def _busy_cores_since(before: tuple[float, float], after: tuple[float, float]) -> float:
    return (after[0] - before[0]) / max(after[1] - before[1], 1e-9)


def _cpu_snapshot() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, monotonic time)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK, time.monotonic()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def settle(server: GunicornServer, ident: BenchIdentity, timeout: float = 15.0) -> None:
    """Wait until the server has finished what the last load left queued (a slow scenario
    keeps working after its load generator stops), so it does not burden the next run."""
    deadline = time.monotonic() + timeout
    cpu, obo = server.cpu_seconds(), ident.obo_calls()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        cpu_now, obo_now = server.cpu_seconds(), ident.obo_calls()
        if cpu_now - cpu < 0.02 and obo_now == obo:
            return
        cpu, obo = cpu_now, obo_now


def measure_run(server: GunicornServer, ident: BenchIdentity,
                load: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """One load of one server, with what the identity provider and the machine did meanwhile."""
    obo, idp = ident.obo_calls(), ident.idp_calls()
    server_cpu, gen_cpu, self_cpu = server.cpu_seconds(), _children_cpu(), _self_cpu()
    machine = _cpu_snapshot()
    result = load(server.url + "/api/me")
    settle(server, ident)
    machine_after = _cpu_snapshot()
    elapsed = machine_after[1] - machine[1]
    result["server_cpu_s"] = server.cpu_seconds() - server_cpu
    result["loadgen_cpu_s"] = _children_cpu() - gen_cpu
    result["idp_cpu_s"] = _self_cpu() - self_cpu  # the emulator runs in this process
    result["obo_calls"] = ident.obo_calls() - obo
    result["idp_calls"] = ident.idp_calls() - idp
    busy = _busy_cores_since(machine, machine_after)
    ours = (result["server_cpu_s"] + result["loadgen_cpu_s"] + result["idp_cpu_s"]) / elapsed
    result["machine_busy_cores"] = round(busy, 2)
    result["other_processes_cores"] = round(max(0.0, busy - ours), 2)
    result["loadavg_1m"] = os.getloadavg()[0]
    return result


def summarise(name: str, runs: list[dict[str, Any]], warm: dict[str, Any]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in runs)
    duration = sum(r["duration_s"] for r in runs)
    cpu = sum(r["server_cpu_s"] for r in runs)
    obo = sum(r["obo_calls"] for r in runs)
    idp = sum(r["idp_calls"] for r in runs)
    best = max(runs, key=lambda r: r["rps"])  # other load only ever slows a run down
    cpu_runs = [r["server_cpu_s"] / r["requests"] * 1e6 for r in runs if r["requests"]]
    return {
        "scenario": name,
        "requests": requests,
        "rps": round(max(r["rps"] for r in runs), 1),
        "rps_mean": round(requests / duration, 1) if duration else 0.0,
        "rps_runs": [round(r["rps"], 1) for r in runs],
        "p50_us": round(best["p50_us"], 1),
        "p99_us": round(best["p99_us"], 1),
        "p50_us_median": round(statistics.median(r["p50_us"] for r in runs), 1),
        "p99_us_median": round(statistics.median(r["p99_us"] for r in runs), 1),
        "p99_us_worst": round(max(r["p99_us"] for r in runs), 1),
        "server_cpu_us_per_request": round(min(cpu_runs), 1) if cpu_runs else None,
        "server_cpu_us_per_request_mean": round(cpu / requests * 1e6, 1) if requests else None,
        "obo_calls_measured": obo,
        "idp_calls_measured": idp,
        # Every endpoint of the identity provider counts (discovery, keys, token).
        "idp_calls_per_1000": round(idp * 1000 / requests, 2) if requests else None,
        "obo_calls_warmup": warm["obo_calls"],
        "requests_warmup": warm["requests"],
        "errors": sum(r["errors"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "other_processes_cores": round(statistics.mean(r["other_processes_cores"]
                                                       for r in runs), 2),
    }


@contextmanager
def _redis() -> Iterator[str | None]:
    try:
        from flask_obo.testing.redis_server import RedisServer, RedisUnavailable
    except ImportError:
        yield None
        return
    try:
        server = RedisServer().start()
    except RedisUnavailable as exc:
        print(f"  (no Redis scenario: {exc})")
        yield None
        return
    try:
        yield server.url
    finally:
        server.close()


def run_servers(args: argparse.Namespace, ident: BenchIdentity) -> dict[str, Any]:
    generator = args.loadgen
    if generator == "auto":
        generator = "wrk" if loadgen.wrk_path() else "python"

    def load(url: str, duration: float) -> dict[str, Any]:
        return loadgen.load(url, ident.tokens_file, duration=duration,
                            connections=args.connections, threads=args.wrk_threads,
                            generator=generator)

    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with ExitStack() as stack:
        redis_url = stack.enter_context(_redis()) if not args.no_redis else None
        chosen = [s for s in scenarios(redis_url, key)
                  if not args.scenarios or s.name in args.scenarios]
        servers: dict[str, GunicornServer] = {}

        def stop_all() -> None:
            for server in servers.values():
                server.stop()

        stack.callback(stop_all)
        for scenario in chosen:
            servers[scenario.name] = GunicornServer(scenario, ident.settings, ident.workdir,
                                                    workers=args.workers, threads=args.threads)
        warm, runs = warm_and_measure(servers, ident, args, load)
        total_obo = {name: warm[name]["obo_calls"] + sum(r["obo_calls"] for r in runs[name])
                     for name in servers}
        titles = {s.name: s.title for s in chosen}
    summary = [summarise(name, runs[name], warm[name]) | {"title": titles[name],
                                                          "obo_calls_total": total_obo[name]}
               for name in runs]
    bare = next((s for s in summary if s["scenario"] == "bare"), None)
    for row in summary:
        if bare and bare["rps"]:
            row["ratio_to_bare"] = round(row["rps"] / bare["rps"], 3)
            row["cpu_ratio_to_bare"] = round(bare["server_cpu_us_per_request"]
                                             / row["server_cpu_us_per_request"], 3)
    return {"generator": generator, "scenarios": summary, "runs": runs}


def warm_and_measure(servers: dict[str, GunicornServer], ident: BenchIdentity,
                     args: argparse.Namespace,
                     load: Callable[[str, float], dict[str, Any]],
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Check and warm up every server, then ``args.rounds`` interleaved measured runs each
    (the order reversed every round). Returns (warm-up figures, runs) by scenario name."""
    warm: dict[str, dict[str, Any]] = {}
    for name, server in servers.items():
        server.wait_ready()
        obo = ident.obo_calls()
        sent = preflight(server, ident)
        warmed = load(server.url + "/api/me", args.warmup)
        settle(server, ident)
        warm[name] = {"obo_calls": ident.obo_calls() - obo,
                      "requests": sent + warmed["requests"]}
        print(f"  ready: {name:<14} {server.url}  (warm-up {warmed['rps']:.0f} req/s)",
              flush=True)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for round_no in range(args.rounds):
        order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
        for name in order:
            result = measure_run(servers[name], ident, lambda url: load(url, args.duration))
            runs[name].append(result)
            print(f"  round {round_no + 1}/{args.rounds} {name:<14} "
                  f"{result['rps']:>8.0f} req/s  p50 {result['p50_us'] / 1000:6.2f} ms  "
                  f"p99 {result['p99_us'] / 1000:6.2f} ms  (other load "
                  f"{result['other_processes_cores']:.1f} cores)", flush=True)
    return warm, runs


# micro benchmarks ------------------------------------------------------------------------------
def run_micro(args: argparse.Namespace, ident: BenchIdentity) -> dict[str, Any]:
    """The other modules' micro benchmarks, called as functions; a failure is reported, not
    fatal (they are owned elsewhere and may change)."""
    micro: dict[str, Any] = {}
    try:
        micro["inprocess_us_per_request"] = measure_inprocess(
            ident, requests=args.micro_requests, repeats=5)
    except Exception as exc:
        micro["inprocess_error"] = _describe(exc)
    try:
        micro["hotpath_us"] = breakdown(ident, n=2000, repeats=10)
    except Exception as exc:
        micro["hotpath_error"] = _describe(exc)
    try:
        from . import bench_validation

        micro["validation_us"] = bench_validation.run(iterations=args.micro_requests * 4,
                                                      rounds=5, new_tokens=300)
    except Exception as exc:
        micro["validation_error"] = _describe(exc)
    try:
        from . import bench_obo

        hits = bench_obo.cache_hits(ident, args.micro_requests * 4)
        micro["obo_cache_hit_us"] = {label: {"median": round(m, 2), "p99": round(p, 2)}
                                     for label, (m, p) in hits.items()}
    except Exception as exc:
        micro["obo_error"] = _describe(exc)
    try:
        from . import bench_telemetry

        micro["telemetry"] = bench_telemetry.run(ident, rounds=3 if args.rounds > 1 else 1,
                                                 requests=args.micro_requests // 2)
    except Exception as exc:
        micro["telemetry_error"] = _describe(exc)
    if args.memory_users > 0:
        try:
            from . import bench_memory

            print(f"  memory at {args.memory_users} users ...", flush=True)
            micro["memory"] = bench_memory.run(users=args.memory_users)
        except Exception as exc:
            micro["memory_error"] = _describe(exc)
    return micro


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc} at {traceback.format_exc(limit=-1).strip()[-300:]}"


# targets and the table -----------------------------------------------------------------------
def evaluate(results: dict[str, Any], users: int, workers: int) -> list[dict[str, Any]]:
    rows = {row["scenario"]: row for row in results["servers"]["scenarios"]}
    verdicts: list[dict[str, Any]] = []

    def add(target: str, value: float | None, ok: bool | None, detail: str) -> None:
        verdicts.append({"target": target, "value": value,
                         "met": ok, "detail": detail})

    def both(rps_ratio: float, cpu_ratio: float, target: float) -> bool | None:
        # Throughput is the target's measure; on a shared machine it is the noisier one.
        # Where it and the CPU cost disagree, the run settles nothing: None, not a verdict.
        if (rps_ratio >= target) == (cpu_ratio >= target):
            return rps_ratio >= target
        return None

    for name, key in (("validate", "validate_vs_bare"), ("obo_hit", "obo_hit_vs_bare")):
        row = rows.get(name)
        if row and "ratio_to_bare" in row:
            add(f"{name} throughput >= {TARGETS[key]} x bare", row["ratio_to_bare"],
                both(row["ratio_to_bare"], row["cpu_ratio_to_bare"], TARGETS[key]),
                f"{row['rps']:.0f} vs {rows['bare']['rps']:.0f} req/s; server CPU per request "
                f"{row['server_cpu_us_per_request']} vs {rows['bare']['server_cpu_us_per_request']}"
                f" us (CPU ratio {row['cpu_ratio_to_bare']})")
    if "validate" in rows and "authlib" in rows:
        ratio = rows["validate"]["rps"] / rows["authlib"]["rps"]
        cpu_ratio = (rows["authlib"]["server_cpu_us_per_request"]
                     / rows["validate"]["server_cpu_us_per_request"])
        add(f"validate >= {TARGETS['validate_vs_authlib']} x Authlib", round(ratio, 2),
            both(ratio, cpu_ratio, TARGETS["validate_vs_authlib"]),
            f"{rows['validate']['rps']:.0f} vs {rows['authlib']['rps']:.0f} req/s; CPU ratio "
            f"{cpu_ratio:.2f}")
    hit = results.get("micro", {}).get("obo_cache_hit_us", {})
    public = hit.get("public acquire_token_for_user") or next(iter(hit.values()), None)
    if public:
        add(f"OBO cache hit median <= {TARGETS['obo_hit_median_us']} us", public["median"],
            public["median"] <= TARGETS["obo_hit_median_us"],
            "; ".join(f"{label}: {v['median']} us (p99 {v['p99']})" for label, v in hit.items()))
    else:
        add(f"OBO cache hit median <= {TARGETS['obo_hit_median_us']} us", None, None,
            "micro benchmark unavailable")
    telemetry = results.get("micro", {}).get("telemetry")
    if telemetry:
        # Two processes differ by more than the target on a shared machine: the figure is the
        # recording's own time inside real requests (bench_telemetry's docstring).
        worst = max(telemetry[kind]["overhead_pct"] for kind in ("validate", "obo_hit"))
        limit = TARGETS["telemetry_overhead_pct"]
        add(f"OpenTelemetry SDK configured: <= {limit} % per request", worst, worst <= limit,
            "; ".join(f"{kind}: recording {telemetry[kind]['recording_us']} us of "
                      f"{telemetry[kind]['sdk_us']} ({telemetry[kind]['overhead_pct']} %); "
                      f"extra absent {telemetry[kind]['without_us']} us in another process"
                      for kind in ("validate", "obo_hit")))
    memory = results.get("micro", {}).get("memory")
    if memory:
        failed = [name for name, ok in memory["checks"].items() if not ok]
        add(f"memory at {memory['users']} users: MSAL's cache empty, ours one TTL-bound entry "
            "per user behind a bounded front", memory["cache_bytes_per_user"], memory["ok"],
            f"{memory['cache_bytes_per_user']} cache bytes per user; process RSS "
            f"{memory['rss_before_mib']} -> {memory['rss_after_mib']} MiB (emulator included)"
            + (f"; failed: {', '.join(failed)}" if failed else ""))
    for name in ("obo_hit", "obo_hit_redis"):
        row = rows.get(name)
        if not row:
            continue
        limit = users if name == "obo_hit_redis" else users * workers
        scope = "shared cache" if name == "obo_hit_redis" else f"per worker process ({workers})"
        ok = row["obo_calls_total"] <= limit and row["obo_calls_measured"] == 0
        add(f"one IdP call per user per token lifetime ({name})", row["obo_calls_total"], ok,
            f"{row['obo_calls_total']} OBO calls for {users} users over "
            f"{row['requests'] + row['requests_warmup']} requests, {scope}; "
            f"{row['obo_calls_measured']} during the measured runs")
    return verdicts


def table(results: dict[str, Any]) -> str:
    lines = [f"{'scenario':<15}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x bare':>8}"
             f"{'CPU us/req':>11}{'x bare':>8}{'IdP/1k':>8}"]
    for row in results["servers"]["scenarios"]:
        lines.append(
            f"{row['scenario']:<15}{row['rps']:>9.0f}{row['p50_us'] / 1000:>9.2f}"
            f"{row['p99_us'] / 1000:>9.2f}{row.get('ratio_to_bare', 0):>8.2f}"
            f"{row['server_cpu_us_per_request'] or 0:>11.0f}"
            f"{row.get('cpu_ratio_to_bare', 0):>8.2f}{row['idp_calls_per_1000'] or 0:>8.1f}")
    return "\n".join(lines)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per server, once")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4,
                        help="gunicorn threads per worker (gthread); 1: sync workers")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--scenarios", nargs="*", help="only these (names as in the table)")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis scenario")
    parser.add_argument("--no-micro", action="store_true", help="skip the micro benchmarks")
    parser.add_argument("--micro-requests", type=int, default=5000)
    parser.add_argument("--memory-users", type=int, default=10_000,
                        help="users of the memory benchmark (0: skip it)")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: a smoke run")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.micro_requests = 1, 2.0, 1.0, 1000
        args.memory_users = min(args.memory_users, 1000)

    # SIGTERM unwinds like Ctrl-C, so every server, Redis and the emulator are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.time()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
    }
    print(f"flask-obo benchmarks: {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; wrk: {loadgen.wrk_path() or 'no'}",
          flush=True)
    with BenchIdentity(users=args.users) as ident:
        results["servers"] = run_servers(args, ident)
        results["machine"]["loadavg_after_servers"] = os.getloadavg()
        if not args.no_micro:
            print("  micro benchmarks (in-process) ...", flush=True)
            results["micro"] = run_micro(args, ident)
    results["targets"] = evaluate(results, args.users, args.workers)
    results["elapsed_s"] = round(time.time() - started, 1)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(f"gunicorn {args.workers} workers x {args.threads} threads, "
          f"{results['servers']['generator']} with {args.connections} connections, "
          f"{args.rounds} x {args.duration:g} s per scenario, {args.users} users' tokens cycling")
    print(table(results))
    micro = results.get("micro", {})
    if "inprocess_us_per_request" in micro:
        print("\nin-process WSGI, us/request (best batch): " + ", ".join(
            f"{k} {v['best_us']}" for k, v in micro["inprocess_us_per_request"].items()))
    if "validation_us" in micro:
        print("validation micro (us): " + ", ".join(
            f"{k} {v:.1f}" for k, v in micro["validation_us"].items()))
    if "obo_cache_hit_us" in micro:
        print("OBO cache hit micro (us): " + ", ".join(
            f"{k} {v['median']} (p99 {v['p99']})" for k, v in micro["obo_cache_hit_us"].items()))
    if "hotpath_us" in micro:
        print("flask-obo hot path, us/request: " + ", ".join(
            f"{k.strip()} {v}" for k, v in micro["hotpath_us"].items()))
    if "memory" in micro:
        memory = micro["memory"]
        print(f"memory at {memory['users']} users: {memory['cache_bytes_per_user']} cache bytes "
              f"per user, {memory['front_entries']} in the front, RSS +"
              f"{memory['rss_growth_kib_per_user']} KiB per user; checks "
              f"{'passed' if memory['ok'] else 'FAILED'}")
    for key in ("inprocess_error", "hotpath_error", "validation_error", "obo_error",
                "memory_error", "telemetry_error"):
        if key in micro:
            print(f"{key}: {micro[key]}")
    print("\ntargets:")
    for verdict in results["targets"]:
        mark = {True: "met   ", False: "MISSED", None: "open  "}[verdict["met"]]
        print(f"  {mark} {verdict['target']}: {verdict['value']}  ({verdict['detail']})")
    print(f"\nload average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{results['elapsed_s']} s; results in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
