"""AJP13 packets, sans-IO: what Apache ``mod_proxy_ajp`` sends and what it gets back.

Written from the "Apache JServ Protocol version 1.3" reference (Tomcat
connectors documentation). Packets from the web server start with
``0x12 0x34``, packets to it with ``AB``; then a 2-byte length and the
payload. Integers are 2 bytes big-endian; a string is its length, the bytes
and a NUL (length ``0xFFFF``: null). The web server sends a
``FORWARD_REQUEST`` (method, protocol, URI, addresses, headers, attributes)
and, when there is a body, its first chunk at once; the container asks for
more with ``GET_BODY_CHUNK`` (an empty chunk: the body ended) and answers
with ``SEND_HEADERS``, ``SEND_BODY_CHUNK`` and ``END_RESPONSE``.

>>> packet = encode_forward_request("GET", "/app/x", headers=[("host", "h")])
>>> payload, end = decode_packet(packet, 8192)
>>> decode_forward_request(payload).uri
'/app/x'
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable

from stack.errors import HeaderError
from stack.server.parser import ParseError

FORWARD_REQUEST, SHUTDOWN, PING, CPING = 2, 7, 8, 10
SEND_BODY_CHUNK, SEND_HEADERS, END_RESPONSE, GET_BODY_CHUNK, CPONG_REPLY = 3, 4, 5, 6, 9
SERVER_MAGIC = b"\x12\x34"
CONTAINER_MAGIC = b"AB"
DEFAULT_PACKET_SIZE = 8192

METHODS = {1: "OPTIONS", 2: "GET", 3: "HEAD", 4: "POST", 5: "PUT", 6: "DELETE", 7: "TRACE",
           8: "PROPFIND", 9: "PROPPATCH", 10: "MKCOL", 11: "COPY", 12: "MOVE", 13: "LOCK",
           14: "UNLOCK", 15: "ACL", 16: "REPORT", 17: "VERSION-CONTROL", 18: "CHECKIN",
           19: "CHECKOUT", 20: "UNCHECKOUT", 21: "SEARCH", 22: "MKWORKSPACE", 23: "UPDATE",
           24: "LABEL", 25: "MERGE", 26: "BASELINE-CONTROL", 27: "MKACTIVITY"}
STORED_METHOD = 0xFF  # the name is in the stored_method attribute
REQUEST_HEADERS = dict(enumerate(
    ("accept", "accept-charset", "accept-encoding", "accept-language", "authorization",
     "connection", "content-type", "content-length", "cookie", "cookie2", "host", "pragma",
     "referer", "user-agent"), start=0xA001))
RESPONSE_HEADERS = {name: code for code, name in enumerate(
    ("content-type", "content-language", "content-length", "date", "last-modified", "location",
     "set-cookie", "set-cookie2", "servlet-engine", "status", "www-authenticate"), start=0xA001)}
ATTRIBUTES = {1: "context", 2: "servlet_path", 3: "remote_user", 4: "auth_type", 5: "query_string",
              6: "route", 7: "ssl_cert", 8: "ssl_cipher", 9: "ssl_session", 11: "ssl_key_size",
              12: "secret", 13: "stored_method"}
REQ_ATTRIBUTE, SSL_KEY_SIZE, ARE_DONE = 0x0A, 0x0B, 0xFF
_U16 = struct.Struct("!H")


@dataclass
class ForwardRequest:
    """A decoded ``FORWARD_REQUEST``; header names are lower case."""

    method: str
    protocol: str
    uri: str
    remote_addr: str
    remote_host: str | None
    server_name: str
    server_port: int
    is_ssl: bool
    headers: list[tuple[str, str]] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)      # query_string, secret, ...
    request_attributes: dict[str, str] = field(default_factory=dict)  # AJP_REMOTE_PORT, ...


# -- packets ------------------------------------------------------------------------

def decode_packet(buffer: bytes, max_size: int) -> tuple[bytes, int] | None:
    """(payload, offset after it) of the web server's packet at the start, or None."""
    if len(buffer) < 4:
        if buffer and not SERVER_MAGIC.startswith(buffer[:2]):
            raise ParseError("AJP packet without the 0x1234 magic")
        return None
    if buffer[:2] != SERVER_MAGIC:
        raise ParseError(f"AJP packet starts with {buffer[:2]!r}, not the 0x1234 magic")
    length = _U16.unpack_from(buffer, 2)[0]
    if length + 4 > max_size:
        raise ParseError(f"AJP packet of {length + 4} bytes over the packet size {max_size}")
    if len(buffer) < 4 + length:
        return None
    return buffer[4:4 + length], 4 + length


