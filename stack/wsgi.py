"""Shared WSGI plumbing for middleware that look at or rewrite a response.

Written once here so that every middleware keeps PEP 3333's rules the same
way:

- :func:`call_app` calls the wrapped app with a capturing ``start_response``
  and returns an :class:`AppResponse` as soon as the status and headers are
  known (pulling the first chunk of a generator app that calls
  ``start_response`` late). Data the app gives the legacy ``write()`` callable
  comes out of the body first, in order. The middleware inspects
  ``status``/``headers``, commits its own with :meth:`AppResponse.start`, and
  streams the body on.
- :class:`ClosingIterator` wraps the body a middleware returns so the app's
  ``close()`` (and any of the middleware's own clean-ups) runs exactly once:
  at a normal end, when the server abandons the body and closes it, and after
  an exception mid-stream.
- Header helpers work on ``[(name, value), ...]`` lists case-insensitively and
  return new lists: the app's list is never mutated. :func:`check_header`
  rejects CR, LF and NUL in values and non-token names (response splitting).

Example, a middleware that upper-cases text bodies::

    def __call__(self, environ, start_response):
        response = call_app(self.app, environ)
        if not response.content_type().startswith("text/"):
            response.start(start_response)
            return ClosingIterator(response)
        headers = remove_header(response.headers, "Content-Length")
        response.start(start_response, headers=headers)
        return ClosingIterator((chunk.upper() for chunk in response), response.close)

WebOb's ``Request.call_application`` does the capturing part too, but it
buffers everything written through ``write()`` and gives no way to commit
headers and then keep the app's late ``start_response(..., exc_info)`` calls
honest; this module is the small streaming version of it.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Iterator

from stack.errors import HeaderError, StartResponseError, WriteLimitError
from stack.types import Environ, Headers, OptExcInfo, StartResponse, WriteCallable, WSGIApp

# RFC 9110 token characters for field names.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_STATUS = re.compile(r"[1-9][0-9]{2} [^\r\n\x00]*\Z")
# Names and status lines already found valid: checking them again is the
# hot path of every response. Bounded, so hostile apps cannot grow it.
_GOOD_NAMES: set[str] = set()
_GOOD_STATUS: set[str] = set()
_CACHE_LIMIT = 512


# -- headers ----------------------------------------------------------------

def check_status(status: Any) -> None:
    """Raise :class:`HeaderError` unless ``status`` is like ``"200 OK"``."""
    if type(status) is str and status in _GOOD_STATUS:
        return
    if type(status) is not str or not _STATUS.match(status):
        raise HeaderError(f"invalid status line {status!r}: expected a str like '200 OK'")
    if len(_GOOD_STATUS) < _CACHE_LIMIT:
        _GOOD_STATUS.add(status)


def check_header(name: Any, value: Any) -> None:
    """Raise :class:`HeaderError` for a non-token name or a value with CR/LF/NUL."""
    if type(name) is not str or name not in _GOOD_NAMES:
        if type(name) is not str or not _TOKEN.match(name):
            raise HeaderError(f"invalid header name {name!r}")
        if len(_GOOD_NAMES) < _CACHE_LIMIT:
            _GOOD_NAMES.add(name)
    if type(value) is not str:
        raise HeaderError(f"header {name!r} value must be a str, got {type(value).__name__}")
    if "\n" in value or "\r" in value or "\x00" in value:
        raise HeaderError(f"header {name!r} value contains CR, LF or NUL: {value!r}")


def check_headers(headers: Any) -> None:
    """Check a whole header list (must be a real ``list`` of 2-tuples of str)."""
    if type(headers) is not list:
        raise HeaderError(f"headers must be a list, got {type(headers).__name__}")
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise HeaderError(f"each header must be a (name, value) tuple, got {item!r}")
        check_header(*item)


def get_header(headers: Headers, name: str, default: str | None = None) -> str | None:
    """The first value of header ``name`` (any case), or ``default``."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return default


def get_all(headers: Headers, name: str) -> list[str]:
    """Every value of header ``name`` (any case), in order."""
    lname = name.lower()
    return [value for key, value in headers if key.lower() == lname]


def remove_header(headers: Headers, *names: str) -> Headers:
    """A new list without any of ``names`` (any case)."""
    lnames = {name.lower() for name in names}
    return [item for item in headers if item[0].lower() not in lnames]


