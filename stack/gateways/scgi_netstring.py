"""SCGI request heads, sans-IO: a netstring of NUL-separated header pairs.

Written from the SCGI protocol specification (Neil Schemenauer, 2006). A
request is ``<length>:<headers>,`` then the body; the headers are
``name NUL value NUL`` pairs, the first being ``CONTENT_LENGTH`` (the body's
size), and one of them ``SCGI`` = ``1``. The response is CGI-style and ends
when the connection closes.

>>> head = encode_request([(b"REQUEST_METHOD", b"GET")])
>>> head
b'43:CONTENT_LENGTH\\x000\\x00SCGI\\x001\\x00REQUEST_METHOD\\x00GET\\x00,'
>>> payload, end = decode_netstring(head, 1024)
>>> decode_headers(payload)["REQUEST_METHOD"]
'GET'
"""
from __future__ import annotations

from typing import Iterable

from stack.server.parser import FIELDS_TOO_LARGE, ParseError

_MAX_DIGITS = 10


def encode_netstring(data: bytes) -> bytes:
    return b"%d:%b," % (len(data), data)


def encode_request(headers: Iterable[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    """A whole request as a front server sends it (``CONTENT_LENGTH`` and ``SCGI`` first)."""
    fields = [b"CONTENT_LENGTH", str(len(body)).encode(), b"SCGI", b"1"]
    for name, value in headers:
        fields += (name, value)
    return encode_netstring(b"".join(field + b"\x00" for field in fields)) + body


def decode_netstring(buffer: bytes, max_size: int) -> tuple[bytes, int] | None:
    """(payload, offset after the ``,``) or None if incomplete; ParseError if malformed."""
    colon = buffer.find(b":", 0, _MAX_DIGITS + 1)
    if colon == -1:
        if len(buffer) > _MAX_DIGITS or (buffer and not buffer.isdigit()):
            raise ParseError("SCGI request does not start with a netstring length")
        return None
    digits = buffer[:colon]
    if not digits.isdigit() or (len(digits) > 1 and digits[:1] == b"0"):
        raise ParseError(f"SCGI netstring length {digits[:20]!r} is not a number")
    size = int(digits)
    if size > max_size:
        raise ParseError(f"SCGI headers of {size} bytes over the limit of {max_size}", FIELDS_TOO_LARGE)
    end = colon + 1 + size
    if len(buffer) <= end:
        return None
    if buffer[end:end + 1] != b",":
        raise ParseError("SCGI netstring does not end with ','")
    return buffer[colon + 1:end], end + 1


def decode_headers(payload: bytes, max_count: int = 1000) -> dict[str, str]:
    """The headers as latin-1 strs; ParseError unless CONTENT_LENGTH comes first and is a number.

    A repeated name keeps its first value (the spec forbids repeats; nginx's
    stock ``scgi_params`` sends ``SCGI`` twice).
    """
    if not payload.endswith(b"\x00"):
        raise ParseError("SCGI headers do not end with NUL")
    fields = payload[:-1].split(b"\x00")
    if len(fields) % 2:
        raise ParseError("SCGI header without a value")
    if len(fields) > 2 * max_count:
        raise ParseError(f"more than {max_count} SCGI headers", FIELDS_TOO_LARGE)
    if fields[0] != b"CONTENT_LENGTH" or not fields[1].isdigit():
        raise ParseError("SCGI headers must start with CONTENT_LENGTH and a number")
    headers: dict[str, str] = {}
    for index in range(0, len(fields), 2):
        name = fields[index].decode("latin-1")
        if not name:
            raise ParseError("SCGI header with an empty name")
        headers.setdefault(name, fields[index + 1].decode("latin-1"))
    if headers.get("SCGI") != "1":
        raise ParseError("SCGI headers lack SCGI=1")
    return headers


__all__ = ["encode_netstring", "encode_request", "decode_netstring", "decode_headers"]
