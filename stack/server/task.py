"""One WSGI call: build the environ, run the app, frame and send the response.

Runs on a worker thread with the connection to itself. The rules:

- the app's ``Content-Length`` is honoured and enforced: more is cut and the
  connection closed, fewer closes the connection (never a hung client);
  without it a list body gets an exact ``Content-Length``, anything else is
  chunked on HTTP/1.1 and close-delimited on HTTP/1.0;
- HEAD, 1xx, 204 and 304 responses never carry a body;
- headers are validated (CR/LF, names, hop-by-hop fields the server owns):
  a bad one is a 500 with a log line, never response splitting;
- an exception before the headers went out is a 500; after, the connection
  is closed without completing the body (chunked left unterminated), so the
  client can tell;
- the app iterable's ``close()`` runs exactly once, whatever happened.
"""
from __future__ import annotations

import logging
import os
import stat
import sys
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Iterable

from stack.errors import HeaderError, StartResponseError
from stack.server.body import ClientDisconnected, Input
from stack.server.parser import ParseError, RequestHead
from stack.wsgi import check_headers, check_status, get_header

if TYPE_CHECKING:
    from stack.server.connection import Connection

log = logging.getLogger("stack.server")

# Fields the server owns: an app must not send them (PEP 3333 hop-by-hop).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailer", "transfer-encoding", "upgrade"})
_NO_BODY_STATUSES = frozenset({204, 304})
_date_cache: list[Any] = [0, b""]


def http_date() -> bytes:
    """The ``Date`` header line, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
    return _date_cache[1]


class AppError(Exception):
    """The app broke the WSGI rules (bad headers, bad Content-Length, ...)."""


class FileWrapper:
    """``wsgi.file_wrapper``: a file the server may send with ``os.sendfile``."""

    def __init__(self, filelike: Any, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterable[bytes]:
        read = self.filelike.read
        while True:
            data = read(self.block_size)
            if not data:
                return
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def sendfile_range(self) -> tuple[int, int, int] | None:
        """(fd, offset, size to the end) when this is a regular file, else None."""
        try:
            fd = self.filelike.fileno()
            info = os.fstat(fd)
            offset = self.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return fd, offset, max(0, info.st_size - offset)


class ErrorsStream:
    """``wsgi.errors``: text written by the app goes to the ``stack.server`` log."""

    def write(self, text: str) -> int:
        if text.strip():
            log.error("%s", text.rstrip())
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


class Responder:
    """The app's side of a response: ``start_response`` and ``write()`` (PEP 3333).

    A subclass sends: ``send_body(data)`` frames and sends a piece of body
    (the headers first, when they have not gone out yet).
    """

    status: str | None = None
    headers: list[tuple[str, str]] = []
    headers_sent = False

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise StartResponseError("start_response was already called (pass exc_info to replace "
                                     "the response before its headers are sent)")
        check_status(status)
        check_headers(headers)
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: data goes out before it returns."""
        if self.status is None:
            raise StartResponseError("write() called before start_response")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        self.send_body(data)

    def send_body(self, data: bytes) -> None:
        raise NotImplementedError


