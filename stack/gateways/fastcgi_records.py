"""FastCGI records, sans-IO: encode and decode, never touching a socket.

Written from the FastCGI 1.0 specification (Open Market, 1996). A record is
an 8-byte header (version 1, type, request id, content length, padding
length, reserved) then content and padding. Streams (``PARAMS``, ``STDIN``,
``STDOUT``, ``STDERR``) are records of one type ended by an empty one.
Name-value pairs (``PARAMS``, ``GET_VALUES``) prefix each name and value
with its length: one byte below 128, else four bytes with the top bit set.

>>> record, end = decode_record(encode_record(STDIN, 1, b"body"))
>>> record
Record(type=5, request_id=1, content=b'body')
>>> decode_pairs(encode_pairs([(b"SCRIPT_NAME", b"/app")]))
[(b'SCRIPT_NAME', b'/app')]
"""
from __future__ import annotations

import struct
from typing import Iterable, NamedTuple

from stack.server.parser import ParseError

VERSION = 1
HEADER = struct.Struct("!BBHHBx")
MAX_CONTENT = 65535

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, DATA = range(1, 9)
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
TYPE_NAMES = {1: "BEGIN_REQUEST", 2: "ABORT_REQUEST", 3: "END_REQUEST", 4: "PARAMS", 5: "STDIN",
              6: "STDOUT", 7: "STDERR", 8: "DATA", 9: "GET_VALUES", 10: "GET_VALUES_RESULT",
              11: "UNKNOWN_TYPE"}

RESPONDER, AUTHORIZER, FILTER = 1, 2, 3
KEEP_CONN = 1
REQUEST_COMPLETE, CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE = 0, 1, 2, 3

_BEGIN = struct.Struct("!HB5x")
_END = struct.Struct("!LB3x")
_PADDING = bytes(7)


class Record(NamedTuple):
    type: int
    request_id: int
    content: bytes


def _header(rtype: int, request_id: int, length: int) -> bytes:
    return HEADER.pack(VERSION, rtype, request_id, length, -length & 7)


def encode_record(rtype: int, request_id: int, content: bytes = b"") -> bytes:
    """One record (``content`` at most 65535 bytes), padded to a multiple of 8."""
    if len(content) > MAX_CONTENT:
        raise ValueError(f"record content of {len(content)} bytes is over {MAX_CONTENT}")
    return _header(rtype, request_id, len(content)) + content + _PADDING[:-len(content) & 7]


def stream_parts(rtype: int, request_id: int, data: bytes) -> list[bytes | memoryview]:
    """``data`` as records of ``rtype`` (no end-of-stream record), as buffers for sendmsg."""
    if len(data) <= MAX_CONTENT:
        return [encode_record(rtype, request_id, data)] if data else []
    parts: list[bytes | memoryview] = []
    view = memoryview(data)
    for start in range(0, len(data), MAX_CONTENT):
        piece = view[start:start + MAX_CONTENT]
        parts += (_header(rtype, request_id, len(piece)), piece, _PADDING[:-len(piece) & 7])
    return parts


def encode_stream(rtype: int, request_id: int, data: bytes, end: bool = False) -> bytes:
    """``data`` as records of ``rtype``; ``end`` adds the empty closing record."""
    out = b"".join(stream_parts(rtype, request_id, data))
    return out + encode_record(rtype, request_id) if end else out


def decode_record(buffer: bytes, offset: int = 0) -> tuple[Record, int] | None:
    """The record at ``offset`` and the offset after it, or None if incomplete.

    Raises :class:`ParseError` for a version other than 1.
    """
    if len(buffer) - offset < 8:
        return None
    version, rtype, request_id, length, padding = HEADER.unpack_from(buffer, offset)
    if version != VERSION:
        raise ParseError(f"FastCGI record with version {version}, expected 1")
    end = offset + 8 + length + padding
    if len(buffer) < end:
        return None
    return Record(rtype, request_id, bytes(buffer[offset + 8:offset + 8 + length])), end


def _length(length: int) -> bytes:
    return bytes((length,)) if length < 128 else struct.pack("!L", length | 0x80000000)


def encode_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Name-value pairs in FastCGI's length-prefixed form."""
    return b"".join(_length(len(name)) + _length(len(value)) + name + value for name, value in pairs)


def decode_pairs(data: bytes, max_pairs: int = 10000) -> list[tuple[bytes, bytes]]:
    """Decode name-value pairs; :class:`ParseError` when truncated or too many."""
    pairs, offset, size = [], 0, len(data)
    while offset < size:
        lengths = []
        for _ in range(2):
            if offset >= size:
                raise ParseError("FastCGI name-value pair truncated")
            if data[offset] < 128:
                lengths.append(data[offset])
                offset += 1
            elif offset + 4 <= size:
                lengths.append(struct.unpack_from("!L", data, offset)[0] & 0x7FFFFFFF)
                offset += 4
            else:
                raise ParseError("FastCGI name-value length truncated")
        name_end = offset + lengths[0]
        value_end = name_end + lengths[1]
        if value_end > size:
            raise ParseError("FastCGI name-value pair longer than its record stream")
        pairs.append((data[offset:name_end], data[name_end:value_end]))
        offset = value_end
        if len(pairs) > max_pairs:
            raise ParseError(f"more than {max_pairs} FastCGI params", "431 Request Header Fields Too Large")
    return pairs


def begin_request(request_id: int, role: int = RESPONDER, flags: int = 0) -> bytes:
    """A ``BEGIN_REQUEST`` record (what a front server sends)."""
    return encode_record(BEGIN_REQUEST, request_id, _BEGIN.pack(role, flags))


def parse_begin_request(content: bytes) -> tuple[int, int]:
    """(role, flags) of a ``BEGIN_REQUEST`` body; ParseError when it is short."""
    if len(content) < 8:
        raise ParseError(f"FastCGI BEGIN_REQUEST body of {len(content)} bytes, expected 8")
    role, flags = _BEGIN.unpack_from(content)
    return role, flags


def end_request(request_id: int, app_status: int = 0, protocol_status: int = REQUEST_COMPLETE) -> bytes:
    """An ``END_REQUEST`` record."""
    return encode_record(END_REQUEST, request_id, _END.pack(app_status & 0xFFFFFFFF, protocol_status))


def parse_end_request(content: bytes) -> tuple[int, int]:
    """(app status, protocol status) of an ``END_REQUEST`` body."""
    return _END.unpack_from(content)


def unknown_type(rtype: int) -> bytes:
    """The answer to a management record of a type we do not know."""
    return encode_record(UNKNOWN_TYPE, 0, bytes((rtype,)) + bytes(7))


def get_values_result(content: bytes, values: dict[bytes, bytes]) -> bytes:
    """The ``GET_VALUES_RESULT`` for a ``GET_VALUES`` body: the known names asked for."""
    # Each known name once, whatever was asked: the answer stays small.
    asked = dict.fromkeys(name for name, _ in decode_pairs(content) if name in values)
    return encode_record(GET_VALUES_RESULT, 0, encode_pairs((name, values[name]) for name in asked))


__all__ = ["Record", "encode_record", "encode_stream", "stream_parts", "decode_record",
           "encode_pairs", "decode_pairs", "begin_request", "parse_begin_request", "end_request",
           "parse_end_request", "unknown_type", "get_values_result"]
