"""Sans-IO HTTP/1.1 request parsing (RFC 9112), strict by default.

Nothing here touches a socket: :func:`parse_head` turns one request head
(request line and header fields, up to the blank line) into a
:class:`RequestHead` or raises :class:`ParseError` carrying the status to
answer with; :class:`ChunkedDecoder` turns chunked body bytes into data.
The connection feeds them bytes.

Why hand-written (``benchmarks/bench_parser.py`` measures it): a browser's
14-field head costs about 12 µs here, h11 about 2x that and httptools
(llhttp in C) about a fifth of it. httptools is faster, but it would leave
every rule below to Python code after it anyway (Host, Content-Length vs
Transfer-Encoding, limits with their own statuses, ``_`` names) and its
leniencies would have to be undone; on the server's hot path the parse is
a small part of a request's cost (the thread hand-off and system calls
dominate: see ``benchmarks/bench_server.py``). The common case is one
regular-expression match for the whole head plus one ``findall`` for its
fields; anything unusual takes a line-by-line path that names the exact
fault. The rules below are the whole of what we accept:

- request line ``METHOD SP target SP HTTP/1.x`` with single spaces; a method
  is a token; a well-formed line with another ``HTTP/d.d`` version gets 505,
  anything else (``HTTP/0.99``, ``HTTP/11``, a bad method) 400;
- lines end with CRLF (a bare LF is accepted as RFC 9112 §2.2 allows; a bare
  CR is not); up to 8 empty lines before the request line are skipped;
- field names are tokens with no whitespace before the colon; values are
  trimmed of SP/HTAB and may hold visible ASCII, SP, HTAB and obs-text, never
  NUL, CR, LF or other controls; obs-fold (a line starting with SP/HTAB) is
  rejected;
- ``Content-Length`` is one run of digits, given once; ``Transfer-Encoding``
  must end in ``chunked``, list it once, name no other coding (we decode
  none: 501) and not come with ``Content-Length`` or in HTTP/1.0;
  ``Content-Type`` is given at most once (two would reach the app joined);
- HTTP/1.1 requests carry exactly one valid ``Host``;
- targets: origin-form, absolute-form (http/https; its authority replaces
  ``Host``), ``*`` for OPTIONS only, authority-form (``host:port``) for
  CONNECT, which takes no other form; no fragment (``#``);
- chunk sizes are 1-16 hex digits, whitespace only before a ``;`` extension,
  lines end with CRLF; trailers are read, checked like fields and dropped
  (framing, routing, auth and content fields are refused there);
- names containing ``_`` are dropped (``X_User`` would become the same
  environ key as ``X-User``: a spoofing vector).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes


class ParseError(Exception):
    """A request we refuse; ``status`` is the answer (``"400 Bad Request"``)."""

    def __init__(self, message: str, status: str = "400 Bad Request") -> None:
        super().__init__(message)
        self.status = status

    @property
    def code(self) -> int:
        return int(self.status[:3])


BAD_REQUEST = "400 Bad Request"
URI_TOO_LONG = "414 URI Too Long"
FIELDS_TOO_LARGE = "431 Request Header Fields Too Large"
CONTENT_TOO_LARGE = "413 Content Too Large"
NOT_IMPLEMENTED = "501 Not Implemented"
BAD_VERSION = "505 HTTP Version Not Supported"

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) (HTTP/[0-9]\.[0-9])\Z")
# The value is trimmed with bytes.strip afterwards: a regex that trims both
# ends itself backtracks quadratically on long runs of blanks.
_FIELD = re.compile(rb"(" + _TOKEN + rb"):(.*)\Z", re.S)
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[!$&'()*+,;=:\w.~-]+\]"
    rb"|[!$&'()*+,;=\w.~%-]*)(?::[0-9]*)?\Z")
_ABSOLUTE = re.compile(rb"(https?)://(?:[^/?#@]*@)?([^/?#]*)([^#]*)\Z", re.I)
_AUTHORITY = re.compile(rb"[^/?#@\s]+:[0-9]+\Z")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;.*)?)\Z", re.S)
_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN
    + rb'|"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"))?)*\Z')
# The common case in one match: no leading empty lines, HTTP/1.0 or 1.1, and
# every field line well-formed. Anything else takes the line-by-line path,
# which finds the exact fault (and may still accept, e.g. leading CRLFs).
_FAST_HEAD = re.compile(
    rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) (HTTP/1\.[01])\r?\n"
    rb"((?:" + _TOKEN + rb":[^\x00-\x08\x0a-\x1f\x7f]*\r?\n)*)\r?\n\Z")
# Greedy, ending on a non-blank: a lazy value would try the tail at every byte.
_FAST_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[^\r\n]*[^ \t\r\n])?)[ \t]*\r?\n")
# Lower-cased field names as str, remembered: the same few names come again and again.
_NAMES: dict[bytes, str] = {}
_SPECIAL_FIELDS = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection",
                             b"content-type", b"expect"})
_FORBIDDEN_TRAILERS = frozenset({
    b"content-length", b"transfer-encoding", b"host", b"content-type", b"content-encoding",
    b"content-range", b"trailer", b"authorization", b"set-cookie", b"cookie", b"te",
    b"connection", b"expect", b"max-forwards", b"cache-control", b"range",
})


@dataclass
class RequestHead:
    """A parsed request head: what the environ is built from."""

    method: str
    target: str                    # raw request-target, latin-1
    path: str                      # percent-decoded path, latin-1 (PEP 3333)
    query: str
    version: str                   # "HTTP/1.1"
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower name, value)
    content_length: int | None = None
    chunked: bool = False
    keep_alive: bool = True
    expect_continue: bool = False
    host: str | None = None        # from the target (absolute-form) or the Host field

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


def find_head_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending a head, or -1 if not all here yet.

    Lines may end with CRLF or a bare LF, mixed; empty lines before the
    request line (searched from ``start == 0`` only) do not end a head.
    """
    if start == 0 and buffer[:1] in (b"\r", b"\n"):
        start = len(buffer) - len(buffer.lstrip(b"\r\n"))
    crlf_end = buffer.find(b"\n\r\n", start)
    lf_end = buffer.find(b"\n\n", start)
    if lf_end != -1 and (crlf_end == -1 or lf_end < crlf_end):
        return lf_end + 2
    return crlf_end + 3 if crlf_end != -1 else -1


