"""Processes the multi-process suites start (gunicorn workers, a Celery worker): configured
from the environment as a deployment's are, and stopped for sure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["TESTS", "checkout_processes", "flask_environment", "start_demo", "stop_process"]

#: the suite's directory: the processes' working directory, where their apps' modules live
TESTS = Path(__file__).resolve().parents[1]


def flask_environment(settings: dict[str, Any]) -> dict[str, str]:
    """This process's environment with ``settings`` as Flask's ``from_prefixed_env`` reads
    them (``FLASK_<key>``, JSON for what is not a string) and no other ``FLASK_`` variable; the
    suite and the source tree on ``PYTHONPATH``, so the apps' modules find ``support`` and
    ``samples``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    for key, value in settings.items():
        env[f"FLASK_{key}"] = value if isinstance(value, str) else json.dumps(value)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent),
                                         env.get("PYTHONPATH", "")])
    return env


def stop_process(process: subprocess.Popen[Any], *, sig: int = signal.SIGTERM,
                 timeout: float = 10.0) -> None:
    """Ask ``process`` to stop with ``sig``; killed if it has not within ``timeout`` s."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def checkout_processes(*modules: str) -> list[str]:
    """The command lines of running ``samples.<module>`` processes started from this checkout
    (by their working directory: another checkout's demo may run on the same machine)."""
    root = TESTS.parent
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if (proc / "cwd").resolve() != root:
                continue
        except OSError:
            continue
        if any(f"samples.{module}" in cmdline for module in modules):
            found.append(cmdline)
    return found


def start_demo(module: str) -> subprocess.Popen[str]:
    """``python -m samples.<module>`` from the checkout, its output as text lines on
    ``stdout``; Ctrl-C (SIGINT) reaches it as a KeyboardInterrupt, as in a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", f"samples.{module}"], cwd=TESTS.parent, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
