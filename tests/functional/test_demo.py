"""config/demo.ini and config/development.ini served by `stack serve` on a real socket."""
import re
import time

import pytest

from support import BIN, ROOT, free_port, http_get


@pytest.fixture
def serve(run_process, tmp_path):
    def start(config, **variables):
        port = free_port()
        args = [f"{k}={v}" for k, v in variables.items()]
        run_process([BIN / "stack", "serve", ROOT / "config" / config, f"http_port={port}", *args],
                    port=port)
        return f"http://127.0.0.1:{port}", tmp_path / "proc0.log"
    return start


def test_demo_pages_and_production_error_page(serve):
    url, log = serve("demo.ini")
    status, headers, body = http_get(url + "/")
    assert status == 200 and b"stack demo" in body
    assert http_get(url + "/flask/")[2].startswith(b"Flask here. form at /flask/form")
    status, headers, body = http_get(url + "/boom", headers={"Accept": "text/html"})
    assert status == 500
    assert b"RuntimeError" not in body and b"fails on purpose" not in body
    error_id = re.search(rb"[0-9a-f]{8,}", body)
    assert error_id, body
    deadline = time.monotonic() + 5  # the access log line comes when the body is closed
    while time.monotonic() < deadline and not (
            error_id.group().decode() in log.read_text() and '"GET /boom' in log.read_text()):
        time.sleep(0.05)
    text = log.read_text()
    assert error_id.group().decode() in text and "RuntimeError" in text  # the log has it all
    assert re.search(r'"GET /boom HTTP/1.1" 500 \d+', text)  # and the access log the line


def test_development_shows_the_debug_page(serve):
    url, _ = serve("development.ini")
    status, headers, body = http_get(url + "/boom", headers={"Accept": "text/html"})
    assert status == 500
    assert b"RuntimeError" in body and b"a local variable the debug page shows" in body


def test_demo_debug_flag_from_the_command_line(serve):
    url, _ = serve("demo.ini", debug="true")
    status, _, body = http_get(url + "/boom", headers={"Accept": "application/json"})
    assert status == 500 and b"RuntimeError" in body
