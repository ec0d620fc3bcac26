"""The bundled server over real sockets: framing, persistence, bodies, errors."""
from __future__ import annotations

import http.client
import io
import json
import socket
import sys
import threading
import time

import pytest

from stack.server import FileWrapper, make_server
from support import echo_app


class _Stream:
    """A shared, never-closing reader so several responses parse off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb")

    def makefile(self, *args, **kwargs):
        return self

    def read(self, *args):
        return self._file.read(*args)

    def read1(self, *args):
        return self._file.read1(*args)

    def readline(self, *args):
        return self._file.readline(*args)

    def readinto(self, buffer):
        return self._file.readinto(buffer)

    def peek(self, *args):
        return self._file.peek(*args)

    def close(self) -> None:
        pass

    def really_close(self) -> None:
        self._file.close()


class Client:
    """A raw HTTP client: send any bytes, read responses one by one."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.stream = _Stream(self.sock)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, method: str = "GET") -> http.client.HTTPResponse:
        response = http.client.HTTPResponse(self.stream, method=method)  # type: ignore[arg-type]
        response.begin()
        response.body = response.read()  # type: ignore[attr-defined]
        return response

    def closed_by_server(self) -> bool:
        try:
            return self.stream.read(1) == b""
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self) -> None:
        self.stream.really_close()
        self.sock.close()


@pytest.fixture
def client(live_server):
    clients = []

    def connect(app, **options):
        url = live_server(app, **options)
        c = Client(url)
        clients.append(c)
        return c

    yield connect
    for c in clients:
        c.close()


def text_app(body=b"hello", status="200 OK", headers=None):
    def app(environ, start_response):
        start_response(status, headers if headers is not None else
                       [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return app


GET = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


def test_keep_alive_and_pipelining_in_order(client):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    c = client(app)
    c.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5)))
    bodies = [c.response().body for _ in range(5)]
    assert bodies == [b"/0", b"/1", b"/2", b"/3", b"/4"]
    c.send(GET)
    assert c.response().body == b"/x"  # the connection is still good


def test_date_server_and_content_length_for_a_list_body(client):
    c = client(lambda e, s: (s("200 OK", [("Content-Type", "text/plain")]), [b"ab", b"cd"])[1])
    c.send(GET)
    r = c.response()
    assert r.getheader("Content-Length") == "4" and r.body == b"abcd"
    assert r.getheader("Server") == "stack" and r.getheader("Date").endswith("GMT")
    assert r.getheader("Transfer-Encoding") is None


def test_generator_body_is_chunked_on_11_and_close_delimited_on_10(client):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"one "
        yield b""
        yield b"two"

    c = client(app)
    c.send(GET)
    r = c.response()
    assert r.getheader("Transfer-Encoding") == "chunked" and r.body == b"one two"
    c.send(b"GET / HTTP/1.0\r\n\r\n")
    r = c.response()
    assert r.getheader("Transfer-Encoding") is None and r.body == b"one two"
    assert r.getheader("Connection") == "close" and c.closed_by_server()


def test_connection_close_both_ways(client):
    c = client(text_app())
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    r = c.response()
    assert r.getheader("Connection") == "close" and c.closed_by_server()
    c2 = client(text_app(headers=[("Content-Length", "5"), ("Connection", "close")]))
    c2.send(GET)
    assert c2.response().getheader("Connection") == "close" and c2.closed_by_server()


def test_http10_keep_alive_when_asked(client):
    c = client(text_app())
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = c.response()
    assert r.getheader("Connection") == "keep-alive" and r.body == b"hello"
    c.send(b"GET / HTTP/1.0\r\n\r\n")
    assert c.response().body == b"hello" and c.closed_by_server()


def test_head_sends_no_body_whatever_the_app_yields(client):
    c = client(text_app(b"a body the app should not have made"))
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
    head = c.response(method="HEAD")
    assert head.body == b"" and head.getheader("Content-Length") == "35"
    assert c.response().body == b"a body the app should not have made"


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses(client, status):
    c = client(text_app(b"ignored", status=status, headers=[("X", "1")]))
    c.send(GET + GET)
    for _ in range(2):
        r = c.response()
        assert r.status == int(status[:3]) and r.body == b""
        assert r.getheader("Transfer-Encoding") is None


def test_app_sending_more_than_content_length_is_cut_and_closed(client):
    c = client(text_app(b"0123456789", headers=[("Content-Length", "4")]))
    c.send(GET)
    r = c.response()
    assert r.body == b"0123" and c.closed_by_server()