def check_incomplete_head(buffer: bytes | bytearray, max_line: int, max_head: int) -> None:
    """Raise 414/431 early for a head that is not complete yet but already too long."""
    stripped = len(buffer) - len(buffer.lstrip(b"\r\n"))
    line_end = buffer.find(b"\n", stripped)
    if (line_end == -1 and len(buffer) - stripped > max_line) or line_end - stripped > max_line + 1:
        raise ParseError("request line too long", URI_TOO_LONG)
    if len(buffer) > max_head + max_line + 4:
        raise ParseError("request head too large", FIELDS_TOO_LARGE)


def parse_head(data: bytes, *, max_line: int = 8192, max_head: int = 65536,
               max_fields: int = 100, max_body: int | None = None) -> RequestHead:
    """Parse one complete request head (ending with the blank line)."""
    match = _FAST_HEAD.match(data)
    if match is not None:
        method, target, version, block = match.groups()
        fields = _FAST_FIELD.findall(block)
        if (len(method) + len(target) + 10 <= max_line and len(block) <= max_head
                and len(fields) <= max_fields):
            head = RequestHead(method=method.decode("ascii"), target=target.decode("latin-1"),
                               path="", query="", version=version.decode("ascii"))
            _parse_fields(head, fields)
            _parse_target(head, target)
            _check_framing(head, max_body)
            return head
    return _parse_head_lines(data, max_line=max_line, max_head=max_head, max_fields=max_fields,
                             max_body=max_body)


def _parse_head_lines(data: bytes, *, max_line: int, max_head: int, max_fields: int,
                      max_body: int | None) -> RequestHead:
    """The line-by-line path: any head, with the exact error for a bad one."""
    lines = data.split(b"\n")
    if len(lines) < 3:
        raise ParseError("request head does not end with an empty line")
    index = 0
    while index < len(lines) and lines[index] in (b"", b"\r") and index < 8:
        index += 1
    if lines[-1] != b"" or lines[-2] not in (b"", b"\r"):
        raise ParseError("request head does not end with an empty line")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines[index:-2]]
    if not lines:
        raise ParseError("empty request")
    request_line = lines[0]
    if len(request_line) > max_line:
        raise ParseError("request line too long", URI_TOO_LONG)
    if sum(len(line) + 2 for line in lines[1:]) > max_head:
        raise ParseError("request header fields too large", FIELDS_TOO_LARGE)
    if len(lines) - 1 > max_fields:
        raise ParseError(f"more than {max_fields} header fields", FIELDS_TOO_LARGE)
    method, target, version = _parse_request_line(request_line)
    head = RequestHead(method=method, target=target.decode("latin-1"), path="", query="",
                       version=version)
    _parse_fields(head, [_split_field(line) for line in lines[1:]])
    _parse_target(head, target)
    _check_framing(head, max_body)
    return head


