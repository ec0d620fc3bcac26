"""One deployment file, three real servers: ``stack serve``, ``gunicorn --paste``, ``pserve``.

``config/demo.ini`` is started as a real process by each, on a free
127.0.0.1 port, requested over a real socket, and stopped (``run_process``
stops whatever is left). Each must serve the same site: the plain WSGI
front page at ``/`` and the WebOb app mounted at ``/webob`` seeing
``SCRIPT_NAME='/webob'``.

How each takes the port:

- ``stack serve config/demo.ini --port P`` (replaces ``[server:main]``'s port);
- ``gunicorn --paste config/demo.ini -b 127.0.0.1:P`` (gunicorn builds the app
  with PasteDeploy and ignores ``[server:main]``);
- ``pserve FILE http_port=P``: pserve's ``key=value`` only reaches a server
  section through PasteDeploy's global_conf, so the section must take its
  port from a variable (``get port = http_port``). While config/demo.ini
  hard-codes ``port = 8080``, the test serves a copy of it that differs in
  exactly that (see :func:`pserve_config`).
"""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from support import BIN, ROOT, free_port, http_get, require_program

DEMO = ROOT / "config" / "demo.ini"
STOP_TIMEOUT = 15.0


def program(name: str) -> str:
    """The venv's copy of ``name`` (installed by the test extra)."""
    path = BIN / name
    return str(path) if path.exists() else require_program(name)


def header(headers: dict, name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    raise AssertionError(f"no {name} header in {headers}")


def check_demo(port: int) -> dict:
    """The demo site, as any of the servers must serve it; returns the headers of ``/``."""
    base = f"http://127.0.0.1:{port}"

    status, headers, body = http_get(base + "/")
    assert status == 200, body
    assert header(headers, "Content-Type").startswith("text/html")
    assert b"stack demo" in body
    assert b'href="/webob/"' in body  # the front page links by SCRIPT_NAME (here "")
    front_headers = headers

    status, headers, body = http_get(base + "/webob/?name=gate")
    assert status == 200, body
    assert header(headers, "Content-Type").startswith("text/plain")
    assert b"Hello from WebOb, gate!" in body
    assert b"SCRIPT_NAME='/webob'" in body and b"PATH_INFO='/'" in body
    # the app sees the Host the request came to, through the mount
    assert f"my URL is {base}/webob/".encode() in body

    status, headers, body = http_get(base + "/no/such/page")
    assert status == 404, body
    return front_headers


def stop(proc: subprocess.Popen, port: int) -> None:
    """Terminate ``proc``, wait (bounded) for it to end, and check the port is free."""
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)
        pytest.fail(f"{proc.args[:3]} did not stop within {STOP_TIMEOUT}s of SIGTERM")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def pserve_config(tmp_path: Path) -> Path:
    """config/demo.ini in a form whose server port pserve's ``http_port=P`` can set.

    If demo.ini already takes its port from ``http_port``, it is used as it is.
    Otherwise a copy is written whose only change is that ``[server:main]``
    reads ``get port = http_port`` with ``http_port = 8080`` in [DEFAULT] (the
    file still serves on 8080 by default, under every loader).
    """
    text = DEMO.read_text()
    if "http_port" in text:
        return DEMO
    lines = text.splitlines(keepends=True)
    assert lines.count("port = 8080\n") == 1 and lines.count("[DEFAULT]\n") == 1, \
        "config/demo.ini changed shape: update pserve_config()"
    section = None
    out = []
    for line in lines:
        if line.startswith("["):
            section = line.strip()
        if section == "[server:main]" and line == "port = 8080\n":
            line = "get port = http_port\n"
        out.append(line)
        if line == "[DEFAULT]\n":
            out.append("http_port = 8080\n")
    assert "get port = http_port\n" in out, "config/demo.ini's [server:main] has no port = 8080"
    copy = tmp_path / "demo.ini"  # the demo names its apps by module, so no relative paths
    copy.write_text("".join(out))
    return copy


def test_stack_serve(run_process):
    port = free_port()
    proc = run_process([program("stack"), "serve", DEMO, "--port", port], port=port)
    check_demo(port)
    stop(proc, port)


def test_gunicorn_paste(run_process, tmp_path):
    port = free_port()
    proc = run_process(
        [program("gunicorn"), "--paste", DEMO, "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--graceful-timeout", "5"],
        port=port,
        # gunicorn >= 25 opens a control socket under $XDG_RUNTIME_DIR (else ~/.gunicorn)
        env={"XDG_RUNTIME_DIR": str(tmp_path)})
    headers = check_demo(port)
    assert "gunicorn" in header(headers, "Server").lower()  # gunicorn answered, not a stray
    stop(proc, port)


def test_pserve(run_process, tmp_path):
    port = free_port()
    config = pserve_config(tmp_path)
    proc = run_process([program("pserve"), config, f"http_port={port}"], port=port)
    check_demo(port)
    stop(proc, port)


def test_pserve_copy_still_serves_under_stack(run_process, tmp_path):
    """The pserve-ready form keeps working with ``stack serve``, by variable and by --port."""
    config = pserve_config(tmp_path)
    port = free_port()
    proc = run_process([program("stack"), "serve", config, f"http_port={port}"], port=port)
    check_demo(port)
    stop(proc, port)
    port = free_port()
    proc = run_process([program("stack"), "serve", config, "--port", port], port=port)
    check_demo(port)
    stop(proc, port)
