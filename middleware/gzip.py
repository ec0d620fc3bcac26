"""Gzip: compress responses on the fly, streaming, for the clients that ask.

Wrap a site (or one app) whose responses are text-like -- HTML, JSON, CSS,
JavaScript, SVG -- when nothing in front of it compresses them already. The
coding is negotiated from ``Accept-Encoding`` with q-values (RFC 9110):
``gzip``, plus ``br`` and ``zstd`` when their packages are installed and
named in ``encodings``. Bodies stream through in bounded memory, and each
chunk the app yields reaches the client before the app is asked for the
next one. Responses that must stay as they are pass through untouched:
1xx, 204, 304, 206 or ``Content-Range``, an existing ``Content-Encoding``,
``Cache-Control: no-transform``; a ``HEAD`` response gets its headers
adjusted and no body work.

Python::

    from stack.middleware.gzip import Gzip
    app = Gzip(app, level=6, min_size=512, encodings=["br", "gzip"])

INI::

    [filter:gzip]
    use = egg:stack#gzip
    level = 6
    min_size = 512
    mime_types = text/* application/json application/javascript image/svg+xml
    encodings = br gzip
    flush = auto
"""
from __future__ import annotations

import re
import zlib
from functools import lru_cache, partial
from itertools import chain
from typing import Any, Callable, Iterable, Iterator

from stack.errors import OptionError
from stack.factories import filter_factory_for
from stack.http import qlist
from stack.options import (as_int, as_list, as_size, as_str, check_choice, check_int,
                           check_size, check_strings)
from stack.types import Environ, Headers, StartResponse, WriteCallable, WSGIApp
from stack.wsgi import AppResponse, ClosingIterator, add_vary, call_app, get_header, set_header

try:
    import brotli
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None

#: What is compressed by default: text and the text-like application types.
DEFAULT_MIME_TYPES = (
    "text/*", "application/json", "application/ld+json", "application/geo+json",
    "application/problem+json", "application/manifest+json", "application/x-ndjson",
    "application/javascript", "application/x-javascript", "application/ecmascript",
    "application/xml", "application/xhtml+xml", "application/rss+xml",
    "application/atom+xml", "application/wasm", "image/svg+xml", "image/x-icon",
    "font/ttf", "font/otf", "application/vnd.ms-fontobject",
)
FLUSH_POLICIES = ("auto", "always", "never")
ENCODINGS = ("gzip", "br", "zstd")

# (compress, sync_flush, finish) for one response, from a level.
Stream = tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[], bytes]]

_MIME = re.compile(r"[a-z0-9!#$&^_.+-]+/([a-z0-9!#$&^_.+-]+|\*)\Z|\*/\*\Z")
_PASS_STATUS = frozenset({204, 206, 304})
_SSE = "text/event-stream"


def _gzip_stream(level: int) -> Stream:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip framing
    return compressor.compress, partial(compressor.flush, zlib.Z_SYNC_FLUSH), compressor.flush


def _br_stream(level: int) -> Stream:
    compressor = brotli.Compressor(quality=level)
    return compressor.process, compressor.flush, compressor.finish


def _zstd_stream(level: int) -> Stream:
    compressor = zstandard.ZstdCompressor(level=level).compressobj()
    return (compressor.compress, partial(compressor.flush, zstandard.COMPRESSOBJ_FLUSH_BLOCK),
            compressor.flush)


_STREAMS: dict[str, Callable[[int], Stream]] = {
    "gzip": _gzip_stream, "br": _br_stream, "zstd": _zstd_stream,
}
_PACKAGES = {"br": ("brotli", brotli), "zstd": ("zstandard", zstandard)}


@lru_cache(maxsize=256)
def negotiate(accept_encoding: str, available: tuple[str, ...]) -> tuple[str | None, bool]:
    """The coding to use for ``accept_encoding``, and whether identity is acceptable.

    Per RFC 9110 12.5.3: a coding not listed is refused unless ``*`` gives it
    a q-value; ``q=0`` refuses; identity is acceptable unless ``identity;q=0``
    (or ``*;q=0`` with no ``identity`` entry). The highest q wins, ties go to
    the order of ``available``; ``x-gzip`` counts as ``gzip``.

    >>> negotiate("gzip;q=0.5, br", ("gzip", "br"))
    ('br', True)
    >>> negotiate("gzip;q=0, identity;q=0", ("gzip",))
    (None, False)
    """
    weights = qlist(accept_encoding)
    if "x-gzip" in weights:
        weights["gzip"] = max(weights.pop("x-gzip"), weights.get("gzip", 0.0))
    star = weights.get("*")
    best, best_q = None, 0.0
    for coding in available:
        q = weights.get(coding, star or 0.0)
        if q > best_q:
            best, best_q = coding, q
    identity = weights.get("identity", 1.0 if star is None else star)
    return best, identity > 0


