"""FastCGI: records on byte-level fixtures, then the responder over a real socket."""
from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time

import pytest

import gateway_apps
from gateway_client import RecordReader, fcgi_params, fcgi_request, recv_all, split_cgi
from stack.errors import ConfigError
from stack.gateways import fastcgi
from stack.gateways import fastcgi_records as fcgi
from stack.server.parser import ParseError

# -- records ------------------------------------------------------------------------------

BEGIN_KEEP = b"\x01\x01\x00\x01\x00\x08\x00\x00" b"\x00\x01\x01\x00\x00\x00\x00\x00"
END_OK = b"\x01\x03\x00\x01\x00\x08\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00\x00"
STDIN_ABC = b"\x01\x05\x00\x01\x00\x03\x05\x00" + b"abc" + bytes(5)


@pytest.mark.parametrize("encoded, decoded", [
    (BEGIN_KEEP, fcgi.Record(fcgi.BEGIN_REQUEST, 1, b"\x00\x01\x01\x00\x00\x00\x00\x00")),
    (END_OK, fcgi.Record(fcgi.END_REQUEST, 1, bytes(8))),
    (STDIN_ABC, fcgi.Record(fcgi.STDIN, 1, b"abc")),
    (b"\x01\x05\x01\x00\x00\x00\x00\x00", fcgi.Record(fcgi.STDIN, 256, b"")),
], ids=["begin", "end", "stdin-padded", "empty-stdin-id256"])
def test_record_fixtures(encoded: bytes, decoded: fcgi.Record) -> None:
    assert fcgi.decode_record(encoded) == (decoded, len(encoded))
    assert fcgi.encode_record(*decoded) == encoded


def test_builders_match_fixtures() -> None:
    assert fcgi.begin_request(1, fcgi.RESPONDER, fcgi.KEEP_CONN) == BEGIN_KEEP
    assert fcgi.end_request(1) == END_OK
    assert fcgi.parse_begin_request(BEGIN_KEEP[8:]) == (fcgi.RESPONDER, fcgi.KEEP_CONN)
    assert fcgi.unknown_type(42) == b"\x01\x0b\x00\x00\x00\x08\x00\x00" b"\x2a" + bytes(7)


@pytest.mark.parametrize("cut", [0, 1, 7, 8, 10, 15], ids=lambda n: f"first-{n}-bytes")
def test_incomplete_record_is_none(cut: int) -> None:
    assert fcgi.decode_record(STDIN_ABC[:cut]) is None


def test_bad_version_and_short_begin_are_errors() -> None:
    with pytest.raises(ParseError, match="version 2"):
        fcgi.decode_record(b"\x02" + STDIN_ABC[1:])
    with pytest.raises(ParseError, match="BEGIN_REQUEST"):
        fcgi.parse_begin_request(b"\x00\x01")


def test_stream_splits_at_65535_and_pads() -> None:
    data = bytes(range(256)) * 300  # 76800 bytes: two records
    encoded = fcgi.encode_stream(fcgi.STDOUT, 3, data, end=True)
    records, offset = [], 0
    while offset < len(encoded):
        record, offset = fcgi.decode_record(encoded, offset)
        records.append(record)
    assert [len(r.content) for r in records] == [65535, 76800 - 65535, 0]
    assert b"".join(r.content for r in records) == data
    assert len(encoded) % 8 == 0


@pytest.mark.parametrize("pairs, encoded", [
    ([(b"A", b"bc")], b"\x01\x02Abc"),
    ([(b"N", b"v" * 200)], b"\x01\x80\x00\x00\xc8N" + b"v" * 200),
    ([(b"K" * 128, b"")], b"\x80\x00\x00\x80\x00" + b"K" * 128),
    ([(b"", b"")], b"\x00\x00"),
], ids=["short", "long-value", "long-name", "empty"])
def test_pairs_fixtures(pairs: list, encoded: bytes) -> None:
    assert fcgi.encode_pairs(pairs) == encoded
    assert fcgi.decode_pairs(encoded) == pairs


@pytest.mark.parametrize("data", [b"\x05", b"\x05\x01ab", b"\x80\x00\x00", b"\x01\x80\x00\x00\x10N"],
                         ids=["no-value-length", "short-name", "short-long-length", "short-long-value"])
def test_truncated_pairs_are_errors(data: bytes) -> None:
    with pytest.raises(ParseError):
        fcgi.decode_pairs(data)


