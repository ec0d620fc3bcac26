"""The bundled HTTP/1.1 server (entry point ``egg:stack#http``).

Strict request parsing (RFC 9112), persistent and pipelined connections,
chunked bodies both ways, ``100-continue``, sendfile for
``wsgi.file_wrapper``, limits and timeouts that keep slow or hostile
clients from holding workers, and a graceful stop on SIGTERM/SIGINT. The
pieces: :mod:`~stack.server.parser` (sans-IO), :mod:`~stack.server.body`
(``wsgi.input``), :mod:`~stack.server.task` (one WSGI call),
:mod:`~stack.server.connection` and :mod:`~stack.server.loop`; every option is
in :class:`~stack.server.config.ServerConfig`.

Python::

    from stack.server import serve
    serve(app, host="127.0.0.1", port=8080, threads=16)

INI::

    [server:main]
    use = egg:stack#http
    host = 127.0.0.1
    port = 8080
    threads = 16
    keepalive_timeout = 5s
    max_request_body_size = 10MB
"""
from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any, Callable

from stack.server.config import OPTIONS, ServerConfig, config_from_ini
from stack.server.loop import Server, install_signal_handlers
from stack.server.task import FileWrapper
from stack.types import WSGIApp

log = logging.getLogger("stack.server")


def make_server(app: WSGIApp, **options: Any) -> Server:
    """Bind a server for ``app`` without starting it (``.serve_forever()`` runs it).

    ``options`` are :class:`ServerConfig` fields (``host``, ``port``,
    ``threads``, timeouts in seconds, limits in bytes); an unknown one is a
    TypeError naming it.
    """
    return Server(app, ServerConfig.from_options(options))


def serve(app: WSGIApp, *, ready: threading.Event | None = None, **options: Any) -> None:
    """Serve ``app`` until SIGTERM/SIGINT (or :meth:`Server.shutdown`)."""
    server = make_server(app, **options)
    install_signal_handlers(server)
    print(f"stack: serving on {server.url}", flush=True)
    if ready is not None:
        ready.set()
    server.serve_forever()


def server_factory(global_conf: dict[str, Any], **local_conf: str) -> Callable[[WSGIApp], None]:
    """PasteDeploy ``paste.server_factory`` for ``use = egg:stack#http``.

    Options are checked when the file is loaded (so ``stack check`` catches
    a typo); the returned callable serves an app.
    """
    config = config_from_ini(local_conf)
    return partial(_serve_config, config=config)


def _serve_config(app: WSGIApp, *, config: ServerConfig) -> None:
    server = Server(app, config)
    install_signal_handlers(server)
    print(f"stack: serving on {server.url}", flush=True)
    server.serve_forever()


__all__ = ["Server", "ServerConfig", "FileWrapper", "OPTIONS", "make_server", "serve",
           "server_factory"]