class Gzip:
    """Compress responses for clients that accept gzip (or br, zstd).

    Options (INI spelling in brackets):

    - ``level`` (``level = 6``): compression level 1-9, also used as the
      brotli quality and the zstd level.
    - ``min_size`` (``min_size = 512``): bytes below which compressing does
      not pay. Known from ``Content-Length``, or from a body handed over
      whole; a stream of unknown length is held until this many bytes came
      (or it ended), except under ``flush = always``. A client that refuses
      ``identity`` gets any non-empty body compressed.
    - ``mime_types`` (``mime_types = text/* application/json``): media types
      to compress; ``type/*`` matches a whole type. Default: text and the
      text-like types in :data:`DEFAULT_MIME_TYPES`.
    - ``encodings`` (``encodings = br gzip``): codings offered, in our order
      of preference (the client's q-values come first); ``br`` needs the
      ``brotli`` package, ``zstd`` the ``zstandard`` package.
    - ``flush`` (``flush = auto``): when compressed bytes of a stream leave.
      Under every policy a body the app hands over whole (a list) is
      compressed in one piece, with an exact ``Content-Length``.

      ``auto``: after the ``min_size`` hold, every chunk the app yields is
      compressed and sync-flushed before the app is asked for the next one.
      A WSGI body is pulled: while the app is busy making its next chunk
      this middleware cannot run, so anything held back would wait as long
      as the app does (a long poll, a slow query). Flushing before each
      pull is the one policy whose delay is bounded; it costs a few bytes
      and a new deflate block per chunk (under 0.1% on 64 KB chunks).
      ``always``: as ``auto``, without the ``min_size`` hold: a stream is
      compressed from its first chunk on (for comet-style streams).
      ``never``: no flush between chunks; bytes leave as the compressor
      fills its blocks -- the best ratio for downloads made of many tiny
      chunks; memory stays bounded, latency does not.
      ``text/event-stream`` is never held and flushes every chunk, whatever
      this option says.

    ``Vary: Accept-Encoding`` goes on every response of a compressible type,
    compressed or not, so shared caches keep the variants apart.
    """

    def __init__(self, app: WSGIApp, *, level: int = 6, min_size: int = 512,
                 mime_types: Iterable[str] = DEFAULT_MIME_TYPES,
                 encodings: Iterable[str] = ("gzip",), flush: str = "auto") -> None:
        self.app = app
        self.level = check_int(level, "level", 1, 9)
        self.min_size = check_size(min_size, "min_size")
        self.mime_types = _check_mime_types(mime_types)
        self.encodings = _check_encodings(encodings)
        self.flush = check_choice(flush, "flush", FLUSH_POLICIES)
        self._exact = frozenset(t for t in self.mime_types if not t.endswith("/*"))
        self._wildcards = frozenset(t[:-1] for t in self.mime_types if t.endswith("/*"))

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        return _Responder(self, environ, start_response).respond()

    def compressible_type(self, content_type: str) -> bool:
        """Whether a ``Content-Type`` value is in ``mime_types``."""
        media = content_type.split(";", 1)[0].strip().lower()
        if not media:
            return False
        return (media in self._exact or "*/" in self._wildcards
                or media[:media.find("/") + 1] in self._wildcards)


