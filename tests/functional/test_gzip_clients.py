"""Gzip over a real socket: curl, urllib3 and http.client decode what it sends."""
from __future__ import annotations

import gzip as gzip_module
import http.client
import subprocess
import threading
import zlib
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit
from wsgiref.validate import validator

import pytest
import urllib3
from support import require_program

from stack.middleware.gzip import Gzip

PAGE = "".join(f"<tr><td>{n}</td><td>row number {n * 7919 % 1000}</td></tr>\n"
               for n in range(3000)).encode()
ALL = ["gzip", "br", "zstd"]


def page_app(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(PAGE)))])
    return [PAGE]


def stream_app(environ: dict, start_response: Callable) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    for start in range(0, len(PAGE), 10_000):
        yield PAGE[start:start + 10_000]


APPS = {"list": page_app, "stream": stream_app}


def serve(live_server: Callable, app: Callable, **options: object) -> str:
    return live_server(validator(Gzip(validator(app), **options)))


@pytest.mark.parametrize("shape", APPS)
@pytest.mark.parametrize("encodings", [["gzip"], ["br", "gzip"], ["zstd", "br", "gzip"]],
                         ids=["gzip", "br", "zstd"])
def test_curl_compressed_decodes_the_body(live_server: Callable, shape: str,
                                          encodings: list[str], tmp_path) -> None:
    """curl advertises what it can decode (this one: gzip, br and zstd); our order decides."""
    curl = require_program("curl")
    url = serve(live_server, APPS[shape], encodings=encodings)
    headers = tmp_path / "headers.txt"
    done = subprocess.run([curl, "-sS", "--compressed", "--max-time", "20", "-D", str(headers), url],
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == PAGE
    sent = headers.read_text().lower()
    assert f"content-encoding: {encodings[0]}" in sent and "vary: accept-encoding" in sent


@pytest.mark.parametrize("shape", APPS)
@pytest.mark.parametrize("accept, expected", [
    ("gzip", "gzip"), ("gzip, deflate, br", "br"), ("identity", None),
    # what this urllib3 can decode (zstd only with backports.zstd before Python 3.14)
    (urllib3.util.make_headers(accept_encoding=True)["accept-encoding"],
     "zstd" if urllib3.response.HAS_ZSTD else "br"),
])
def test_urllib3_decodes_the_body(live_server: Callable, shape: str, accept: str,
                                  expected: str | None) -> None:
    url = serve(live_server, APPS[shape], encodings=["zstd", "br", "gzip"])
    with urllib3.PoolManager() as pool:
        response = pool.request("GET", url, headers={"Accept-Encoding": accept}, timeout=10)
    assert response.status == 200
    assert response.headers.get("Content-Encoding") == expected
    assert response.data == PAGE


@pytest.mark.parametrize("shape", APPS)
def test_http_client_gets_a_gzip_body_it_can_decode(live_server: Callable, shape: str) -> None:
    url = urlsplit(serve(live_server, APPS[shape]))
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.getheader("Content-Encoding") == "gzip"
    assert response.getheader("Vary") == "Accept-Encoding"
    length = response.getheader("Content-Length")  # the inner validator hides the list
    assert length is None or length == str(len(body))
    assert len(body) < len(PAGE) / 3 and gzip_module.decompress(body) == PAGE


def test_browser_style_request_gets_br_when_enabled(live_server: Callable) -> None:
    import brotli
    url = urlsplit(serve(live_server, page_app, encodings=["br", "gzip"]))
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Accept-Encoding": "gzip, deflate, br"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.getheader("Content-Encoding") == "br" and brotli.decompress(body) == PAGE


def test_server_sent_events_arrive_one_by_one(live_server: Callable) -> None:
    """Each event is decodable by the client before the app makes the next one."""
    gates = [threading.Event() for _ in range(3)]

    def events(environ: dict, start_response: Callable) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream"),
                                  ("Cache-Control", "no-cache")])
        for number, gate in enumerate(gates):
            yield b"data: event %d\n\n" % number
            if not gate.wait(10):
                return

    url = urlsplit(serve(live_server, events, flush="never"))
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Accept-Encoding": "gzip",
                                                "Accept": "text/event-stream"})
        response = connection.getresponse()
        assert response.getheader("Content-Encoding") == "gzip"
        unzip, seen = zlib.decompressobj(31), b""
        for number, gate in enumerate(gates):
            expected = b"data: event %d\n\n" % number
            while not seen.endswith(expected):
                data = response.read1(65536)
                assert data, f"stream ended before event {number}; got {seen!r}"
                seen += unzip.decompress(data)
            gate.set()  # only now may the app produce the next event
        rest = response.read()
        assert seen + unzip.decompress(rest) + unzip.flush() == b"".join(
            b"data: event %d\n\n" % n for n in range(3))
        assert unzip.eof
    finally:
        for gate in gates:
            gate.set()
        connection.close()
