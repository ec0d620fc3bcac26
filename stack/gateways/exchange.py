"""One WSGI call through a gateway, and how a protocol frames the response.

:class:`Exchange` keeps the rules the HTTP server keeps: the iterable's
``close()`` runs exactly once; ``start_response`` honours ``exc_info`` (and
re-raises once the headers went out); the legacy ``write()`` works; status
and headers are validated (CR/LF, names) and the fields the front server
owns (``Status``, ``Transfer-Encoding``, ``Connection``...) are refused; a
``Content-Length`` is enforced; an error before the headers went out is a
500, after them an abort (the protocol closes without ending the response,
so the front server can tell). A protocol gives it a :class:`Writer`.

>>> exchange = Exchange(writer, environ)
>>> keep_connection = exchange.run(app)
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Protocol

from stack.errors import HeaderError, StartResponseError
from stack.http import HOP_BY_HOP, plain_page
from stack.server.parser import ParseError
from stack.server.task import AppError, Responder
from stack.wsgi import get_header

log = logging.getLogger("stack.gateways")

#: The front server went away, aborted the request, or stalled past a timeout.
PEER_GONE = (ConnectionError, TimeoutError)
# Fields the front server owns: an app must not send them.
_OWNED = HOP_BY_HOP | {"trailer", "status"}


class Writer(Protocol):
    """How one protocol frames a response (each call may raise ``OSError``)."""

    def start(self, status: str, headers: list[tuple[str, str]], body: bytes, last: bool) -> None:
        """Send the status, the headers and the first body bytes; ``last``: and end."""

    def send(self, data: bytes) -> None:
        """Send more body bytes."""

    def end(self) -> None:
        """End the response."""


def cgi_head(status: str, headers: list[tuple[str, str]]) -> bytes:
    """A CGI response head: ``Status:`` then the headers, then a blank line."""
    lines = [b"Status: ", status.encode("latin-1"), b"\r\n"]
    for name, value in headers:
        lines += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def error_response(status: str) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of a gateway's own error answer (:func:`stack.http.plain_page`)."""
    _, headers, body = plain_page(status)
    return headers, body


class Exchange(Responder):
    """One WSGI call through a gateway; :meth:`run` says if the response ended cleanly."""

    def __init__(self, writer: Writer, environ: dict[str, Any]) -> None:
        self.writer = writer
        self.environ = environ
        self.length: int | None = None
        self.sent = 0

    def _checked_headers(self) -> list[tuple[str, str]]:
        out = []
        for name, value in self.headers:
            lname = name.lower()
            if lname == "content-length":
                if self.length is not None or not value.strip().isdigit():
                    raise AppError(f"invalid or repeated Content-Length {value!r} from the app")
                self.length = int(value)
            elif lname in _OWNED:
                if lname == "connection" and value.strip().lower() == "close":
                    continue
                raise AppError(f"the app may not send the header {name!r} through a gateway")
            out.append((name, value))
        return out

    def _cut(self, data: Any) -> bytes:
        if type(data) is not bytes:
            raise AppError(f"the app yielded {type(data).__name__}, not bytes")
        if self.length is not None and len(data) > self.length - self.sent:
            data = data[:self.length - self.sent]
            log.warning("%s: the app sent more than its Content-Length %d; cut", self._what(),
                        self.length)
        self.sent += len(data)
        return data

    def _commit(self, first: bytes, last: bool) -> None:
        if self.status is None:
            raise StartResponseError("the app returned without calling start_response")
        headers = self._checked_headers()
        self.writer.start(self.status, headers, self._cut(first), last)
        self.headers_sent = True

    def send_body(self, data: bytes) -> None:
        if not self.headers_sent:
            if data:
                self._commit(data, False)
            return
        data = self._cut(data)
        if data:
            self.writer.send(data)

    def run(self, app: Any) -> bool:
        """Call ``app`` and send its response; False when the connection must close."""
        body: Any = None
        try:
            body = app(self.environ, self.start_response)
            if type(body) is list and not self.headers_sent and self.status is not None:
                data = body[0] if len(body) == 1 else b"".join(body)
                declared = get_header(self.headers, "Content-Length")
                if declared is None or not declared.isdigit() or int(declared) <= len(data):
                    self._commit(data, True)  # headers, body and end in one go
                    return True
                self._commit(data, False)
            else:
                for chunk in body:
                    self.send_body(chunk)
                if not self.headers_sent:
                    self._commit(b"", False)
            if self.length is not None and self.sent < self.length:
                # Ending cleanly would pass a truncated body off as complete.
                log.warning("%s: the app sent %d of its Content-Length %d bytes; aborting",
                            self._what(), self.sent, self.length)
                return False
            self.writer.end()
            return True
        except PEER_GONE as exc:
            log.info("%s: the front server went away: %s", self._what(), exc)
            return False
        except ParseError as exc:  # a bad or oversized body found while the app read it
            return self.fail(exc.status, str(exc), logging.INFO)
        except (HeaderError, StartResponseError, AppError) as exc:
            return self.fail("500 Internal Server Error", f"{type(exc).__name__}: {exc}", logging.ERROR)
        except Exception:
            return self.fail("500 Internal Server Error", "the app raised", logging.ERROR, sys.exc_info())
        finally:
            if body is not None and hasattr(body, "close"):
                try:
                    body.close()
                except Exception:
                    log.exception("%s: the app's close() raised", self._what())

    def fail(self, status: str, why: str, level: int, exc_info: Any = None) -> bool:
        """Answer ``status`` if nothing went out yet (True), else abort (False)."""
        log.log(level, "%s: %s", self._what(), why, exc_info=exc_info)
        if self.headers_sent:
            return False  # too late to change the status: the caller aborts
        headers, body = error_response(status)
        try:
            self.writer.start(status, headers, body, True)
        except PEER_GONE:
            return False
        self.headers_sent = True
        return True

    def _what(self) -> str:
        environ = self.environ
        return f"{environ.get('REQUEST_METHOD', '-')} {environ.get('REQUEST_URI') or environ.get('PATH_INFO', '')}"


__all__ = ["Exchange", "Writer", "cgi_head", "error_response", "PEER_GONE"]