class _Responder:
    """One request: call the app, decide, commit headers, stream the body."""

    __slots__ = ("gzip", "environ", "start_response", "response", "stream")

    def __init__(self, gzip: Gzip, environ: Environ, start_response: StartResponse) -> None:
        self.gzip, self.environ, self.start_response = gzip, environ, start_response
        self.stream: Stream | None = None

    def respond(self) -> Iterable[bytes]:
        response = self.response = call_app(self.gzip.app, self.environ, on_write=self._on_write)
        try:
            if response.committed:  # the app used write(): already streaming
                if self.stream is None:
                    return ClosingIterator(response)
                return ClosingIterator(_compressed(self.stream, [], iter(response), True),
                                       response.close)
            return self._respond(iter(response))
        except BaseException:
            response.close()
            raise

    def _on_write(self, response: AppResponse) -> WriteCallable:
        """An app writing through ``write()``: decide now, then compress as it writes.

        Without this the written data would be held until the app returns
        (unbounded memory, no streaming). The size is unknown here, so
        ``min_size`` does not apply; each piece is sync-flushed.
        """
        eligible, _, _ = _inspect(self.gzip, response.status, response.headers)
        headers = add_vary(response.headers, "Accept-Encoding") if eligible else response.headers
        coding = negotiate(self.environ.get("HTTP_ACCEPT_ENCODING", ""),
                           self.gzip.encodings)[0] if eligible else None
        if coding is None:
            return response.start(self.start_response, headers=headers)
        self.stream = _STREAMS[coding](self.gzip.level)
        write = response.start(self.start_response, headers=_encoded(headers, coding))
        compress, sync, _ = self.stream

        def compressing_write(data: bytes) -> None:
            write(compress(data) + sync())
        return compressing_write

    def _respond(self, chunks: Iterator[bytes]) -> Iterable[bytes]:
        response, gzip = self.response, self.gzip
        held: list[bytes] = []  # body bytes pulled before headers were committed
        while True:  # once more if the app replaces its response while we hold
            original = response.headers
            if response.status_code() == 304:
                return self._send(self._not_modified(original), chain(held, chunks) if held else chunks)
            eligible, content_type, length = _inspect(gzip, response.status, original)
            if not eligible:
                return self._send(original, chain(held, chunks) if held else chunks)
            headers = add_vary(original, "Accept-Encoding")
            coding, identity_ok = negotiate(
                self.environ.get("HTTP_ACCEPT_ENCODING", ""), gzip.encodings)
            wait = gzip.min_size if identity_ok else 1
            if coding is None or (length is not None and length < wait):
                return self._send(headers, chain(held, chunks) if held else chunks)
            if response.complete is not None:
                # The app returned a list: the whole body is here, so one piece
                # (for HEAD too, so its headers are exactly the GET's).
                return self._whole(coding, headers, list(chunks), wait)
            if self.environ.get("REQUEST_METHOD") == "HEAD":
                self._commit(_encoded(headers, coding))
                return ClosingIterator((), response.close)
            sse = content_type == _SSE
            if length is not None or sse or gzip.flush == "always":
                wait = 0
            body = self._stream(coding, headers, chunks, held, wait, sse or gzip.flush != "never")
            if body is not None:
                return body

    def _stream(self, coding: str, headers: Headers, chunks: Iterator[bytes], held: list[bytes],
                wait: int, each: bool) -> Iterable[bytes] | None:
        """Hold up to ``wait`` bytes, then compress the rest as it comes.

        None if the app replaced its response meanwhile (``held`` then keeps
        what came after the replacement).
        """
        response = self.response
        status, original = response.status, response.headers
        size = sum(map(len, held))
        while size < wait:
            chunk = next(chunks, None)
            if chunk:
                held.append(chunk)
                size += len(chunk)
            if response.headers is not original or response.status is not status:
                # start_response(..., exc_info) before any byte was sent: the
                # new response, whose first chunk this is, replaces the old.
                held[:] = [chunk] if chunk else []
                return None
            if chunk is None:
                return self._whole(coding, headers, held, wait)
        self._commit(_encoded(headers, coding))
        body = _compressed(_STREAMS[coding](self.gzip.level), held, chunks, each)
        return ClosingIterator(body, response.close)

    def _not_modified(self, headers: Headers) -> Headers:
        """A 304 carries the Vary and ETag the 200 would have (RFC 9110 §15.4.5).

        A 304 rarely says its Content-Type: without one, assume the
        representation is one we would compress.
        """
        content_type = get_header(headers, "Content-Type")
        if content_type is not None and not self.gzip.compressible_type(content_type):
            return headers
        if get_header(headers, "Content-Encoding") is not None:
            return headers
        headers = add_vary(headers, "Accept-Encoding")
        coding, _ = negotiate(self.environ.get("HTTP_ACCEPT_ENCODING", ""), self.gzip.encodings)
        if coding is None:
            return headers
        return [(name, "W/" + value if name.lower() == "etag" and value.startswith('"') else value)
                for name, value in headers]

    def _send(self, headers: Headers, chunks: Iterable[bytes]) -> Iterable[bytes]:
        self._commit(headers)
        return ClosingIterator(chunks, self.response.close)

    def _whole(self, coding: str, headers: Headers, pieces: list[bytes], wait: int) -> Iterable[bytes]:
        if sum(map(len, pieces)) < max(wait, 1):
            return self._send(headers, pieces)
        compress, _, finish = _STREAMS[coding](self.gzip.level)
        body = b"".join([compress(piece) for piece in pieces if piece]) + finish()
        self._commit(set_header(_encoded(headers, coding), "Content-Length", str(len(body))))
        return ClosingIterator([body], self.response.close)

    def _commit(self, headers: Headers) -> None:
        self.response.start(self.start_response, headers=headers)


