"""`make demo` end to end: every step shows in the trace, and no raw token does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from support.processes import checkout_processes, start_demo

from flask_obo.testing.redis_server import find_redis_server

ROOT = Path(__file__).resolve().parent.parent
DEMO_PROCESSES = ("middle_tier", "downstream_api", "worker")  # samples.<module>
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.?")


def test_demo_runs_the_whole_chain_and_never_prints_a_token() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "samples.demo"], cwd=ROOT, capture_output=True, text=True,
        timeout=180, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for step in (
        "== 1. Alice signs in; the middle tier validates her token",
        "GET /api/profile -> 200: the middle tier accepted the token",
        "first request: OBO calls to the identity provider = 1",
        "second request: served from the token cache, OBO calls still = 1",
        "same user (oid), and the middle tier as the authorized party (azp)",
        "GET /api/profile -> 401 with a claims challenge",
        "Bob signs in again with the challenge",
        "Demo complete",
    ):
        assert step in out, f"missing from the trace: {step}\n{out}"
    assert '"amr": ["pwd", "mfa"]' in out
    # Scraped from the middle tier's /metrics (OpenTelemetry's Prometheus reader) and checked
    # there against the emulator's log.
    assert re.search(r"downstream token cache-hit ratio: \d+% \(\d+ of \d+ from the cache\)", out)
    assert "(the emulator's log agrees)" in out
    if find_redis_server() is not None or os.environ.get("CI") == "true":
        for step in (
            "== 5. A report job (Celery) acts as Alice after her token has expired",
            "POST /api/reports -> 202: a long-running session and a Celery job",
            "Alice's token expired",
            "the job redeemed the session's refresh token 1 time(s)",
            "Bob asks for Alice's report -> 404: it is hers alone",
        ):
            assert step in out, f"missing from the trace: {step}\n{out}"
    assert not JWT.search(out), "a raw JWT appeared in the demo output"
    assert "Traceback" not in out


def test_ctrl_c_stops_every_process_and_says_where() -> None:
    process = start_demo("demo")
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # interrupt once both APIs run (the trace names them)
        lines.append(line)
        if "middle tier " in line:
            break
    assert checkout_processes(*DEMO_PROCESSES), "the demo's API processes should be running now"
    process.send_signal(signal.SIGINT)
    out = "".join(lines) + process.communicate(timeout=60)[0]
    assert process.returncode == 130, out
    assert "Interrupted during step" in out
    assert "Traceback" not in out
    assert checkout_processes(*DEMO_PROCESSES) == []
