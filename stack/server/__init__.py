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

from stack.server.runner import Runner
from stack.server.config import OPTIONS, ServerConfig
from stack.server.loop import Server
from stack.server.task import FileWrapper

#: make_server, serve, server_factory (``egg:stack#http``) and what it runs.
RUNNER = Runner(ServerConfig, OPTIONS, __name__)
make_server, serve, server_factory, _serve_config = RUNNER.functions()

__all__ = ["Server", "ServerConfig", "FileWrapper", "OPTIONS", "make_server", "serve",
           "server_factory"]