def test_app_sending_less_than_content_length_closes(client):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        yield b"0123"

    c = client(app)
    c.send(GET)
    with pytest.raises(http.client.IncompleteRead):
        c.response()


def echo_body(environ, start_response):
    data = environ["wsgi.input"].read()
    more = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [b"%d:" % len(data), data, b"|%r" % more]


def test_content_length_body_never_reads_past_it(client):
    c = client(echo_body)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" + GET)
    assert c.response().body == b"5:hello|b''"
    assert c.response().body == b"0:|b''"


def test_chunked_request_body_with_trailers(client):
    c = client(echo_body)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n" + GET)
    assert c.response().body == b"11:hello world|b''"
    assert c.response().body == b"0:|b''"


def test_wsgi_input_readline_and_partial_reads(client):
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        parts = [stream.readline(), stream.read(2), stream.readline(3), stream.read(), stream.read(1)]
        start_response("200 OK", [])
        return [json.dumps([p.decode() for p in parts]).encode()]

    c = client(app)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 15\r\n\r\nline1\nabcdef\nxy")
    assert json.loads(c.response().body) == ["line1\n", "ab", "cde", "f\nxy", ""]


def test_100_continue_only_when_the_app_reads(client):
    c = client(echo_body)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = c.stream.readline()
    assert interim == b"HTTP/1.1 100 Continue\r\n" and c.stream.readline() == b"\r\n"
    c.send(b"hello")
    assert c.response().body == b"5:hello|b''"

    c2 = client(text_app(b"no thanks", status="403 Forbidden"))
    c2.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    r = c2.response()
    assert r.status == 403 and r.body == b"no thanks"  # no 100 came first
    assert c2.closed_by_server()  # the body it never read may still come: close


def test_large_upload_and_download(client):
    payload = bytes(range(256)) * 40000  # ~10 MB

    def app(environ, start_response):
        data = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return iter([data[i:i + 65536] for i in range(0, len(data), 65536)])

    c = client(app)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(payload))
    c.send(payload)
    assert c.response().body == payload


def test_environ(client):
    c = client(lambda e, s: (s("200 OK", []), [json.dumps({
        k: v for k, v in e.items() if isinstance(v, (str, bool))}).encode()])[1])
    c.send(b"GET /a%20b/%C3%A9?q=%20x HTTP/1.1\r\nHost: example.com:81\r\nX-Two: 1\r\nX-Two: 2\r\n"
           b"Cookie: a=1\r\nCookie: b=2\r\nX_Spoof: evil\r\n\r\n")
    env = json.loads(c.response().body)
    assert env["PATH_INFO"] == "/a b/\u00c3\u00a9"  # UTF-8 bytes carried as latin-1
    assert env["QUERY_STRING"] == "q=%20x" and env["REQUEST_URI"] == "/a%20b/%C3%A9?q=%20x"
    assert env["RAW_URI"] == env["REQUEST_URI"] and env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_HOST"] == "example.com:81" and env["HTTP_X_TWO"] == "1, 2"
    assert env["HTTP_COOKIE"] == "a=1; b=2" and "HTTP_X_SPOOF" not in env
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["SERVER_NAME"] == "127.0.0.1"
    assert env["wsgi.input_terminated"] is True and env["wsgi.multithread"] is True


def test_absolute_form_target_replaces_host(client):
    c = client(echo_app)
    c.send(b"GET http://other.example:8080/p?x=1 HTTP/1.1\r\nHost: ignored\r\n\r\n")
    data = json.loads(c.response().body)
    assert data["path_info"] == "/p" and data["query"] == "x=1"
    assert data["headers"]["Host"] == "other.example:8080"


@pytest.mark.parametrize("headers", [
    [("X-Bad", "a\r\nSet-Cookie: x=1")], [("Bad Name", "v")], [("Transfer-Encoding", "chunked")],
    [("Content-Length", "nope")],
])
def test_bad_headers_from_the_app_are_a_500(client, caplog, headers):
    c = client(text_app(b"x", headers=headers))
    c.send(GET)
    r = c.response()
    assert r.status == 500 and b"Set-Cookie" not in r.body and r.getheader("Set-Cookie") is None
    assert any(record.levelname == "ERROR" for record in caplog.records)


def test_start_response_twice_is_a_500_naming_it(client, caplog):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]

    c = client(app)
    c.send(GET)
    assert c.response().status == 500
    assert "already called" in caplog.text


