"""The FastCGI connection: records in, one request at a time, records out.

What both ways of running FastCGI share -- a listening socket
(:mod:`stack.gateways.fastcgi`) and a connection handed over on stdin
(:mod:`stack.gateways.fastcgi_stdio`): :class:`FastCGIConfig`,
:class:`FastCGIConnection` (the loop collects ``BEGIN_REQUEST`` and
``PARAMS`` records into a :class:`Request`; a worker reads ``STDIN`` with a
:class:`StdinReader` and answers with a :class:`Writer`), and
``wsgi.errors`` as ``STDERR`` records. The record format is
:mod:`~stack.gateways.fastcgi_records`.

>>> server = Server(app, FastCGIConfig(port=9000), connection_class=FastCGIConnection)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from stack.gateways import fastcgi_records as fcgi
from stack.gateways.base import (PEER_GONE, ClientDisconnected, Exchange, GatewayConfig,
                                 GatewayConnection, StreamInput, body_length, build_environ,
                                 cgi_head, drain, error_response, latin1)
from stack.server.parser import CONTENT_TOO_LARGE, FIELDS_TOO_LARGE, ParseError
from stack.server.task import ErrorsStream

log = logging.getLogger("stack.gateways")


@dataclass(frozen=True)
class FastCGIConfig(GatewayConfig):
    """The bundled server's options (see :class:`ServerConfig`) and ``script_name``; port 9000."""

    port: int = 9000


@dataclass
class Request:
    """A request whose params are complete."""

    request_id: int
    keep_conn: bool
    params: dict[str, str]


class StdinReader:
    """The ``STDIN`` stream of one request, read record by record on the worker."""

    def __init__(self, conn: FastCGIConnection, request_id: int, max_body: int) -> None:
        self.conn = conn
        self.request_id = request_id
        self.max_body = max_body
        self.received = 0
        self.done = False
        self.aborted = False

    def fill(self, want: int) -> bytes:
        while not self.done:
            record = self.conn.read_record()
            if record.request_id != self.request_id or record.type not in (fcgi.STDIN, fcgi.ABORT_REQUEST):
                self.conn.on_busy_record(record)
            elif record.type == fcgi.ABORT_REQUEST:
                self.done = self.aborted = True
                raise ClientDisconnected("the front server aborted the request (ABORT_REQUEST)")
            elif not record.content:
                self.done = True
            else:
                self.received += len(record.content)
                if self.received > self.max_body:
                    raise ParseError(f"body over the limit of {self.max_body} bytes", CONTENT_TOO_LARGE)
                return record.content
        return b""


class Writer:
    """``STDOUT`` records (and ``END_REQUEST``) for one request."""

    def __init__(self, conn: FastCGIConnection, request_id: int) -> None:
        self.conn = conn
        self.request_id = request_id
        self.ended = False

    def start(self, status: str, headers: list[tuple[str, str]], body: bytes, last: bool) -> None:
        data = cgi_head(status, headers) + body
        if last:
            self.ended = True
            self.conn.sendall(fcgi.encode_stream(fcgi.STDOUT, self.request_id, data, end=True)
                              + fcgi.end_request(self.request_id))
        else:
            self.send(data)

    def send(self, data: bytes) -> None:
        parts = fcgi.stream_parts(fcgi.STDOUT, self.request_id, data)
        if len(parts) == 1:
            self.conn.sendall(parts[0])  # type: ignore[arg-type]
        else:
            self.conn.sendmsg(parts)  # type: ignore[arg-type]

    def end(self) -> None:
        self.ended = True
        self.conn.sendall(fcgi.encode_record(fcgi.STDOUT, self.request_id)
                          + fcgi.end_request(self.request_id))

    def stderr(self, data: bytes) -> None:
        self.conn.sendall(fcgi.encode_stream(fcgi.STDERR, self.request_id, data))