class Task(Responder):
    """One request/response exchange on a connection."""

    def __init__(self, conn: Connection, head: RequestHead) -> None:
        self.conn = conn
        self.head = head
        self.keep_alive = head.keep_alive
        self.is_head = head.method == "HEAD"
        self.length: int | None = None    # Content-Length we promised
        self.chunked = False
        self.sent = 0                     # body bytes sent
        self.no_body = False
        self.input = Input(conn, head, conn.config.max_request_body_size)

    # -- environ --------------------------------------------------------------

    def environ(self) -> dict[str, Any]:
        head, conn = self.head, self.conn
        environ = conn.base_environ.copy()
        environ["REQUEST_METHOD"] = head.method
        environ["PATH_INFO"] = head.path
        environ["QUERY_STRING"] = head.query
        environ["REQUEST_URI"] = environ["RAW_URI"] = head.target
        environ["SERVER_PROTOCOL"] = head.version
        environ["wsgi.input"] = self.input
        for name, value in head.headers:
            if name == "content-type":
                key = "CONTENT_TYPE"
            elif name == "content-length":
                key = "CONTENT_LENGTH"
            else:
                key = "HTTP_" + name.upper().replace("-", "_")
            if key in environ:
                environ[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
            else:
                environ[key] = value
        if head.host is not None:
            environ["HTTP_HOST"] = head.host
        return environ

    # -- sending --------------------------------------------------------------

    def _head_bytes(self, body_hint: Iterable[bytes] | None) -> bytes:
        """Build the status line and headers; decide the framing."""
        status = self.status or "500 Internal Server Error"
        code = int(status[:3])
        lines = [b"HTTP/1.1 ", status.encode("latin-1"), b"\r\n"]
        length = None
        has_date = has_server = False
        for name, value in self.headers:
            lname = name.lower()
            if lname == "content-length":
                if length is not None or not value.strip().isdigit():
                    raise AppError(f"invalid or repeated Content-Length {value!r} from the app")
                length = int(value)
            elif lname in _HOP_BY_HOP:
                if lname == "connection" and value.strip().lower() == "close":
                    self.keep_alive = False
                    continue
                raise AppError(f"the app may not send the hop-by-hop header {name!r}")
            elif lname == "date":
                has_date = True
            elif lname == "server":
                has_server = True
            lines += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        status_has_body = code >= 200 and code not in _NO_BODY_STATUSES
        self.no_body = self.is_head or not status_has_body
        if length is None and status_has_body and type(body_hint) is list:
            # A HEAD answer says the length the GET body would have.
            length = sum(len(chunk) for chunk in body_hint)
            lines += (b"Content-Length: ", str(length).encode(), b"\r\n")
        self.length = length
        if length is None and not self.no_body:
            if self.head.version == "HTTP/1.1":
                self.chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False
        if not has_date:
            lines.append(http_date())
        ident = self.conn.config.ident
        if ident and not has_server:
            lines += (b"Server: ", ident.encode("latin-1"), b"\r\n")
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif self.head.version == "HTTP/1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def send_headers(self, body_hint: Iterable[bytes] | None = None, first: bytes = b"") -> None:
        if self.status is None:
            raise StartResponseError("the app returned without calling start_response")
        if not self.input.started and self.input.pending_continue:
            self.keep_alive = False  # the client may still be waiting to send its body
        self.input.final_response_started()
        head = self._head_bytes(body_hint)
        data = head + self._frame(first) if first else head
        self.headers_sent = True
        self.conn.sendall(data)

    def _frame(self, data: bytes) -> bytes:
        """Enforce the length, apply chunking; b"" when nothing may go out."""
        if type(data) is not bytes:
            raise AppError(f"the app yielded {type(data).__name__}, not bytes")
        if self.no_body or not data:
            return b""
        if self.length is not None:
            room = self.length - self.sent
            if len(data) > room:
                data = data[:room]
                self.keep_alive = False
                log.warning("%s %s: the app sent more than its Content-Length %d; cut",
                            self.head.method, self.head.target, self.length)
            self.sent += len(data)
            return data
        self.sent += len(data)
        if self.chunked:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    def send_body(self, data: bytes) -> None:
        if not self.headers_sent:
            if not data:
                return
            self.send_headers(first=data)
            return
        if self.chunked and len(data) > 16384 and type(data) is bytes and not self.no_body:
            # Large chunks go out as three buffers: no copy of the data.
            self.sent += len(data)
            self.conn.sendmsg((b"%x\r\n" % len(data), data, b"\r\n"))
            return
        framed = self._frame(data)
        if framed:
            self.conn.sendall(framed)

    def finish(self) -> None:
        """End the body: terminate chunking; a short body closes the connection."""
        if not self.headers_sent:
            # Nothing came out: an empty body, whose length we know, except
            # for HEAD, where the GET body's length is unknown.
            self.send_headers(None if self.is_head else [])
        if self.chunked:
            self.conn.sendall(b"0\r\n\r\n")
        elif self.length is not None and self.sent < self.length and not self.no_body:
            log.warning("%s %s: the app sent %d of its Content-Length %d bytes; closing",
                        self.head.method, self.head.target, self.sent, self.length)
            self.keep_alive = False

    def send_file(self, wrapper: FileWrapper) -> bool:
        """Send a real file with sendfile; False when it is not one."""
        found = wrapper.sendfile_range()
        if found is None or self.chunked or self.headers_sent:
            return False
        fd, offset, size = found
        if get_header(self.headers, "Content-Length") is None:
            self.headers = self.headers + [("Content-Length", str(size))]
        self.send_headers()
        count = min(size, self.length if self.length is not None else size)
        if not self.no_body and count:
            self.conn.sendfile(wrapper.filelike, offset, count)
            self.sent = count
        return True  # finish() closes the connection if the file was shorter

    # -- the whole exchange ---------------------------------------------------

    def run(self, app: Any) -> bool:
        """Serve the request; return True when the connection may be reused."""
        body: Any = None
        try:
            body = app(self.environ(), self.start_response)
            if type(body) is list and self.status is not None:
                if not self.headers_sent:
                    self.send_headers(body, b"".join(body) if len(body) != 1 else body[0])
                else:
                    for chunk in body:
                        self.send_body(chunk)
            elif isinstance(body, FileWrapper) and self.status is not None and self.send_file(body):
                pass
            else:
                for chunk in body:
                    self.send_body(chunk)
            self.finish()
        except (ClientDisconnected, BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            log.debug("%s %s: client went away: %s", self.head.method, self.head.target, exc)
            self.keep_alive = False
        except ParseError as exc:  # a bad or oversized body found while the app read it
            self.fail(exc.status, str(exc), logging.INFO)
        except (HeaderError, StartResponseError, AppError) as exc:
            self.fail("500 Internal Server Error", f"{type(exc).__name__}: {exc}", logging.ERROR)
        except Exception:
            self.fail("500 Internal Server Error", "the app raised", logging.ERROR, sys.exc_info())
        finally:
            if body is not None and hasattr(body, "close"):
                try:
                    body.close()
                except Exception:
                    log.exception("%s %s: the app's close() raised", self.head.method, self.head.target)
        if self.input.broken:
            self.keep_alive = False
        if self.keep_alive and not self.input.finished:
            try:
                self.keep_alive = self.input.discard(limit=65536)
            except (ParseError, OSError):
                self.keep_alive = False
        return self.keep_alive

    def fail(self, status: str, why: str, level: int, exc_info: Any = None) -> None:
        log.log(level, "%s %s: %s", self.head.method, self.head.target, why, exc_info=exc_info)
        self.keep_alive = False
        if self.headers_sent:
            return  # cannot change the status now: closing is how the client learns
        self.conn.send_error(status, keep_alive=False)
