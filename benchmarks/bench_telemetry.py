"""What OpenTelemetry costs a request: validation and an OBO cache hit, in-process, with the
``[otel]`` extra absent and with an SDK configured (a meter provider with a reader and a tracer
provider with a batch span processor, as an application that exports would have).

Global providers can be set once per process, and an absent extra is a state of the whole
interpreter, so each variant runs in its own child process; the children take turns, against
the parent's emulator, and each reports microseconds per request of ``inprocess``'s WSGI driver,
timed in thread CPU time (which other processes disturb less than the wall clock).

Two processes, or two batches, differ by more than 3 % on a shared machine, so the figure is
measured inside real requests instead: the SDK child times flask-obo's recording hooks where the
request calls them (the timing's own cost, measured around an empty hook, taken off), and sets
that against the request's time.

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
    inside: dict[str, list[float]] = {kind: [] for kind in KINDS}
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
                if "recording_us" in report:
                    inside[kind].append(report["recording_us"][kind])
            checks[variant] = report["check"]
    result: dict[str, Any] = {"checks": checks}
    for kind in KINDS:
        without, sdk = min(medians["without"][kind]), min(medians["sdk"][kind])
        recording = round(statistics.median(inside[kind]), 2)
        result[kind] = {
            "without_us": without, "sdk_us": sdk,
            "process_difference_pct": round((sdk - without) / without * 100, 2),
            "runs": {v: medians[v][kind] for v in VARIANTS},
            # The figure: the recording's time inside requests, over a request without it.
            "recording_us": recording,
            "overhead_pct": round(recording / (sdk - recording) * 100, 2),
        }
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
    report: dict[str, Any] = {"us": us, "check": check}
    if variant == "sdk":
        report["recording_us"] = _recording_in_requests(telemetry, drivers, requests // 5,
                                                        4 * repeats)
    if reader is not None:  # the SDK really recorded: the validations it collects
        started = time.perf_counter()
        collected = reader.get_metrics_data()
        check["collect_ms"] = round((time.perf_counter() - started) * 1000, 2)
        check["validations_collected"] = sum(
            point.value for rm in collected.resource_metrics for sm in rm.scope_metrics
            for metric in sm.metrics if metric.name == telemetry.VALIDATIONS
            for point in metric.data.data_points)
    return report


def _recording_in_requests(telemetry: Any, drivers: dict[str, Any], requests: int,
                           rounds: int) -> dict[str, float]:
    """Per kind: microseconds per request spent in flask-obo's recording hooks, timed where
    real requests call them, less the timing's own cost (around an empty hook)."""
    hooks = ("validation_accepted", "token_acquired")  # all that runs on these two paths
    real = {name: getattr(telemetry, name) for name in hooks}
    spent: dict[str, dict[bool, list[float]]] = {kind: {True: [], False: []} for kind in drivers}

    def timed(hook: Any, total: list[int]) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> None:
            started = time.perf_counter_ns()
            hook(*args, **kwargs)
            total[0] += time.perf_counter_ns() - started
        return wrapper

    try:
        for index in range(rounds):
            for kind, driver in drivers.items():
                for recording in ((True, False) if index % 2 == 0 else (False, True)):
                    total = [0]
                    for name in hooks:
                        hook = real[name] if recording else (lambda *args, **kwargs: None)
                        setattr(telemetry, name, timed(hook, total))
                    driver(requests)
                    spent[kind][recording].append(total[0] / requests / 1000)
    finally:
        for name in hooks:
            setattr(telemetry, name, real[name])
    return {kind: max(0.0, statistics.median(times[True]) - statistics.median(times[False]))
            for kind, times in spent.items()}


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
    print(f"{'kind':<10}{'extra absent':>14}{'SDK':>10}{'difference':>12}"
          f"{'recording inside':>18}")
    for kind in KINDS:
        row = result[kind]
        print(f"{kind:<10}{row['without_us']:>11.1f} us{row['sdk_us']:>7.1f} us"
              f"{row['process_difference_pct']:>+11.1f}%"
              f"{row['recording_us']:>10.2f} us {row['overhead_pct']:>5.2f}%")
    print(f"checks: {result['checks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
