"""The server as a process: port 0 logged, graceful stop on SIGTERM/SIGINT."""
import re
import signal
import socket
import textwrap
import threading
import time

import pytest

from support import BIN, ROOT, wait_for_port

ENV = {"PYTHONPATH": str(ROOT / "tests")}


def write_ini(tmp_path, port, delay="1.0", extra=""):
    path = tmp_path / "slow.ini"
    path.write_text(textwrap.dedent(f"""
        [app:main]
        use = call:test_server.server_apps:slow_factory
        delay = {delay}

        [server:main]
        use = egg:stack#http
        host = 127.0.0.1
        port = {port}
        shutdown_timeout = 5s
        {extra}
    """))
    return path


def read_port(log_path, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+)", log_path.read_text())
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no port logged:\n{log_path.read_text()}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_in_flight_request_completes_on_stop(tmp_path, run_process, signum):
    ini = write_ini(tmp_path, port=0)
    proc = run_process([BIN / "stack", "serve", ini], env=ENV)
    log_path = tmp_path / "proc0.log"
    port = read_port(log_path)  # port 0: the bound port is printed
    wait_for_port(port, process=proc)
    result = {}

    def request():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            data = b""
            while b"finished" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            result["data"] = data

    thread = threading.Thread(target=request)
    thread.start()
    time.sleep(0.3)  # the request is in the app now
    proc.send_signal(signum)
    thread.join(timeout=10)
    assert result["data"].startswith(b"HTTP/1.1 200") and b"finished after 1.0s" in result["data"]
    assert proc.wait(timeout=10) == 0
    with pytest.raises(OSError):  # no longer listening
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_idle_connections_are_closed_and_the_stop_is_prompt(tmp_path, run_process):
    ini = write_ini(tmp_path, port=0, delay="0")
    proc = run_process([BIN / "stack", "serve", ini], env=ENV)
    port = read_port(tmp_path / "proc0.log")
    wait_for_port(port, process=proc)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")  # now idle, kept alive
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert idle.recv(4096) == b""  # the server closed it
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 3  # not the 5 s shutdown_timeout
