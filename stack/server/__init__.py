"""The server ``stack serve`` runs (entry point ``egg:stack#http``).

For now this is a small threaded server on :mod:`wsgiref`, good for
development and the test suite; the bundled HTTP/1.1 server replaces its
insides without changing these names or options.

Python::

    from stack.server import serve
    serve(app, host="127.0.0.1", port=8080)

INI::

    [server:main]
    use = egg:stack#http
    host = 127.0.0.1
    port = 8080
"""
from __future__ import annotations

import logging
import socketserver
import threading
from functools import partial
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from stack.options import as_int, as_str, convert_options
from stack.types import WSGIApp

log = logging.getLogger("stack.server")

OPTIONS = {
    "host": as_str,
    "port": partial(as_int, minimum=0, maximum=65535),
}


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.debug("%s " + format, self.address_string(), *args)

    def get_stderr(self) -> Any:
        return _LogStream()


class _LogStream:
    """``wsgi.errors`` that writes to the ``stack.server`` logger."""

    def write(self, text: str) -> None:
        if text.strip():
            log.error("%s", text.rstrip())

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


class Server(socketserver.ThreadingMixIn, WSGIServer):
    """A threaded WSGI server bound to ``(host, port)``; port 0 picks a free one."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: WSGIApp, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        super().__init__((host, port), _Handler)
        self.set_app(app)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(app: WSGIApp, *, host: str = "127.0.0.1", port: int = 8080) -> Server:
    """Bind a server for ``app`` without starting it (``.serve_forever()`` runs it)."""
    return Server(app, host=host, port=port)


def serve(app: WSGIApp, *, host: str = "127.0.0.1", port: int = 8080,
          ready: threading.Event | None = None) -> None:
    """Serve ``app`` until interrupted."""
    server = make_server(app, host=host, port=port)
    log.info("serving on %s", server.url)
    print(f"stack: serving on {server.url}", flush=True)
    if ready is not None:
        ready.set()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def server_factory(global_conf: dict[str, Any], **local_conf: str) -> Callable[[WSGIApp], None]:
    """PasteDeploy ``paste.server_factory`` for ``use = egg:stack#http``.

    Options are checked when the file is loaded (so ``stack check`` catches
    a typo), and the returned callable serves an app.
    """
    options = convert_options(local_conf, OPTIONS)
    return partial(serve, **options)


__all__ = ["Server", "make_server", "serve", "server_factory"]
