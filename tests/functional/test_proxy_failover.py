"""Proxy failover on real sockets: stop a backend under load, start it again.

A client hammers a front server (the bundled server running a Proxy) with
GETs while one of three backends is stopped and restarted on the same port:
every GET must succeed, and the restarted backend must get traffic again --
once through passive health (``fail_timeout`` runs out), once through active
health checks. A POST in flight to a backend that dies gets a 502 and is not
sent anywhere else. Last, ``config/proxy.ini`` and its backends run as
``stack serve`` processes.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import pytest

from stack.middleware.proxy import Proxy
from stack.server import make_server
from support import BIN, ROOT, free_port, http_get


class Killable:
    """A named backend on a fixed port that can be stopped and started again."""

    def __init__(self, name: str) -> None:
        self.name, self.port = name, 0
        self.hits = 0
        self.posts: list[bytes] = []
        self.post_arrived = threading.Event()
        self.release = threading.Event()
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def app(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":
            self.posts.append(environ["wsgi.input"].read())
            self.post_arrived.set()
            self.release.wait(5)
        elif environ["PATH_INFO"] != "/healthz":
            self.hits += 1
        body = self.name.encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = make_server(self.app, host="127.0.0.1", port=self.port, shutdown_timeout=0.2)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop listening; connections still busy are cut after 0.2 s."""
        if self.server is None:
            return
        self.server.shutdown()
        self.thread.join(10)
        self.server.close()
        self.server = None


@pytest.fixture
def backends():
    made = [Killable(name) for name in "abc"]
    for backend in made:
        backend.start()
    yield made
    for backend in made:
        backend.release.set()
        backend.stop()


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Load:
    """GETs through the front, one after another, until stopped."""

    def __init__(self, port: int) -> None:
        self.port, self.results = port, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            while not self._stop.is_set():
                try:
                    conn.request("GET", "/remote/")
                    response = conn.getresponse()
                    self.results.append((response.status, response.read()))
                except (OSError, http.client.HTTPException) as exc:
                    self.results.append((0, repr(exc).encode()))
                    conn.close()
        finally:
            conn.close()

    def wait_for(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        target = len(self.results) + count
        while len(self.results) < target:
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.01)

    def stop(self) -> list[tuple[int, bytes]]:
        self._stop.set()
        self._thread.join(10)
        return self.results


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


HEALTH = {
    "passive": {"fail_timeout": 0.3},
    "active": {"fail_timeout": 60, "health_check": "/healthz", "health_interval": 0.1},
}


@pytest.mark.parametrize("health", HEALTH.values(), ids=HEALTH.keys())
def test_gets_survive_a_backend_stopping_and_coming_back(live_server, backends, health):
    from stack.middleware.mount import Mount

    proxy = Proxy([b.url for b in backends], connect_timeout=1, read_timeout=5, **health)
    try:
        front = live_server(Mount({"/remote": proxy}))
        load = Load(int(front.rsplit(":", 1)[1]))
        victim = backends[1]
        load.wait_for(30)
        victim.stop()
        load.wait_for(60)
        hits_while_down = victim.hits
        victim.start()
        wait_until(lambda: victim.hits > hits_while_down)
        load.wait_for(30)
        results = load.stop()
    finally:
        proxy.close()
    failures = [r for r in results if r[0] != 200]
    assert not failures, f"{len(failures)} of {len(results)} GETs failed: {failures[:3]}"
    assert {body for _, body in results} == {b"a", b"b", b"c"}
    assert victim.hits > hits_while_down


def test_post_in_flight_to_a_dying_backend_is_a_502_not_a_duplicate(live_server, backends):
    proxy = Proxy([b.url for b in backends], connect_timeout=1, read_timeout=5)
    try:
        front_port = int(live_server(proxy).rsplit(":", 1)[1])
        outcome: list[tuple[int, bytes]] = []

        def post() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", front_port, timeout=10)
            try:
                conn.request("POST", "/pay", body=b"amount=100")
                response = conn.getresponse()
                outcome.append((response.status, response.read()))
            finally:
                conn.close()

        client = threading.Thread(target=post)
        client.start()
        wait_until(lambda: any(b.post_arrived.is_set() for b in backends))
        victim = next(b for b in backends if b.post_arrived.is_set())
        victim.stop()  # cuts the busy connection after shutdown_timeout
        victim.release.set()
        client.join(10)
    finally:
        proxy.close()
    status, body = outcome[0]
    assert status == 502, body
    assert b"closed the connection before answering" in body
    assert [len(b.posts) for b in backends].count(1) == 1
    assert sum(len(b.posts) for b in backends) == 1


def test_proxy_ini_front_with_two_backend_processes(run_process, live_server):
    """config/proxy.ini mounts a local page at / and the two backends at /remote."""
    import stack

    ports = [free_port(), free_port()]
    for name, port in zip(("main", "b"), ports):
        run_process([BIN / "stack", "serve", ROOT / "config/proxy-backends.ini", "--app", name,
                     "--port", str(port)], port=port)
    app = stack.load(ROOT / "config/proxy.ini", backend_a=f"http://127.0.0.1:{ports[0]}",
                     backend_b=f"http://127.0.0.1:{ports[1]}")
    pool = dict(app.children())["/remote"]
    try:
        front = live_server(app)
        status, _, page = http_get(front + "/")
        assert status == 200 and b"/remote/" in page
        names = {json.loads(http_get(front + "/remote/echo?x=1")[2])["backend"] for _ in range(4)}
        assert names == {"a", "b"}
        data = json.loads(http_get(front + "/remote/echo?x=1")[2])
        assert (data["path"], data["query"]) == ("/echo", "x=1")
        status, headers, _ = http_get(front + "/remote/cookie")
        assert headers["Set-Cookie"].startswith("seen=") and "Path=/remote;" in headers["Set-Cookie"]
    finally:
        pool.close()
