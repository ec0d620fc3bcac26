"""The sans-IO request parser: tables of good and bad heads, chunked bodies, fuzzing.

Every rule in :mod:`stack.server.parser`'s docstring has a row here: a good
request with the :class:`RequestHead` it gives, or a bad one with the status
it gets. Hypothesis then checks the properties the server relies on:
arbitrary bytes raise nothing but :class:`ParseError`, and a request (or a
chunked body) parses the same however the network splits it.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.server.parser import (BAD_REQUEST, BAD_VERSION, CONTENT_TOO_LARGE, FIELDS_TOO_LARGE,
                                 NOT_IMPLEMENTED, URI_TOO_LONG, ChunkedDecoder, ParseError,
                                 RequestHead, check_incomplete_head, find_head_end, parse_head)

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SPLITS = settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def head(*lines: str | bytes, end: bytes = b"\r\n") -> bytes:
    """A request head: ``lines`` joined by ``end``, then the empty line."""
    raw = [line.encode("latin-1") if isinstance(line, str) else line for line in lines]
    return b"".join(line + end for line in raw) + end


def get(target: str = "/", *fields: str, version: str = "HTTP/1.1", method: str = "GET") -> bytes:
    """``METHOD target version`` with ``Host: example.com`` (on 1.1) and ``fields``."""
    host = ("Host: example.com",) if version == "HTTP/1.1" else ()
    return head(f"{method} {target} {version}", *host, *fields)


# -- good heads ------------------------------------------------------------------------

GOOD: list[tuple[str, bytes, dict[str, Any]]] = [
    ("simple", get("/"), dict(
        method="GET", target="/", path="/", query="", version="HTTP/1.1",
        headers=[("host", "example.com")], content_length=None, chunked=False,
        keep_alive=True, expect_continue=False, host="example.com")),
    ("query", get("/a/b?x=1&y=%20"), dict(path="/a/b", query="x=1&y=%20")),
    ("empty-query", get("/a?"), dict(path="/a", query="")),
    ("percent-decoded-latin-1", get("/caf%C3%A9%20x"), dict(
        target="/caf%C3%A9%20x", path="/caf\xc3\xa9 x")),
    ("encoded-slash-decoded", get("/a%2Fb"), dict(path="/a/b")),
    ("bad-escape-kept", get("/a%zz%4"), dict(path="/a%zz%4")),
    ("raw-utf8-target", head(b"GET /\xc3\xa0 HTTP/1.1", "Host: a"), dict(path="/\xc3\xa0")),
    ("slashes-kept", get("///x//y"), dict(path="///x//y")),
    ("quotes-in-target", get('/with_"quotes"?foo="bar"'), dict(path='/with_"quotes"', query='foo="bar"')),
    ("http10-no-host", get("/", version="HTTP/1.0"), dict(
        version="HTTP/1.0", keep_alive=False, host=None, headers=[])),
    ("http10-keep-alive", get("/", "Connection: Keep-Alive", version="HTTP/1.0"), dict(keep_alive=True)),
    ("http10-keep-alive-and-close", get("/", "Connection: keep-alive, close", version="HTTP/1.0"),
     dict(keep_alive=False)),
    ("http10-host-kept", head("GET / HTTP/1.0", "Host: a:80"), dict(host="a:80")),
    ("close", get("/", "Connection: close"), dict(keep_alive=False)),
    ("close-in-list", get("/", "Connection: Upgrade, CLOSE"), dict(keep_alive=False)),
    ("close-second-field", get("/", "Connection: upgrade", "Connection: close"), dict(keep_alive=False)),
    ("keep-alive-list-empty-items", get("/", "Connection: , ,keep-alive"), dict(keep_alive=True)),
    ("expect-continue", get("/", "Expect: 100-Continue", "Content-Length: 3"), dict(
        expect_continue=True, content_length=3)),
    ("expect-other", get("/", "Expect: something"), dict(expect_continue=False)),
    ("expect-ignored-on-1.0", get("/", "Expect: 100-continue", version="HTTP/1.0"),
     dict(expect_continue=False)),
    ("content-length", get("/", "Content-Length: 5"), dict(content_length=5, chunked=False)),
    ("content-length-zero", get("/", "Content-Length: 0"), dict(content_length=0)),
    ("content-length-leading-zeros", get("/", "Content-Length: 00000000000000000000007"),
     dict(content_length=7)),
    ("content-length-at-limit", get("/", "Content-Length: 10"), dict(content_length=10)),
    ("chunked", get("/", "Transfer-Encoding: chunked"), dict(chunked=True, content_length=None)),
    ("chunked-any-case", get("/", "Transfer-Encoding: ChUnKeD"), dict(chunked=True)),
    ("chunked-empty-list-items", get("/", "Transfer-Encoding: , chunked ,"), dict(chunked=True)),
    ("names-lowercased-values-trimmed", get("/", "X-Thing: \t a b\tc \t"), dict(
        headers=[("host", "example.com"), ("x-thing", "a b\tc")])),
    ("empty-value", get("/", "X-Empty:"), dict(headers=[("host", "example.com"), ("x-empty", "")])),
    ("obs-text-value", head("GET / HTTP/1.1", "Host: a", b"X-Name: caf\xc3\xa9\xff"), dict(
        headers=[("host", "a"), ("x-name", "caf\xc3\xa9\xff")])),
    ("repeated-fields-kept-in-order", get("/", "Accept: a", "X: 1", "accept: b"), dict(
        headers=[("host", "example.com"), ("accept", "a"), ("x", "1"), ("accept", "b")])),
    ("underscore-names-dropped", get("/", "X_User: evil", "X-User: good", "Content_Length: 9"), dict(
        headers=[("host", "example.com"), ("x-user", "good")], content_length=None)),
    ("underscore-transfer-encoding-dropped", get("/", "Transfer_Encoding: chunked"), dict(
        chunked=False, headers=[("host", "example.com")])),
    ("token-names", get("/", "X.Custom|Pipe~!#$%&'*+^`: ok"), dict(
        headers=[("host", "example.com"), ("x.custom|pipe~!#$%&'*+^`", "ok")])),
    ("bare-lf-lines", head("GET /lf HTTP/1.1", "Host: a", end=b"\n"), dict(path="/lf", host="a")),
    ("mixed-line-ends", b"GET /m HTTP/1.1\nHost: a\r\nX: y\n\r\n", dict(
        path="/m", headers=[("host", "a"), ("x", "y")])),
    ("leading-empty-lines", b"\r\n\n\r\n" + get("/lead"), dict(path="/lead")),
    ("eight-leading-empty-lines", b"\r\n" * 8 + get("/eight"), dict(path="/eight")),
    ("method-token", get("/", method="M-SEARCH"), dict(method="M-SEARCH")),
    ("method-unconventional", get("/", method="-blargh"), dict(method="-blargh")),
    ("absolute-form", get("http://other.example:8080/p?q=1"), dict(
        target="http://other.example:8080/p?q=1", path="/p", query="q=1",
        host="other.example:8080", headers=[("host", "example.com")])),
    ("absolute-form-https-no-path", get("HTTPS://Example.com"), dict(path="/", host="Example.com")),
    ("absolute-form-query-only", get("http://a.example?x"), dict(path="/", query="x")),
    ("absolute-form-userinfo-dropped", get("http://user:pw@a.example:81/x"), dict(
        host="a.example:81", path="/x")),
    ("absolute-form-ipv6", get("http://[::1]:8080/v6"), dict(host="[::1]:8080", path="/v6")),
    ("absolute-form-percent", get("http://a.example/%7Euser"), dict(path="/~user")),
    ("asterisk-options", get("*", method="OPTIONS"), dict(path="*", query="", target="*")),
    ("connect", get("example.com:443", method="CONNECT"), dict(
        path="", query="", host="example.com:443", target="example.com:443")),
    ("connect-ipv6", get("[::1]:443", method="CONNECT"), dict(host="[::1]:443", path="")),
    ("host-reg-name-sub-delims", head("GET / HTTP/1.1", "Host: 0.0.0.0=5000"), dict(host="0.0.0.0=5000")),
    ("host-ipv6", head("GET / HTTP/1.1", "Host: [::1]:80"), dict(host="[::1]:80")),
    ("host-ipvfuture", head("GET / HTTP/1.1", "Host: [v1.fe80::a+en1]"), dict(host="[v1.fe80::a+en1]")),
    ("host-empty-port", head("GET / HTTP/1.1", "Host: a.example:"), dict(host="a.example:")),
    ("host-empty", head("GET / HTTP/1.1", "Host:"), dict(host="")),
    ("host-any-case-name", head("GET / HTTP/1.1", "hOsT: a"), dict(host="a")),
]


@pytest.mark.parametrize("raw, expected", [case[1:] for case in GOOD], ids=[case[0] for case in GOOD])
def test_good_request(raw: bytes, expected: dict[str, Any]) -> None:
    parsed = parse_head(raw, max_body=10)
    for name, value in expected.items():
        assert getattr(parsed, name) == value, name


def test_has_body() -> None:
    assert parse_head(get("/", "Content-Length: 1")).has_body
    assert parse_head(get("/", "Transfer-Encoding: chunked")).has_body
    assert not parse_head(get("/", "Content-Length: 0")).has_body
    assert not parse_head(get("/")).has_body


# -- bad heads -------------------------------------------------------------------------

BAD: list[tuple[str, bytes, int]] = [
    # the head itself
    ("empty", b"", 400),
    ("only-empty-lines", b"\r\n\r\n", 400),
    ("nine-leading-empty-lines", b"\r\n" * 9 + get("/"), 400),
    ("no-final-empty-line", b"GET / HTTP/1.1\r\nHost: a\r\n", 400),
    ("no-line-end", b"GET / HTTP/1.1", 400),
    ("empty-line-inside", b"GET / HTTP/1.1\r\n\r\nHost: a\r\n\r\n", 400),
    # request line
    ("double-space", head("GET  / HTTP/1.1", "Host: a"), 400),
    ("trailing-space", head("GET / HTTP/1.1 ", "Host: a"), 400),
    ("leading-space", head(" GET / HTTP/1.1", "Host: a"), 400),
    ("tabs", head("GET\t/\tHTTP/1.1", "Host: a"), 400),
    ("http-0.9-line", head("GET /"), 400),
    ("no-target", head("GET HTTP/1.1", "Host: a"), 400),
    ("newline-separated", b"GET\n/\nHTTP/1.1\r\n\r\n", 400),
    ("lowercase-http", head("GET / http/1.1", "Host: a"), 400),
    ("not-http", head("GET / FTP/1.1", "Host: a"), 400),
    ("version-junk", head("GET / HTTP/1.1x", "Host: a"), 400),
    ("version-no-minor", head("GET / HTTP/1", "Host: a"), 400),
    ("version-two-digit-minor", head("GET / HTTP/0.99", "Host: a"), 400),
    ("version-three-digits", head("GET / HTTP/111", "Host: a"), 400),
    ("version-long", head("GET / HTTP/" + "1" * 50 + ".1", "Host: a"), 400),
    ("version-2.0", head("GET / HTTP/2.0", "Host: a"), 505),
    ("version-0.9", head("GET / HTTP/0.9", "Host: a"), 505),
    ("version-1.2", head("GET / HTTP/1.2", "Host: a"), 505),
    ("version-3.0", head("GET / HTTP/3.0", "Host: a"), 505),
    ("method-colon", head("GET: / HTTP/1.1", "Host: a"), 400),
    ("method-bad-char", head("bla:rgh / HTTP/1.1", "Host: a"), 400),
    ("method-paren", head("G(T / HTTP/1.1", "Host: a"), 400),
    ("method-nul", head(b"GET\x00 / HTTP/1.1", "Host: a"), 400),
    ("method-nul-prefix", head(b"GET\x00PROXY / HTTP/1.1", "Host: a"), 400),
    ("method-non-ascii", head(b"GET\xc3\x9f / HTTP/1.1", "Host: a"), 400),
    ("target-del", head(b"GET /a\x7fb HTTP/1.1", "Host: a"), 400),
    ("target-ctl", head(b"GET /a\x01b HTTP/1.1", "Host: a"), 400),
    ("target-nul", head(b"GET /a\x00b HTTP/1.1", "Host: a"), 400),
    ("bare-cr-in-line", head(b"GET / HTTP/1.1\rX", "Host: a"), 400),
    ("bare-cr-line-end", b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    ("proxy-protocol-line", head("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443", "GET / HTTP/1.1"), 400),
    # fields
    ("space-before-colon", get("/", "Content-Length : 3"), 400),
    ("tab-before-colon", get("/", "X\t: 3"), 400),
    ("obs-fold-space", get("/", "X: one", " two"), 400),
    ("obs-fold-tab", get("/", "X: one", "\ttwo"), 400),
    ("whitespace-before-first-field", head("GET / HTTP/1.1", " Host: a"), 400),
    ("no-colon", get("/", "X-No-Colon"), 400),
    ("empty-name", get("/", ": value"), 400),
    ("space-in-name", get("/", "X Y: z"), 400),
    ("nul-in-name", get("/", "ba\x00z: bar"), 400),
    ("non-ascii-name", head("GET / HTTP/1.1", "Host: a", b"Content-Length\xc3\x9f: 3"), 400),
    ("nul-in-value", get("/", "X: a\x00b"), 400),
    ("bare-cr-in-value", get("/", "X: a\rb"), 400),
    ("cr-before-crlf", get("/", "X: a\r"), 400),
    ("bel-in-value", get("/", "X: plain\x07injected"), 400),
    ("del-in-value", get("/", "X: plain\x7finjected"), 400),
    ("esc-in-value", get("/", "X: \x1b[31m"), 400),
    ("lf-smuggled-field", b"GET / HTTP/1.1\r\nHost: x\r\nNewline: a\nContent-Length: 26\r\n"
                          b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
    ("content-type-twice", get("/", "Content-Type: a/b", "Content-Type: c/d"), 400),
    # Content-Length
    ("cl-negative", get("/", "Content-Length: -1"), 400),
    ("cl-minus-zero", get("/", "Content-Length: -0"), 400),
    ("cl-plus", get("/", "Content-Length: +1"), 400),
    ("cl-hex", get("/", "Content-Length: 0x5"), 400),
    ("cl-exponent", get("/", "Content-Length: 1e3"), 400),
    ("cl-empty", get("/", "Content-Length:"), 400),
    ("cl-list", get("/", "Content-Length: 5, 5"), 400),
    ("cl-list-no-space", get("/", "Content-Length: 5,5"), 400),
    ("cl-underscore", get("/", "Content-Length: 0_1"), 400),
    ("cl-inner-space", get("/", "Content-Length: 3 1"), 400),
    ("cl-word", get("/", "Content-Length: bla-bla-bla"), 400),
    ("cl-non-ascii-digit", head("GET / HTTP/1.1", "Host: a", "Content-Length: \u0661".encode()), 400),
    ("cl-twice-same", get("/", "Content-Length: 3", "Content-Length: 3"), 400),
    ("cl-twice-differing", get("/", "Content-Length: 3", "Content-Length: 2"), 400),
    ("cl-nineteen-digits", get("/", "Content-Length: " + "9" * 19), 400),
    ("cl-over-max-body", get("/", "Content-Length: 11"), 413),
    # Transfer-Encoding
    ("cl-and-te", get("/", "Content-Length: 3", "Transfer-Encoding: chunked"), 400),
    ("te-and-cl", get("/", "Transfer-Encoding: chunked", "Content-Length: 3"), 400),
    ("te-prefixed-and-cl", get("/", "Content-Length: 12", "Transfer-Encoding: \tchunked"), 400),
    ("te-not-chunked", get("/", "Transfer-Encoding: gzip"), 400),
    ("te-chunked-not-last", get("/", "Transfer-Encoding: chunked, gzip"), 400),
    ("te-chunked-not-last-fields", get("/", "Transfer-Encoding: chunked", "Transfer-Encoding: identity"), 400),
    ("te-chunked-twice", get("/", "Transfer-Encoding: chunked, chunked"), 400),
    ("te-chunked-twice-fields", get("/", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), 400),
    ("te-double-chunked-list", get("/", "Transfer-Encoding: identity, chunked, identity, chunked"), 400),
    ("te-empty", get("/", "Transfer-Encoding:"), 400),
    ("te-only-commas", get("/", "Transfer-Encoding: , ,"), 400),
    ("te-chunked-with-params", get("/", "Transfer-Encoding: chunked;q=1"), 400),
    ("te-xchunked", get("/", "Transfer-Encoding: xchunked"), 400),
    ("te-in-http10", get("/", "Transfer-Encoding: chunked", version="HTTP/1.0"), 400),
    ("te-gzip-chunked", get("/", "Transfer-Encoding: gzip, chunked"), 501),
    ("te-identity-chunked", get("/", "Transfer-Encoding: identity, chunked"), 501),
    ("te-gzip-then-chunked-fields", get("/", "Transfer-Encoding: gzip", "Transfer-Encoding: chunked"), 501),
    # Host
    ("http11-no-host", head("GET / HTTP/1.1"), 400),
    ("http11-no-host-absolute-form", head("GET http://a.example/ HTTP/1.1"), 400),
    ("two-hosts", head("GET / HTTP/1.1", "Host: a", "Host: a"), 400),
    ("two-hosts-differing", head("GET / HTTP/1.1", "Host: localhost", "Host: evil.example.com"), 400),
    ("host-space", head("GET / HTTP/1.1", "Host: a b"), 400),
    ("host-userinfo", head("GET / HTTP/1.1", "Host: user@a"), 400),
    ("host-bad-port", head("GET / HTTP/1.1", "Host: a:b"), 400),
    ("host-path", head("GET / HTTP/1.1", "Host: a/b"), 400),
    ("host-open-bracket", head("GET / HTTP/1.1", "Host: [::1"), 400),
    ("host-two-ports", head("GET / HTTP/1.1", "Host: a:1:2"), 400),
    ("http10-two-hosts", head("GET / HTTP/1.0", "Host: a", "Host: b"), 400),
    ("http10-bad-host", head("GET / HTTP/1.0", "Host: a b"), 400),
    # targets
    ("asterisk-not-options", get("*"), 400),
    ("authority-not-connect", get("example.com:443"), 400),
    ("relative", get("foo/bar"), 400),
    ("scheme-relative-authority", get("s://]ufd/:", method="PUT"), 400),
    ("other-scheme", get("ftp://a.example/"), 400),
    ("empty-authority", get("http:///path"), 400),
    ("bad-authority", get("http://[::1/x"), 400),
    ("fragment", get("/a#frag"), 400),
    ("fragment-in-query", get("/forums?page=1#posts"), 400),
    ("fragment-absolute", get("http://a.example/x#y"), 400),
    ("options-asterisk-junk", get("*x", method="OPTIONS"), 400),
    ("connect-origin-form", get("/path", method="CONNECT"), 400),
    ("connect-no-port", get("example.com", method="CONNECT"), 400),
    ("connect-userinfo", get("user@example.com:443", method="CONNECT"), 400),
    ("connect-absolute-form", get("http://example.com:443/", method="CONNECT"), 400),
]


@pytest.mark.parametrize("raw, code", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_request(raw: bytes, code: int) -> None:
    with pytest.raises(ParseError) as caught:
        parse_head(raw, max_body=10)
    assert caught.value.code == code, str(caught.value)


LIMITS: list[tuple[str, bytes, dict[str, int], int]] = [
    ("line-at-limit", get("/" + "a" * 16), dict(max_line=30), 0),
    ("line-over-limit", get("/" + "a" * 17), dict(max_line=30), 414),
    ("fields-at-size-limit", get("/", "X: 12"), dict(max_head=26), 0),
    ("fields-over-size-limit", get("/", "X: 123"), dict(max_head=26), 431),
    ("fields-at-count-limit", get("/", "A: 1", "B: 2"), dict(max_fields=3), 0),
    ("fields-over-count-limit", get("/", "A: 1", "B: 2", "C: 3"), dict(max_fields=3), 431),
    ("body-at-limit", get("/", "Content-Length: 100"), dict(max_body=100), 0),
    ("body-over-limit", get("/", "Content-Length: 101"), dict(max_body=100), 413),
    ("huge-body-no-limit", get("/", "Content-Length: " + "9" * 18), {}, 0),
]


@pytest.mark.parametrize("raw, limits, code", [case[1:] for case in LIMITS],
                         ids=[case[0] for case in LIMITS])
def test_limits(raw: bytes, limits: dict[str, int], code: int) -> None:
    if code == 0:
        assert isinstance(parse_head(raw, **limits), RequestHead)
        return
    with pytest.raises(ParseError) as caught:
        parse_head(raw, **limits)
    assert caught.value.code == code


def test_parse_error_carries_its_status() -> None:
    error = ParseError("nope")
    assert (error.status, error.code, str(error)) == (BAD_REQUEST, 400, "nope")
    for status, code in ((URI_TOO_LONG, 414), (FIELDS_TOO_LARGE, 431), (CONTENT_TOO_LARGE, 413),
                         (NOT_IMPLEMENTED, 501), (BAD_VERSION, 505)):
        assert ParseError("x", status).code == code
        assert status.startswith(str(code) + " ")


# -- finding the end of a head ---------------------------------------------------------

HEAD_ENDS: list[tuple[str, bytes, int]] = [
    ("crlf", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27),
    ("crlf-then-body", b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody\r\n\r\n", 27),
    ("lf", b"GET / HTTP/1.1\nHost: a\n\n", 24),
    ("crlf-line-lf-end", b"GET / HTTP/1.1\r\nHost: a\r\n\nX", 26),
    ("lf-line-crlf-end", b"GET / HTTP/1.1\nHost: a\n\r\nX", 25),
    ("no-fields", b"GET / HTTP/1.0\r\n\r\n", 18),
    ("incomplete", b"GET / HTTP/1.1\r\nHost: a\r\n", -1),
    ("incomplete-cr", b"GET / HTTP/1.1\r\nHost: a\r\n\r", -1),
    ("bare-cr-is-no-end", b"GET / HTTP/1.1\r\r\r\r", -1),
    ("leading-empty-lines-skipped", b"\r\n\n\r\nGET / HTTP/1.0\r\n\r\n", 23),
    ("only-empty-lines", b"\r\n\r\n\r\n", -1),
    ("empty", b"", -1),
]


@pytest.mark.parametrize("buffer, end", [case[1:] for case in HEAD_ENDS],
                         ids=[case[0] for case in HEAD_ENDS])
def test_find_head_end(buffer: bytes, end: int) -> None:
    assert find_head_end(buffer) == end
    assert find_head_end(bytearray(buffer)) == end


def test_find_head_end_resumes_from_start() -> None:
    buffer = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert find_head_end(buffer, 20) == len(buffer)
    assert find_head_end(buffer, len(buffer) - 1) == -1


@pytest.mark.parametrize("buffer, code", [
    (b"GET /" + b"a" * 40, 414),                     # no line end yet, already too long
    (b"\r\n\r\nGET /" + b"a" * 40, 414),            # leading empty lines do not count
    (b"GET /" + b"a" * 40 + b" HTTP/1.1\r\n", 414),  # a whole line, too long
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 30, 431),
    (b"GET /" + b"a" * 20, 0),
    (b"GET / HTTP/1.1\r\nX: y\r\n", 0),
], ids=["line-growing", "line-after-empty-lines", "line-complete", "fields", "short-line",
        "short-fields"])
def test_check_incomplete_head(buffer: bytes, code: int) -> None:
    if code == 0:
        check_incomplete_head(buffer, max_line=32, max_head=100)
        return
    with pytest.raises(ParseError) as caught:
        check_incomplete_head(buffer, max_line=32, max_head=100)
    assert caught.value.code == code


# -- chunked bodies ----------------------------------------------------------------------

CHUNKED_GOOD: list[tuple[str, bytes, bytes]] = [
    ("one-chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("two-chunks", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    ("no-data", b"0\r\n\r\n", b""),
    ("uppercase-hex", b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    ("lowercase-hex", b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    ("leading-zeros", b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
    ("sixteen-digits", b"0000000000000005\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("crlf-in-data", b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n"),
    ("extension-name", b"5;foo\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("extension-value", b"5;foo=bar\r\nhello\r\n0;last\r\n\r\n", b"hello"),
    ("extensions-bws", b"5 ; some; parameters=stuff\r\nhello\r\n6; blahblah; blah\r\n world\r\n0\r\n\r\n",
     b"hello world"),
    ("extension-bws-around-equals", b"5;a \t= \tb\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("extension-quoted", b'5;foo="bar baz"\r\nhello\r\n0\r\n\r\n', b"hello"),
    ("extension-quoted-escape", b'5;foo="a\\"b;c"\r\nhello\r\n0\r\n\r\n', b"hello"),
    ("trailers-dropped", b"5\r\nhello\r\n0\r\nVary: *\r\nX-Checksum: abc\r\n\r\n", b"hello"),
    ("trailer-empty-value", b"0\r\nX-Empty:\r\n\r\n", b""),
]


@pytest.mark.parametrize("raw, data", [case[1:] for case in CHUNKED_GOOD],
                         ids=[case[0] for case in CHUNKED_GOOD])
def test_chunked_good(raw: bytes, data: bytes) -> None:
    decoder = ChunkedDecoder()
    pieces, unused = decoder.feed(raw + b"GET /next")
    assert (b"".join(pieces), unused, decoder.done) == (data, b"GET /next", True)
    assert decoder.feed(b"more") == ([], b"more")  # after the end, everything is unused


CHUNKED_BAD: list[tuple[str, bytes, int]] = [
    ("minus-sign", b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("plus-sign", b"+5\r\nhello\r\n0\r\n\r\n", 400),
    ("0x-prefix", b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("space-before", b"5\r\nhello\r\n 0\r\n\r\n", 400),
    ("space-after-no-extension", b"5\r\nhello\r\n0 \r\n\r\n", 400),
    ("tab-after-no-extension", b"5\t\r\nhello\r\n0\r\n\r\n", 400),
    ("empty-size", b"\r\nhello\r\n0\r\n\r\n", 400),
    ("extension-without-size", b" ;foo=bar\r\nhello\r\n0\r\n\r\n", 400),
    ("not-hex", b"g\r\nhello\r\n0\r\n\r\n", 400),
    ("underscore", b"5\r\nhello\r\n6_0\r\n world\r\n0\r\n\r\n", 400),
    ("seventeen-digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    ("empty-extension", b"5;\r\nhello\r\n0\r\n\r\n", 400),
    ("extension-empty-value", b"5;a=\r\nhello\r\n0\r\n\r\n", 400),
    ("extension-space-in-name", b"5;a b\r\nhello\r\n0\r\n\r\n", 400),
    ("extension-bare-cr", b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n", 400),
    ("extension-nul", b"5;ext=\x00\r\nhello\r\n0\r\n\r\n", 400),
    ("extension-unterminated-quote", b'5;a="b\r\nhello\r\n0\r\n\r\n', 400),
    ("bare-lf-size-line", b"5\nhello\r\n0\r\n\r\n", 400),
    ("bare-lf-size-then-cr", b"5\n;\r\nhello\r\n0\r\n\r\n", 400),
    ("bare-lf-after-data", b"5\r\nhello\n0\r\n\r\n", 400),
    ("data-longer-than-size", b"5\r\nhelloX\r\n0\r\n\r\n", 400),
    ("no-crlf-after-data", b"5\r\nhello0\r\n\r\n", 400),
    ("bare-lf-trailer-end", b"0\r\n\n", 400),
    ("trailer-content-length", b"5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n", 400),
    ("trailer-host", b"5\r\nhello\r\n0\r\nHost: evil.example.com\r\n\r\n", 400),
    ("trailer-transfer-encoding", b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("trailer-any-case", b"0\r\ncOnTeNt-LeNgTh: 1\r\n\r\n", 400),
    ("trailer-malformed", b"0\r\nnot a field\r\n\r\n", 400),
    ("trailer-space-before-colon", b"0\r\nX : y\r\n\r\n", 400),
    ("trailer-obs-fold", b"0\r\nX: y\r\n folded\r\n\r\n", 400),
    ("trailer-nul", b"0\r\nX: a\x00b\r\n\r\n", 400),
    ("trailers-too-large", b"0\r\n" + (b"X: " + b"y" * 30 + b"\r\n") * 3 + b"\r\n", 431),
    ("size-line-too-long", b"5;a=" + b"b" * 100 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("size-line-too-long-unfinished", b"5;a=" + b"b" * 100, 400),
]


@pytest.mark.parametrize("raw, code", [case[1:] for case in CHUNKED_BAD],
                         ids=[case[0] for case in CHUNKED_BAD])
def test_chunked_bad(raw: bytes, code: int) -> None:
    decoder = ChunkedDecoder(max_line=64, max_trailers=64)
    with pytest.raises(ParseError) as caught:
        decoder.feed(raw)
    assert caught.value.code == code, str(caught.value)
    decoder = ChunkedDecoder(max_line=64, max_trailers=64)  # the same, a byte at a time
    with pytest.raises(ParseError):
        for index in range(len(raw)):
            decoder.feed(raw[index:index + 1])


def test_chunked_incomplete_waits() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5\r\nhel") == ([b"hel"], b"")
    assert decoder.feed(b"lo\r\n0\r\n") == ([b"lo"], b"")
    assert not decoder.done  # the final CRLF (end of the trailer section) is missing
    assert decoder.feed(b"\r\n") == ([], b"")
    assert decoder.done


# -- property-based: fuzzing and splitting ---------------------------------------------------

_FRAGMENTS = [b"GET", b"POST", b"CONNECT", b"OPTIONS", b" ", b"/", b"*", b"?", b"#", b"%", b"%4",
              b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"\r\n", b"\n", b"\r", b"\t", b":", b"Host",
              b"example.com", b"[::1]", b":80", b"Content-Length", b"Transfer-Encoding",
              b"chunked", b"gzip", b",", b"0", b"5", b"-1", b"Connection", b"close",
              b"keep-alive", b"Expect", b"100-continue", b"X_Y", b"\x00", b"\x7f", b"\xff",
              b"http://", b"@", b"=", b";", b'"']


def _assert_sane(parsed: RequestHead) -> None:
    assert parsed.method and parsed.version in ("HTTP/1.0", "HTTP/1.1")
    assert not (parsed.chunked and parsed.content_length is not None)
    assert parsed.content_length is None or parsed.content_length >= 0
    assert all("_" not in name and name == name.lower() for name, _ in parsed.headers)
    assert all("\r" not in value and "\n" not in value and "\x00" not in value
               for _, value in parsed.headers)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes_parse_head(data: bytes) -> None:
    for raw in (data, data + b"\r\n\r\n", b"GET / HTTP/1.1\r\n" + data + b"\r\n\r\n"):
        try:
            parsed = parse_head(raw, max_line=200, max_head=300, max_fields=10, max_body=1000)
        except ParseError as error:
            assert error.code in (400, 413, 414, 431, 501, 505)
        else:
            _assert_sane(parsed)
        find_head_end(raw)
        try:
            check_incomplete_head(raw, 200, 300)
        except ParseError as error:
            assert error.code in (414, 431)


@FUZZ
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60))
def test_fuzz_http_like_heads(fragments: list[bytes]) -> None:
    raw = b"".join(fragments) + b"\r\n\r\n"
    try:
        parsed = parse_head(raw, max_body=1000)
    except ParseError as error:
        assert error.code in (400, 413, 414, 431, 501, 505)
    else:
        _assert_sane(parsed)


_CHUNK_FRAGMENTS = [b"0", b"5", b"a", b"F", b"10", b";", b"=", b'"', b"\\", b" ", b"\t", b"\r\n",
                    b"\n", b"\r", b"hello", b"X: y", b"Host: a", b":", b"\x00", b"\xff", b"-", b"+"]


@FUZZ
@given(st.one_of(st.binary(max_size=300),
                 st.lists(st.sampled_from(_CHUNK_FRAGMENTS), max_size=60).map(b"".join)),
       st.integers(min_value=1, max_value=50))
def test_fuzz_chunked_decoder(data: bytes, step: int) -> None:
    decoder = ChunkedDecoder(max_line=64, max_trailers=128)
    try:
        for start in range(0, len(data), step):
            pieces, unused = decoder.feed(data[start:start + step])
            assert all(isinstance(piece, bytes) and piece for piece in pieces)
            assert not unused or decoder.done
    except ParseError as error:
        assert error.code in (400, 431)


# A valid request, generated: method, target, fields, body and its framing.

_TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~",
                 min_size=1, max_size=12)
_SEGMENT = st.text("abcXYZ019-._~!$&'()*+,;=:@", max_size=8) | st.sampled_from(["%20", "%C3%A9", "%2F"])
_VALUE = st.text("".join(chr(c) for c in range(0x21, 0x7f)) + " \t\xe9\xff", max_size=30).map(
    lambda value: value.strip(" \t"))
_SPECIAL = {"host", "content-length", "transfer-encoding", "connection", "expect", "content-type"}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    path = "/" + "/".join(draw(st.lists(_SEGMENT, max_size=4)))
    query = draw(st.none() | st.text("abc=&%20+/?", max_size=10))
    fields = draw(st.lists(st.tuples(_TOKEN.filter(lambda n: n.lower() not in _SPECIAL), _VALUE),
                           max_size=6))
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["length", "chunked"] if body else ["none", "length", "chunked"]))
    return dict(method=draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "M-SEARCH"])),
                target=path + ("" if query is None else "?" + query), fields=fields, body=body,
                framing=framing, sizes=draw(st.lists(st.integers(1, 9), min_size=1, max_size=4)),
                eol=draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"])))


def encode_chunked(body: bytes, sizes: list[int], trailer: bool = True) -> bytes:
    out, pos, index = [], 0, 0
    while pos < len(body):
        size = sizes[index % len(sizes)]
        out.append(b"%X%s\r\n%s\r\n" % (size if pos + size <= len(body) else len(body) - pos,
                                        b";x=1" if index % 2 else b"", body[pos:pos + size]))
        pos += size
        index += 1
    out.append(b"0\r\nX-Trailer: t\r\n\r\n" if trailer else b"0\r\n\r\n")
    return b"".join(out)


def serialize(request: dict[str, Any]) -> bytes:
    lines = [f"{request['method']} {request['target']} HTTP/1.1", "Host: example.com"]
    lines += [f"{name}: {value}" for name, value in request["fields"]]
    body = request["body"]
    if request["framing"] == "length":
        lines.append(f"Content-Length: {len(body)}")
    elif request["framing"] == "chunked":
        lines.append("Transfer-Encoding: chunked")
        body = encode_chunked(body, request["sizes"])
    return head(*lines, end=request["eol"]) + body


def expected_head(request: dict[str, Any]) -> dict[str, Any]:
    path, _, query = request["target"].partition("?")
    fields = [("host", "example.com")] + [(name.lower(), value) for name, value in request["fields"]
                                          if "_" not in name]
    if request["framing"] == "length":
        fields.append(("content-length", str(len(request["body"]))))
    elif request["framing"] == "chunked":
        fields.append(("transfer-encoding", "chunked"))
    return dict(method=request["method"], target=request["target"], query=query,
                path=unquote_to_bytes(path.encode("latin-1")).decode("latin-1"), headers=fields,
                chunked=request["framing"] == "chunked", host="example.com",
                content_length=len(request["body"]) if request["framing"] == "length" else None)


NEXT = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"


class Incomplete(Exception):
    """The bytes ran out before the head (or the chunked body) ended."""


def receive(pieces: list[bytes]) -> tuple[RequestHead, bytes, bytes]:
    """What the connection does: find the head in a growing buffer, parse, read the body.

    Returns the head, the body, and what came after it (the next request).
    """
    buffer, parsed, decoder = b"", None, None
    body: list[bytes] = []
    for piece in pieces:
        buffer += piece
        if parsed is None:
            end = find_head_end(buffer)
            if end == -1:
                check_incomplete_head(buffer, 8192, 65536)
                continue
            parsed, buffer = parse_head(buffer[:end]), buffer[end:]
            decoder = ChunkedDecoder() if parsed.chunked else None
        if decoder is not None and not decoder.done:
            data, buffer = decoder.feed(buffer)
            body += data
    if parsed is None:
        raise Incomplete("the head never ended")
    if decoder is None:
        length = parsed.content_length or 0
        return parsed, buffer[:length], buffer[length:]
    if not decoder.done:
        raise Incomplete("the chunked body never ended")
    return parsed, b"".join(body), buffer


def _splits(raw: bytes) -> list[list[bytes]]:
    return [[raw[:index], raw[index:]] for index in range(len(raw) + 1)]


@SPLITS
@given(requests())
def test_request_split_anywhere_parses_the_same(request: dict[str, Any]) -> None:
    raw = serialize(request) + NEXT
    whole, body, rest = receive([raw])
    expected = expected_head(request)
    assert {name: getattr(whole, name) for name in expected} == expected
    assert (body, rest) == (request["body"], NEXT)
    for pieces in [*_splits(raw), [raw[i:i + 1] for i in range(len(raw))]]:
        assert receive(pieces) == (whole, body, rest)


@FUZZ
@given(requests(), st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(
    [b"", b" ", b"\r", b"\n", b"\r\n", b"\x00", b":", b"_", b",", b"%", b"#", b"\xff", b"9", b"a"])),
    min_size=1, max_size=4))
def test_fuzz_mutated_requests(request: dict[str, Any], edits: list[tuple[int, bytes]]) -> None:
    """A valid request with a few bytes replaced: a head, or a ParseError, nothing else."""
    raw = bytearray(serialize(request))
    for position, replacement in edits:
        position %= len(raw)
        raw[position:position + 1] = replacement
    try:
        parsed, _, _ = receive([bytes(raw)])
    except ParseError as error:
        assert error.code in (400, 413, 414, 431, 501, 505)
    except Incomplete:
        pass  # a mutation may hide the end of the head or of the body
    else:
        _assert_sane(parsed)


@SPLITS
@given(st.binary(max_size=120), st.lists(st.integers(3, 70), min_size=1, max_size=5), st.booleans())
def test_chunked_body_split_anywhere_decodes_the_same(body: bytes, sizes: list[int],
                                                      trailer: bool) -> None:
    raw = encode_chunked(body, sizes, trailer) + NEXT
    for pieces in [[raw], *_splits(raw), [raw[i:i + 1] for i in range(len(raw))]]:
        decoder, data, rest = ChunkedDecoder(), [], b""
        for piece in pieces:
            if decoder.done:
                rest += piece
                continue
            got, unused = decoder.feed(piece)
            data += got
            rest += unused
        assert decoder.done
        assert (b"".join(data), rest) == (body, NEXT)


def _outcome(parse: Any, raw: bytes) -> Any:
    try:
        return parse(raw, max_line=200, max_head=400, max_fields=12, max_body=1000)
    except ParseError as error:
        return ("error", error.status)


_FIELD_FRAGMENTS = [b"Host", b"X-A", b"X_B", b"Content-Length", b"Transfer-Encoding",
                    b"Connection", b"Expect", b"Content-Type", b": ", b":", b" ", b"\t", b"v",
                    b"1", b"chunked", b"close", b"100-continue", b"a.b", b"\xe9", b"\x01",
                    b"\r\n", b"\n", b"\r", b","]


@FUZZ
@given(st.sampled_from([b"GET / HTTP/1.1", b"POST /p?q HTTP/1.0", b"OPTIONS * HTTP/1.1",
                        b"GET http://h/x HTTP/1.1", b"CONNECT h:1 HTTP/1.1"]),
       st.lists(st.lists(st.sampled_from(_FIELD_FRAGMENTS), max_size=8).map(b"".join), max_size=14),
       st.sampled_from([b"\r\n", b"\n"]))
def test_fast_path_agrees_with_the_line_by_line_path(line: bytes, fields: list[bytes],
                                                      eol: bytes) -> None:
    """The one-regex path is only a shortcut: same head, or same error, as the careful one."""
    from stack.server.parser import _parse_head_lines

    raw = eol.join([line, *fields]) + eol + eol
    assert _outcome(parse_head, raw) == _outcome(_parse_head_lines, raw)