def server_packet(payload: bytes) -> bytes:
    """A packet as the web server frames it (for tests and clients)."""
    return SERVER_MAGIC + _U16.pack(len(payload)) + payload


def container_packet(payload: bytes) -> bytes:
    """A packet as the container (we) frames it."""
    return CONTAINER_MAGIC + _U16.pack(len(payload)) + payload


class _Reader:
    """A cursor over a payload; every read checks the bounds."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data, self.offset = data, offset

    def _take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise ParseError("AJP packet truncated")
        chunk, self.offset = self.data[self.offset:end], end
        return chunk

    def byte(self) -> int:
        return self._take(1)[0]

    def integer(self) -> int:
        return _U16.unpack(self._take(2))[0]

    def string(self) -> str | None:
        length = self.integer()
        if length == 0xFFFF:
            return None
        value = self._take(length + 1)
        if value[-1:] != b"\x00":
            raise ParseError("AJP string not terminated by NUL")
        return value[:-1].decode("latin-1")

    def text(self) -> str:
        value = self.string()
        return "" if value is None else value


def _string(value: str | None) -> bytes:
    if value is None:
        return b"\xff\xff"
    data = value.encode("latin-1")
    return _U16.pack(len(data)) + data + b"\x00"


# -- the request ---------------------------------------------------------------------

def decode_forward_request(payload: bytes, max_headers: int = 1000) -> ForwardRequest:
    """Decode a ``FORWARD_REQUEST`` payload; :class:`ParseError` when malformed."""
    reader = _Reader(payload)
    if reader.byte() != FORWARD_REQUEST:
        raise ParseError("AJP packet is not a FORWARD_REQUEST")
    code = reader.byte()
    method = METHODS.get(code, "")
    if not method and code != STORED_METHOD:
        raise ParseError(f"unknown AJP method code {code}")
    request = ForwardRequest(method, reader.text(), reader.text(), reader.text(), reader.string(),
                             reader.text(), reader.integer(), reader.byte() == 1)
    count = reader.integer()
    if count > max_headers:
        raise ParseError(f"{count} AJP headers, over the limit of {max_headers}",
                         "431 Request Header Fields Too Large")
    for _ in range(count):
        name_code = _U16.unpack_from(payload, reader.offset)[0] if reader.offset + 2 <= len(payload) else 0
        if name_code >> 8 == 0xA0:
            reader.integer()
            name = REQUEST_HEADERS.get(name_code)
            if name is None:
                raise ParseError(f"unknown AJP header code {name_code:#x}")
        else:
            name = reader.text().lower()
        request.headers.append((name, reader.text()))
    _decode_attributes(reader, request)
    if not request.method:
        request.method = request.attributes.get("stored_method", "")
        if not request.method:
            raise ParseError("AJP stored method without its name")
    return request


def _decode_attributes(reader: _Reader, request: ForwardRequest) -> None:
    while True:
        code = reader.byte()
        if code == ARE_DONE:
            return
        if code == REQ_ATTRIBUTE:
            name = reader.text()
            request.request_attributes[name] = reader.text()
        elif code == SSL_KEY_SIZE:
            request.attributes["ssl_key_size"] = str(reader.integer())
        elif code in ATTRIBUTES:
            request.attributes[ATTRIBUTES[code]] = reader.text()
        else:
            raise ParseError(f"unknown AJP attribute code {code:#x}")


def encode_forward_request(method: str, uri: str, *, protocol: str = "HTTP/1.1",
                           remote_addr: str = "127.0.0.1", remote_host: str | None = None,
                           server_name: str = "localhost", server_port: int = 80,
                           is_ssl: bool = False, headers: Iterable[tuple[str, str]] = (),
                           attributes: Iterable[tuple[int, str]] = (),
                           request_attributes: Iterable[tuple[str, str]] = ()) -> bytes:
    """A ``FORWARD_REQUEST`` packet as ``mod_proxy_ajp`` builds it (for tests and clients)."""
    codes = {name: code for code, name in METHODS.items()}
    coded = {name: code for code, name in REQUEST_HEADERS.items()}
    method_code = codes.get(method, STORED_METHOD)
    headers = list(headers)
    parts = [bytes((FORWARD_REQUEST, method_code)), _string(protocol), _string(uri),
             _string(remote_addr), _string(remote_host), _string(server_name),
             _U16.pack(server_port), bytes((int(is_ssl),)), _U16.pack(len(headers))]
    for name, value in headers:
        code = coded.get(name.lower())
        parts += (_U16.pack(code) if code else _string(name), _string(value))
    for code, value in attributes:
        parts.append(bytes((code,)) + (_U16.pack(int(value)) if code == SSL_KEY_SIZE else _string(value)))
    if method_code == STORED_METHOD:
        parts.append(b"\x0d" + _string(method))
    for name, value in request_attributes:
        parts.append(bytes((REQ_ATTRIBUTE,)) + _string(name) + _string(value))
    parts.append(bytes((ARE_DONE,)))
    return server_packet(b"".join(parts))


def encode_body(data: bytes) -> bytes:
    """A request body chunk as the web server sends it (empty: the body ended)."""
    return server_packet(_U16.pack(len(data)) + data if data else b"")


def decode_body(payload: bytes) -> bytes:
    """The data of a body chunk packet's payload (b"" for the empty end packet)."""
    if not payload:
        return b""
    if len(payload) < 2 or _U16.unpack_from(payload)[0] != len(payload) - 2:
        raise ParseError("AJP body chunk length does not match its packet")
    return payload[2:]


