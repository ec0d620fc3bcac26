"""AJP13: packets on byte-level fixtures, then the server over a real socket."""
from __future__ import annotations

import hashlib
import json
import logging
import socket

import pytest

import gateway_apps
from stack.errors import ConfigError, HeaderError
from stack.gateways import ajp
from stack.gateways import ajp_packets as packets
from stack.server.parser import ParseError

# GET /app/x?a=1 HTTP/1.1 from 127.0.0.1 to localhost:80 with Host: h, as mod_proxy_ajp frames it.
GET_FIXTURE = (
    b"\x12\x34\x00\x50"                        # magic, length 80
    b"\x02\x02"                                # FORWARD_REQUEST, GET
    b"\x00\x08HTTP/1.1\x00" b"\x00\x06/app/x\x00" b"\x00\x09127.0.0.1\x00" b"\xff\xff"
    b"\x00\x09localhost\x00" b"\x00\x50" b"\x00"  # server name, port 80, not ssl
    b"\x00\x02" b"\xa0\x0b\x00\x01h\x00"        # 2 headers: Host (coded) ...
    b"\x00\x06x-test\x00\x00\x01t\x00"          # ... and X-Test (by name)
    b"\x05\x00\x03a=1\x00" b"\xff")             # query_string attribute, end


def test_forward_request_fixture() -> None:
    payload, end = packets.decode_packet(GET_FIXTURE, 8192)
    assert end == len(GET_FIXTURE)
    request = packets.decode_forward_request(payload)
    assert (request.method, request.protocol, request.uri, request.remote_addr, request.remote_host,
            request.server_name, request.server_port, request.is_ssl) == \
        ("GET", "HTTP/1.1", "/app/x", "127.0.0.1", None, "localhost", 80, False)
    assert request.headers == [("host", "h"), ("x-test", "t")]
    assert request.attributes == {"query_string": "a=1"}
    assert packets.encode_forward_request("GET", "/app/x", headers=[("Host", "h"), ("x-test", "t")],
                                          attributes=[(5, "a=1")]) == GET_FIXTURE


def test_stored_method_and_request_attributes() -> None:
    packet = packets.encode_forward_request("PATCH", "/p", request_attributes=[("AJP_REMOTE_PORT", "5555")],
                                            attributes=[(12, "s3"), (11, "256")])
    request = packets.decode_forward_request(packets.decode_packet(packet, 8192)[0])
    assert request.method == "PATCH"
    assert request.attributes == {"secret": "s3", "ssl_key_size": "256", "stored_method": "PATCH"}
    assert ajp.request_params(request)["REMOTE_PORT"] == "5555"


@pytest.mark.parametrize("cut", [0, 1, 3, 4, 50, len(GET_FIXTURE) - 1], ids=lambda n: f"first-{n}")
def test_incomplete_packet_is_none(cut: int) -> None:
    assert packets.decode_packet(GET_FIXTURE[:cut], 8192) is None