def test_get_values_result_answers_known_names_only() -> None:
    asked = fcgi.encode_pairs([(b"FCGI_MPXS_CONNS", b""), (b"NOPE", b"")])
    record, _ = fcgi.decode_record(fcgi.get_values_result(asked, {b"FCGI_MPXS_CONNS": b"0"}))
    assert record.type == fcgi.GET_VALUES_RESULT and record.request_id == 0
    assert fcgi.decode_pairs(record.content) == [(b"FCGI_MPXS_CONNS", b"0")]


# -- the responder ----------------------------------------------------------------------------

def exchange(sock: socket.socket, request_id: int, params: dict, body: bytes = b"",
             keep_conn: bool = True) -> tuple[str, list, bytes, bytes, tuple | None]:
    sock.sendall(fcgi_request(request_id, params, body, keep_conn=keep_conn))
    stdout, stderr, end = RecordReader(sock).response(request_id)
    status, headers, content = split_cgi(stdout) if stdout else ("", [], b"")
    return status, headers, content, stderr, end


def test_get_keep_conn_and_post_on_one_connection(serve_gateway, connect) -> None:
    sock = connect(serve_gateway(fastcgi))
    status, headers, body, _, end = exchange(sock, 1, fcgi_params("/hello"))
    assert (status, body, end) == ("200 OK", gateway_apps.HELLO, (0, fcgi.REQUEST_COMPLETE))
    assert ("Content-Length", str(len(gateway_apps.HELLO))) in headers
    big = bytes(range(256)) * 4000  # ~1 MB in many STDIN records
    status, _, body, _, end = exchange(sock, 2, fcgi_params("/echo", "POST", big), big)
    assert json.loads(body) == {"length": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    status, _, body, _, _ = exchange(sock, 3, fcgi_params("/environ/x?q=1", HTTPS="on",
                                                          HTTP_X_TEST="t"))
    seen = json.loads(body)
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/app", "/environ/x", "q=1")
    assert (seen["url_scheme"], seen["HTTP_X_TEST"]) == ("https", "t")


def test_without_keep_conn_the_connection_closes(serve_gateway, connect) -> None:
    sock = connect(serve_gateway(fastcgi))
    *_, end = exchange(sock, 1, fcgi_params("/hello"), keep_conn=False)
    assert end == (0, 0)
    assert recv_all(sock) == b""


def test_stream_headers_write_and_errors(serve_gateway, connect) -> None:
    sock = connect(serve_gateway(fastcgi))
    _, _, body, _, _ = exchange(sock, 1, fcgi_params("/stream"))
    assert body == b"".join(gateway_apps.STREAM_CHUNKS)
    _, headers, _, _, _ = exchange(sock, 2, fcgi_params("/headers"))
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    assert [v for k, v in headers if k == "X-Multi"] == ["one", "two"]
    _, _, body, _, _ = exchange(sock, 3, fcgi_params("/write"))
    assert body == b"written twice\n"
    status, _, body, _, end = exchange(sock, 4, fcgi_params("/error"))
    assert (status, end) == ("500 Internal Server Error", (0, 0))
    gateway_apps.closed.clear()
    status, _, body, _, end = exchange(sock, 5, fcgi_params("/late-error"))
    assert (status, body, end) == ("200 OK", b"first\n", None)  # aborted: no END_REQUEST
    assert gateway_apps.closed == ["/late-error"]


def test_wsgi_errors_go_out_as_stderr(serve_gateway, connect) -> None:
    def app(environ, start_response):
        environ["wsgi.errors"].write("something odd\n")
        start_response("204 No Content", [])
        return []

    sock = connect(serve_gateway(fastcgi, app))
    status, _, _, stderr, end = exchange(sock, 1, fcgi_params("/"))
    assert (status, stderr, end) == ("204 No Content", b"something odd\n", (0, 0))


def test_bad_app_headers_are_a_500(serve_gateway, connect) -> None:
    def app(environ, start_response):
        start_response("200 OK", [("Transfer-Encoding", "chunked")])
        return [b"x"]

    status, *_ = exchange(connect(serve_gateway(fastcgi, app)), 1, fcgi_params("/"))
    assert status == "500 Internal Server Error"


def test_get_values_and_unknown_management(serve_gateway, connect) -> None:
    sock = connect(serve_gateway(fastcgi, connection_limit=50))
    names = fcgi.encode_pairs([(b"FCGI_MAX_CONNS", b""), (b"FCGI_MPXS_CONNS", b""), (b"X", b"")])
    sock.sendall(fcgi.encode_record(fcgi.GET_VALUES, 0, names) + fcgi.encode_record(99, 0, b""))
    reader = RecordReader(sock)
    result = reader.next()
    assert result.type == fcgi.GET_VALUES_RESULT
    assert fcgi.decode_pairs(result.content) == [(b"FCGI_MAX_CONNS", b"50"), (b"FCGI_MPXS_CONNS", b"0")]
    unknown = reader.next()
    assert (unknown.type, unknown.content[0]) == (fcgi.UNKNOWN_TYPE, 99)
    assert exchange(sock, 1, fcgi_params("/hello"))[0] == "200 OK"  # still usable


def test_second_request_and_unknown_role_are_refused(serve_gateway, connect) -> None:
    server = serve_gateway(fastcgi)
    other = connect(server)
    other.sendall(fcgi.begin_request(3, fcgi.AUTHORIZER))
    refused = RecordReader(other).next()
    assert (refused.request_id, fcgi.parse_end_request(refused.content)) == (3, (0, fcgi.UNKNOWN_ROLE))
    sock = connect(server)
    sock.sendall(fcgi.begin_request(1, fcgi.RESPONDER, fcgi.KEEP_CONN) + fcgi.begin_request(2))
    reader = RecordReader(sock)
    refused = reader.next()
    assert (refused.request_id, fcgi.parse_end_request(refused.content)) == (2, (0, fcgi.CANT_MPX_CONN))
    pairs = fcgi.encode_pairs((k.encode(), v.encode()) for k, v in fcgi_params("/hello").items())
    sock.sendall(fcgi.encode_stream(fcgi.PARAMS, 1, pairs, end=True) + fcgi.encode_record(fcgi.STDIN, 1))
    stdout, _, end = reader.response(1)
    assert split_cgi(stdout)[2] == gateway_apps.HELLO and end == (0, 0)


def test_abort_request_while_the_app_reads(serve_gateway, connect) -> None:
    started = threading.Event()
    seen: list[str] = []

    def app(environ, start_response):
        if environ["PATH_INFO"] != "/abort":
            return gateway_apps.app(environ, start_response)
        started.set()
        try:
            environ["wsgi.input"].read(10)
        except ConnectionError as exc:
            seen.append(str(exc))
            raise
        start_response("200 OK", [])
        return [b"not reached"]

    sock = connect(serve_gateway(fastcgi, app))
    sock.sendall(fcgi_request(1, fcgi_params("/abort", "POST", b"x" * 10), b"", end_stdin=False))
    assert started.wait(5)
    sock.sendall(fcgi.encode_record(fcgi.ABORT_REQUEST, 1))
    _, _, end = RecordReader(sock).response(1)
    assert end == (1, fcgi.REQUEST_COMPLETE)
    assert seen and "ABORT_REQUEST" in seen[0]
    assert exchange(sock, 2, fcgi_params("/hello"))[0] == "200 OK"  # the connection was kept


def test_oversized_params_get_431_and_a_close(serve_gateway, connect, caplog) -> None:
    sock = connect(serve_gateway(fastcgi, max_request_header_size=1024))
    with caplog.at_level(logging.WARNING, "stack.gateways"):
        sock.sendall(fcgi_request(1, fcgi_params("/hello", HTTP_X_BIG="b" * 2000)))
        stdout, _, end = RecordReader(sock).response(1)
        assert recv_all(sock) == b""
    assert split_cgi(stdout)[0] == "431 Request Header Fields Too Large" and end == (1, 0)
    assert "params over 1024 bytes" in caplog.text


def test_body_over_the_limit_is_413(serve_gateway, connect) -> None:
    sock = connect(serve_gateway(fastcgi, max_request_body_size=100))
    status, *_ = exchange(sock, 1, fcgi_params("/echo", "POST", b"x" * 500), b"x" * 500)
    assert status == "413 Content Too Large"


@pytest.mark.parametrize("garbage, refused, answer", [
    (b"\x02\x01\x00\x01\x00\x08\x00\x00" + bytes(8), True, None),
    (fcgi.encode_record(fcgi.STDIN, 1, b"x"), False, None),
    (fcgi.begin_request(1) + fcgi.encode_record(fcgi.STDIN, 1, b"early"), True, "400 Bad Request"),
    (fcgi.begin_request(1) + fcgi.encode_stream(fcgi.PARAMS, 1, b"\x05\x01ab", end=True), True,
     "400 Bad Request"),
], ids=["bad-version", "stray-stdin-ignored", "stdin-before-params", "truncated-pairs"])
def test_malformed_records_close_cleanly(serve_gateway, connect, garbage: bytes, refused: bool,
                                         answer: str | None, caplog) -> None:
    server = serve_gateway(fastcgi)
    sock = connect(server)
    with caplog.at_level(logging.WARNING, "stack.gateways"):
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)  # then the front server hangs up
        data = recv_all(sock)
    records = _records(data)
    if answer is None:  # no request to answer: just closed
        assert records == []
    else:  # the request it belongs to is answered, then closed
        assert split_cgi(b"".join(r.content for r in records if r.type == fcgi.STDOUT))[0] == answer
        assert records[-1].type == fcgi.END_REQUEST
    assert ("refused a request" in caplog.text) == refused
    assert exchange(connect(server), 1, fcgi_params("/hello"))[0] == "200 OK"  # unharmed


