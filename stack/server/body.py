"""``wsgi.input``: exactly the request body, never a byte past it.

The body comes framed by ``Content-Length`` or chunked; either way the app
reads plain bytes and gets ``b""`` at the end (``wsgi.input_terminated``).
``Expect: 100-continue`` is answered the first time the app reads, so an app
that answers without reading never invites the upload. A chunked body over
the size limit, or malformed, raises :class:`~stack.server.parser.ParseError`
from ``read()``; the server answers it with its status if it still can.
"""
from __future__ import annotations

from typing import Iterator, Protocol

from stack.server.parser import CONTENT_TOO_LARGE, ChunkedDecoder, ParseError, RequestHead

READ_SIZE = 65536


class ClientDisconnected(ConnectionError):
    """The client went away before sending the whole body."""


class Source(Protocol):
    """What the input reads from: the connection's buffer, then its socket."""

    def read_raw(self, size: int) -> bytes: ...
    def unread(self, data: bytes) -> None: ...
    def send_continue(self) -> None: ...


class BodyReader:
    """File-like reads (``read``, ``readline``, iteration) over ``_next(want)``.

    A subclass supplies ``_next``: the next piece of the body, at most about
    ``want`` bytes, ``b""`` at its end. Shared by the HTTP server's
    ``wsgi.input`` and the gateways'.
    """

    _pending = b""

    def _next(self, want: int) -> bytes:
        raise NotImplementedError

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._pending]
            self._pending = b""
            while True:
                data = self._next(READ_SIZE)
                if not data:
                    return b"".join(parts)
                parts.append(data)
        if size == 0:
            return b""
        # Like a buffered file: exactly ``size`` bytes unless the body ends first
        # (apps call read(CONTENT_LENGTH) and expect the whole body).
        data = self._pending or self._next(size)
        if len(data) >= size:
            return self._split(data, size)
        self._pending = b""
        parts, have = [data], len(data)
        while have < size:
            more = self._next(size - have)
            if not more:
                break
            parts.append(more)
            have += len(more)
        return self._split(b"".join(parts), size)

    def _split(self, data: bytes, size: int) -> bytes:
        if len(data) <= size:
            self._pending = b""
            return data
        self._pending = data[size:]
        return data[:size]

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        buffer = self._pending
        self._pending = b""
        while True:
            end = buffer.find(b"\n")
            if end != -1 and (limit is None or end < limit):
                self._pending = buffer[end + 1:]
                return buffer[:end + 1]
            if limit is not None and len(buffer) >= limit:
                self._pending = buffer[limit:]
                return buffer[:limit]
            data = self._next(READ_SIZE)
            if not data:
                return buffer
            buffer += data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class Input(BodyReader):
    """A file-like ``wsgi.input`` over one request's body."""

    def __init__(self, source: Source, head: RequestHead, max_body: int) -> None:
        self._source = source
        self._chunked = head.chunked
        self._remaining = 0 if head.chunked else (head.content_length or 0)
        self._decoder = ChunkedDecoder() if head.chunked else None
        self._continue = head.expect_continue and head.has_body
        self._max_body = max_body
        self._received = 0
        self.started = False  # the app read (so 100 Continue went out if asked)
        self.broken = False   # a framing error: never reuse the connection

    @property
    def finished(self) -> bool:
        """True when the whole body has been consumed from the connection."""
        if self._decoder is not None:
            return self._decoder.done
        return self._remaining == 0

    @property
    def pending_continue(self) -> bool:
        """The client waits for 100 Continue that was never sent."""
        return self._continue

    def final_response_started(self) -> None:
        """No ``100 Continue`` may follow a final response's status line."""
        self._continue = False

    def _next(self, want: int) -> bytes:
        """The next piece of body data (at most ``want`` bytes), b"" at the end."""
        if not self.started:
            self.started = True
            if self._continue:
                self._continue = False
                self._source.send_continue()
        if self._decoder is None:
            if self._remaining <= 0:
                return b""
            data = self._source.read_raw(min(want, self._remaining))
            if not data:
                raise ClientDisconnected("client closed the connection before the body ended")
            self._remaining -= len(data)
            return data
        while not self._decoder.done:
            raw = self._source.read_raw(READ_SIZE)
            if not raw:
                raise ClientDisconnected("client closed the connection inside a chunked body")
            try:
                pieces, unused = self._decoder.feed(raw)
            except ParseError:
                self.broken = True  # framing lost: the connection cannot be reused
                raise
            if unused:
                self._source.unread(unused)
            data = b"".join(pieces)
            if data:
                self._received += len(data)
                if self._received > self._max_body:
                    self.broken = True
                    raise ParseError(f"chunked body over the limit of {self._max_body} bytes",
                                     CONTENT_TOO_LARGE)
                return data
        return b""

    def discard(self, limit: int) -> bool:
        """Read and drop the rest of the body, up to ``limit`` bytes; True if it ended."""
        if self._continue or self.broken:
            return False  # not sent (it waits for 100 Continue), or framing is lost
        dropped = len(self._pending)
        self._pending = b""
        while not self.finished:
            if dropped > limit:
                return False
            dropped += len(self._next(READ_SIZE))
        return True
