"""AJP13 server (entry point ``egg:stack#ajp``): the pipeline behind Apache ``mod_proxy_ajp``.

Apache keeps a pool of connections and sends one request at a time on each:
a ``FORWARD_REQUEST``, then body chunks as the app reads ``wsgi.input``
(``GET_BODY_CHUNK``); the response goes back as ``SEND_HEADERS``,
``SEND_BODY_CHUNK`` and ``END_RESPONSE`` (the connection is kept). ``CPING``
is answered with ``CPONG``; ``SHUTDOWN`` from the web server is ignored.
AJP passes the full path, so ``script_name`` says where Apache mounts the
app (``SCRIPT_NAME``/``PATH_INFO`` are split there).

Security: AJP trusts the web server completely (it asserts the client's
address, TLS state and user). Listen on 127.0.0.1 or a private network
only, and set ``secret`` (Apache's ``secret=`` on ``ProxyPass``): requests
without it are refused with a 403.

Python::

    from stack.gateways.ajp import serve
    serve(app, host="127.0.0.1", port=8009, script_name="/app", secret="s3cret")

INI::

    [server:main]
    use = egg:stack#ajp
    host = 127.0.0.1
    port = 8009
    script_name = /app
    secret = s3cret
    # packet_size = 8192   (as ProxyPass packetsize=)
    # keepalive_timeout = 60s  (longer than ProxyPass ttl=)

Apache::

    ProxyPass /app ajp://127.0.0.1:8009/app secret=s3cret ttl=50
"""
from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from stack.gateways import ajp_packets as ajp
from stack.gateways.base import (GATEWAY_OPTIONS, ClientDisconnected, Exchange, GatewayConfig,
                                 GatewayConnection, StreamInput, build_environ, error_response,
                                 latin1)
from stack.options import as_int, as_str, check_int, check_str
from stack.server.parser import CONTENT_TOO_LARGE, ParseError
from stack.server.runner import Runner

log = logging.getLogger("stack.gateways")


@dataclass(frozen=True)
class AJPConfig(GatewayConfig):
    """The bundled server's options, ``script_name``, and:

    - ``secret``: the shared secret Apache must send (``ProxyPass … secret=``);
      empty accepts any request (then firewall the port).
    - ``packet_size``: the largest AJP packet, as ``ProxyPass … packetsize=``
      (8192 to 65536).
    """

    port: int = 8009
    keepalive_timeout: float = 60.0
    secret: str = ""
    packet_size: int = ajp.DEFAULT_PACKET_SIZE

    def __post_init__(self) -> None:
        check_str(self.secret, "secret")
        check_int(self.packet_size, "packet_size", 8192, 65536)
        super().__post_init__()


OPTIONS = {**GATEWAY_OPTIONS, "secret": as_str, "packet_size": as_int}