def _records(data: bytes) -> list[fcgi.Record]:
    out, offset = [], 0
    while (found := fcgi.decode_record(data, offset)) is not None:
        record, offset = found
        out.append(record)
    return out


def test_truncated_stdin_stream_is_a_clean_close(serve_gateway, connect, caplog) -> None:
    server = serve_gateway(fastcgi)
    sock = connect(server)
    with caplog.at_level(logging.INFO, "stack.gateways"):
        sock.sendall(fcgi_request(1, fcgi_params("/echo", "POST", b"x" * 1000), b"x" * 300,
                                  end_stdin=False)[:-5])  # cut inside the last record
        sock.shutdown(socket.SHUT_WR)
        assert RecordReader(sock).response(1)[2] is None
        deadline = time.monotonic() + 5
        while "went away" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert "went away" in caplog.text
    assert exchange(connect(server), 1, fcgi_params("/hello"))[0] == "200 OK"


def test_unix_socket(serve_gateway, tmp_path) -> None:
    path = str(tmp_path / "fcgi.sock")
    serve_gateway(fastcgi, unix_socket=path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        assert exchange(sock, 1, fcgi_params("/hello"))[2] == gateway_apps.HELLO


def test_factory_checks_options_at_load_time() -> None:
    runner = fastcgi.server_factory({}, port="9001", threads="4", script_name="/app/")
    assert callable(runner)
    with pytest.raises(ConfigError, match="unknown option 'thread'"):
        fastcgi.server_factory({}, thread="4")
    with pytest.raises(ConfigError, match="script_name"):
        fastcgi.server_factory({}, script_name="app")


def test_a_short_body_is_aborted_not_ended_cleanly(serve_gateway, connect) -> None:
    def short(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return iter([b"ok"])

    sock = connect(serve_gateway(fastcgi, app=short))
    sock.sendall(fcgi_request(1, fcgi_params("/")))
    stdout, _, end = RecordReader(sock).response(1)
    assert stdout.endswith(b"ok") and end is None  # no END_REQUEST: the front server sees it cut
    assert recv_all(sock) == b""


def test_trickled_records_do_not_restart_the_header_timeout(serve_gateway, connect) -> None:
    sock = connect(serve_gateway(fastcgi, header_timeout=0.5, keepalive_timeout=0.5))
    pairs = fcgi.encode_pairs([(b"REQUEST_METHOD", b"GET")])
    started = time.monotonic()
    try:
        sock.sendall(fcgi.begin_request(1, fcgi.RESPONDER, fcgi.KEEP_CONN))
        while time.monotonic() - started < 4:  # one params record at a time, never the end
            sock.sendall(fcgi.encode_stream(fcgi.PARAMS, 1, pairs, end=False))
            time.sleep(0.2)
    except OSError:
        pass
    assert time.monotonic() - started < 2.5


def test_get_values_answers_each_name_once(serve_gateway, connect) -> None:
    """A GET_VALUES asking one name thousands of times gets one small answer."""
    server = serve_gateway(fastcgi)
    sock = connect(server)
    pairs = fcgi.encode_pairs([(b"FCGI_MPXS_CONNS", b"")] * 3000)
    sock.sendall(fcgi.encode_record(fcgi.GET_VALUES, 0, pairs))
    record, _ = fcgi.decode_record(sock.recv(65536), 0)
    assert fcgi.decode_pairs(record.content) == [(b"FCGI_MPXS_CONNS", b"0")]
    other = connect(server)  # the server is still there for everyone else
    status, _, body, _, _ = exchange(other, 1, fcgi_params("/hello"))
    assert (status, body) == ("200 OK", gateway_apps.HELLO)


def test_non_ascii_digits_in_content_length_are_a_400(serve_gateway, connect) -> None:
    sock = connect(serve_gateway(fastcgi))
    status, *_ = exchange(sock, 1, fcgi_params("/echo", "POST", CONTENT_LENGTH="\u00b2"))
    assert status.startswith("400")