def test_exception_before_headers_is_a_500_and_after_leaves_chunks_unterminated(client):
    def early(environ, start_response):
        raise RuntimeError("early")

    def late(environ, start_response):
        start_response("200 OK", [])
        yield b"partial"
        raise RuntimeError("late")

    c = client(early)
    c.send(GET)
    assert c.response().status == 500
    c2 = client(late)
    c2.send(GET)
    with pytest.raises(http.client.IncompleteRead) as info:
        c2.response()
    assert info.value.partial == b"partial"


def test_exc_info_replaces_the_response_before_headers_go_out(client):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("x")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    c = client(app)
    c.send(GET)
    r = c.response()
    assert (r.status, r.body) == (503, b"sorry")


def test_write_callable(client):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned"]

    c = client(app)
    c.send(GET)
    assert c.response().body == b"written returned"


def test_file_wrapper_sends_a_real_file(client, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100_000 + b"end")
    closed = []

    class File(io.FileIO):
        def close(self):
            closed.append(True)
            super().close()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](File(path, "rb"), 8192)

    c = client(app)
    c.send(GET + b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    r = c.response()
    assert r.getheader("Content-Length") == "100003" and r.body.endswith(b"end")
    head = c.response(method="HEAD")
    assert head.body == b"" and head.getheader("Content-Length") == "100003"
    deadline = time.monotonic() + 5  # the server closes the file just after sending
    while len(closed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed == [True, True]


def test_file_wrapper_over_a_non_file_streams(client):
    def app(environ, start_response):
        start_response("200 OK", [])
        return FileWrapper(io.BytesIO(b"in memory"), 4)

    c = client(app)
    c.send(GET)
    assert c.response().body == b"in memory"


def test_close_called_once_when_the_client_disconnects_mid_response(live_server):
    closed = threading.Event()
    calls = []

    class Body:
        def __iter__(self):
            for _ in range(10_000):
                yield b"x" * 65536

        def close(self):
            calls.append(1)
            closed.set()

    url = live_server(lambda e, s: (s("200 OK", []), Body())[1], send_timeout=2.0)
    c = Client(url)
    c.send(GET)
    c.stream.readline()
    c.close()  # gone after the status line
    assert closed.wait(10) and calls == [1]


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/1.1\r\n\r\n", 400),                              # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nFoo : bar\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nFoo: one\r\n two\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 150 + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
])
def test_bad_requests_get_their_status_and_a_close(client, request_bytes, status):
    c = client(echo_app)
    c.send(request_bytes)
    r = c.response()
    assert r.status == status and r.getheader("Connection") == "close"
    assert c.closed_by_server()


def test_chunked_body_over_the_limit_is_413(client):
    c = client(echo_body, max_request_body_size=10)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
    assert c.response().status == 413


def test_header_timeout_cuts_a_slowloris(client):
    c = client(echo_app, header_timeout=0.5)
    start = time.monotonic()
    c.send(b"GET / HTTP/1.1\r\n")
    for byte in b"Host: slow\r\nX-Drip: ":
        try:
            c.send(bytes([byte]))
        except OSError:
            break
        time.sleep(0.05)
    assert c.closed_by_server()
    assert time.monotonic() - start < 3


def test_idle_keep_alive_connection_is_closed(client):
    c = client(text_app(), keepalive_timeout=0.3)
    c.send(GET)
    assert c.response().status == 200
    start = time.monotonic()
    assert c.closed_by_server()
    assert time.monotonic() - start < 2


def test_slow_connections_do_not_starve_normal_requests(live_server):
    url = live_server(text_app(), threads=4, header_timeout=30)
    slow = []
    try:
        for _ in range(500):
            c = Client(url)
            c.send(b"GET / HTTP/1.1\r\nHost: slow\r\n")  # and never finish the head
            slow.append(c)
        for _ in range(20):
            fresh = Client(url)
            start = time.monotonic()
            fresh.send(GET)
            assert fresh.response().status == 200
            assert time.monotonic() - start < 1.0
            fresh.close()
    finally:
        for c in slow:
            c.close()


def test_connection_limit_leaves_the_rest_in_the_backlog(live_server):
    url = live_server(text_app(), connection_limit=2, keepalive_timeout=0.5)
    first, second = Client(url), Client(url)
    try:
        for c in (first, second):
            c.send(GET)
            assert c.response().status == 200
        third = Client(url)  # accepted by the kernel, not by the server yet
        third.send(GET)
        started = time.monotonic()
        assert third.response().status == 200  # served once an idle one timed out
        assert time.monotonic() - started >= 0.2
        third.close()
    finally:
        first.close()
        second.close()


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match="unknown server option 'treads'.*did you mean 'threads'"):
        make_server(echo_app, port=0, treads=2)


