"""stack.middleware.gzip: round trips, never-compress cases, negotiation, headers, flushing, memory."""
from __future__ import annotations

import gzip as gzip_module
import random
import sys
import textwrap
import threading
import time
import tracemalloc
import zlib
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from wsgiref.validate import validator

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Result, call, make_environ

from stack.middleware.gzip import Gzip, filter_factory, negotiate
from stack import load
from stack.errors import ConfigError, StartResponseError
from stack.testing import CloseTracker, assert_middleware
from stack.wsgi import ClosingIterator, call_app, remove_header

HTML = ("Content-Type", "text/html; charset=utf-8")
PAGE = b"<p>hello, compressible world</p>\n" * 200  # 6,800 bytes
ALL = ["gzip", "br", "zstd"]


# -- helpers ---------------------------------------------------------------------------

def decode(data: bytes, coding: str | None) -> bytes:
    """The body a client gets after undoing ``coding``."""
    if coding is None:
        return data
    if coding == "gzip":
        return gzip_module.decompress(data)
    if coding == "br":
        return brotli.decompress(data)
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise AssertionError(f"unexpected coding {coding!r}")


def decoded(result: Result) -> bytes:
    return decode(result.body, result.header("Content-Encoding"))


def app_for(status: str = "200 OK", headers: Iterable[tuple[str, str]] = (HTML,),
            chunks: Iterable[bytes] = (PAGE,), *, stream: bool = False) -> Callable:
    """An app sending ``chunks`` as a list (or, with ``stream``, from a generator)."""
    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        start_response(status, list(headers))
        return (chunk for chunk in chunks) if stream else list(chunks)
    return app


def open_body(app: Callable, **environ: Any) -> tuple[dict, Any]:
    """Call ``app`` under wsgiref.validate without reading the body: (start info, body)."""
    captured: dict = {}

    def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
        captured.update(status=status, headers=headers)
        return lambda data: None
    body = validator(app)(make_environ(**environ), start_response)
    return captured, body


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


# -- the contract kit ------------------------------------------------------------------

def decoding(inner: Callable[[Callable], Callable], accept: str = "gzip") -> Callable[[Callable], Callable]:
    """A test filter factory: ``inner`` sees ``Accept-Encoding: accept``; its body is decoded.

    Running the contract kit through it sends every probe down the compressing
    path (the kit's own body probes send no Accept-Encoding).
    """
    def factory(app: Callable) -> Callable:
        wrapped = inner(app)

        def decoder(environ: dict, start_response: Callable) -> Iterable[bytes]:
            response = call_app(wrapped, {**environ, "HTTP_ACCEPT_ENCODING": accept})
            coding = response.header("Content-Encoding")
            if coding is None:
                response.start(start_response)
                return ClosingIterator(response)
            headers = remove_header(response.headers, "Content-Encoding", "Content-Length")
            response.start(start_response, headers=headers)
            return ClosingIterator(_decode_stream(coding, response), response.close)
        return decoder
    return factory


