"""``LoopbackServer``: a WSGI app served on 127.0.0.1 from a background thread, over HTTP or
HTTPS, that can be stopped (connections refused) and started again on the same port.

::

    with LoopbackServer(app) as server:          # LoopbackServer(app, ssl_context=...) for HTTPS
        requests.get(server.url + "me")          # server.url: "http://127.0.0.1:PORT/"
        server.stop()                            # an outage: the port refuses connections
        server.start()                           # back, same port

The downstream API stand-in (:mod:`~flask_obo.testing.downstream`) runs on one; tests use it
for any other server they need on loopback.
"""

from __future__ import annotations

import ssl
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

__all__ = ["LoopbackServer"]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LoopbackServer:
    """A threaded werkzeug server for ``app`` on 127.0.0.1 (any free port unless ``port``).

    ``host="localhost"`` serves a browser page at an origin browsers treat as secure over HTTP.
    """

    def __init__(self, app: Any, *, ssl_context: ssl.SSLContext | None = None,
                 port: int = 0, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self._ssl_context = ssl_context
        self._server: BaseWSGIServer | None = self._bind(port)
        self.port: int = self._server.server_port
        scheme = "https" if ssl_context is not None else "http"
        #: the base URL, with a trailing slash
        self.url = f"{scheme}://{host}:{self.port}/"
        self._thread: threading.Thread | None = None

    def _bind(self, port: int) -> BaseWSGIServer:
        return make_server(self.host, port, self._dispatch, threaded=True,
                           request_handler=_QuietHandler, ssl_context=self._ssl_context)

    def _dispatch(self, environ: Any, start_response: Any) -> Any:
        # Looked up per request: ``app`` may be set after binding (an app that names its port).
        return self.app(environ, start_response)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> LoopbackServer:
        """Serve (again, on the same port after :meth:`stop`); idempotent."""
        if self._thread is not None:
            return self
        if self._server is None:
            self._server = self._bind(self.port)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"loopback-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: new connections are refused until :meth:`start`."""
        server, self._server = self._server, None
        if server is not None:
            if self._thread is not None:
                server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
