"""SCGI server (entry point ``egg:stack#scgi``): the pipeline behind nginx ``scgi_pass``, lighttpd, Apache.

Each connection carries one request: a netstring of CGI-style headers, the
body (``CONTENT_LENGTH`` bytes, streamed to ``wsgi.input`` as the app reads),
then a CGI-style response (``Status:``, headers, body) ended by closing the
connection. Malformed or oversized heads get a ``400``/``431`` and a log
line; the bundled server's worker pool, limits and timeouts apply.

Python::

    from stack.gateways.scgi import serve
    serve(app, port=4000, script_name="/app")

INI (the listening address defaults to 127.0.0.1)::

    [server:main]
    use = egg:stack#scgi
    port = 4000
    # nginx's scgi_params send no SCRIPT_NAME/PATH_INFO: the path is split here
    script_name = /app

nginx::

    location /app/ { include scgi_params; scgi_pass 127.0.0.1:4000; }
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from stack.gateways import scgi_netstring
from stack.gateways.base import (GATEWAY_OPTIONS, Exchange, GatewayConfig, GatewayConnection,
                                 StreamInput, build_environ, cgi_head, drain, error_response,
                                 sized_body)
from stack.server.parser import CONTENT_TOO_LARGE, ParseError
from stack.server.runner import Runner

log = logging.getLogger("stack.gateways")


@dataclass(frozen=True)
class SCGIConfig(GatewayConfig):
    """The bundled server's options (see :class:`ServerConfig`) and ``script_name``; port 4000."""

    port: int = 4000


OPTIONS = GATEWAY_OPTIONS


class Writer:
    """A CGI-style response straight onto the socket."""

    def __init__(self, conn: SCGIConnection) -> None:
        self.conn = conn

    def start(self, status: str, headers: list[tuple[str, str]], body: bytes, last: bool) -> None:
        self.conn.sendall(cgi_head(status, headers) + body)

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def end(self) -> None:
        pass  # closing the connection ends the response


class SCGIConnection(GatewayConnection):
    """One SCGI request per connection."""

    protocol = "scgi"

    def take_request(self) -> dict[str, str] | None:
        found = scgi_netstring.decode_netstring(self.buffer, self.config.max_request_header_size)
        if found is None:
            return None
        payload, end = found
        self.buffer = self.buffer[end:]
        return scgi_netstring.decode_headers(payload, self.config.max_header_count + 64)

    def refuse(self, error: ParseError) -> bytes:
        headers, body = error_response(error.status)
        return cgi_head(error.status, headers) + body

    def handle(self, params: dict[str, str]) -> bool:
        config = self.config
        remaining = int(params["CONTENT_LENGTH"])
        environ = build_environ(self.base_environ, params, script_name=config.script_name)
        exchange = Exchange(Writer(self), environ)
        if remaining > config.max_request_body_size:
            exchange.fail(CONTENT_TOO_LARGE, f"body of {remaining} bytes over the limit", logging.INFO)
            return False
        environ["wsgi.input"] = wsgi_input = StreamInput(sized_body(
            self.read_raw, remaining, "the front server closed the connection {remaining} bytes "
            "before the end of the body"))
        if exchange.run(self.server.app):
            drain(wsgi_input)
        return False  # the response ends with the connection


RUNNER = Runner(SCGIConfig, OPTIONS, __name__, connection_class=SCGIConnection, gateway="SCGI")
make_server, serve, server_factory, _serve_config = RUNNER.functions()

__all__ = ["SCGIConfig", "SCGIConnection", "OPTIONS", "make_server", "serve", "server_factory"]