def _parse_request_line(line: bytes) -> tuple[str, bytes, str]:
    match = _REQUEST_LINE.match(line)
    if match is None:
        raise ParseError(f"malformed request line {line[:80]!r}")
    method, target, version = match.groups()
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ParseError(f"unsupported version {version.decode()}", BAD_VERSION)
    return method.decode("ascii"), target, version.decode("ascii")


def _parse_fields(head: RequestHead, fields: list[tuple[bytes, bytes]]) -> None:
    hosts: list[bytes] = []
    lengths: list[bytes] = []
    codings: list[bytes] | None = None  # None: no Transfer-Encoding field
    connection: list[bytes] = []
    content_types = 0
    headers = head.headers
    names = _NAMES
    for raw_name, raw_value in fields:
        text = names.get(raw_name)
        if text is not None:  # a known ordinary name
            headers.append((text, raw_value.decode("latin-1")))
            continue
        name = raw_name.lower()
        if name not in _SPECIAL_FIELDS:
            if b"_" not in name:  # '_' would collide with '-' in the environ
                text = name.decode("ascii")
                if len(names) < 1024:
                    names[raw_name] = text
                headers.append((text, raw_value.decode("latin-1")))
            continue
        if name == b"host":
            hosts.append(raw_value)
        elif name == b"content-length":
            lengths.append(raw_value)
        elif name == b"transfer-encoding":
            codings = (codings or []) + _list(raw_value)
        elif name == b"connection":
            connection.extend(_list(raw_value))
        elif name == b"content-type":
            content_types += 1
        elif name == b"expect":
            head.expect_continue = raw_value.lower() == b"100-continue"
        headers.append((name.decode("ascii"), raw_value.decode("latin-1")))
    if content_types > 1:
        raise ParseError("repeated Content-Type")
    _check_host(head, hosts, connection)
    _check_length(head, lengths, codings)


def _split_field(line: bytes) -> tuple[bytes, bytes]:
    if line[:1] in (b" ", b"\t"):
        raise ParseError("obsolete line folding (obs-fold) is not accepted")
    match = _FIELD.match(line)
    if match is None:
        raise ParseError(f"malformed header field {line[:60]!r}")
    raw_name, raw_value = match.groups()
    if _BAD_VALUE.search(raw_value):
        raise ParseError(f"control character in the value of {raw_name.decode()!r}")
    return raw_name, raw_value.strip(b" \t")


def _check_host(head: RequestHead, hosts: list[bytes], connection: list[bytes]) -> None:
    if head.version == "HTTP/1.1":
        if len(hosts) != 1 or not _HOST.match(hosts[0]):
            raise ParseError("an HTTP/1.1 request needs exactly one valid Host header")
        head.keep_alive = b"close" not in connection
    else:
        head.keep_alive = b"keep-alive" in connection and b"close" not in connection
        head.expect_continue = False
        if len(hosts) > 1 or (hosts and not _HOST.match(hosts[0])):
            raise ParseError("invalid Host header")
    if hosts:
        head.host = hosts[0].decode("latin-1")


def _check_length(head: RequestHead, lengths: list[bytes], codings: list[bytes] | None) -> None:
    if lengths:
        digits = lengths[0].lstrip(b"0") or b"0"
        if len(lengths) > 1 or not lengths[0].isdigit() or len(digits) > 18:
            raise ParseError("invalid or repeated Content-Length")
        head.content_length = int(digits)
    if codings is None:
        return
    if lengths:
        raise ParseError("both Content-Length and Transfer-Encoding")
    if head.version == "HTTP/1.0":
        raise ParseError("Transfer-Encoding in an HTTP/1.0 request")
    if not codings or codings[-1] != b"chunked":
        raise ParseError("Transfer-Encoding must end with chunked")
    if codings.count(b"chunked") > 1:
        raise ParseError("chunked given more than once")
    if len(codings) > 1:
        raise ParseError(f"transfer coding {codings[0].decode('latin-1')!r} is not supported",
                         NOT_IMPLEMENTED)
    head.chunked = True


