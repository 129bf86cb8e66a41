"""The demos' processes: the sample APIs and a Celery worker as real child processes on loopback,
each stopped on exit (terminated, killed if need be), and the demos' one failure type."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import requests

ROOT = Path(__file__).resolve().parent.parent


class DemoFailure(RuntimeError):
    """A step did not do what the demo expected; the message says which and why."""



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def child_process(argv: list[str], env: dict[str, str],
                  log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log_path``); stopped on exit: terminated, killed if need be."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def api_process(module: str, port: int, env: dict[str, str], log_dir: str) -> Iterator[str]:
    """Run ``python -m samples.<module>`` and wait for its /health; stop it on exit."""
    log_path = Path(log_dir) / f"{module}.log"
    url = f"http://127.0.0.1:{port}"
    with child_process([sys.executable, "-m", f"samples.{module}", "--port", str(port)], env,
                       log_path) as proc:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise DemoFailure(f"{module} exited with {proc.returncode}:\n{tail}")
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise DemoFailure(f"{module} did not answer on {url} within 30 s")
            time.sleep(0.1)
        yield url


@contextmanager
def celery_worker(env: dict[str, str], log_dir: str) -> Iterator[Path]:
    """``celery -A samples.worker worker`` (one process), stopped on exit. Not waited for:
    jobs wait in the broker until it is ready."""
    log_path = Path(log_dir) / "worker.log"
    with child_process([sys.executable, "-m", "celery", "-A", "samples.worker", "worker",
                        "--pool=solo", "--loglevel=INFO", "--without-heartbeat",
                        "--without-gossip", "--without-mingle", "--hostname", "demo@%h"],
                       env, log_path):
        yield log_path


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
