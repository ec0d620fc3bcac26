"""What every gateway shares: options, the environ, ``wsgi.input``, the WSGI call.

A gateway is a :class:`~stack.server.connection.Connection` subclass plus a
small sans-IO framing module; the bundled server's loop, worker pool,
limits, timeouts and graceful stop do the rest. This module holds the parts
the protocols have in common:

- :class:`GatewayConfig`: the server's options plus ``script_name``
  (:func:`check_script_name`);
- :func:`build_environ`: a PEP 3333 environ from the CGI-style variables a
  front server sends (FastCGI params, SCGI headers, AJP fields, CGI env);
- :class:`StreamInput`: ``wsgi.input`` over a "next piece of body" function
  (:func:`sized_body` makes one for a body of known length);
- :class:`~stack.gateways.exchange.Exchange` (re-exported here): one WSGI
  call whose response goes to a protocol's writer;
- :class:`GatewayConnection`: the request loop on a worker.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import unquote_to_bytes

from stack.errors import OptionError
from stack.gateways.exchange import PEER_GONE, Exchange, Writer, cgi_head, error_response
from stack.options import as_str, check_str
from stack.server.body import READ_SIZE, BodyReader, ClientDisconnected
from stack.server.config import OPTIONS, ServerConfig
from stack.server.connection import Connection
from stack.server.parser import ParseError

log = logging.getLogger("stack.gateways")


# -- options ----------------------------------------------------------------------

def check_script_name(value: Any, name: str = "script_name") -> str:
    """A mount prefix: empty, or a path starting with ``/`` (a trailing ``/`` is dropped)."""
    prefix = check_str(value, name).rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise OptionError(name, f"expected a path starting with '/', got {value!r}", value=value)
    return prefix


@dataclass(frozen=True)
class GatewayConfig(ServerConfig):
    """The bundled server's options plus ``script_name``.

    ``script_name``: the URL prefix the front server mounts the app at. When
    set, ``SCRIPT_NAME``/``PATH_INFO`` are re-split at it (for front servers
    that pass only the full path, such as ``mod_proxy_ajp`` or a bare
    ``scgi_pass``); when empty, the split the front server passes is kept.
    """

    script_name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "script_name", check_script_name(self.script_name))
        super().__post_init__()


GATEWAY_OPTIONS = {**OPTIONS, "script_name": as_str}


# -- the environ --------------------------------------------------------------------

def latin1(data: bytes) -> str:
    return data.decode("latin-1")


def build_environ(base: Mapping[str, Any], params: Mapping[str, str], *,
                  script_name: str = "") -> dict[str, Any]:
    """A PEP 3333 environ: ``base`` (the ``wsgi.*`` keys) overlaid by ``params``.

    ``params`` are the CGI variables from the front server (latin-1 strs).
    ``HTTP_CONTENT_TYPE``/``HTTP_CONTENT_LENGTH`` become ``CONTENT_*``; a
    missing ``PATH_INFO`` is taken from ``REQUEST_URI`` (percent-decoded,
    less ``SCRIPT_NAME``); ``HTTPS=on`` or ``REQUEST_SCHEME=https`` makes
    ``wsgi.url_scheme`` https; ``script_name`` re-splits the path.

    >>> env = build_environ({}, {"REQUEST_URI": "/app/a%20b?x=1"}, script_name="/app")
    >>> env["SCRIPT_NAME"], env["PATH_INFO"]
    ('/app', '/a b')
    """
    environ = dict(base)
    if "REMOTE_ADDR" in params:
        environ.pop("REMOTE_PORT", None)
    for key, value in params.items():
        if not key.startswith("wsgi."):
            environ[key] = value
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        value = environ.pop("HTTP_" + name, None)
        if value is not None and not environ.get(name):
            environ[name] = value
    environ.setdefault("REQUEST_METHOD", "GET")
    environ.setdefault("QUERY_STRING", "")
    environ.setdefault("SERVER_PROTOCOL", "HTTP/1.0")
    if not environ.get("SCRIPT_NAME"):
        environ["SCRIPT_NAME"] = ""
    if "PATH_INFO" not in params:
        path = latin1(unquote_to_bytes(environ.get("REQUEST_URI", "").partition("?")[0]))
        prefix = environ["SCRIPT_NAME"]
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            path = path[len(prefix):]
        environ["PATH_INFO"] = path
    if script_name:
        full = environ["SCRIPT_NAME"] + environ["PATH_INFO"]
        if full == script_name or full.startswith(script_name + "/"):
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = script_name, full[len(script_name):]
    https = str(environ.get("HTTPS", "")).lower() in ("on", "1") or \
        environ.get("REQUEST_SCHEME") == "https"
    if https:
        environ["wsgi.url_scheme"] = "https"
    return environ


def body_length(environ: Mapping[str, Any]) -> int | None:
    """``CONTENT_LENGTH`` as an int (None when absent or empty); ParseError if bad."""
    value = environ.get("CONTENT_LENGTH", "")
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ParseError(f"invalid CONTENT_LENGTH {value!r}")
    return int(value)


# -- wsgi.input -----------------------------------------------------------------------

class StreamInput(BodyReader):
    """A file-like ``wsgi.input`` over ``fill(want) -> bytes`` (b"" at the end).

    ``fill`` returns the next piece of the body, at most about ``want``
    bytes; it raises :class:`ClientDisconnected` when the stream breaks.
    """

    def __init__(self, fill: Callable[[int], bytes]) -> None:
        self._fill = fill
        self.finished = False

    def _next(self, want: int) -> bytes:
        if self.finished:
            return b""
        data = self._fill(want)
        if not data:
            self.finished = True
        return data

    def discard(self, limit: int) -> bool:
        """Read and drop the rest, up to about ``limit`` bytes; True if the body ended."""
        dropped, self._pending = len(self._pending), b""
        while dropped <= limit and not self.finished:
            dropped += len(self._next(READ_SIZE))
        return self.finished


def sized_body(read: Callable[[int], bytes], length: int, short: str) -> Callable[[int], bytes]:
    """A :class:`StreamInput` ``fill`` for a body of ``length`` bytes taken with ``read(n)``.

    ``read`` returning b"" before the end raises :class:`ClientDisconnected`
    with ``short`` (``{remaining}`` is replaced by the bytes missing).
    """
    remaining = length

    def fill(want: int) -> bytes:
        nonlocal remaining
        if remaining <= 0:
            return b""
        data = read(min(want, remaining))
        if not data:
            raise ClientDisconnected(short.format(remaining=remaining))
        remaining -= len(data)
        return data

    return fill


def drain(body: StreamInput, limit: int = 1024 * 1024) -> bool:
    """Read what the app left of the body (up to ``limit``); True if it all came."""
    try:
        return body.discard(limit)
    except (ParseError, *PEER_GONE):
        return False


# -- the connection ---------------------------------------------------------------------

class GatewayConnection(Connection):
    """A front server's connection: :meth:`handle` serves one request.

    The loop calls :meth:`take_request` after each read; a worker calls
    :meth:`serve`, which handles requests while :meth:`handle` says the
    connection stays usable, then waits for the next or closes.
    """

    protocol = "gateway"

    def handle(self, request: Any) -> bool:
        """Serve one request; True when the connection may carry another."""
        raise NotImplementedError

    def request_started(self) -> bool:
        # Management packets (CPING, GET_VALUES) leave nothing behind: still idle.
        return bool(self.buffer)

    def serve(self, request: Any) -> None:
        try:
            while self.handle(request) and not self.server.stopping:
                request = self._next_request()
                if request is None:
                    return  # back with the loop, or refused and closed
        except Exception:  # a bug here must not kill the worker
            log.exception("%s: error while serving a connection", self.protocol)
        self.close()

    def _next_request(self) -> Any:
        """A request already in the buffer; else None, the connection handed back or refused."""
        try:
            request = self.take_request()
        except ParseError as exc:
            self.reject(exc)
            return None
        if request is None:
            self.server.wait_for_request(self)
        return request

    def reply(self, data: bytes) -> None:
        """Send a protocol reply from the loop (never blocks) or from a worker."""
        if self.busy:
            self.sendall(data)
            return
        try:
            sent = self.sock.send(data, socket.MSG_DONTWAIT)
        except OSError as exc:
            raise ParseError(f"cannot reply to the front server: {exc}") from None
        if sent != len(data):
            raise ParseError("the front server does not read its replies")

    def refuse(self, error: ParseError) -> bytes:
        """The bytes that answer a refused request (b"": just close)."""
        return b""

    def reject(self, error: ParseError) -> None:
        """Log a request we refused, answer it if the protocol can, and close."""
        log.warning("%s: refused a request from %s: %s (%s)", self.protocol,
                    self.base_environ.get("REMOTE_ADDR"), error, error.status)
        data = self.refuse(error)
        if data:
            try:
                self.sock.send(data, socket.MSG_DONTWAIT)
            except OSError:
                pass
        self.close()

    def fill_buffer(self) -> None:
        """Read more into the buffer (worker side); ClientDisconnected at EOF."""
        data = self._recv_more()
        if not data:
            raise ClientDisconnected("the front server closed the connection mid-request")
        self.buffer += data

    def _recv_more(self) -> bytes:
        try:
            return self.sock.recv(READ_SIZE * 4)
        except (BlockingIOError, TimeoutError):
            raise ClientDisconnected(f"no data for {self.config.body_timeout}s") from None
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from None


__all__ = ["GatewayConfig", "GATEWAY_OPTIONS", "check_script_name", "build_environ",
           "body_length", "StreamInput", "sized_body", "drain", "Writer", "cgi_head",
           "error_response", "Exchange", "GatewayConnection", "PEER_GONE", "ClientDisconnected"]