class ErrorStream(ErrorsStream):
    """``wsgi.errors``: ``STDERR`` records while the request runs (the front server logs them)."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    def write(self, text: str) -> int:
        if text:
            log.error("%s", text.rstrip())
            if not self.writer.ended:
                try:
                    self.writer.stderr(text.encode("utf-8", "replace"))
                except PEER_GONE:
                    pass
        return len(text)


class FastCGIConnection(GatewayConnection):
    """A front server's FastCGI connection: one request at a time, maybe kept."""

    protocol = "fastcgi"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._begun: tuple[int, int] | None = None   # (request id, flags) collecting params
        self._params: list[bytes] = []
        self._params_size = 0

    # -- the loop's side: records until a request's params are complete --------------

    def request_started(self) -> bool:
        return self._begun is not None or bool(self.buffer)

    def take_request(self) -> Request | None:
        while True:
            found = fcgi.decode_record(self.buffer)
            if found is None:
                return None
            record, end = found
            self.buffer = self.buffer[end:]
            request = self._on_idle_record(record)
            if request is not None:
                return request

    def _on_idle_record(self, record: fcgi.Record) -> Request | None:
        if record.request_id == 0:
            self.reply(self._management(record))
            return None
        if record.type == fcgi.BEGIN_REQUEST:
            self._begin(record)
            return None
        if self._begun is None or record.request_id != self._begun[0]:
            log.debug("fastcgi: ignored a %s record for inactive request %d",
                      fcgi.TYPE_NAMES.get(record.type, record.type), record.request_id)
            return None
        if record.type == fcgi.PARAMS:
            return self._add_params(record.content)
        if record.type == fcgi.ABORT_REQUEST:
            self.reply(fcgi.end_request(record.request_id, 1))
            self._begun = None
            return None
        raise ParseError(f"FastCGI {fcgi.TYPE_NAMES.get(record.type, record.type)} record "
                         "before the params ended")

    def _begin(self, record: fcgi.Record) -> None:
        if self._begun is not None:
            self.reply(fcgi.end_request(record.request_id, 0, fcgi.CANT_MPX_CONN))
            return
        role, flags = fcgi.parse_begin_request(record.content)
        if role != fcgi.RESPONDER:
            log.warning("fastcgi: refused role %d (only the responder role is served)", role)
            self.reply(fcgi.end_request(record.request_id, 0, fcgi.UNKNOWN_ROLE))
            return
        self._begun = (record.request_id, flags)
        self._params, self._params_size = [], 0

    def _add_params(self, content: bytes) -> Request | None:
        if content:
            self._params_size += len(content)
            if self._params_size > self.config.max_request_header_size:
                raise ParseError(f"FastCGI params over {self.config.max_request_header_size} bytes",
                                 FIELDS_TOO_LARGE)
            self._params.append(content)
            return None
        pairs = fcgi.decode_pairs(b"".join(self._params), self.config.max_header_count + 64)
        request_id, flags = self._begun  # type: ignore[misc]
        self._begun, self._params = None, []
        params = {latin1(name): latin1(value) for name, value in reversed(pairs)}
        return Request(request_id, bool(flags & fcgi.KEEP_CONN), params)

    def _management(self, record: fcgi.Record) -> bytes:
        if record.type != fcgi.GET_VALUES:
            return fcgi.unknown_type(record.type)
        limit = str(self.config.connection_limit).encode()
        return fcgi.get_values_result(record.content, {
            b"FCGI_MAX_CONNS": limit, b"FCGI_MAX_REQS": limit, b"FCGI_MPXS_CONNS": b"0"})

    def refuse(self, error: ParseError) -> bytes:
        if self._begun is None:
            return b""  # no request to answer: closing says it
        headers, body = error_response(error.status)
        request_id = self._begun[0]
        return (fcgi.encode_stream(fcgi.STDOUT, request_id, cgi_head(error.status, headers) + body, end=True)
                + fcgi.end_request(request_id, 1))

    # -- the worker's side ----------------------------------------------------------------

    def read_record(self) -> fcgi.Record:
        """The next record (blocking); ClientDisconnected if the stream ends."""
        while True:
            found = fcgi.decode_record(self.buffer)
            if found is not None:
                record, end = found
                self.buffer = self.buffer[end:]
                return record
            self.fill_buffer()

    def on_busy_record(self, record: fcgi.Record) -> None:
        """A record that is not the current request's body, seen while serving."""
        if record.request_id == 0:
            self.reply(self._management(record))
        elif record.type == fcgi.BEGIN_REQUEST:
            self.reply(fcgi.end_request(record.request_id, 0, fcgi.CANT_MPX_CONN))
        else:
            log.debug("fastcgi: ignored a %s record for request %d while serving another",
                      fcgi.TYPE_NAMES.get(record.type, record.type), record.request_id)

    def handle(self, request: Request) -> bool:
        config = self.config
        stdin = StdinReader(self, request.request_id, config.max_request_body_size)
        writer = Writer(self, request.request_id)
        environ = build_environ(self.base_environ, request.params, script_name=config.script_name)
        environ["wsgi.input"] = wsgi_input = StreamInput(stdin.fill)
        environ["wsgi.errors"] = ErrorStream(writer)
        exchange = Exchange(writer, environ)
        try:
            length = body_length(environ)
        except ParseError as exc:
            exchange.fail(exc.status, str(exc), logging.INFO)
            return False
        if length is not None and length > config.max_request_body_size:
            exchange.fail(CONTENT_TOO_LARGE, f"body of {length} bytes over the limit", logging.INFO)
            return False
        if not exchange.run(self.server.app):
            return stdin.aborted and request.keep_conn and self._end_aborted(writer)
        # The rest of STDIN is read: before the next request, or so that
        # closing does not reset a connection with unread data.
        return drain(wsgi_input) and request.keep_conn

    def _end_aborted(self, writer: Writer) -> bool:
        """After ABORT_REQUEST: end the request and keep the connection (as the spec asks)."""
        if writer.ended:
            return True
        try:
            writer.ended = True
            self.sendall(fcgi.encode_record(fcgi.STDOUT, writer.request_id)
                         + fcgi.end_request(writer.request_id, 1))
        except PEER_GONE:
            return False
        return True


__all__ = ["FastCGIConfig", "FastCGIConnection", "Request", "StdinReader", "Writer", "ErrorStream"]