def _decode_stream(coding: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    if coding == "gzip":
        unzip = zlib.decompressobj(31)
        step, end = unzip.decompress, unzip.flush
    elif coding == "br":
        unbr = brotli.Decompressor()
        step, end = unbr.process, lambda: b""
    else:
        unzstd = zstandard.ZstdDecompressor().decompressobj()
        step, end = unzstd.decompress, lambda: b""
    for chunk in chunks:
        data = step(chunk)
        if data:
            yield data
    data = end()
    if data:
        yield data


@pytest.mark.parametrize("factory", [
    Gzip, partial(Gzip, min_size=0), partial(Gzip, encodings=ALL, flush="never"),
], ids=["defaults", "min_size=0", "all-encodings-never"])
def test_contract_kit_without_compression(factory: Callable) -> None:
    """The kit's probes as sent (body probes carry no Accept-Encoding)."""
    assert_middleware(factory)


@pytest.mark.parametrize("coding, options", [
    ("gzip", {"min_size": 0}),
    ("gzip", {"min_size": 0, "flush": "never"}),
    ("gzip", {"min_size": 0, "flush": "always"}),
    ("br", {"min_size": 0, "encodings": ALL}),
    ("zstd", {"min_size": 0, "encodings": ALL}),
], ids=["gzip-auto", "gzip-never", "gzip-always", "br", "zstd"])
def test_contract_kit_through_the_compressing_path(coding: str, options: dict) -> None:
    """Every probe with ``Accept-Encoding`` set, the body decoded on the way out."""
    assert_middleware(decoding(partial(Gzip, **options), accept=coding))


# -- round trips -----------------------------------------------------------------------

# A piece of body: bytes with some repetition (so compressors have something to do).
piece = st.one_of(st.binary(max_size=300), st.binary(min_size=1, max_size=40).map(lambda b: b * 50),
                  st.just(b""))
step = st.tuples(st.sampled_from(["yield", "write"]), piece)


def op_app(written: list[bytes], steps: list[tuple[str, bytes]], as_list: bool) -> Callable:
    """write() ``written`` before returning; then yield or write() each step, in order."""
    def body(write: Callable) -> Iterator[bytes]:
        for kind, data in steps:
            if kind == "write":
                write(data)
            else:
                yield data

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for data in written:
            write(data)
        if as_list:
            return [data for _, data in steps]
        return body(write)
    return app


@pytest.mark.parametrize("coding, flush", [
    ("gzip", "auto"), ("gzip", "never"), ("gzip", "always"), ("br", "auto"), ("zstd", "never"),
])
@settings(max_examples=25, deadline=None, database=None)
@given(written=st.lists(piece, max_size=3), steps=st.lists(step, max_size=12),
       as_list=st.booleans(), min_size=st.sampled_from([0, 1, 100, 512, 5000]))
def test_round_trip_is_byte_identical(coding: str, flush: str, written: list[bytes],
                                      steps: list[tuple[str, bytes]], as_list: bool,
                                      min_size: int) -> None:
    if as_list:
        steps = [("yield", data) for _, data in steps]
    expected = b"".join(written) + b"".join(data for _, data in steps)
    inner = op_app(written, steps, as_list)
    app = Gzip(inner if as_list else validator(inner), min_size=min_size, encodings=ALL, flush=flush)
    result = call(app, HTTP_ACCEPT_ENCODING=f"{coding}, identity;q=0.5")
    assert decoded(result) == expected
    assert result.header("Vary") == "Accept-Encoding"
    coding_sent = result.header("Content-Encoding")
    if len(expected) >= max(min_size, 1):
        assert coding_sent == coding
    if coding_sent is None:
        assert result.body == expected
    length = result.header("Content-Length")
    assert length is None or int(length) == len(result.body)


# -- what is never compressed ----------------------------------------------------------

NEVER = {
    "204": app_for("204 No Content", [], []),
    "206": app_for("206 Partial Content", [HTML, ("Content-Range", "bytes 0-99/6800")], [PAGE[:100]]),
    "content-range-on-200": app_for(headers=[HTML, ("Content-Range", "bytes 0-6799/6800")]),
    "already-encoded": app_for(headers=[HTML, ("Content-Encoding", "gzip")]),
    "identity-declared": app_for(headers=[HTML, ("Content-Encoding", "identity")]),
    "no-transform": app_for(headers=[HTML, ("Cache-Control", "public, No-Transform")]),
    "image/png": app_for(headers=[("Content-Type", "image/png")]),
}


@pytest.mark.parametrize("app", NEVER.values(), ids=NEVER.keys())
def test_never_compressed(app: Callable) -> None:
    plain = call(app)
    result = call(Gzip(app, min_size=0), HTTP_ACCEPT_ENCODING="gzip, br, zstd, *")
    assert (result.status, result.headers, result.body) == (plain.status, plain.headers, plain.body)


def test_304_carries_the_vary_and_etag_the_200_would_have() -> None:
    """RFC 9110 §15.4.5: so a cache can match the 304 to the stored compressed 200."""
    app = app_for("304 Not Modified", [("ETag", '"v1"')], [])
    result = call(Gzip(app, min_size=0), HTTP_ACCEPT_ENCODING="gzip")
    assert result.status == "304 Not Modified" and result.body == b""
    assert result.header("ETag") == 'W/"v1"' and result.header("Vary") == "Accept-Encoding"
    assert result.header("Content-Encoding") is None
    plain = call(Gzip(app, min_size=0))  # a client that would get identity: the strong tag stays
    assert plain.header("ETag") == '"v1"' and plain.header("Vary") == "Accept-Encoding"
    # (wsgiref.validate refuses a Content-Type on a 304, which some apps still send)
    image = call(Gzip(app_for("304 Not Modified", [("ETag", '"i"'), ("Content-Type", "image/png")], [])),
                 validate=False, HTTP_ACCEPT_ENCODING="gzip")
    assert image.headers == [("ETag", '"i"'), ("Content-Type", "image/png")]


def test_head_of_a_small_list_body_matches_its_get() -> None:
    small = lambda e, s: (s("200 OK", [HTML]), [b"<p>tiny</p>"])[1]  # noqa: E731
    get = call(Gzip(small, min_size=512), HTTP_ACCEPT_ENCODING="gzip")
    head = call(Gzip(small, min_size=512), method="HEAD", HTTP_ACCEPT_ENCODING="gzip")
    assert get.header("Content-Encoding") is None and head.header("Content-Encoding") is None
    assert head.headers == get.headers


def test_write_body_streams_through_the_compressor_in_bounded_memory() -> None:
    piece = PAGE[:4096] * 16  # 64 KB
    out: list[bytes] = []

    def writer_app(environ, start_response):
        write = start_response("200 OK", [HTML])
        for _ in range(200):  # ~13 MB through write()
            write(piece)
        return []

    def start_response(status, headers, exc_info=None):
        assert ("Content-Encoding", "gzip") in headers
        return out.append

    tracemalloc.start()
    try:
        body = Gzip(writer_app, min_size=0)(
            {"REQUEST_METHOD": "GET", "HTTP_ACCEPT_ENCODING": "gzip"}, start_response)
        for chunk in body:
            out.append(chunk)
        body.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(out) > 100  # streamed out piece by piece, not in one lump
    assert zlib.decompress(b"".join(out), 47) == piece * 200
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize("size, headers, stream, expect", [
    (100, [HTML, ("Content-Length", "100")], False, None),
    (100, [HTML, ("Content-Length", "100")], True, None),
    (100, [HTML], False, None),
    (100, [HTML], True, None),
    (512, [HTML], True, "gzip"),
    (0, [HTML, ("Content-Length", "0")], False, None),
], ids=["length-header", "length-header-stream", "small-list", "small-stream",
        "stream-reaches-min-size", "empty"])
def test_min_size(size: int, headers: list, stream: bool, expect: str | None) -> None:
    body = b"x" * size
    app = app_for(headers=headers, chunks=[body[:size // 2], body[size // 2:]], stream=stream)
    result = call(Gzip(app, min_size=512), HTTP_ACCEPT_ENCODING="gzip")
    assert result.header("Content-Encoding") == expect
    assert decoded(result) == body
    assert result.header("Vary") == "Accept-Encoding"  # the decision could depend on the client


def test_refused_identity_lifts_min_size_but_not_empty_bodies() -> None:
    small = app_for(chunks=[b"tiny"])
    result = call(Gzip(small), HTTP_ACCEPT_ENCODING="gzip, identity;q=0")
    assert result.header("Content-Encoding") == "gzip" and decoded(result) == b"tiny"
    empty = call(Gzip(app_for(chunks=[])), HTTP_ACCEPT_ENCODING="gzip, identity;q=0")
    assert empty.header("Content-Encoding") is None and empty.body == b""


def test_head_gets_headers_only_and_the_body_is_not_read() -> None:
    tracker = CloseTracker(app_for(headers=[HTML, ("Content-Length", str(len(PAGE))),
                                            ("ETag", '"abc"')], stream=True))
    result = call(Gzip(tracker), method="HEAD", HTTP_ACCEPT_ENCODING="gzip")
    assert result.header("Content-Encoding") == "gzip"
    assert result.header("Content-Length") is None and result.header("ETag") == 'W/"abc"'
    assert result.body == b"" and tracker.closes == [1]
    small = call(Gzip(app_for(headers=[HTML, ("Content-Length", "10")], chunks=[])),
                 method="HEAD", HTTP_ACCEPT_ENCODING="gzip")
    assert small.header("Content-Encoding") is None and small.header("Content-Length") == "10"


# -- negotiation -----------------------------------------------------------------------

NEGOTIATION = [
    # header, offered, coding, identity acceptable
    ("", ("gzip",), None, True),
    ("gzip", ("gzip",), "gzip", True),
    ("GZIP", ("gzip",), "gzip", True),
    ("x-gzip", ("gzip",), "gzip", True),
    ("gzip;q=0", ("gzip",), None, True),
    ("gzip; q=0.000", ("gzip",), None, True),
    ("deflate", ("gzip",), None, True),
    ("*", ("gzip",), "gzip", True),
    ("*;q=0", ("gzip",), None, False),
    ("*;q=0, identity", ("gzip",), None, True),
    ("*, gzip;q=0", ("gzip", "br"), "br", True),
    ("identity;q=0", ("gzip",), None, False),
    ("gzip, identity;q=0", ("gzip",), "gzip", False),
    ("gzip;q=0.5, br;q=0.8", ("gzip", "br"), "br", True),
    ("gzip, br", ("gzip", "br"), "gzip", True),
    ("gzip, br", ("br", "gzip"), "br", True),
    ("gzip, deflate, br", ("br", "gzip"), "br", True),
    ("gzip, deflate, br, zstd", ("zstd", "br", "gzip"), "zstd", True),
    ("br;q=1.0, gzip;q=0.8, *;q=0.1", ("gzip", "br", "zstd"), "br", True),
    ("zstd;q=0.1, *;q=0.5", ("gzip", "zstd"), "gzip", True),
    ("gzip;q=2", ("gzip",), None, True),          # malformed q: the entry is ignored
    ("gzip;q=abc, br", ("gzip", "br"), "br", True),
    ("gzip;level=1;q=0.5", ("gzip",), "gzip", True),
    (" , ,gzip ,", ("gzip",), "gzip", True),
]


@pytest.mark.parametrize("value, offered, coding, identity", NEGOTIATION,
                         ids=[repr(row[0]) + "-" + "+".join(row[1]) for row in NEGOTIATION])
def test_negotiation(value: str, offered: tuple, coding: str | None, identity: bool) -> None:
    assert negotiate(value, offered) == (coding, identity)


def test_browser_style_request_gets_br_when_enabled() -> None:
    accept = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br"}
    assert call(Gzip(app_for()), **accept).header("Content-Encoding") == "gzip"
    best = call(Gzip(app_for(), encodings=["br", "gzip"]), **accept)
    assert best.header("Content-Encoding") == "br" and decoded(best) == PAGE
    # our order breaks ties; the client's q-values come first
    assert call(Gzip(app_for(), encodings=["gzip", "br"]), **accept).header("Content-Encoding") == "gzip"
    low_br = call(Gzip(app_for(), encodings=["br", "gzip"]), HTTP_ACCEPT_ENCODING="br;q=0.5, gzip")
    assert low_br.header("Content-Encoding") == "gzip"


def test_no_accept_encoding_means_identity_with_vary() -> None:
    result = call(Gzip(app_for()))
    assert result.header("Content-Encoding") is None and result.body == PAGE
    assert result.header("Vary") == "Accept-Encoding"


# -- headers ---------------------------------------------------------------------------

def test_headers_on_a_compressed_whole_body() -> None:
    app = app_for(headers=[HTML, ("Content-Length", str(len(PAGE))), ("ETag", '"v1"'),
                           ("Accept-Ranges", "bytes"), ("Vary", "Cookie"), ("X-Kept", "1")])
    result = call(Gzip(app), HTTP_ACCEPT_ENCODING="gzip")
    assert result.header("Content-Encoding") == "gzip"
    assert result.header("Content-Length") == str(len(result.body))  # exact: one piece
    assert len(result.chunks) == 1 and decoded(result) == PAGE
    assert result.header("ETag") == 'W/"v1"' and result.header("Accept-Ranges") is None
    assert result.header("Vary") == "Cookie, Accept-Encoding" and result.header("X-Kept") == "1"


def test_headers_on_a_compressed_stream() -> None:
    app = app_for(headers=[HTML, ("Content-Length", str(len(PAGE) * 2)), ("ETag", 'W/"weak"'),
                           ("vary", "accept-encoding")], chunks=[PAGE, PAGE], stream=True)
    result = call(Gzip(app), HTTP_ACCEPT_ENCODING="gzip")
    assert result.header("Content-Length") is None  # length of a stream is not known
    assert result.header("ETag") == 'W/"weak"'
    assert [value for name, value in result.headers if name.lower() == "vary"] == ["accept-encoding"]
    assert decoded(result) == PAGE * 2


@pytest.mark.parametrize("accept", ["", "gzip;q=0", "deflate", "identity"])
def test_vary_also_when_the_client_is_why_we_did_not_compress(accept: str) -> None:
    result = call(Gzip(app_for(headers=[HTML, ("Vary", "Origin")])), HTTP_ACCEPT_ENCODING=accept)
    assert result.header("Content-Encoding") is None and result.body == PAGE
    assert result.header("Vary") == "Origin, Accept-Encoding"


def test_vary_star_is_left_alone_and_no_vary_for_types_never_compressed() -> None:
    star = call(Gzip(app_for(headers=[HTML, ("Vary", "*")])), HTTP_ACCEPT_ENCODING="gzip")
    assert star.header("Vary") == "*" and star.header("Content-Encoding") == "gzip"
    png = call(Gzip(app_for(headers=[("Content-Type", "image/png")])), HTTP_ACCEPT_ENCODING="gzip")
    assert png.header("Vary") is None


@pytest.mark.parametrize("content_type, compressed", [
    ("text/plain", True), ("TEXT/CSV; charset=utf-8", True), ("application/json", True),
    ("application/json;charset=utf-8", True), ("image/svg+xml", True), ("application/x-ndjson", True),
    ("application/octet-stream", False), ("image/jpeg", False), ("video/mp4", False),
    ("application/zip", False), ("textual/plain", False), ("", False),
])
def test_default_mime_types(content_type: str, compressed: bool) -> None:
    result = call(Gzip(app_for(headers=[("Content-Type", content_type)])), HTTP_ACCEPT_ENCODING="gzip")
    assert (result.header("Content-Encoding") == "gzip") is compressed


def test_custom_mime_types_with_wildcards() -> None:
    gz = partial(Gzip, mime_types=["application/*", "text/csv"])
    assert call(gz(app_for(headers=[("Content-Type", "application/zip")])),
                HTTP_ACCEPT_ENCODING="gzip").header("Content-Encoding") == "gzip"
    assert call(gz(app_for(headers=[("Content-Type", "text/html")])),
                HTTP_ACCEPT_ENCODING="gzip").header("Content-Encoding") is None
    everything = Gzip(app_for(headers=[("Content-Type", "image/bmp")]), mime_types=["*/*"])
    assert call(everything, HTTP_ACCEPT_ENCODING="gzip").header("Content-Encoding") == "gzip"


# -- flushing --------------------------------------------------------------------------

class Paced:
    """A generator app that records how far it was pulled."""

    def __init__(self, chunks: list[bytes], content_type: str = "text/html") -> None:
        self.chunks, self.content_type, self.pulled = chunks, content_type, 0

    def __call__(self, environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", self.content_type)])
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


def first_out(app: Paced, **options: Any) -> tuple[bytes, int, Any]:
    """The first compressed chunk out of Gzip(app), how far the app was pulled, and the body."""
    info, body = open_body(Gzip(validator(app), **options), HTTP_ACCEPT_ENCODING="gzip")
    assert header(info["headers"], "Content-Encoding") == "gzip"
    iterator = iter(body)
    return next(iterator), app.pulled, body


@pytest.mark.parametrize("flush", ["auto", "always"])
def test_first_compressed_bytes_leave_after_the_first_app_chunk(flush: str) -> None:
    chunks = [b"<h1>first chunk</h1>" * 40, b"<p>second</p>" * 40, b"<p>third</p>" * 40]
    app = Paced(chunks)
    first, pulled, body = first_out(app, flush=flush)
    try:
        assert pulled == 1  # the app was not asked for its second chunk yet
        assert zlib.decompressobj(31).decompress(first) == chunks[0]
        unzip = zlib.decompressobj(31)
        seen = unzip.decompress(first)
        for index, chunk in enumerate(body, start=2):  # every later chunk is flushed too
            seen += unzip.decompress(chunk)
            if index <= len(chunks):
                assert seen == b"".join(chunks[:index]) and app.pulled == index
        assert seen + unzip.flush() == b"".join(chunks) and unzip.eof
    finally:
        body.close()


def test_auto_holds_a_small_stream_start_but_always_does_not() -> None:
    chunks = [b"tick\n", b"x" * 600, b"tock\n"]
    held = Paced(chunks)
    first, pulled, body = first_out(held)
    body.close()
    assert pulled == 2 and zlib.decompressobj(31).decompress(first) == b"".join(chunks[:2])
    eager = Paced(chunks)
    first, pulled, body = first_out(eager, flush="always")
    body.close()
    assert pulled == 1 and zlib.decompressobj(31).decompress(first) == b"tick\n"


@pytest.mark.parametrize("flush", ["auto", "never"])
def test_event_stream_flushes_every_event_whatever_the_policy(flush: str) -> None:
    events = [b"data: %d\n\n" % n for n in range(5)]
    app = Paced(events, "text/event-stream")
    first, pulled, body = first_out(app, flush=flush)
    try:
        assert pulled == 1 and zlib.decompressobj(31).decompress(first) == events[0]
    finally:
        body.close()


def test_flush_never_lets_the_compressor_batch_small_chunks() -> None:
    chunks = [b"<li>item %d</li>\n" % n for n in range(2000)]
    always = call(Gzip(Paced(chunks), flush="always"), HTTP_ACCEPT_ENCODING="gzip")
    never = call(Gzip(Paced(chunks), flush="never"), HTTP_ACCEPT_ENCODING="gzip")
    assert decoded(always) == decoded(never) == b"".join(chunks)
    assert len(never.chunks) < 10 < len(always.chunks)
    assert len(never.body) < len(always.body)


# -- memory, close and errors ----------------------------------------------------------

def test_a_long_stream_passes_through_in_bounded_memory() -> None:
    rng = random.Random(5)  # text-like data: compresses about 3:1, so output is real work
    words = [bytes(rng.choices(range(97, 123), k=rng.randint(2, 9))) for _ in range(3000)]
    chunk = b" ".join(rng.choices(words, k=12000))[:65536]
    count = 1024  # 64 MB

    def app(environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [HTML])
        for _ in range(count):
            yield chunk
    unzip, size, crc = zlib.decompressobj(31), 0, 0
    tracemalloc.start()
    try:
        info, body = open_body(Gzip(validator(app), level=1), HTTP_ACCEPT_ENCODING="gzip")
        for data in body:
            plain = unzip.decompress(data)
            size, crc = size + len(plain), zlib.crc32(plain, crc)
        body.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == count * len(chunk) and crc == _crc(chunk, count)
    assert peak < 3 * 2**20, f"peak {peak / 2**20:.1f} MB for a {size / 2**20:.0f} MB stream"


def _crc(chunk: bytes, count: int) -> int:
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return crc


def test_close_runs_once_when_the_client_leaves_mid_stream() -> None:
    tracker = CloseTracker(validator(Paced([PAGE] * 5)))
    info, body = open_body(Gzip(tracker), HTTP_ACCEPT_ENCODING="gzip")
    next(iter(body))
    body.close()
    body.close()
    assert tracker.closes == [1]


def test_an_error_mid_stream_reaches_the_server_and_closes_the_app() -> None:
    def broken(environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [HTML])
        yield PAGE
        raise RuntimeError("database went away")
    tracker = CloseTracker(validator(broken))
    info, body = open_body(Gzip(tracker), HTTP_ACCEPT_ENCODING="gzip")
    iterator = iter(body)
    assert zlib.decompressobj(31).decompress(next(iterator)) == PAGE
    with pytest.raises(RuntimeError, match="database went away"):
        next(iterator)
    body.close()
    assert tracker.closes == [1]


def test_exc_info_after_compressed_bytes_left_re_raises() -> None:
    def app(environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [HTML])
        yield PAGE
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Internal Server Error", [HTML], sys.exc_info())
        yield b"error page"
    with pytest.raises(KeyError, match="late"):
        call(Gzip(app), HTTP_ACCEPT_ENCODING="gzip")


def exc_info_app(first: bytes) -> Callable:
    """Yields ``first``, then replaces its response by start_response(..., exc_info)."""
    def app(environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [HTML, ("ETag", '"ok"')])
        yield first
        try:
            raise KeyError("early")
        except KeyError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"try again later\n" * 100
    return app


def test_exc_info_while_the_stream_start_is_held_re_raises_once_bytes_came_out() -> None:
    """Held or not, body bytes left the app: as with a server, too late to replace."""
    with pytest.raises(KeyError, match="early"):
        call(Gzip(exc_info_app(b"<p>partial")), HTTP_ACCEPT_ENCODING="gzip")


def test_exc_info_after_only_empty_chunks_replaces_the_held_response() -> None:
    result = call(Gzip(exc_info_app(b"")), HTTP_ACCEPT_ENCODING="gzip")
    assert result.status == "503 Service Unavailable" and result.header("ETag") is None
    assert result.header("Content-Encoding") == "gzip"
    assert decoded(result) == b"try again later\n" * 100


def test_app_errors_before_the_body_propagate_and_close() -> None:
    def no_start(environ: dict, start_response: Callable) -> Iterator[bytes]:
        yield b"x"
    with pytest.raises(StartResponseError):
        call(Gzip(no_start), HTTP_ACCEPT_ENCODING="gzip")

    class Failing:
        closes = 0

        def __iter__(self) -> Iterator[bytes]:
            return iter([PAGE])

        def close(self) -> None:
            Failing.closes += 1

    def outer_fails(status: str, headers: list, exc_info: Any = None) -> Callable:
        raise OSError("client gone")

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        start_response("200 OK", [HTML])
        return Failing()
    with pytest.raises(OSError, match="client gone"):
        Gzip(validator(app))(make_environ(HTTP_ACCEPT_ENCODING="gzip"), outer_fails)
    assert Failing.closes == 1


def test_the_app_header_list_is_not_mutated() -> None:
    sent = [HTML, ("ETag", '"v"'), ("Content-Length", str(len(PAGE)))]
    before = list(sent)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        start_response("200 OK", sent)
        return [PAGE]
    call(Gzip(app), HTTP_ACCEPT_ENCODING="gzip")
    assert sent == before


def test_no_state_is_kept_between_requests_running_at_once() -> None:
    """Two requests interleaved on one Gzip object (threads) each get their own stream."""
    gate = threading.Event()

    def app(environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [HTML])
        word = environ["PATH_INFO"].encode() * 200
        yield word
        gate.wait(5)
        yield word
    shared = Gzip(app)
    results: dict[str, bytes] = {}

    def fetch(path: str) -> None:
        results[path] = decoded(call(shared, path, HTTP_ACCEPT_ENCODING="gzip"))
    threads = [threading.Thread(target=fetch, args=(path,)) for path in ("/a", "/b")]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == {"/a": b"/a" * 400, "/b": b"/b" * 400}


# -- options and INI -------------------------------------------------------------------

@pytest.mark.parametrize("options, named", [
    ({"level": 0}, "level"), ({"level": 10}, "level"), ({"level": "6"}, "level"),
    ({"level": True}, "level"), ({"min_size": -1}, "min_size"), ({"min_size": 1.5}, "min_size"),
    ({"mime_types": "text/html"}, "mime_types"), ({"mime_types": []}, "mime_types"),
    ({"mime_types": ["html"]}, "mime_types"), ({"mime_types": ["text/h*"]}, "mime_types"),
    ({"encodings": []}, "encodings"), ({"encodings": ["deflate"]}, "encodings"),
    ({"encodings": ["gzip", "gzip"]}, "encodings"), ({"encodings": "gzip"}, "encodings"),
    ({"flush": "sometimes"}, "flush"),
])
def test_bad_options_raise_value_error_naming_the_option(options: dict, named: str) -> None:
    # "option 'NAME': " first (not "Gzip option ..."), so the loader can point at its line
    with pytest.raises(ValueError, match=f"^option '{named}': "):
        Gzip(app_for(), **options)


@pytest.mark.parametrize("coding, package", [("br", "brotli"), ("zstd", "zstandard")])
def test_optional_encodings_need_their_package(monkeypatch: pytest.MonkeyPatch, coding: str,
                                               package: str) -> None:
    import stack.middleware.gzip as gzip_mod
    monkeypatch.setitem(gzip_mod._PACKAGES, coding, (package, None))
    with pytest.raises(ValueError, match=f"^option 'encodings': {coding!r} needs the {package!r} package"):
        Gzip(app_for(), encodings=["gzip", coding])


def test_options_are_kept_for_stack_show() -> None:
    app = Gzip(app_for(), level=3, min_size=0, mime_types=["Text/*"], encodings=("br", "gzip"),
               flush="never")
    assert (app.level, app.min_size, app.mime_types, app.encodings, app.flush) == (
        3, 0, ("text/*",), ("br", "gzip"), "never")


def test_filter_factory_converts_ini_strings() -> None:
    make = filter_factory({}, level="9", min_size="1KB", mime_types="text/*, application/json",
                          encodings="br gzip", flush="Always")
    app = make(app_for())
    assert (app.level, app.min_size, app.mime_types, app.encodings, app.flush) == (
        9, 1024, ("text/*", "application/json"), ("br", "gzip"), "always")
    with pytest.raises(ConfigError, match="compres_level.*known: encodings, flush, level"):
        filter_factory({}, compres_level="9")
    with pytest.raises(ConfigError, match="'level'"):
        filter_factory({}, level="fast")


def test_filter_factory_rejects_a_bad_value_before_wrapping() -> None:
    # when the filter section is built, not later when the pipeline applies it
    with pytest.raises(ValueError, match="^option 'encodings': unknown coding 'deflate'"):
        filter_factory({}, encodings="deflate")


def page_factory(global_conf: dict, **local_conf: str) -> Callable:
    """An app factory the INI tests name with ``call:``."""
    return app_for(chunks=[local_conf.get("text", "page").encode() * 500])


def write_ini(tmp_path: Path, filter_lines: str) -> Path:
    path = tmp_path / "site.ini"
    path.write_text(textwrap.dedent("""
        [pipeline:main]
        pipeline = gz page

        [filter:gz]
        use = egg:stack#gzip
        {filter_lines}

        [app:page]
        use = call:test_middleware.test_gzip:page_factory
        text = hello
    """).format(filter_lines=filter_lines))
    return path


def test_loaded_from_an_ini_pipeline(tmp_path: Path) -> None:
    path = write_ini(tmp_path, "level = 9\nmin_size = 1KB\nencodings = br, gzip\n"
                               "mime_types = text/* application/json\nflush = always")
    app = load(path)
    assert isinstance(app, Gzip) and callable(app.app)
    assert (app.level, app.min_size, app.encodings, app.flush) == (9, 1024, ("br", "gzip"), "always")
    result = call(app, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert result.header("Content-Encoding") == "br" and decoded(result) == b"hello" * 500
    assert call(load(write_ini(tmp_path, "")), HTTP_ACCEPT_ENCODING="gzip, br").header(
        "Content-Encoding") == "gzip"


@pytest.mark.parametrize("line, named", [("compres_level = 9", "compres_level"),
                                         ("level = 11", "level"), ("encodings = lzma", "encodings"),
                                         ("flush = later", "flush")])
def test_bad_ini_options_are_rejected_at_load(tmp_path: Path, line: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        load(write_ini(tmp_path, line))