def request_params(request: ajp.ForwardRequest) -> dict[str, str]:
    """The CGI variables of a forwarded request."""
    query = request.attributes.get("query_string", "")
    params = {
        "REQUEST_METHOD": request.method, "SERVER_PROTOCOL": request.protocol,
        "REQUEST_URI": request.uri + ("?" + query if query else ""),
        "PATH_INFO": latin1(unquote_to_bytes(request.uri)), "SCRIPT_NAME": "",
        "QUERY_STRING": query, "REMOTE_ADDR": request.remote_addr,
        "SERVER_NAME": request.server_name, "SERVER_PORT": str(request.server_port),
    }
    if request.remote_host:
        params["REMOTE_HOST"] = request.remote_host
    if request.is_ssl:
        params["HTTPS"] = "on"
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        params[key] = params[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value \
            if key in params else value
    for name, key in (("remote_user", "REMOTE_USER"), ("auth_type", "AUTH_TYPE"),
                      ("ssl_cipher", "SSL_CIPHER"), ("ssl_session", "SSL_SESSION_ID"),
                      ("ssl_cert", "SSL_CLIENT_CERT"), ("ssl_key_size", "SSL_CIPHER_USEKEYSIZE")):
        if name in request.attributes:
            params[key] = request.attributes[name]
    for name, value in request.request_attributes.items():
        params["REMOTE_PORT" if name == "AJP_REMOTE_PORT" else name] = value
    return params


class BodyReader:
    """The request body: the chunk Apache sends at once, then chunks asked for."""

    def __init__(self, conn: AJPConnection, length: int | None, chunked: bool) -> None:
        self.conn = conn
        self.remaining = length
        self.done = not chunked and not length
        # httpd sends the first chunk unasked only for a known, non-zero length;
        # a chunked body has to be asked for from the start.
        self.first_pending = bool(length)
        self.received = 0

    def fill(self, want: int) -> bytes:
        if self.done:
            return b""
        if self.first_pending:
            self.first_pending = False
        else:
            self.conn.sendall(ajp.get_body_chunk(self.conn.config.packet_size - 6))
        data = ajp.decode_body(self.conn.read_packet())
        if not data:
            self.done = True
            if self.remaining:
                raise ClientDisconnected(f"the body ended {self.remaining} bytes short")
            return b""
        self.received += len(data)
        if self.received > self.conn.config.max_request_body_size:
            raise ParseError("body over the limit", CONTENT_TOO_LARGE)
        if self.remaining is not None:
            self.remaining -= len(data)
            if self.remaining <= 0:
                self.done = True  # httpd sends no more unless asked
        return data

    def settle(self) -> bool:
        """Read the chunk httpd sent unasked, if the app did not; True if in sync."""
        if not self.first_pending:
            return True
        self.first_pending = False
        try:
            ajp.decode_body(self.conn.read_packet())
        except (ParseError, ConnectionError, TimeoutError):
            return False
        return True


class Writer:
    """``SEND_HEADERS``, ``SEND_BODY_CHUNK`` and ``END_RESPONSE`` packets."""

    def __init__(self, conn: AJPConnection) -> None:
        self.conn = conn
        self.size = conn.config.packet_size

    def start(self, status: str, headers: list[tuple[str, str]], body: bytes, last: bool) -> None:
        packets = [ajp.send_headers(status, headers, self.size), *ajp.body_chunks(body, self.size)]
        if last:
            packets.append(ajp.end_response(True))
        self.conn.sendall(b"".join(packets))

    def send(self, data: bytes) -> None:
        self.conn.sendall(b"".join(ajp.body_chunks(data, self.size)))

    def end(self) -> None:
        self.conn.sendall(ajp.end_response(True))


class AJPConnection(GatewayConnection):
    """One of httpd's pooled AJP connections."""

    protocol = "ajp"

    def take_request(self) -> ajp.ForwardRequest | None:
        while True:
            found = ajp.decode_packet(self.buffer, self.config.packet_size)
            if found is None:
                return None
            payload, end = found
            self.buffer = self.buffer[end:]
            kind = payload[:1]
            if kind == bytes((ajp.FORWARD_REQUEST,)):
                return ajp.decode_forward_request(payload, self.config.max_header_count + 64)
            if kind == bytes((ajp.CPING,)):
                self.reply(ajp.cpong())
            elif kind == bytes((ajp.SHUTDOWN,)):
                log.warning("ajp: ignored a SHUTDOWN packet from %s", self.base_environ.get("REMOTE_ADDR"))
            else:
                raise ParseError(f"unexpected AJP packet type {kind!r} between requests")

    def read_packet(self) -> bytes:
        """The next packet's payload (worker side, blocking)."""
        while True:
            found = ajp.decode_packet(self.buffer, self.config.packet_size)
            if found is not None:
                payload, end = found
                self.buffer = self.buffer[end:]
                return payload
            self.fill_buffer()

    def refuse(self, error: ParseError) -> bytes:
        headers, body = error_response(error.status)
        return (ajp.send_headers(error.status, headers, self.config.packet_size)
                + b"".join(ajp.body_chunks(body, self.config.packet_size)) + ajp.end_response(False))

    def handle(self, request: ajp.ForwardRequest) -> bool:
        config = self.config
        params = request_params(request)
        environ = build_environ(self.base_environ, params, script_name=config.script_name)
        exchange = Exchange(Writer(self), environ)
        length = params.get("CONTENT_LENGTH", "")
        chunked = "chunked" in params.get("HTTP_TRANSFER_ENCODING", "").lower()
        body = BodyReader(self, int(length) if length.isascii() and length.isdigit() else None,
                          chunked)
        environ["wsgi.input"] = StreamInput(body.fill)
        if config.secret and not hmac.compare_digest(
                request.attributes.get("secret", "").encode("latin-1"), config.secret.encode("latin-1")):
            exchange.fail("403 Forbidden", "AJP request without the right secret", logging.WARNING)
            return False
        if length and not (length.isascii() and length.isdigit()):
            exchange.fail("400 Bad Request", f"invalid Content-Length {length!r}", logging.INFO)
            return False
        if body.remaining is not None and body.remaining > config.max_request_body_size:
            exchange.fail(CONTENT_TOO_LARGE, f"body of {length} bytes over the limit", logging.INFO)
            return body.settle()
        # httpd sends body chunks only when asked, but the first one unasked.
        return exchange.run(self.server.app) and body.settle()


RUNNER = Runner(AJPConfig, OPTIONS, __name__, connection_class=AJPConnection, gateway="AJP13")
make_server, serve, server_factory, _serve_config = RUNNER.functions()

__all__ = ["AJPConfig", "AJPConnection", "OPTIONS", "make_server", "serve", "server_factory",
           "request_params"]