# -- the response --------------------------------------------------------------------

def send_headers(status: str, headers: Iterable[tuple[str, str]], max_size: int) -> bytes:
    """A ``SEND_HEADERS`` packet; :class:`HeaderError` if it does not fit one packet."""
    headers = list(headers)
    code, _, reason = status.partition(" ")
    parts = [bytes((SEND_HEADERS,)), _U16.pack(int(code)), _string(reason), _U16.pack(len(headers))]
    for name, value in headers:
        coded = RESPONSE_HEADERS.get(name.lower())
        parts += (_U16.pack(coded) if coded else _string(name), _string(value))
    payload = b"".join(parts)
    if len(payload) + 4 > max_size:
        raise HeaderError(f"response headers of {len(payload)} bytes do not fit an AJP packet "
                          f"of {max_size} bytes")
    return container_packet(payload)


def max_chunk(packet_size: int) -> int:
    """The most body bytes one ``SEND_BODY_CHUNK`` carries (8184 for 8 KB packets)."""
    return packet_size - 8   # magic+length, prefix, chunk length, trailing NUL


def body_chunks(data: bytes, packet_size: int) -> list[bytes]:
    """``data`` as ``SEND_BODY_CHUNK`` packets (each chunk ends with a NUL, as httpd expects)."""
    size = max_chunk(packet_size)
    return [container_packet(bytes((SEND_BODY_CHUNK,)) + _U16.pack(len(piece)) + piece + b"\x00")
            for piece in (data[start:start + size] for start in range(0, len(data), size))]


def end_response(reuse: bool = True) -> bytes:
    return container_packet(bytes((END_RESPONSE, int(reuse))))


def get_body_chunk(size: int) -> bytes:
    return container_packet(bytes((GET_BODY_CHUNK,)) + _U16.pack(size))


def cpong() -> bytes:
    return container_packet(bytes((CPONG_REPLY,)))


def decode_response(data: bytes) -> list[tuple[int, object]]:
    """Our packets back as (type, value) pairs, for tests: headers as (status, reason, list)."""
    out: list[tuple[int, object]] = []
    offset = 0
    while offset < len(data):
        if data[offset:offset + 2] != CONTAINER_MAGIC:
            raise ParseError("not a container packet")
        length = _U16.unpack_from(data, offset + 2)[0]
        reader = _Reader(data[offset + 4:offset + 4 + length])
        offset += 4 + length
        kind = reader.byte()
        if kind == SEND_HEADERS:
            status, reason = reader.integer(), reader.text()
            names = {code: name for name, code in RESPONSE_HEADERS.items()}
            headers = []
            for _ in range(reader.integer()):
                peek = _U16.unpack_from(reader.data, reader.offset)[0]
                name = names[reader.integer()] if peek >> 8 == 0xA0 else reader.text()
                headers.append((name, reader.text()))
            out.append((kind, (status, reason, headers)))
        elif kind == SEND_BODY_CHUNK:
            size = reader.integer()
            out.append((kind, reader._take(size)))
        elif kind in (END_RESPONSE, GET_BODY_CHUNK):
            out.append((kind, reader.byte() if kind == END_RESPONSE else reader.integer()))
        else:
            out.append((kind, None))
    return out
