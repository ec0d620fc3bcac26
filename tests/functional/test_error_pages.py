"""Error pages and access log lines on real sockets: stack.server, gunicorn, waitress, Chromium.

The apps are in ``error_apps.py`` (importable by gunicorn and waitress). A
raw-socket client reads each response to EOF, so a truncated body and a
dropped connection are seen exactly as a client sees them.
"""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable

import pytest

from support import free_port, http_get, require_program

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import error_apps  # noqa: E402


def raw_get(port: int, path: str, accept: str = "*/*") -> tuple[bytes, bytes]:
    """(head, body) of ``GET path``, read until the server closes the connection."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n"
               "Connection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):  # a timeout fails the test: the server must close
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def start(server: str, live_server: Callable, run_process: Callable, tmp_path: Path) -> int:
    """Serve error_apps:app with ``server``; return its port."""
    if server == "stack":
        return int(live_server(error_apps.app).rsplit(":", 1)[1])
    port = free_port()
    if server == "gunicorn":
        cmd = [require_program("gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
               "error_apps:app"]
    else:
        cmd = [require_program("waitress-serve"), f"--listen=127.0.0.1:{port}", "error_apps:app"]
    run_process(cmd, port=port, cwd=HERE, env={"XDG_RUNTIME_DIR": str(tmp_path)})
    return port


SERVERS = ["stack", "gunicorn", "waitress"]


@pytest.mark.parametrize("server", SERVERS)
def test_production_page_over_the_wire(server, live_server, run_process, tmp_path, caplog):
    port = start(server, live_server, run_process, tmp_path)
    status, headers, body = http_get(f"http://127.0.0.1:{port}/boom",
                                     headers={"Accept": "application/json"})
    assert status == 500
    data = json.loads(body)
    assert set(data) == {"status", "error", "error_id"}
    assert b"boom" not in body and b"script" not in body
    status, headers, body = http_get(f"http://127.0.0.1:{port}/boom",
                                     headers={"Accept": "text/html"})
    assert status == 500 and b"Error id" in body and b"boom" not in body


@pytest.mark.parametrize("server", SERVERS)
def test_failure_after_headers_drops_the_connection(server, live_server, run_process, tmp_path,
                                                    caplog):
    """The status stays 200 (it is out), the body is cut short, the connection closes."""
    port = start(server, live_server, run_process, tmp_path)
    head, body = raw_get(port, "/midstream-length")
    assert head.split(b"\r\n")[0].endswith(b" 200 OK") and b"Content-Length: 100" in head
    assert body == b"0123456789"  # 10 of 100 bytes: the client knows it is truncated

    head, body = raw_get(port, "/midstream-chunked")
    assert head.split(b"\r\n")[0].endswith(b" 200 OK")
    if server != "stack":  # gunicorn, waitress: chunked framing
        assert b"Transfer-Encoding: chunked" in head
    if b"Transfer-Encoding: chunked" in head:  # no terminating 0-size chunk: the client errs
        assert body.lower() == b"a\r\n0123456789\r\n"
    else:  # stack.server today (wsgiref, HTTP/1.0 framing): the body just ends at the close
        assert body == b"0123456789"
    if server == "stack":  # in process: our record says what happened
        messages = [r.getMessage() for r in caplog.records if r.name == "stack.errors"]
        assert sum("after the response started" in m for m in messages) == 2


def test_access_log_on_a_real_socket(live_server, caplog):
    caplog.set_level(logging.INFO, logger="stack.access")
    url = live_server(error_apps.logged)
    assert http_get(url + "/ok")[0] == 200
    assert http_get(url + "/boom")[0] == 500
    port = int(url.rsplit(":", 1)[1])
    raw_get(port, "/midstream-length")
    deadline = time.monotonic() + 10
    while True:  # a line is written when the server closes the body: maybe after the client read it
        lines = [r.getMessage() for r in caplog.records if r.name == "stack.access"]
        if len(lines) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(lines) == 3, lines
    lines.sort(key=lambda line: ("/ok" not in line, "/boom" not in line))
    assert '"GET /ok HTTP/1.1" 200 2 ' in lines[0]
    assert '"GET /boom HTTP/1.1" 500 ' in lines[1]
    assert '"GET /midstream-length HTTP/1.1" 200 10 ' in lines[2]  # the bytes that went out
    assert lines[0].startswith("127.0.0.1 - - [")


def test_debug_page_renders_in_chromium(live_server, tmp_path, caplog):
    chromium = require_program("chromium")
    url = live_server(error_apps.app) + "/boom?debug=1"
    status, _, body = http_get(url, headers={"Accept": "text/html"})
    assert status == 500 and b"<script" not in body
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    dom = done.stdout
    assert "<h1>" in dom, done.stderr[-2000:]
    assert "ValueError" in dom and "injected_local" in dom
    assert "in <code>inner</code>" in dom  # the app's frame, with its source context
    assert "raise ValueError(" in dom
    assert "&lt;script&gt;" in dom  # the injection is shown as text ...
    tags = Tags()
    tags.feed(dom)
    assert "script" not in tags.names and "pwned" not in tags.ids  # ... and never ran
    assert tags.title.startswith("500 ValueError: boom <script>")  # not set to 'pwned'


class Tags(HTMLParser):
    """The element names, ids and title of a serialized DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.ids: set[str] = set()
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.names.add(tag)
        self.ids.update(value for name, value in attrs if name == "id")
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