def set_header(headers: Headers, name: str, value: str) -> Headers:
    """A new list where ``name`` has exactly one value, ``value``.

    It takes the place of the first existing ``name`` header (so header order
    is kept), or goes at the end.
    """
    check_header(name, value)
    lname = name.lower()
    for index, item in enumerate(headers):
        if item[0].lower() == lname:
            rest = [other for other in headers[index + 1:] if other[0].lower() != lname]
            return headers[:index] + [(name, value)] + rest
    return headers + [(name, value)]


def add_vary(headers: Headers, *fields: str) -> Headers:
    """A new list whose ``Vary`` also names ``fields`` (merged, no duplicates).

    Several ``Vary`` headers are merged into one; ``Vary: *`` already covers
    every field and is left alone.
    """
    existing: list[str] = []
    for value in get_all(headers, "Vary"):
        existing.extend(part.strip() for part in value.split(",") if part.strip())
    if "*" in existing:
        return list(headers)
    seen = {field.lower() for field in existing}
    for field in fields:
        if field.lower() not in seen:
            existing.append(field)
            seen.add(field.lower())
    return set_header(headers, "Vary", ", ".join(existing))


def status_code(status: str) -> int:
    """``"404 Not Found"`` -> ``404``."""
    return int(status[:3])


# -- closing ----------------------------------------------------------------

class ClosingIterator:
    """Iterate ``iterable``; on :meth:`close` close it and run ``closers`` once.

    ``close()`` is idempotent: a server that closes twice, or a middleware
    that closes on error and then is closed by the server, still closes the
    app exactly once. Every closer runs even if an earlier one raises; the
    first exception is re-raised after all have run.

    >>> body = ClosingIterator(transform(app_iter), app_iter_close)
    """

    __slots__ = ("_iterator", "_close", "_closers", "_closed")

    def __init__(self, iterable: Iterable[bytes], *closers: Callable[[], Any]) -> None:
        self._iterator = iter(iterable)
        self._close = getattr(iterable, "close", None)
        self._closers = closers
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        # The server iterates the inner iterator directly (no Python-level
        # __next__ per chunk); close() stays on this object, as PEP 3333 wants.
        return self._iterator

    def __next__(self) -> bytes:
        return next(self._iterator)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._close is None:
            _close_all(self._closers)
        else:
            _close_all((self._close,) + self._closers)


def _close_all(closers: tuple[Callable[[], Any], ...]) -> None:
    error: BaseException | None = None
    for close in closers:
        try:
            close()
        except BaseException as exc:  # noqa: B902 - every closer must still run
            if error is None:
                error = exc
    if error is not None:
        raise error


def close_iterable(iterable: Any) -> None:
    """Call ``iterable.close()`` if it has one (PEP 3333's duty for whoever drops it)."""
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


# -- capturing a response -----------------------------------------------------

