"""One client connection: its socket, its read buffer, and its request loop.

Two threads take turns with a connection, never at once. The event loop
reads while the connection waits for a request head (so a slow or idle
client holds no worker); once a whole head is in, a worker serves that
request, then any pipelined ones already in the buffer, and hands the
connection back to the loop to wait for the next.

Sockets are blocking with kernel-level timeouts (``SO_RCVTIMEO`` for body
reads, ``SO_SNDTIMEO`` for sends): a worker's I/O costs one system call, not
a poll() plus the call as Python-level timeouts would, and a stalled peer
still cannot hold a worker past the timeout. The loop itself only ever reads
with ``MSG_DONTWAIT``.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
from typing import TYPE_CHECKING, Any, Iterable

from stack.server.body import ClientDisconnected
from stack.server.parser import (FIELDS_TOO_LARGE, ParseError, RequestHead, check_incomplete_head,
                                 find_head_end, parse_head)
from stack.server.task import Task, http_date

if TYPE_CHECKING:
    from stack.server.loop import Server

log = logging.getLogger("stack.server")

_MAX_LEADING_EMPTY = 16


def timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


class Connection:
    """A client connection, shared by the loop (waiting) and a worker (serving).

    The loop calls :meth:`take_request` after each read (None: not complete
    yet; :class:`ParseError`: refuse with :meth:`reject`) and hands what it
    returns to :meth:`serve` on a worker, which ends with
    ``server.wait_for_request(self)`` or :meth:`close`. A gateway protocol
    (FastCGI, SCGI, ...) subclasses it and overrides those three.
    """

    def __init__(self, server: Server, sock: socket.socket, addr: Any) -> None:
        self.server = server
        self.config = server.config
        self.sock = sock
        self.fd = sock.fileno()
        self.buffer = b""
        self.deadline = 0.0
        self.busy = False
        self.closed = False
        self.idle = False  # waiting between requests (keepalive_timeout runs)
        self.base_environ = server.environ_for(addr)
        sock.setblocking(True)
        if server.is_tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        recv_timeout, send_timeout = server.socket_timeouts
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, recv_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, send_timeout)

    # -- reading request heads (loop or worker) -------------------------------

    def take_request(self) -> RequestHead | None:
        """Parse the next request head from the buffer, or None if incomplete.

        Raises :class:`ParseError` for a head that is bad or too large.
        """
        buffer = self.buffer
        if buffer[:1] in (b"\r", b"\n"):
            stripped = buffer.lstrip(b"\r\n")
            if len(buffer) - len(stripped) > 2 * _MAX_LEADING_EMPTY:
                raise ParseError("too many empty lines before the request")
            buffer = self.buffer = stripped
        end = find_head_end(buffer)
        config = self.config
        if end == -1:
            check_incomplete_head(buffer, config.max_request_line, config.max_request_header_size)
            return None
        if end > config.max_request_line + config.max_request_header_size + 4:
            raise ParseError("request head too large", FIELDS_TOO_LARGE)
        self.buffer = buffer[end:]
        return parse_head(buffer[:end], max_line=config.max_request_line,
                          max_head=config.max_request_header_size,
                          max_fields=config.max_header_count,
                          max_body=config.max_request_body_size)

    def request_started(self) -> bool:
        """Whether bytes read while idle began a request (so header_timeout applies).

        For HTTP any byte does, even the empty lines a request may start with.
        """
        return True

    # -- the worker's side ----------------------------------------------------

    def serve(self, head: RequestHead) -> None:
        """Serve ``head`` and any pipelined requests, then wait or close."""
        server = self.server
        try:
            while True:
                if not Task(self, head).run(server.app) or server.stopping:
                    break
                if not self.buffer:  # the usual case: no pipelined request waiting
                    server.wait_for_request(self)
                    return
                try:
                    next_head = self.take_request()
                except ParseError as exc:
                    self.reject(exc)
                    return
                if next_head is None:
                    server.wait_for_request(self)
                    return
                head = next_head
        except Exception:  # a bug here must not kill the worker
            log.exception("error while serving a connection")
        self.close()

    # -- the Source protocol of wsgi.input -------------------------------------

    def read_raw(self, size: int) -> bytes:
        if self.buffer:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
            return data
        try:
            return self.sock.recv(size)
        except (BlockingIOError, TimeoutError):
            raise ClientDisconnected(f"no body data for {self.config.body_timeout}s") from None
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from None

    def unread(self, data: bytes) -> None:
        self.buffer = data + self.buffer

    def send_continue(self) -> None:
        self.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- sending ----------------------------------------------------------------

    def sendall(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except BlockingIOError:
            raise TimeoutError(f"send blocked for {self.config.send_timeout}s") from None

    def sendmsg(self, buffers: Iterable[bytes]) -> None:
        """Send several buffers with one system call, without joining them."""
        buffers = list(buffers)
        try:
            sent = self.sock.sendmsg(buffers)
            views = None
            while True:
                # Drop what went out; stop when nothing is left.
                while buffers and sent >= len(buffers[0]):
                    sent -= len(buffers[0])
                    buffers.pop(0)
                if not buffers:
                    return
                if views is None:  # a partial send (rare): slice without copying
                    views = buffers = [memoryview(b) for b in buffers]
                if sent:
                    buffers[0] = buffers[0][sent:]
                sent = self.sock.sendmsg(buffers)
        except BlockingIOError:
            raise TimeoutError(f"send blocked for {self.config.send_timeout}s") from None

    def sendfile(self, file: Any, offset: int, count: int) -> None:
        """Send ``count`` bytes of a real file from ``offset`` with ``os.sendfile``.

        Written out rather than ``socket.sendfile``, which waits in select()
        without a timeout once the kernel's send timeout fires.
        """
        out, source, done = self.sock.fileno(), file.fileno(), 0
        while done < count:
            try:
                sent = os.sendfile(out, source, offset + done, min(count - done, 1 << 30))
            except BlockingIOError:
                raise TimeoutError(f"send blocked for {self.config.send_timeout}s") from None
            if sent == 0:
                raise BrokenPipeError(f"file ended after {done} of {count} bytes")
            done += sent

    def send_error(self, status: str, keep_alive: bool = False) -> None:
        """A short plain-text error response (best effort: the peer may be gone)."""
        body = status.encode("latin-1") + b"\r\n"
        head = (b"HTTP/1.1 " + status.encode("latin-1") + b"\r\nContent-Type: text/plain\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n" + http_date()
                + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n")
        try:
            self.sock.send(head + body, socket.MSG_DONTWAIT)
        except OSError:
            pass

    def reject(self, error: ParseError) -> None:
        """Answer a request we refused to parse, and close."""
        log.info("refused a request from %s: %s (%s)", self.base_environ.get("REMOTE_ADDR"),
                 error, error.status)
        self.send_error(error.status)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.forget(self)
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.sock.close()
