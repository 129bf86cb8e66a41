"""What OpenTelemetry costs a request: validation and an OBO cache hit, in-process, with the
``[otel]`` extra absent and with an SDK configured (a meter provider with a reader and a tracer
provider with a batch span processor, as an application that exports would have).

Global providers can be set once per process, and an absent extra is a state of the whole
interpreter, so each variant runs in its own child process; the children take turns, against
the parent's emulator, and each reports microseconds per request of ``inprocess``'s WSGI driver.
Each batch is timed in thread CPU time, which other processes on a shared machine disturb far
less than the wall clock; the figure is the best median of each variant over the rounds.

    python -m benchmarks.bench_telemetry              # 3 rounds of both variants
    python -m benchmarks.bench_telemetry --rounds 5 --requests 5000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fixture import BenchIdentity

__all__ = ["KINDS", "VARIANTS", "run"]

_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("validate", "obo_hit")
VARIANTS = ("without", "sdk")  # the [otel] extra absent; opentelemetry-sdk configured


def run(ident: BenchIdentity, *, rounds: int = 3, requests: int = 3000,
        repeats: int = 5) -> dict[str, Any]:
    """Per kind: each variant's best median (us/request) and the SDK's overhead in percent."""
    path = Path(ident.workdir) / "telemetry-bench.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # tokens: private
    with os.fdopen(fd, "w") as out:
        json.dump({"settings": ident.settings, "tokens": ident.tokens}, out)
    medians: dict[str, dict[str, list[float]]] = {v: {k: [] for k in KINDS} for v in VARIANTS}
    checks: dict[str, Any] = {}
    for index in range(rounds):
        for variant in (VARIANTS if index % 2 == 0 else VARIANTS[::-1]):
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_telemetry", "--child", variant,
                 "--input", str(path), "--requests", str(requests), "--repeats", str(repeats)],
                capture_output=True, text=True, timeout=600, check=False, cwd=_ROOT)
            if child.returncode != 0:
                raise RuntimeError(f"{variant} child failed: {child.stderr[-1500:]}")
            report = json.loads(child.stdout.strip().splitlines()[-1])
            for kind in KINDS:
                medians[variant][kind].append(report["us"][kind]["median_us"])
            checks[variant] = report["check"]
    result: dict[str, Any] = {"checks": checks}
    # The recording itself, timed alone: a figure that does not drown in the machine's noise.
    result["recording_us"] = {v: checks[v]["calls_us"] for v in VARIANTS}
    for kind in KINDS:
        without = min(medians["without"][kind])
        sdk = min(medians["sdk"][kind])
        result[kind] = {"without_us": without, "sdk_us": sdk,
                        "overhead_pct": round((sdk - without) / without * 100, 2),
                        "runs": {v: medians[v][kind] for v in VARIANTS}}
    return result


def _child(variant: str, input_path: str, requests: int, repeats: int) -> dict[str, Any]:
    # Before flask_obo is imported: what the variant's interpreter has installed and set.
    check: dict[str, Any] = {}
    reader = None
    if variant == "without":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import fails
    else:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
        trace.set_tracer_provider(tracer_provider)
    from flask_obo import telemetry

    from .apps import create
    from .inprocess import _driver, _environs

    data = json.loads(Path(input_path).read_text())
    drivers = {}
    for kind in KINDS:
        drivers[kind] = _driver(create(kind, data["settings"]), _environs(data["tokens"]))
        drivers[kind](2 * len(data["tokens"]))  # warm: keys fetched, tokens seen and cached
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(repeats):
        for kind, driver in drivers.items():
            # CPU time of this thread: what a request costs, whatever else the machine runs.
            started = time.thread_time_ns()
            driver(requests)
            samples[kind].append((time.thread_time_ns() - started) / requests / 1000)
    us = {kind: {"median_us": round(statistics.median(values), 2),
                 "best_us": round(min(values), 2)} for kind, values in samples.items()}
    check["otel_available"] = telemetry.AVAILABLE
    check["calls_us"] = _calls_us(telemetry, requests * 10, repeats)
    if reader is not None:  # the SDK really recorded: the validations it collects
        started = time.perf_counter()
        collected = reader.get_metrics_data()
        check["collect_ms"] = round((time.perf_counter() - started) * 1000, 2)
        check["validations_collected"] = sum(
            point.value for rm in collected.resource_metrics for sm in rm.scope_metrics
            for metric in sm.metrics if metric.name == telemetry.VALIDATIONS
            for point in metric.data.data_points)
    return {"us": us, "check": check}


def _calls_us(telemetry: Any, n: int, repeats: int) -> float:
    """Best time of what a cached OBO request records (a validation and an acquisition)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time_ns()
        for _ in range(n):
            telemetry.validation_accepted(True)
            telemetry.token_acquired("cache", "on_behalf_of", "down")
        best = min(best, (time.thread_time_ns() - started) / n / 1000)
    return round(best, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.input, args.requests, args.repeats)))
        return 0
    from .fixture import BenchIdentity  # not at the top: a child imports flask_obo itself, later

    with BenchIdentity(users=args.users) as ident:
        result = run(ident, rounds=args.rounds, requests=args.requests, repeats=args.repeats)
    print(f"{'kind':<10}{'without us':>12}{'SDK us':>10}{'overhead':>10}")
    for kind in KINDS:
        row = result[kind]
        print(f"{kind:<10}{row['without_us']:>12.1f}{row['sdk_us']:>10.1f}"
              f"{row['overhead_pct']:>+9.1f}%")
    print("recording per cached OBO request (a validation and an acquisition), us: " + ", ".join(
        f"{v} {us}" for v, us in result["recording_us"].items()))
    print(f"checks: {result['checks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