def _inspect(gzip: Gzip, status: str | None, headers: Headers) -> tuple[bool, str, int | None]:
    """(may be compressed, media type, Content-Length) from the response alone."""
    code = int(str(status)[:3])
    if code < 200 or code in _PASS_STATUS:
        return False, "", None
    content_type, length = "", None
    for name, value in headers:
        name = name.lower()
        if name == "content-type":
            content_type = value
        elif name == "content-length":
            length = int(value) if value.strip().isdigit() else None
        elif name in ("content-encoding", "content-range"):
            return False, "", None
        elif name == "cache-control" and "no-transform" in value.lower():
            return False, "", None
    if not gzip.compressible_type(content_type):
        return False, "", None
    return True, content_type.split(";", 1)[0].strip().lower(), length


def _encoded(headers: Headers, coding: str) -> Headers:
    """Headers for the encoded body: coding set, ETag weak, no length or ranges."""
    result = []
    for name, value in headers:
        lname = name.lower()
        if lname == "etag" and value.startswith('"'):
            result.append((name, "W/" + value))
        elif lname != "accept-ranges" and lname != "content-length":
            result.append((name, value))
    result.append(("Content-Encoding", coding))
    return result


def _compressed(stream: Stream, held: list[bytes], chunks: Iterator[bytes],
                each: bool) -> Iterator[bytes]:
    """Compress ``held`` then ``chunks``; ``each``: sync-flush after every chunk."""
    compress, sync, finish = stream
    if held:
        data = compress(b"".join(held))
        if each:
            data += sync()
        if data:
            yield data
        del held[:]
    if each:
        for chunk in chunks:
            if chunk:
                yield compress(chunk) + sync()
    else:
        for chunk in chunks:
            if chunk:
                data = compress(chunk)
                if data:
                    yield data
    yield finish()


# -- options ------------------------------------------------------------------

def _check_mime_types(value: Any) -> tuple[str, ...]:
    types = tuple(item.strip().lower() for item in check_strings(value, "mime_types", empty=False))
    for item in types:
        if not _MIME.match(item):
            raise OptionError("mime_types", f"{item!r} is not a media type "
                              f"such as 'text/html' or 'text/*'", value=value)
    return types


def _check_encodings(value: Any) -> tuple[str, ...]:
    codings = tuple(item.strip().lower() for item in check_strings(value, "encodings", empty=False))
    for coding in codings:
        if coding not in ENCODINGS:
            raise OptionError("encodings", f"unknown coding {coding!r}; "
                              f"expected some of {', '.join(ENCODINGS)}", value=value)
        package, module = _PACKAGES.get(coding, ("", zlib))
        if module is None:
            raise OptionError("encodings", f"{coding!r} needs the {package!r} "
                              f"package, which is not installed", value=value)
    if len(set(codings)) != len(codings):
        raise OptionError("encodings", f"{value!r} names a coding twice", value=value)
    return codings


OPTIONS = {
    "level": as_int,
    "min_size": as_size,
    "mime_types": as_list,
    "encodings": as_list,
    "flush": as_str,
}
filter_factory = filter_factory_for(Gzip, OPTIONS)


__all__ = ["Gzip", "negotiate", "filter_factory", "DEFAULT_MIME_TYPES", "FLUSH_POLICIES",
           "ENCODINGS", "OPTIONS"]