class AppResponse:
    """What :func:`call_app` got from the app: status, headers, and the body.

    Iterate it for the body (``write()`` data first, in order); call
    :meth:`close` exactly once when done (wrap it in :class:`ClosingIterator`).
    ``headers`` is the app's list: treat it as read-only and build new lists
    with the helpers above.

    The app may replace its status and headers with ``start_response(...,
    exc_info)`` until either a non-empty body chunk has come out of it or the
    middleware has committed with :meth:`start`; after that the call re-raises
    the app's exception (the middleware's rewritten headers may already be on
    their way, so the replacement could not be rewritten consistently).
    """

    # Class-level defaults: creating one per request only sets what differs.
    status: str | None = None
    headers: Headers = []  # replaced, never mutated
    _app_iter: Any = None
    _iterator: Iterator[bytes] | None = None
    _committed = False
    _body_seen = False
    _closed = False
    _on_write: Callable[[AppResponse], WriteCallable] | None = None
    _writer: WriteCallable | None = None
    _max_written: int | None = None
    _written_size = 0
    _returned = False  # call_app has returned to the middleware

    def __init__(self) -> None:
        self._written: list[bytes] = []

    # The app's view: its start_response and write().
    def _start_response(self, status: str, headers: Headers, exc_info: OptExcInfo = None) -> WriteCallable:
        if exc_info:
            try:
                if self._committed or self._body_seen:
                    # Body bytes have left the app, or the middleware already
                    # sent its (rewritten) headers on: too late to replace
                    # them, so the app's error goes up (PEP 3333).
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # type: ignore[assignment]  # break the traceback cycle
        elif self.status is not None:
            raise StartResponseError(
                "start_response called a second time without exc_info")
        check_status(status)
        check_headers(headers)
        self.status, self.headers = status, headers
        return self._write

    def _write(self, data: bytes) -> None:
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not data:
            return
        self._body_seen = True
        if not self._returned:  # inside the app call: the hook may take it
            if self._writer is None and self._on_write is not None and not self._committed:
                self._writer = self._on_write(self)
            if self._writer is not None:
                self._writer(data)
                return
        # From inside the body's iteration: in the body, in order.
        if not self._committed:  # held until the middleware commits: bounded
            self._written_size += len(data)
            if self._max_written is not None and self._written_size > self._max_written:
                raise WriteLimitError(f"the app wrote more than {self._max_written} bytes "
                                      f"through write() before its response was sent on")
        self._written.append(data)

    # The middleware's view.
    def status_code(self) -> int:
        """The status as a number (``200``)."""
        return int(str(self.status)[:3])

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of response header ``name`` (any case)."""
        return get_header(self.headers, name, default)

    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``""`` if none)."""
        value = get_header(self.headers, "Content-Type") or ""
        return value.split(";", 1)[0].strip().lower()

    @property
    def committed(self) -> bool:
        """True once :meth:`start` sent headers on (an ``on_write`` hook may do it early)."""
        return self._committed

    @property
    def complete(self) -> list[bytes] | None:
        """The whole body when the app returned a list (nothing more can come), else None."""
        return self._written if self._iterator is None else None

    def start(self, start_response: StartResponse, status: str | None = None,
              headers: Headers | None = None) -> WriteCallable:
        """Send the (possibly rewritten) status and headers on, once.

        After this, the app can no longer replace its headers: a late
        ``start_response(..., exc_info)`` re-raises the app's exception.
        """
        self._committed = True
        return start_response(status or self.status, self.headers if headers is None else headers)

    def __iter__(self) -> Iterator[bytes]:
        if self._iterator is None:  # a list body: nothing can be written any more
            return iter(self._written)
        return self._stream()

    def _stream(self) -> Iterator[bytes]:
        written = self._written
        while written:
            yield written.pop(0)
        for chunk in self._iterator:  # type: ignore[union-attr]
            while written:  # write() called from inside the app's generator
                yield written.pop(0)
            if chunk:
                self._body_seen = True
            yield chunk
        while written:
            yield written.pop(0)

    def close(self) -> None:
        """Close the app's iterable (exactly once, however often called)."""
        if self._closed:
            return
        self._closed = True
        close_iterable(self._app_iter)


def call_app(app: WSGIApp, environ: Environ, *,
             on_write: Callable[[AppResponse], WriteCallable] | None = None,
             max_written: int | None = None) -> AppResponse:
    """Call ``app`` and return once its status and headers are known.

    A generator app that calls ``start_response`` only when first iterated is
    advanced until it does; what it yielded on the way is kept for the body.
    If the app raises, or ends without calling ``start_response``, its
    iterable is closed and the error propagates.

    Data an app gives the legacy ``write()`` is kept for the body, in order;
    an app writing a large body that way would be held whole, so:

    - ``on_write(response)`` is called at the first non-empty ``write()``
      made before the middleware committed (the status and headers are known
      then) and returns the callable that takes that and every later piece
      instead, until ``call_app`` returns (a streaming middleware commits
      there and passes the data on); ``write()`` from inside the body's
      iteration goes into the body, in order, as usual;
    - ``max_written`` bounds what is held otherwise: beyond it ``write()``
      raises :class:`WriteLimitError` into the app (and out of ``call_app``).
    """
    response = AppResponse()
    if on_write is not None:
        response._on_write = on_write
    if max_written is not None:
        response._max_written = max_written
    app_iter = app(environ, response._start_response)
    response._app_iter = app_iter
    if response.status is not None and type(app_iter) is list:
        # The common fast path: a plain list body.
        response._written.extend(app_iter)
        response._returned = True
        return response
    try:
        iterator = iter(app_iter)
        while response.status is None:
            try:
                chunk = next(iterator)
            except StopIteration:
                raise StartResponseError(
                    f"{_name(app)} returned its body without calling start_response") from None
            if chunk:
                response._body_seen = True
            response._written.append(chunk)
    except BaseException:
        response.close()
        raise
    response._iterator = iterator
    response._returned = True
    return response


def _name(app: Any) -> str:
    return getattr(app, "__qualname__", None) or type(app).__qualname__


__all__ = [
    "check_status", "check_header", "check_headers", "get_header", "get_all",
    "remove_header", "set_header", "add_vary", "status_code",
    "ClosingIterator", "close_iterable", "AppResponse", "call_app",
    "StartResponseError", "WriteLimitError",
]