@pytest.mark.parametrize("data, message", [
    (b"AB\x00\x01\x02", "magic"),
    (b"\x12\x34\xff\xff", "over the packet size"),
], ids=["wrong-magic", "oversized"])
def test_bad_packets(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        packets.decode_packet(data, 8192)


@pytest.mark.parametrize("payload, message", [
    (GET_FIXTURE[4:40], "truncated"),
    (b"\x02\x63" + GET_FIXTURE[6:], "method code"),
    (GET_FIXTURE[4:-1] + b"\x42", "attribute code"),
    (b"\x03" + GET_FIXTURE[5:], "not a FORWARD_REQUEST"),
    (GET_FIXTURE[4:16] + b"X" + GET_FIXTURE[17:], "NUL"),
], ids=["truncated", "method", "attribute", "type", "string-nul"])
def test_malformed_forward_requests(payload: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        packets.decode_forward_request(payload)


def test_response_packets() -> None:
    assert packets.send_headers("200 OK", [("Content-Type", "text/plain"), ("X-A", "b")], 8192) == (
        b"AB\x00\x23" b"\x04\x00\xc8\x00\x02OK\x00\x00\x02"
        b"\xa0\x01\x00\x0atext/plain\x00" b"\x00\x03X-A\x00\x00\x01b\x00")
    assert packets.body_chunks(b"hi", 8192) == [b"AB\x00\x06\x03\x00\x02hi\x00"]
    assert [len(p) for p in packets.body_chunks(b"x" * 10000, 8192)] == [8192, 10000 - 8184 + 8]
    assert packets.end_response() == b"AB\x00\x02\x05\x01"
    assert packets.get_body_chunk(8186) == b"AB\x00\x03\x06\x1f\xfa"
    assert packets.cpong() == b"AB\x00\x01\x09"
    assert packets.encode_body(b"abc") == b"\x12\x34\x00\x05\x00\x03abc"
    assert packets.decode_body(b"\x00\x03abc") == b"abc" and packets.decode_body(b"") == b""
    with pytest.raises(ParseError):
        packets.decode_body(b"\x00\x09abc")
    with pytest.raises(HeaderError):
        packets.send_headers("200 OK", [("X-Big", "x" * 9000)], 8192)


# -- the server ----------------------------------------------------------------------------

class Peer:
    """Plays mod_proxy_ajp on one connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def packet(self) -> tuple[int, bytes] | None:
        while len(self.buffer) < 4 or len(self.buffer) < 4 + int.from_bytes(self.buffer[2:4], "big"):
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        assert self.buffer[:2] == b"AB"
        size = int.from_bytes(self.buffer[2:4], "big")
        payload, self.buffer = self.buffer[4:4 + size], self.buffer[4 + size:]
        return payload[0], payload

    def request(self, method: str, uri: str, body: bytes = b"", *, headers: list | None = None,
                attributes: list | None = None) -> tuple[tuple, bytes, bool | None]:
        """Send a request, answer GET_BODY_CHUNKs; ((status, reason, headers), body, reuse)."""
        headers = list(headers or []) + ([("Content-Length", str(len(body)))] if body else [])
        self.sock.sendall(packets.encode_forward_request(method, uri, headers=headers,
                                                         attributes=attributes or []))
        rest = body
        if body:
            self.sock.sendall(packets.encode_body(rest[:8186]))
            rest = rest[8186:]
        head, chunks = None, []
        while (found := self.packet()) is not None:
            kind, payload = found
            if kind == packets.GET_BODY_CHUNK:
                size = int.from_bytes(payload[1:3], "big")
                self.sock.sendall(packets.encode_body(rest[:size]))
                rest = rest[size:]
            elif kind == packets.SEND_HEADERS:
                head = packets.decode_response(b"AB" + len(payload).to_bytes(2, "big") + payload)[0][1]
            elif kind == packets.SEND_BODY_CHUNK:
                size = int.from_bytes(payload[1:3], "big")
                assert payload[3 + size:] == b"\x00"
                chunks.append(payload[3:3 + size])
            elif kind == packets.END_RESPONSE:
                return head, b"".join(chunks), payload[1] == 1
        return head, b"".join(chunks), None


def test_requests_on_one_pooled_connection(serve_gateway, connect) -> None:
    peer = Peer(connect(serve_gateway(ajp, script_name="/app")))
    head, body, reuse = peer.request("GET", "/app/hello")
    assert (head[0], body, reuse) == (200, gateway_apps.HELLO, True)
    big = bytes(range(256)) * 4000
    head, body, reuse = peer.request("POST", "/app/echo", big)
    assert json.loads(body) == {"length": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    # a body the app never reads: the chunk sent unasked is consumed, the connection stays in sync
    head, body, reuse = peer.request("POST", "/app/hello", b"y" * 3000)
    assert (head[0], body, reuse) == (200, gateway_apps.HELLO, True)
    head, body, _ = peer.request("GET", "/app/stream")
    assert body == b"".join(gateway_apps.STREAM_CHUNKS)
    head, _, _ = peer.request("GET", "/app/headers")
    assert [v for k, v in head[2] if k.lower() == "set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    assert peer.request("GET", "/app/error")[0][0] == 500
    head, body, _ = peer.request("GET", "/app/environ/a%20b", headers=[("X-Test", "t")],
                                 attributes=[(5, "q=1")])
    seen = json.loads(body)
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"], seen["QUERY_STRING"], seen["HTTP_X_TEST"]) == \
        ("/app", "/environ/a b", "q=1", "t")


def test_cping_and_late_error(serve_gateway, connect) -> None:
    peer = Peer(connect(serve_gateway(ajp, script_name="/app")))
    peer.sock.sendall(packets.server_packet(bytes((packets.CPING,))))
    assert peer.packet() == (packets.CPONG_REPLY, b"\x09")
    head, body, reuse = peer.request("GET", "/app/late-error")
    assert (head[0], body, reuse) == (200, b"first\n", None)  # aborted: closed, no END_RESPONSE


def test_secret_is_required(serve_gateway, connect, caplog) -> None:
    server = serve_gateway(ajp, script_name="/app", secret="s3")
    with caplog.at_level(logging.WARNING, "stack.gateways"):
        head, _, _ = Peer(connect(server)).request("GET", "/app/hello", attributes=[(12, "wrong")])
    assert head[0] == 403 and "secret" in caplog.text
    assert Peer(connect(server)).request("GET", "/app/hello", attributes=[(12, "s3")])[0][0] == 200


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n\r\n",
    packets.server_packet(b"\x02\x63garbage"),
    packets.server_packet(b"\x04"),
], ids=["http-not-ajp", "bad-forward-request", "unexpected-type"])
def test_malformed_packets_close_cleanly(serve_gateway, connect, data: bytes, caplog) -> None:
    server = serve_gateway(ajp, script_name="/app")
    sock = connect(server)
    with caplog.at_level(logging.WARNING, "stack.gateways"):
        sock.sendall(data)
        peer = Peer(sock)
        while peer.packet() is not None:
            pass
    assert "ajp: refused a request" in caplog.text
    assert Peer(connect(server)).request("GET", "/app/hello")[0][0] == 200


def test_truncated_body_is_a_clean_close(serve_gateway, connect, caplog) -> None:
    server = serve_gateway(ajp, script_name="/app")
    sock = connect(server)
    with caplog.at_level(logging.INFO, "stack.gateways"):
        sock.sendall(packets.encode_forward_request("POST", "/app/echo", headers=[("Content-Length", "500")])
                     + packets.encode_body(b"x" * 100)[:-20])
        sock.shutdown(socket.SHUT_WR)
        peer = Peer(sock)
        while peer.packet() is not None:
            pass
    assert "went away" in caplog.text
    assert Peer(connect(server)).request("GET", "/app/hello")[0][0] == 200


def test_factory() -> None:
    assert callable(ajp.server_factory({}, secret="x", packet_size="65536", script_name="/app"))
    with pytest.raises(ConfigError, match="packet_size"):
        ajp.server_factory({}, packet_size="100")


def test_a_chunked_body_is_asked_for_from_the_start(serve_gateway, connect) -> None:
    """httpd sends no unasked first chunk without a Content-Length (a chunked request)."""
    peer = Peer(connect(serve_gateway(ajp, script_name="/app", body_timeout=3)))
    body = b"chunked upload " * 700
    peer.sock.sendall(packets.encode_forward_request(
        "POST", "/app/echo", headers=[("Transfer-Encoding", "chunked")], attributes=[]))
    rest, head, chunks, reuse = body, None, [], False
    while (found := peer.packet()) is not None:
        kind, payload = found
        if kind == packets.GET_BODY_CHUNK:
            size = int.from_bytes(payload[1:3], "big")
            peer.sock.sendall(packets.encode_body(rest[:size]))
            rest = rest[size:]
        elif kind == packets.SEND_HEADERS:
            head = True
        elif kind == packets.SEND_BODY_CHUNK:
            size = int.from_bytes(payload[1:3], "big")
            chunks.append(payload[3:3 + size])
        elif kind == packets.END_RESPONSE:
            reuse = payload[1] == 1
            break
    assert head and reuse and json.loads(b"".join(chunks))["length"] == len(body)
    # a chunked body the app never reads does not swallow the next request
    head, body2, _ = peer.request("GET", "/app/hello")
    assert (head[0], body2) == (200, gateway_apps.HELLO)


def test_cping_on_an_idle_connection_keeps_the_keepalive_timeout(serve_gateway, connect) -> None:
    import time

    peer = Peer(connect(serve_gateway(ajp, script_name="/app", header_timeout=0.4,
                                      keepalive_timeout=30)))
    assert peer.request("GET", "/app/hello")[0][0] == 200
    for _ in range(4):  # well past header_timeout in all
        peer.sock.sendall(packets.server_packet(bytes((packets.CPING,))))
        assert peer.packet() == (packets.CPONG_REPLY, b"\x09")
        time.sleep(0.3)