def _list(value: bytes) -> list[bytes]:
    """The lowercased elements of a comma-separated field value (empty ones skipped)."""
    return [item for item in (part.strip(b" \t").lower() for part in value.split(b",")) if item]


def _parse_target(head: RequestHead, target: bytes) -> None:
    if head.method == "CONNECT":
        if not _AUTHORITY.match(target) or not _HOST.match(target):
            raise ParseError("CONNECT needs an authority-form target (host:port)")
        head.host, path, query = target.decode("latin-1"), b"", b""
    elif target[:1] == b"/":
        path, _, query = target.partition(b"?")
    elif target == b"*":
        if head.method != "OPTIONS":
            raise ParseError("'*' target is only for OPTIONS")
        path, query = b"*", b""
    else:
        match = _ABSOLUTE.match(target)
        if match is None or not match.group(2):
            raise ParseError(f"invalid request target {target[:80]!r}")
        authority, rest = match.group(2), match.group(3) or b"/"
        if not _HOST.match(authority):
            raise ParseError("invalid authority in the request target")
        head.host = authority.decode("latin-1")  # RFC 9112 §3.2.2: it replaces Host
        if rest[:1] != b"/":
            rest = b"/" + rest
        path, _, query = rest.partition(b"?")
    if b"#" in path or b"#" in query:
        raise ParseError("fragment in the request target")
    head.path = unquote_to_bytes(path).decode("latin-1") if b"%" in path else path.decode("latin-1")
    head.query = query.decode("latin-1")


def _check_framing(head: RequestHead, max_body: int | None) -> None:
    if max_body is not None and head.content_length is not None and head.content_length > max_body:
        raise ParseError(f"body of {head.content_length} bytes is over the limit of {max_body}",
                         CONTENT_TOO_LARGE)


class ChunkedDecoder:
    """Decode a chunked body incrementally: ``feed(data)`` -> (pieces, unused).

    ``done`` turns true after the last chunk and the trailer section (read and
    discarded; fields that may not be trailers are refused). ``unused`` is what
    followed the body (the next pipelined request).
    """

    def __init__(self, max_line: int = 4096, max_trailers: int = 8192) -> None:
        self._buffer = b""
        self._remaining = 0        # bytes left in the current chunk's data
        self._state = "size"       # size | data | data_crlf | trailer
        self._trailer_bytes = 0
        self._max_line = max_line
        self._max_trailers = max_trailers
        self.done = False

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        buffer = self._buffer + data if self._buffer else data
        self._buffer = b""
        pieces: list[bytes] = []
        pos = 0
        while not self.done:
            if self._state == "data":
                take = min(self._remaining, len(buffer) - pos)
                if take == 0:
                    break
                pieces.append(buffer[pos:pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "data_crlf"
                continue
            end = buffer.find(b"\n", pos)
            if end == -1:
                if len(buffer) - pos > self._max_line:
                    raise ParseError("chunk line too long")
                break
            if end - pos > self._max_line:
                raise ParseError("chunk line too long")
            line = buffer[pos:end]
            pos = end + 1
            if not line.endswith(b"\r"):
                raise ParseError("chunk line not ended by CRLF")
            line = line[:-1]
            if self._state == "data_crlf":
                if line:
                    raise ParseError("chunk data longer than its size")
                self._state = "size"
            elif self._state == "size":
                self._size_line(line)
            else:
                self._trailer_line(line)
        return pieces, buffer[pos:] if self.done else self._keep(buffer, pos)

    def _keep(self, buffer: bytes, pos: int) -> bytes:
        self._buffer = buffer[pos:]
        return b""

    def _size_line(self, line: bytes) -> None:
        match = _CHUNK_SIZE.match(line)
        if match is None or (match.group(2) and not _CHUNK_EXT.match(match.group(2))):
            raise ParseError(f"invalid chunk size line {line[:40]!r}")
        self._remaining = int(match.group(1), 16)
        self._state = "data" if self._remaining else "trailer"

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self.done = True
            return
        self._trailer_bytes += len(line)
        if self._trailer_bytes > self._max_trailers:
            raise ParseError("trailer section too large", FIELDS_TOO_LARGE)
        match = _FIELD.match(line)
        if match is None or _BAD_VALUE.search(match.group(2)):
            raise ParseError("malformed trailer field")
        if match.group(1).lower() in _FORBIDDEN_TRAILERS:
            raise ParseError(f"{match.group(1).decode()!r} is not allowed in a trailer")
