"""Proxy throughput: stack's Proxy against paste.proxy and WSGIProxy2, in one run.

One backend process (waitress, 4 threads, HTTP/1.1 keep-alive) answers a
small fixed body. Each proxy is called in-process as a WSGI app (no front
server, so the rows differ only in the proxy) with a fresh environ per
request; the body is read to the end and closed. ``direct`` is an
``http.client`` keep-alive GET to the backend: the floor any proxy pays.
The second table compares the two HTTP clients the proxy could be built on,
doing the same request the same way: ``http.client`` (what the proxy uses)
and urllib3's ``HTTPConnectionPool``.

    python benchmarks/bench_proxy.py [--quick]
"""
from __future__ import annotations

import http.client
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import ns_per_call, table  # noqa: E402

from stack.middleware.proxy import Proxy  # noqa: E402

BACKEND = r"""
import sys
from waitress import serve
BODY = b"hello, proxy!"
def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=4, _quiet=True)
"""
POST_BODY = b"x" * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_backend(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", BACKEND, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the waitress backend did not start (pip install -e .[bench])")


def environ_for(port: int, method: str) -> dict:
    body = POST_BODY if method == "POST" else b""
    return {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": "/hello",
        "QUERY_STRING": "a=1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": f"127.0.0.1:{port}", "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*", "CONTENT_TYPE": "text/plain" if body else "",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def start_response(status, headers, exc_info=None):
    return None


def wsgi_caller(app, port: int, method: str):
    base = environ_for(port, method)
    body = base.pop("wsgi.input").getvalue()

    def once() -> None:
        environ = base.copy()
        environ["wsgi.input"] = io.BytesIO(body)
        result = app(environ, start_response)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    return once


def direct_caller(port: int, method: str):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = POST_BODY if method == "POST" else None

    def once() -> None:
        conn.request(method, "/hello?a=1", body=body)
        conn.getresponse().read()
    return once, conn.close


def urllib3_caller(port: int, method: str):
    import urllib3

    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=10, retries=False,
                                      timeout=urllib3.Timeout(connect=5, read=60))
    body = POST_BODY if method == "POST" else None
    headers = {"Host": f"127.0.0.1:{port}", "User-Agent": "bench"}

    def once() -> None:
        response = pool.urlopen(method, "/hello?a=1", body=body, headers=headers,
                                preload_content=False, retries=False, redirect=False)
        for _ in response.stream(65536):
            pass
        response.release_conn()
    return once, pool.close


def httpclient_caller(port: int, method: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body = POST_BODY if method == "POST" else None

    def once() -> None:
        conn.putrequest(method, "/hello?a=1", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{port}")
        conn.putheader("User-Agent", "bench")
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        while response.read(65536):
            pass
    return once, conn.close


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    min_time, repeat = (0.1, 2) if quick else (0.4, 3)
    port = free_port()
    backend = start_backend(port)
    url = f"http://127.0.0.1:{port}"
    try:
        from paste.proxy import Proxy as PasteProxy
        from wsgiproxy import HostProxy
    except ImportError:
        backend.kill()
        raise SystemExit("Paste and WSGIProxy2 are needed: pip install -e .[bench]")
    stack_proxy = Proxy(url)
    rows, rates = [], {}
    try:
        for method in ("GET", "POST"):
            direct, close = direct_caller(port, method)
            callers = {
                "direct": direct,
                "stack Proxy": wsgi_caller(stack_proxy, port, method),
                "paste.proxy": wsgi_caller(PasteProxy(url), port, method),
                "WSGIProxy2": wsgi_caller(HostProxy(url), port, method),
            }
            for name, once in callers.items():
                rates[(method, name)] = 1e9 / ns_per_call(once, min_time=min_time, repeat=repeat)
            close()
            stack = rates[(method, "stack Proxy")]
            rows.append([method, *(rates[(method, n)] for n in callers),
                         f"{stack / rates[(method, 'paste.proxy')]:.2f}x",
                         f"{stack / rates[(method, 'WSGIProxy2')]:.2f}x"])
        print(table("requests/s, one client thread, backend: waitress (keep-alive); "
                    "ratio = stack / anchor", ["method", *callers, "vs paste", "vs WSGIProxy2"],
                    rows))
        print()
        client_rows = []
        for method in ("GET", "POST"):
            measured = []
            for make in (httpclient_caller, urllib3_caller):
                once, close = make(port, method)
                measured.append(1e9 / ns_per_call(once, min_time=min_time, repeat=repeat))
                close()
            client_rows.append([method, *measured, f"{measured[0] / measured[1]:.2f}x"])
        print(table("HTTP client alone, requests/s (why the proxy uses http.client)",
                    ["method", "http.client", "urllib3 pool", "http.client / urllib3"],
                    client_rows))
    finally:
        stack_proxy.close()
        backend.terminate()
        backend.wait(10)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main(sys.argv[1:]))
