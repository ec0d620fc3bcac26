"""SCGI: netstrings and headers on byte-level fixtures, then the server over a real socket."""
from __future__ import annotations

import hashlib
import json
import logging
import socket

import pytest

import gateway_apps
from gateway_client import recv_all, split_cgi
from stack.errors import ConfigError
from stack.gateways import scgi
from stack.gateways.scgi_netstring import decode_headers, decode_netstring, encode_request
from stack.server.parser import ParseError

# The example from the SCGI specification.
SPEC_EXAMPLE = (b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00"
                b"REQUEST_URI\x00/deepthought\x00,What is the answer to life?")


def test_spec_example() -> None:
    payload, end = decode_netstring(SPEC_EXAMPLE, 1024)
    assert SPEC_EXAMPLE[end:] == b"What is the answer to life?"
    assert decode_headers(payload) == {"CONTENT_LENGTH": "27", "SCGI": "1", "REQUEST_METHOD": "POST",
                                       "REQUEST_URI": "/deepthought"}
    assert encode_request([(b"REQUEST_METHOD", b"POST"), (b"REQUEST_URI", b"/deepthought")],
                          b"What is the answer to life?") == SPEC_EXAMPLE


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 50, 73], ids=lambda n: f"first-{n}")
def test_incomplete_netstring_is_none(cut: int) -> None:
    assert decode_netstring(SPEC_EXAMPLE[:cut], 1024) is None


@pytest.mark.parametrize("data, message", [
    (b"x7:abc", "netstring length"),
    (b"12345678901", "netstring length"),
    (b"07:abcdefg,", "not a number"),
    (b"3:abcX", "end with ','"),
    (b"99999:", "over the limit"),
], ids=["letter", "too-many-digits", "leading-zero", "no-comma", "oversized"])
def test_malformed_netstrings(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        decode_netstring(data, 1024)


@pytest.mark.parametrize("payload, message", [
    (b"CONTENT_LENGTH\x000\x00SCGI\x001", "end with NUL"),
    (b"CONTENT_LENGTH\x000\x00SCGI\x00", "without a value"),
    (b"SCGI\x001\x00CONTENT_LENGTH\x000\x00", "start with CONTENT_LENGTH"),
    (b"CONTENT_LENGTH\x00-1\x00SCGI\x001\x00", "start with CONTENT_LENGTH"),
    (b"CONTENT_LENGTH\x000\x00", "SCGI=1"),
], ids=["no-final-nul", "odd-fields", "order", "negative-length", "no-scgi"])
def test_malformed_headers(payload: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        decode_headers(payload)


def test_repeated_name_keeps_the_first() -> None:
    assert decode_headers(b"CONTENT_LENGTH\x000\x00SCGI\x001\x00SCGI\x002\x00")["SCGI"] == "1"


def request(sock: socket.socket, path: str, body: bytes = b"", method: str = "GET",
            **extra: str) -> tuple[str, list, bytes]:
    path_info, _, query = path.partition("?")
    headers = {"REQUEST_METHOD": method, "REQUEST_URI": "/app" + path, "QUERY_STRING": query,
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               **extra}
    sock.sendall(encode_request([(k.encode(), v.encode()) for k, v in headers.items()], body))
    return split_cgi(recv_all(sock))


def test_get_post_stream_headers_error(serve_gateway, connect) -> None:
    server = serve_gateway(scgi, script_name="/app")
    status, headers, body = request(connect(server), "/hello")
    assert (status, body) == ("200 OK", gateway_apps.HELLO)
    big = bytes(range(256)) * 8000
    status, _, body = request(connect(server), "/echo", big, "POST")
    assert json.loads(body) == {"length": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    assert request(connect(server), "/stream")[2] == b"".join(gateway_apps.STREAM_CHUNKS)
    headers = request(connect(server), "/headers")[1]
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    assert request(connect(server), "/error")[0] == "500 Internal Server Error"
    # no SCRIPT_NAME/PATH_INFO from the front server: split at script_name
    seen = json.loads(request(connect(server), "/environ/a%20b?q=1", HTTP_X_TEST="t")[2])
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/app", "/environ/a b", "q=1")


def test_the_front_servers_split_is_kept(serve_gateway, connect) -> None:
    server = serve_gateway(scgi)
    seen = json.loads(request(connect(server), "/environ/x", SCRIPT_NAME="/app",
                              PATH_INFO="/environ/x")[2])
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "/environ/x")


@pytest.mark.parametrize("data, status", [
    (b"12:CONTENT_LENGTH,", "400 Bad Request"),
    (b"abc:", "400 Bad Request"),
    (b"5000:", "431 Request Header Fields Too Large"),
], ids=["bad-headers", "bad-length", "oversized"])
def test_malformed_requests_are_answered_and_closed(serve_gateway, connect, data: bytes, status: str,
                                                    caplog) -> None:
    server = serve_gateway(scgi, script_name="/app", max_request_header_size=1024)
    sock = connect(server)
    with caplog.at_level(logging.WARNING, "stack.gateways"):
        sock.sendall(data)
        assert split_cgi(recv_all(sock))[0] == status
    assert "scgi: refused a request" in caplog.text
    assert request(connect(server), "/hello")[0] == "200 OK"


def test_truncated_body_and_limit(serve_gateway, connect, caplog) -> None:
    server = serve_gateway(scgi, max_request_body_size=1000)
    sock = connect(server)
    with caplog.at_level(logging.INFO, "stack.gateways"):
        sock.sendall(encode_request([(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/echo")],
                                    b"x" * 500)[:-100])
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b""
    assert "went away" in caplog.text
    status = request(connect(server), "/echo", b"x" * 2000, "POST", PATH_INFO="/echo")[0]
    assert status == "413 Content Too Large"


def test_factory() -> None:
    assert callable(scgi.server_factory({}, port="4001", script_name="/app"))
    with pytest.raises(ConfigError, match="unknown option"):
        scgi.server_factory({}, secret="x")
