"""FastCGI responder (entry point ``egg:stack#fastcgi``): the pipeline behind nginx, lighttpd, IIS.

Listens on TCP or a unix socket; the front server sends each request as
``BEGIN_REQUEST``, ``PARAMS`` and ``STDIN`` records and gets ``STDOUT``
(a CGI-style head, then the body), ``STDERR`` (``wsgi.errors``) and
``END_REQUEST`` back. ``FCGI_KEEP_CONN`` keeps the connection for the next
request; ``GET_VALUES`` is answered (one request per connection:
``FCGI_MPXS_CONNS=0``); ``ABORT_REQUEST`` ends the request (the app sees a
disconnected ``wsgi.input``). Requests run on the bundled server's worker
pool, with its limits and timeouts: params over ``max_request_header_size``
get a 431, a body over ``max_request_body_size`` a 413; malformed records
are logged and the connection closed.

Python::

    from stack.gateways.fastcgi import serve
    serve(app, port=9000)        # 127.0.0.1; or unix_socket="/run/app.sock"

INI (``host = 127.0.0.1`` and ``port = 9000`` are the defaults)::

    [server:main]
    use = egg:stack#fastcgi
    threads = 16
    # script_name = /app   (only if the front server does not split the path)

nginx::

    upstream app { server 127.0.0.1:9000; keepalive 8; }
    location /app/ {
        include fastcgi_params;
        fastcgi_split_path_info ^(/app)(/.*)$;
        fastcgi_param SCRIPT_NAME $fastcgi_script_name;
        fastcgi_param PATH_INFO $fastcgi_path_info;
        fastcgi_keep_conn on;
        fastcgi_pass app;
    }

Started by the front server (IIS, ``mod_fcgid``, ``spawn-fcgi``), with the
connection or a listening socket on stdin (:mod:`stack.gateways.fastcgi_stdio`)::

    python -m stack.gateways.fastcgi /srv/site.ini [--app NAME] [key=value ...]
"""
from __future__ import annotations

from stack.gateways.base import GATEWAY_OPTIONS
from stack.gateways.fastcgi_connection import FastCGIConfig, FastCGIConnection
from stack.server.runner import Runner

OPTIONS = GATEWAY_OPTIONS

RUNNER = Runner(FastCGIConfig, OPTIONS, __name__, connection_class=FastCGIConnection,
                gateway="FastCGI")
make_server, serve, server_factory, _serve_config = RUNNER.functions()

__all__ = ["FastCGIConfig", "FastCGIConnection", "OPTIONS", "make_server", "serve", "server_factory"]


if __name__ == "__main__":
    import sys

    from stack.gateways.fastcgi_stdio import main

    sys.exit(main())