def test_ipv6_and_unix_socket(tmp_path):
    servers = []
    try:
        try:
            server6 = make_server(text_app(b"six"), host="::1", port=0)
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback here: {exc}")
        servers.append(server6)
        unix = make_server(text_app(b"unix"), unix_socket=str(tmp_path / "s.sock"))
        servers.append(unix)
        for server in servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        assert server6.url.startswith("http://[::1]:")
        c6 = socket.create_connection(("::1", server6.server_address[1]), timeout=5)
        cu = socket.socket(socket.AF_UNIX)
        cu.settimeout(5)
        cu.connect(str(tmp_path / "s.sock"))
        for sock, body in ((c6, b"six"), (cu, b"unix")):
            with sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200") and data.endswith(body)
    finally:
        for server in servers:
            server.shutdown()
            server.wait(10)


def test_disconnects_mid_response_leak_no_descriptors_or_threads(live_server):
    import os

    closes = []

    class Body:
        def __iter__(self):
            for _ in range(1000):
                yield b"y" * 65536

        def close(self):
            closes.append(1)

    url = live_server(lambda e, s: (s("200 OK", []), Body())[1], send_timeout=2.0, threads=4)
    warm = Client(url)  # let the pool start before counting
    warm.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    warm.stream.readline()
    warm.close()
    deadline = time.monotonic() + 10
    while len(closes) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for _ in range(30):
        c = Client(url)
        c.send(GET)
        c.stream.readline()
        c.close()
    deadline = time.monotonic() + 10
    while len(closes) < 31 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(closes) == 31
    time.sleep(0.2)
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert threading.active_count() == threads


# -- regressions from review ----------------------------------------------------------------

def test_empty_lines_do_not_restart_the_header_timeout(client):
    c = client(text_app(), header_timeout=0.5, keepalive_timeout=0.5)
    started = time.monotonic()
    try:
        while time.monotonic() - started < 4:
            c.send(b"\r\n")
            time.sleep(0.2)
    except OSError:
        pass
    assert time.monotonic() - started < 2.5  # cut near header_timeout, not kept forever


def test_no_100_continue_after_the_response_started(client):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first;"
        yield b"got=" + environ["wsgi.input"].read()

    c = client(app)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
    r = c.response()
    assert r.status == 200 and r.body == b"first;got=hello"


def test_a_swallowed_chunked_framing_error_still_closes(client):
    def app(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except Exception as exc:  # frameworks often swallow it
            text = f"error: {exc}".encode()
        start_response("200 OK", [("Content-Length", str(len(text)))])
        return [text]

    c = client(app)
    c.send(b"POST /first HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"ZZZ\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n")
    assert c.response().body.startswith(b"error:")
    assert c.closed_by_server()  # the bytes after the bad chunk are never a request


def test_send_timeout_holds_for_sendfile(live_server, tmp_path):
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    url = live_server(app, threads=1, send_timeout=0.5)
    stalled = Client(url)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.send(GET)  # and never read
    time.sleep(0.3)
    other = Client(url)
    try:
        other.send(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        started = time.monotonic()
        other.stream.readline()  # the only worker came back after send_timeout
        assert time.monotonic() - started < 5
    finally:
        other.close()
        stalled.close()


def test_shutdown_does_not_wait_a_second_per_busy_worker():
    release = threading.Event()

    def blocked(environ, start_response):
        release.wait(10)
        start_response("200 OK", [])
        return [b""]

    server = make_server(blocked, port=0, threads=6, shutdown_timeout=0.3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    clients = []
    try:
        for _ in range(6):
            c = Client(server.url)
            c.send(GET)
            clients.append(c)
        time.sleep(0.3)
        started = time.monotonic()
        server.shutdown()
        thread.join(10)
        assert time.monotonic() - started < 3.5
    finally:
        release.set()
        for c in clients:
            c.close()


def test_the_selectors_fallback_without_epoll(monkeypatch):
    """Platforms without epoll use selectors and a wake-up pipe: same behaviour."""
    import stack.server.loop as loop

    monkeypatch.setattr(loop, "_HAS_EPOLL", False)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    server = make_server(app, port=0, keepalive_timeout=0.5)
    assert server._poller is None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    c = Client(server.url)
    try:
        for i in range(3):  # keep-alive: the connection goes back to the selector each time
            c.send(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
            assert c.response().body == b"/%d" % i
        c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        assert [c.response().body, c.response().body] == [b"/a", b"/b"]
        assert c.closed_by_server()  # keepalive_timeout
    finally:
        c.close()
        server.shutdown()
        thread.join(10)
    assert not thread.is_alive()
