"""stack.middleware.proxy: forwarding, headers, balancing, pooling, failures, big bodies.

Every backend here is a real server on 127.0.0.1: the bundled server
(``live_server``: HTTP/1.1 keep-alive, chunked bodies both ways), or a raw
socket server that answers with canned bytes (for answers no well-behaved
server would send).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import select
import socket
import threading
import time
import tracemalloc
from collections import deque
from typing import Callable, Iterator
from wsgiref.validate import validator

import pytest

from stack.middleware.proxy import (Proxy, _resolve, _rewrite_cookie, _rewrite_location,
                              app_factory)
from stack.middleware.proxy import Backend as ProxyBackend
from stack.errors import ConfigError
from stack.testing import assert_middleware
from stack.examples.proxy_pair.backend import Backend, pattern
from support import call, echo_app, free_port, http_get, make_environ

MB = 1024 * 1024


# -- servers ------------------------------------------------------------------

class RawBackend:
    """A socket server answering each request with ``answer`` (bytes, or a function of the request).

    One connection at a time. With ``keep_alive``, it waits for the next request on
    the same connection until an answer is None (then it closes the connection).
    """

    def __init__(self, answer: bytes | Callable[[bytes], bytes | None],
                 keep_alive: bool = False) -> None:
        self.answer, self.requests = answer, []
        self.keep_alive, self.connections = keep_alive, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5)
                while self._answer(conn) and self.keep_alive:
                    pass

    def _answer(self, conn: socket.socket) -> bool:
        """Read one request and answer it; False when the connection is done."""
        if self.keep_alive:  # wait for the next request, or for close()
            while not select.select([conn], [], [], 0.05)[0]:
                if self._stop.is_set():
                    return False
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                if self.keep_alive and not data:
                    return False  # the client closed the kept-alive connection
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        while length and len(body) < int(length.group(1)):
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        data = head + b"\r\n\r\n" + body
        self.requests.append(data)
        answer = self.answer(data) if callable(self.answer) else self.answer
        if not answer:
            return False
        conn.sendall(answer)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def raw_backend() -> Iterator[Callable[..., RawBackend]]:
    made: list[RawBackend] = []

    def make(answer, **options) -> RawBackend:
        made.append(RawBackend(answer, **options))
        return made[-1]

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def proxy() -> Iterator[Callable[..., Proxy]]:
    """``proxy(backends, **options)``: a Proxy that is closed after the test."""
    made: list[Proxy] = []

    def make(backends, **options) -> Proxy:
        made.append(Proxy(backends, **options))
        return made[-1]

    yield make
    for item in made:
        item.close()


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def echoed(result) -> dict:
    assert result.code == 200, result.body
    return result.json()


# -- forwarding ---------------------------------------------------------------

def test_path_and_query_go_under_the_backend_base_path(live_server, proxy):
    url = live_server(echo_app)
    app = proxy([url + "/api/"])
    data = echoed(call(app, "/a%20b/c?x=1&y=%2F", SCRIPT_NAME="/remote",
                       PATH_INFO="/a b/caf\xc3\xa9"))
    assert data["path_info"] == "/api/a b/caf\xc3\xa9"
    assert data["query"] == "x=1&y=%2F"
    assert echoed(call(app, "", PATH_INFO=""))["path_info"] == "/api"


DOT_PATHS = [
    ("/../admin", "/api/admin"),
    ("/x/../../internal", "/api/internal"),
    ("/x/../../../../etc/passwd", "/api/etc/passwd"),
    ("/a/./b//c/", "/api/a/b/c/"),
    ("/a/b/..", "/api/a/"),
    ("/..", "/api/"),
    ("//..//admin", "/api/admin"),
    ("/a..b/.c/", "/api/a..b/.c/"),
]


@pytest.mark.parametrize("path_info, expected", DOT_PATHS, ids=[p for p, _ in DOT_PATHS])
def test_dot_segments_never_leave_the_base_path(live_server, proxy, path_info, expected):
    app = proxy(live_server(echo_app) + "/api")
    data = echoed(call(app, "/", SCRIPT_NAME="/remote", PATH_INFO=path_info))
    assert data["path_info"] == expected


def test_encoded_dot_segments_through_a_real_server_stay_under_the_base(live_server, proxy):
    """The server decodes ``%2e%2e`` to ``..`` in PATH_INFO; the proxy resolves it."""
    front = live_server(proxy(live_server(echo_app) + "/api"))
    for raw, expected in [("/%2e%2e/admin", "/api/admin"),
                          ("/x/%2E%2E/%2e%2e/internal?a=1", "/api/internal"),
                          ("/%2e%2e%2fadmin", "/api/admin")]:
        status, _, body = http_get(front + raw, timeout=5)
        assert status == 200, body
        assert json.loads(body)["path_info"] == expected, raw


def test_resolve_keeps_plain_paths_as_they_are():
    for path in ("/", "/a", "/a/b/", "/a.b/c..d", "/caf\xc3\xa9/x y"):
        assert _resolve(path) == path
    assert _resolve("a/../../b") == "/b"


def test_request_body_and_method_are_forwarded(live_server, proxy):
    app = proxy(live_server(echo_app))
    data = echoed(call(app, "/form", "PUT", b"name=value", CONTENT_TYPE="text/plain"))
    assert (data["method"], data["body"]) == ("PUT", "name=value")


def test_hop_by_hop_request_headers_are_dropped(live_server, proxy):
    app = proxy(live_server(echo_app))
    headers = echoed(call(app, "/", HTTP_CONNECTION="keep-alive, X-Secret", HTTP_X_SECRET="s",
                          HTTP_KEEP_ALIVE="300", HTTP_TE="trailers", HTTP_UPGRADE="h2c",
                          HTTP_PROXY_AUTHORIZATION="Basic x", HTTP_PROXY="http://evil",
                          HTTP_EXPECT="100-continue", HTTP_X_KEPT="yes"))["headers"]
    for gone in ("Connection", "X-Secret", "Keep-Alive", "Te", "Upgrade",
                 "Proxy-Authorization", "Proxy", "Expect"):
        assert gone not in headers
    assert headers["X-Kept"] == "yes"


def test_hop_by_hop_response_headers_are_dropped(raw_backend, proxy):
    backend = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                          b"Connection: close, X-Private\r\nX-Private: 1\r\nKeep-Alive: 5\r\n"
                          b"Proxy-Authenticate: Basic\r\nTrailer: X-T\r\nX-Public: 2\r\n\r\nok")
    result = call(proxy(backend.url), "/")
    assert (result.code, result.body) == (200, b"ok")
    names = {name.lower() for name, _ in result.headers}
    assert names == {"content-type", "content-length", "x-public"}


def test_x_forwarded_headers_are_appended(live_server, proxy):
    app = proxy(live_server(echo_app))
    headers = echoed(call(app, "/", REMOTE_ADDR="192.0.2.7", HTTP_HOST="front.example:8080",
                          HTTP_X_FORWARDED_FOR="10.0.0.1",
                          HTTP_X_FORWARDED_PROTO="https"))["headers"]
    assert headers["X-Forwarded-For"] == "10.0.0.1, 192.0.2.7"
    assert headers["X-Forwarded-Proto"] == "https, http"
    assert headers["X-Forwarded-Host"] == "front.example:8080"
    assert "Forwarded" not in headers


def test_forwarded_header_option(live_server, proxy):
    app = proxy(live_server(echo_app), forwarded=True, x_forwarded=False)
    headers = echoed(call(app, "/", REMOTE_ADDR="::1", HTTP_HOST="front.example:8080",
                          HTTP_FORWARDED="for=10.0.0.1",
                          HTTP_X_FORWARDED_FOR="client-said"))["headers"]
    assert headers["Forwarded"] == 'for=10.0.0.1, for="[::1]";proto=http;host="front.example:8080"'
    assert headers["X-Forwarded-For"] == "client-said"  # passed on untouched when off


@pytest.mark.parametrize("preserve, expected", [(False, "backend"), (True, "front.example")],
                         ids=["backend-host", "preserve-host"])
def test_host_is_the_backend_or_passed_through(live_server, proxy, preserve, expected):
    url = live_server(echo_app)
    app = proxy(url, preserve_host=preserve)
    host = echoed(call(app, "/", HTTP_HOST="front.example"))["headers"]["Host"]
    assert host == (url.split("//")[1] if expected == "backend" else expected)


def test_crlf_in_a_request_header_is_refused(live_server, proxy):
    app = proxy(live_server(echo_app))
    result = call(app, "/", HTTP_X_EVIL="a\r\nX-Injected: 1")
    assert result.code == 400
    assert b"X-Evil" in result.body


def test_folded_response_header_is_unfolded(raw_backend, proxy):
    backend = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Long: one\r\n two\r\n"
                          b"Content-Length: 2\r\n\r\nok")
    result = call(proxy(backend.url), "/")
    assert result.header("X-Long") == "one two"


# -- Location and Set-Cookie --------------------------------------------------

class _B:
    netloc, base = "10.0.0.5:9001", "/api"


LOCATIONS = [
    ("http://10.0.0.5:9001/api/next?a=1", "http://front.example/remote/next?a=1"),
    ("http://front.example/api/next", "http://front.example/remote/next"),
    ("/api/next#top", "/remote/next#top"),
    ("/api", "/remote"),
    ("/other/next", "/other/next"),
    ("http://elsewhere.example/api/next", "http://elsewhere.example/api/next"),
    ("next", "next"),
]


@pytest.mark.parametrize("location, expected", LOCATIONS, ids=[l for l, _ in LOCATIONS])
def test_location_is_rewritten_under_script_name(location, expected):
    environ = make_environ("/", HTTP_HOST="front.example")
    assert _rewrite_location(location, environ, _B, "/remote") == expected


COOKIES = [
    ("sid=1; Path=/api/app; HttpOnly", "/api", "/remote", "sid=1; Path=/remote/app; HttpOnly"),
    ("sid=1; path=/", "", "/remote", "sid=1; Path=/remote"),
    ("sid=1; Path=/elsewhere", "/api", "/remote", "sid=1; Path=/elsewhere"),
    ("sid=1; Path=/api", "/api", "", "sid=1; Path=/"),
    ("sid=1", "/api", "/remote", "sid=1"),
]


@pytest.mark.parametrize("cookie, base, script_name, expected", COOKIES,
                         ids=[c[0] + " " + c[1] for c in COOKIES])
def test_cookie_path_is_rewritten_under_script_name(cookie, base, script_name, expected):
    assert _rewrite_cookie(cookie, base, script_name) == expected


def test_redirect_and_cookie_rewritten_end_to_end(live_server, proxy):
    app = proxy(live_server(Backend("a")))
    result = call(app, "/redirect", SCRIPT_NAME="/remote", HTTP_HOST="front.example")
    assert result.code == 302
    assert result.header("Location") == "http://front.example/remote/echo"
    result = call(app, "/cookie", SCRIPT_NAME="/remote")
    assert result.header("Set-Cookie") == "seen=a; Path=/remote; HttpOnly"
    off = proxy(app.backends[0].url, rewrite_location=False, rewrite_cookie_path=False)
    assert call(off, "/cookie", SCRIPT_NAME="/remote").header("Set-Cookie").startswith(
        "seen=a; Path=/;")


def test_client_chosen_script_name_cannot_add_cookie_attributes(raw_backend, proxy):
    from stack.middleware.router import Router

    backend = raw_backend(b"HTTP/1.1 302 Found\r\nContent-Type: text/plain\r\n"
                          b"Location: /api/next\r\nSet-Cookie: sid=s3cret; Path=/api; HttpOnly\r\n"
                          b"Content-Length: 2\r\n\r\nok")
    site = Router([("*", "/{tenant}/...", proxy(backend.url + "/api"))])
    # GET /x%3B%20Domain=example.com%2C%20b=1/app, as the server decodes it
    result = call(site, "/x; Domain=example.com, b=1/app", HTTP_HOST="front.example")
    assert result.code == 302
    cookie = result.header("Set-Cookie")
    assert cookie == "sid=s3cret; Path=/x%3B%20Domain=example.com%2C%20b=1; HttpOnly"
    assert not any(part.strip().lower().startswith("domain") for part in cookie.split(";"))
    assert result.header("Location") == "/x%3B%20Domain=example.com%2C%20b=1/next"
    result = call(site, "/caf\xc3\xa9 \x7f/app")  # non-ASCII and controls too
    assert result.header("Location") == "/caf%C3%A9%20%7F/next"
    assert result.header("Set-Cookie") == "sid=s3cret; Path=/caf%C3%A9%20%7F; HttpOnly"


# -- balancing ----------------------------------------------------------------

def names(app, count, **extra) -> list[str]:
    return [echoed(call(app, "/", **extra))["backend"] for _ in range(count)]


def test_round_robin_alternates(live_server, proxy):
    app = proxy([live_server(Backend("a")), live_server(Backend("b")), live_server(Backend("c"))])
    assert names(app, 6) == ["a", "b", "c", "a", "b", "c"]


def test_random_reaches_every_backend(live_server, proxy):
    app = proxy([live_server(Backend("a")), live_server(Backend("b"))], balance="random")
    assert set(names(app, 40)) == {"a", "b"}


def test_least_connections_avoids_the_busy_backend(live_server, proxy):
    release = threading.Event()

    def slow(environ, start_response):
        release.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow"]

    app = proxy([live_server(slow), live_server(Backend("b"))], balance="least_connections")
    busy = threading.Thread(target=call, args=(app, "/"))
    busy.start()
    try:
        deadline = time.monotonic() + 5
        while app.backends[0].active == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert names(app, 5) == ["b"] * 5
    finally:
        release.set()
        busy.join(5)
    assert [b.active for b in app.backends] == [0, 0]


@pytest.mark.parametrize("hash_on, key", [
    ("header:X-User", {"HTTP_X_USER": "user-{}"}),
    ("cookie:sid", {"HTTP_COOKIE": "theme=dark; sid=user-{}"}),
    ("client_addr", {"REMOTE_ADDR": "10.0.0.{}"}),
], ids=["header", "cookie", "client_addr"])
def test_hash_is_sticky_and_spreads(live_server, proxy, hash_on, key):
    app = proxy([live_server(Backend(n)) for n in "abc"], balance="hash", hash_on=hash_on)
    seen = {}
    for user in range(30):
        extra = {k: v.format(user) for k, v in key.items()}
        picked = set(names(app, 3, **extra))
        assert len(picked) == 1, picked
        seen[user] = picked.pop()
    assert set(seen.values()) == {"a", "b", "c"}


def test_hash_moves_only_the_keys_of_a_backend_that_is_down(live_server, proxy):
    app = proxy([live_server(Backend(n)) for n in "abc"], balance="hash", hash_on="header:X-User")
    before = {u: names(app, 1, HTTP_X_USER=str(u))[0] for u in range(30)}
    app.backends[1].down_until = float("inf")  # b is down
    after = {u: names(app, 1, HTTP_X_USER=str(u))[0] for u in range(30)}
    assert "b" not in after.values()
    assert all(after[u] == before[u] for u in before if before[u] != "b")


# -- connections --------------------------------------------------------------

def peer_app(environ, start_response):
    body = environ["REMOTE_PORT"].encode() if "REMOTE_PORT" in environ else b"?"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def test_keep_alive_connections_are_reused(live_server, proxy):
    app = proxy(live_server(peer_app))
    ports = {call(app, "/").body for _ in range(20)}
    assert len(ports) == 1


def test_pool_is_safe_under_threads(live_server, proxy):
    app = proxy([live_server(peer_app), live_server(peer_app)], pool_size=4)
    results: list[int] = []

    def worker():
        for _ in range(40):
            results.append(call(app, "/").code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [200] * 320
    assert all(len(b.idle) <= 4 and b.active == 0 for b in app.backends)


class LockChecked(ProxyBackend):
    """A Backend that fails the test if the pool or ``fails`` is written without its lock."""

    class Idle(deque):
        lock: threading.Lock

        def append(self, conn) -> None:
            assert self.lock.locked(), "idle.append outside backend.lock"
            super().append(conn)

    @property
    def fails(self) -> int:
        return self._fails

    @fails.setter
    def fails(self, value: int) -> None:
        assert self.lock.locked(), "backend.fails written outside backend.lock"
        self._fails = value

    @classmethod
    def install(cls, backend: ProxyBackend) -> None:
        fails = backend.__dict__.pop("fails")
        backend.__class__ = cls
        backend._fails = fails
        backend.idle = cls.Idle(backend.idle)
        backend.idle.lock = backend.lock


def test_pool_and_fail_count_are_written_under_the_backend_lock(raw_backend, proxy):
    answers = iter([None, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2"
                          b"\r\n\r\nok"])
    app = proxy(raw_backend(lambda request: next(answers), keep_alive=True).url, max_fails=3)
    backend = app.backends[0]
    LockChecked.install(backend)
    assert call(app, "/").code == 502  # hung up: fails == 1
    assert backend.fails == 1
    assert call(app, "/").code == 200  # answered: fails back to 0, connection pooled
    assert backend.fails == 0 and len(backend.idle) == 1 and backend.active == 0


def test_close_closes_idle_connections(live_server):
    app = Proxy(live_server(peer_app))
    call(app, "/")
    assert len(app.backends[0].idle) == 1
    app.close()
    assert len(app.backends[0].idle) == 0


# -- failures -----------------------------------------------------------------

def test_refused_backend_is_skipped_and_marked_down(live_server, proxy):
    app = proxy([closed_port_url(), live_server(Backend("b"))], fail_timeout=60)
    assert names(app, 4) == ["b"] * 4
    assert app.backends[0].down_until > time.monotonic()


def test_all_down_is_a_502_with_a_clear_body(proxy):
    app = proxy([closed_port_url(), closed_port_url()], fail_timeout=60)
    result = call(app, "/")
    assert result.code == 502
    assert b"every one tried failed" in result.body
    result = call(app, "/")
    assert result.code == 502
    assert b"every backend is marked down" in result.body
    assert b"127.0.0.1" not in result.body  # no addresses for the client


def test_backend_comes_back_after_fail_timeout(proxy):
    port = free_port()
    app = proxy(f"http://127.0.0.1:{port}", fail_timeout=0.2)
    assert call(app, "/").code == 502
    from stack.server import make_server
    server = make_server(Backend("late"), host="127.0.0.1", port=port)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert call(app, "/").code == 502  # still marked down
        time.sleep(0.25)
        assert echoed(call(app, "/"))["backend"] == "late"
    finally:
        server.shutdown()
        thread.join(10)
        server.close()


def test_read_timeout_is_a_504(live_server, proxy):
    def stuck(environ, start_response):
        time.sleep(0.6)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late"]

    result = call(proxy(live_server(stuck), read_timeout=0.2), "/")
    assert result.code == 504
    assert b"did not answer within 0.2s" in result.body


def hang_up(request: bytes) -> None:
    return None  # read the request, answer nothing, close


def test_get_is_retried_on_another_backend(raw_backend, live_server, proxy):
    dead = raw_backend(hang_up)
    app = proxy([dead.url, live_server(Backend("b"))])
    assert names(app, 2) == ["b", "b"]
    assert len(dead.requests) == 1


def test_post_whose_body_was_sent_is_never_retried(raw_backend, live_server, proxy):
    dead = raw_backend(hang_up)
    good = Backend("b")
    app = proxy([dead.url, live_server(good)])
    result = call(app, "/", "POST", b"pay=100")
    assert result.code == 502
    assert b"closed the connection before answering" in result.body
    assert len(dead.requests) == 1 and b"pay=100" in dead.requests[0]
    assert names(app, 1) == ["b"]  # the next request (a GET) goes on


OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize("retries", [0, 2])
def test_stale_pooled_connection_is_retried_on_a_fresh_one(raw_backend, proxy, retries):
    # The 2nd request arrives on the kept-alive connection just as the backend closes it.
    answers = iter([OK, None, OK])
    backend = raw_backend(lambda request: next(answers), keep_alive=True)
    app = proxy(backend.url, retries=retries)
    assert call(app, "/").body == b"ok"
    assert len(app.backends[0].idle) == 1
    result = call(app, "/again")
    assert (result.code, result.body) == (200, b"ok")
    assert (backend.connections, len(backend.requests)) == (2, 3)
    assert backend.requests[1].startswith(b"GET /again ") and backend.requests[2].startswith(
        b"GET /again ")
    assert app.backends[0].fails == 0 and app.backends[0].down_until == 0.0  # not its fault


def test_post_on_a_stale_pooled_connection_is_never_sent_again(raw_backend, proxy):
    answers = iter([OK, None, OK])
    backend = raw_backend(lambda request: next(answers), keep_alive=True)
    app = proxy(backend.url)
    assert call(app, "/").code == 200
    result = call(app, "/", "POST", b"pay=100")
    assert result.code == 502
    assert len(backend.requests) == 2 and backend.requests[1].endswith(b"pay=100")
    assert call(app, "/").code == 200  # not marked down: the next request goes through
    assert sum(r.endswith(b"pay=100") for r in backend.requests) == 1


def test_stale_retry_goes_to_the_same_backend_once_then_moves_on(raw_backend, live_server, proxy):
    answers = iter([OK, None, None])  # the fresh connection breaks too: the backend is broken
    broken = raw_backend(lambda request: next(answers, None), keep_alive=True)
    app = proxy([broken.url, live_server(Backend("b"))])  # round robin: raw, b, raw, ...
    assert call(app, "/").body == b"ok"
    assert echoed(call(app, "/"))["backend"] == "b"
    assert echoed(call(app, "/"))["backend"] == "b"  # raw: stale, then fresh and broken
    assert (broken.connections, len(broken.requests)) == (2, 3)
    assert app.backends[0].down_until > 0  # the fresh failure counts


def test_interim_answers_are_skipped(raw_backend, proxy):
    backend = raw_backend(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                          b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
                          b"HTTP/1.1 103 Early Hints\r\n\r\n" + OK)
    app = proxy(backend.url)
    for _ in range(2):  # and the connection stays usable
        result = call(app, "/")
        assert (result.code, result.body) == (200, b"ok")
        assert result.header("Link") is None


def test_refused_start_response_gives_the_backend_back(raw_backend, proxy):
    def refuse(status, headers, exc_info=None):
        raise RuntimeError("an outer layer refused the answer")

    for answer in (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked"
                   b"\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2000"
                   b"\r\n\r\n" + b"x" * 2000,
                   OK):
        app = proxy(raw_backend(answer).url, balance="least_connections", buffer_size=1024)
        with pytest.raises(RuntimeError, match="refused"):
            app(make_environ("/"), refuse)
        backend = app.backends[0]
        assert backend.active == 0
        assert all(conn.sock is not None for conn in backend.idle)  # only clean ones kept
        if answer != OK:
            assert not backend.idle  # a half-read answer: its connection was closed


@pytest.mark.parametrize("length", ["1" * 5000, "1" * 19, "-1", "12abc", "0x10"],
                         ids=["5000-digits", "19-digits", "negative", "junk", "hex"])
def test_bad_request_content_length_is_a_400(raw_backend, proxy, length):
    backend = raw_backend(OK)
    # validate=False: wsgiref.validate itself chokes on such a CONTENT_LENGTH
    result = call(proxy(backend.url), "/", "POST", b"x", validate=False, CONTENT_LENGTH=length)
    assert result.code == 400
    assert b"bad Content-Length" in result.body and len(result.body) < 200
    assert backend.requests == []


def test_retries_are_bounded(raw_backend, proxy):
    dead = [raw_backend(hang_up) for _ in range(4)]
    result = call(proxy([d.url for d in dead], retries=1, max_fails=0), "/")
    assert result.code == 502
    assert sum(len(d.requests) for d in dead) == 2


BAD_ANSWERS = {
    "garbage status line": b"HELLO\r\n\r\n",
    "two content lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "length and chunked": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked"
                           b"\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    "gzip transfer coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
    "bad content length": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
    "body cut short": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok",
    "protocol switch": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    "endless interim answers": b"HTTP/1.1 103 Early Hints\r\n\r\n" * 40
                               + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "huge content length": b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\nok",
    "NUL in a header value": b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 2\r\n\r\nok",
}


@pytest.mark.parametrize("answer", BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_bad_framing_from_the_backend_is_a_502(raw_backend, proxy, answer):
    result = call(proxy(raw_backend(answer).url, buffer_size=1024), "/")
    assert result.code == 502, result
    assert b"malformed answer" in result.body


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n" + b"x" * 3000,
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"800\r\n" + b"x" * 2048 + b"\r\nzz\r\n",
], ids=["short-after-headers", "bad-chunk-after-headers"])
def test_body_broken_after_the_headers_aborts_the_response(raw_backend, proxy, answer):
    from stack.middleware.proxy import BackendError

    app = proxy(raw_backend(answer).url, buffer_size=1024)
    with pytest.raises(BackendError):
        call(app, "/")
    assert app.backends[0].active == 0 and not app.backends[0].idle


# -- streaming ----------------------------------------------------------------

class Upload:
    """A ``wsgi.input`` producing ``size`` pattern bytes without holding them."""

    def __init__(self, size: int) -> None:
        self.chunks = pattern(size)
        self.pending = b""

    def read(self, size: int = -1) -> bytes:
        if not self.pending:
            self.pending = next(self.chunks, b"")
        data, self.pending = self.pending[:size], self.pending[size:]
        return data

    def readline(self, size: int = -1) -> bytes:  # wsgiref.validate wants these three
        raise NotImplementedError

    readlines = readline

    def __iter__(self):
        raise NotImplementedError


def pattern_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for block in pattern(size):
        digest.update(block)
    return digest.hexdigest()


def stream_call(app, environ) -> tuple[str, str, int]:
    """Call ``app`` under wsgiref.validate, hashing the body chunk by chunk."""
    status = []
    body = validator(app)(environ, lambda s, h, e=None: status.append(s))
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in body:
            digest.update(chunk)
            size += len(chunk)
    finally:
        body.close()
    return status[0], digest.hexdigest(), size


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_50mb_upload_streams_with_bounded_memory(live_server, proxy, framing):
    size = 50 * MB
    app = proxy(live_server(Backend("a")))
    environ = make_environ("/upload", "POST")
    environ["wsgi.input"] = Upload(size)
    if framing == "chunked":
        environ["CONTENT_LENGTH"], environ["wsgi.input_terminated"] = "", True
    else:
        environ["CONTENT_LENGTH"] = str(size)
    tracemalloc.start()
    try:
        status, _, _ = stream_call(app, environ)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == "200 OK"
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB"


def test_upload_body_arrives_whole(live_server, proxy):
    size = 3 * MB + 17
    app = proxy(live_server(Backend("a")))
    for chunked in (False, True):
        data = echoed(call(app, "/upload", "POST", **{
            "wsgi.input": Upload(size), "CONTENT_LENGTH": "" if chunked else str(size),
            "wsgi.input_terminated": chunked}))
        assert (data["body_size"], data["body_sha256"]) == (size, pattern_sha256(size))


def test_50mb_download_streams_with_bounded_memory(live_server, proxy):
    size = 50 * MB
    url = live_server(Backend("a"))
    app = proxy(url)
    environ = make_environ(f"/download?size={size}")
    tracemalloc.start()
    try:
        status, digest, got = stream_call(app, environ)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (status, got, digest) == ("200 OK", size, pattern_sha256(size))
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB"


def test_chunked_request_without_input_terminated_is_411(live_server, proxy):
    app = proxy(live_server(echo_app))
    result = call(app, "/", "POST", HTTP_TRANSFER_ENCODING="chunked")
    assert result.code == 411


# -- active health checks -----------------------------------------------------

def test_health_checks_take_a_backend_out_and_back(live_server):
    healthy = threading.Event()

    def flaky(environ, start_response):
        if environ["PATH_INFO"] == "/healthz" and not healthy.is_set():
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"sick"]
        return Backend("b")(environ, start_response)

    with Proxy([live_server(Backend("a")), live_server(flaky)], health_check="/healthz",
               health_interval=0.05, fail_timeout=60) as app:
        assert app._checker is None  # nothing runs until start() or a first request
        app.start()
        wait_until(lambda: app.backends[1].down_until == float("inf"))
        assert names(app, 4) == ["a"] * 4
        healthy.set()
        wait_until(lambda: app.backends[1].down_until == 0.0)
        assert set(names(app, 4)) == {"a", "b"}
    assert app._checker is None


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- options and the factory --------------------------------------------------

@pytest.mark.parametrize("options, option", [
    ({"backends": []}, "backends"),
    ({"backends": ["ftp://x"]}, "backends"),
    ({"backends": ["http://x/?q=1"]}, "backends"),
    ({"balance": "fastest"}, "balance"),
    ({"hash_on": "body"}, "hash_on"),
    ({"hash_on": "header:"}, "hash_on"),
    ({"read_timeout": 0}, "read_timeout"),
    ({"connect_timeout": "5"}, "connect_timeout"),
    ({"retries": -1}, "retries"),
    ({"max_fails": True}, "max_fails"),
    ({"health_check": "healthz"}, "health_check"),
    ({"buffer_size": 10}, "buffer_size"),
], ids=lambda v: str(v))
def test_bad_options_name_the_option(options, option):
    options = {"backends": ["http://127.0.0.1:9"], **options}
    # the message starts with the option, so the loader can point at its line
    with pytest.raises(ValueError, match=f"^option {option!r}: "):
        Proxy(options.pop("backends"), **options)


@pytest.mark.parametrize("option", ["preserve_host", "x_forwarded", "forwarded",
                                    "rewrite_location", "rewrite_cookie_path"])
@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_bool_options_take_real_bools_only(option, value):
    # 'false' is a truthy str: it used to be stored as given and act as True
    with pytest.raises(ValueError) as info:
        Proxy(["http://127.0.0.1:9"], **{option: value})
    assert str(info.value) == f"option {option!r}: expected True or False, got {value!r}"


def test_bool_options_keep_real_bools():
    proxy = Proxy(["http://127.0.0.1:9"], preserve_host=True, x_forwarded=False, forwarded=True,
                  rewrite_location=False, rewrite_cookie_path=False)
    assert (proxy.preserve_host, proxy.x_forwarded, proxy.forwarded, proxy.rewrite_location,
            proxy.rewrite_cookie_path) == (True, False, True, False, False)


def test_an_unparsable_backend_url_names_the_option():
    with pytest.raises(ValueError, match="^option 'backends': 'http://\\[::1' is not a URL"):
        Proxy(["http://[::1"])


def test_factory_converts_ini_strings():
    app = app_factory({}, backends="http://127.0.0.1:9001/a,\n http://127.0.0.1:9002",
                      balance="least_connections", read_timeout="500ms", max_fails="3",
                      preserve_host="yes", buffer_size="128KB")
    try:
        assert [b.url for b in app.backends] == ["http://127.0.0.1:9001/a", "http://127.0.0.1:9002"]
        assert (app.balance, app.read_timeout, app.max_fails) == ("least_connections", 0.5, 3)
        assert (app.preserve_host, app.buffer_size) == (True, 128 * 1024)
    finally:
        app.close()


def test_factory_rejects_unknown_and_missing_options():
    with pytest.raises(ConfigError, match="unknown option 'read_timout'.*did you mean 'read_timeout'"):
        app_factory({}, backends="http://x", read_timout="1s")
    with pytest.raises(ConfigError, match="'backends' is required"):
        app_factory({})


# -- the contract kit ---------------------------------------------------------

def test_middleware_contract_through_a_real_backend(live_server):
    """Each probe app runs on its own bundled-server backend, reached through a Proxy."""
    made: list[Proxy] = []

    def factory(app):
        made.append(Proxy(live_server(app), read_timeout=5))
        return made[-1]

    across = "an exception in the backend cannot cross HTTP: the backend server ends the "
    try:
        assert_middleware(factory, skip={
            "exc_info_after_body": across + "response early instead",
            "error_mid_stream": across + "response early instead",
            "close_on_abandon": "the backend server closes the body when it notices the "
                                "proxy left, on its own thread, a moment later: checked with "
                                "a wait in test_abandoned_response_closes_the_backend_body",
            "close_on_end": "the backend server closes the body just after sending its last "
                            "byte, on its own thread, so the proxy may finish first: checked "
                            "with a wait in test_finished_response_closes_the_backend_body",
        })
    finally:
        for item in made:
            item.close()


def test_finished_response_closes_the_backend_body(live_server):
    closes = []

    class Body:
        def __iter__(self):
            yield b"complete"

        def close(self):
            closes.append(1)

    def backend(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    with Proxy(live_server(backend), read_timeout=5) as proxy:
        result = call(proxy, "/")
        assert result.body == b"complete"
    deadline = time.monotonic() + 10
    while not closes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closes == [1]


def test_abandoned_response_closes_the_backend_body(live_server):
    import threading

    closed = threading.Event()

    class Endless:
        def __iter__(self):
            while True:
                yield b"x" * 65536

        def close(self):
            closed.set()

    def backend(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Endless()

    with Proxy(live_server(backend), read_timeout=5) as proxy:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "",
                   "SERVER_NAME": "front", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "REMOTE_ADDR": "127.0.0.1"}
        body = proxy(environ, lambda status, headers, exc_info=None: None)
        assert len(next(iter(body))) > 0
        body.close()  # the client went away after one chunk
        assert closed.wait(10)


def test_stack_show_lists_the_backends():
    from stack.tree import format_tree

    with Proxy(["http://127.0.0.1:9001/api", "http://127.0.0.1:9002"], balance="hash") as app:
        text = format_tree(app)
    assert "stack.middleware.proxy.Proxy (balance='hash'" in text
    assert "  http://127.0.0.1:9001/api -> stack.middleware.proxy.Backend" in text
