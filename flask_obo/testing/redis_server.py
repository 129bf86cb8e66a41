"""A throwaway redis-server for tests: its own port and directory, stopped at the end.

It drives a real ``redis-server`` binary, so tests can also stop, pause (SIGSTOP) and restart
it to inject the faults a shared cache meets in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType

__all__ = ["RedisServer", "RedisUnavailable", "find_redis_server"]


class RedisUnavailable(RuntimeError):
    """No redis-server binary could be found or started."""


def find_redis_server() -> str | None:
    """The path of a redis-server binary: $REDIS_SERVER, then PATH, then /usr/bin and /usr/sbin."""
    candidates = [os.environ.get("REDIS_SERVER"), shutil.which("redis-server"),
                  "/usr/bin/redis-server", "/usr/sbin/redis-server"]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``with RedisServer() as redis: redis.url`` -> ``redis://127.0.0.1:PORT/0``.

    ``args`` come first on redis-server's command line: a config file and ``--sentinel`` make a
    sentinel, ``--cluster-enabled yes`` a cluster node (whose bus port, ``port + 10000``, must be
    free and below 65536 too).
    """

    def __init__(self, port: int | None = None, *, binary: str | None = None,
                 args: Sequence[str] = ()) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise RedisUnavailable(
                "redis-server was not found: install it (Debian: apt-get install redis-server) "
                "or set REDIS_SERVER to its path."
            )
        self.binary = found
        self.args = tuple(args)
        self.port = port or _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="flask-obo-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        self._process = subprocess.Popen(  # noqa: S603 (a fixed argv, no shell)
            [self.binary, *self.args, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self._dir.name, "--save", "", "--appendonly", "no",
             "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with {self._process.returncode}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RedisUnavailable(f"redis-server {' '.join(self.args)} did not answer on port "
                               f"{self.port}".replace("  ", " "))

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server (its data goes with it, as in a crash with no persistence)."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._paused:
            process.send_signal(signal.SIGCONT)
            self._paused = False
        process.kill()
        process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server: connections open, nothing answers (a slow or hung Redis)."""
        if self._process is not None and not self._paused:
            self._process.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._process is not None and self._paused:
            self._process.send_signal(signal.SIGCONT)
            self._paused = False

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
