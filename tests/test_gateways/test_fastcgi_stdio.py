"""FastCGI on stdin (``python -m stack.gateways.fastcgi``): pipes as IIS uses them, an inherited socket.

The processes are real (pipes, bounded waits, always killed). IIS's named
pipe is duplex; the socketpair case stands in for it on Unix.
"""
from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import gateway_apps
from gateway_client import RecordReader, fcgi_params, fcgi_request, split_cgi
from stack.gateways import fastcgi_records as fcgi
from stack.gateways.fastcgi_stdio import iis_paths, serve_stdio

APPS_DIR = Path(__file__).resolve().parent
WAIT = 30.0  # seconds: the bound on any wait for the process

SITE = "[app:main]\nuse = call:gateway_apps:factory\n"
# Logging configured onto sys.stdout: it must still end up on stderr.
LOGGING = """
[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stdout,)
formatter = plain

[formatter_plain]
format = LOG %(levelname)s %(message)s
"""


class PipeReader:
    """FastCGI records from a process's stdout, each read bounded by WAIT."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False

    def _more(self) -> bool:
        ready, _, _ = select.select([self.fd], [], [], WAIT)
        assert ready, "no output from the FastCGI process in time"
        data = os.read(self.fd, 65536)
        if not data:
            self.eof = True
        self.buffer += data
        return bool(data)

    def next(self) -> fcgi.Record | None:
        while True:
            found = fcgi.decode_record(self.buffer)
            if found is not None:
                record, end = found
                self.buffer = self.buffer[end:]
                return record
            if not self._more():
                assert not self.buffer, f"stdout ended inside a record: {self.buffer!r}"
                return None

    def response(self, request_id: int) -> tuple[bytes, tuple[int, int] | None]:
        """(STDOUT bytes, END_REQUEST (app, protocol) or None at EOF)."""
        out = []
        while True:
            record = self.next()
            if record is None:
                return b"".join(out), None
            assert record.request_id == request_id, record
            if record.type == fcgi.STDOUT:
                out.append(record.content)
            elif record.type == fcgi.END_REQUEST:
                return b"".join(out), fcgi.parse_end_request(record.content)

    def at_eof(self) -> bool:
        return self.next() is None


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """``proc = spawn(ini, *args, stdin=PIPE)``: the module as a process, killed after."""
    procs: list[subprocess.Popen] = []

    def start(ini: Path, *args: str, stdin: Any = subprocess.PIPE,
              stdout: Any = subprocess.PIPE) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APPS_DIR), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-m", "stack.gateways.fastcgi", str(ini), *args],
                                stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:  # a broken stdin's buffered data
                    pass
        proc.wait(timeout=WAIT)


def finish(proc: subprocess.Popen) -> tuple[int, str, bytes]:
    """Close stdin, wait (bounded); (exit status, stderr, the rest of stdout)."""
    out, err = proc.communicate(timeout=WAIT)
    return proc.returncode, err.decode(), out or b""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    ini = tmp_path / "site.ini"
    ini.write_text(SITE)
    return ini


def send(proc: subprocess.Popen, data: bytes) -> None:
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.flush()


def test_requests_one_after_another_on_pipes(spawn, site: Path) -> None:
    proc = spawn(site)
    records = PipeReader(proc.stdout.fileno())
    # A GET, answered before any more input arrives.
    send(proc, fcgi_request(1, fcgi_params("/hello")))
    out, end = records.response(1)
    assert end == (0, fcgi.REQUEST_COMPLETE)
    assert split_cgi(out) == ("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "16")],
                              gateway_apps.HELLO)
    # GET_VALUES on the same pipe: one request at a time.
    send(proc, fcgi.encode_record(fcgi.GET_VALUES, 0, fcgi.encode_pairs(
        [(b"FCGI_MPXS_CONNS", b""), (b"FCGI_MAX_REQS", b"")])))
    record = records.next()
    assert record is not None and record.type == fcgi.GET_VALUES_RESULT
    assert dict(fcgi.decode_pairs(record.content))[b"FCGI_MPXS_CONNS"] == b"0"
    # A POST whose body spans several STDIN records.
    body = os.urandom(200_000)
    send(proc, fcgi_request(2, fcgi_params("/echo", "POST", body), body))
    out, end = records.response(2)
    assert end == (0, fcgi.REQUEST_COMPLETE)
    status, _, answer = split_cgi(out)
    assert status == "200 OK"
    assert json.loads(answer) == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    # A streamed response, still on the same pipe.
    send(proc, fcgi_request(3, fcgi_params("/stream")))
    out, end = records.response(3)
    assert end == (0, fcgi.REQUEST_COMPLETE)
    assert split_cgi(out)[2] == b"".join(gateway_apps.STREAM_CHUNKS)
    # End of input ends the process cleanly, with nothing more on stdout.
    status, err, rest = finish(proc)
    assert status == 0, err
    assert rest == b"" and records.buffer == b""


def test_request_without_keep_conn_ends_the_process(spawn, site: Path) -> None:
    proc = spawn(site)
    records = PipeReader(proc.stdout.fileno())
    send(proc, fcgi_request(7, fcgi_params("/environ/x?q=1"), keep_conn=False))
    out, end = records.response(7)
    assert end == (0, fcgi.REQUEST_COMPLETE)
    seen = json.loads(split_cgi(out)[2])
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/app", "/environ/x", "q=1")
    assert records.at_eof()  # closed without waiting for stdin to end
    assert proc.wait(timeout=WAIT) == 0


def test_logging_goes_to_stderr_and_options_from_the_server_section(spawn, tmp_path: Path) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text(SITE + "\n[server:main]\nuse = egg:stack#fastcgi\nport = 1\n"
                   "max_request_body_size = 1000\n" + LOGGING)
    proc = spawn(ini)
    records = PipeReader(proc.stdout.fileno())
    send(proc, fcgi_request(1, fcgi_params("/error")))
    out, end = records.response(1)
    assert split_cgi(out)[0] == "500 Internal Server Error" and end is not None
    body = b"x" * 2000  # over the section's max_request_body_size
    send(proc, fcgi_request(2, fcgi_params("/echo", "POST", body), body))
    out, end = records.response(2)
    assert split_cgi(out)[0] == "413 Content Too Large"
    status, err, rest = finish(proc)
    assert status == 0, err
    assert rest == b"" and records.buffer == b""  # stdout held records only
    assert "LOG ERROR" in err and "the app failed on purpose" in err


@pytest.mark.parametrize("content", [None, "[app:main]\nuse = egg:no-such-dist#main\n",
                                     SITE + "[server:main]\nuse = egg:stack#fastcgi\nthreads = many\n"],
                         ids=["missing-file", "unknown-egg", "bad-server-option"])
def test_config_error_is_one_line_and_exit_1(spawn, tmp_path: Path, content: str | None) -> None:
    ini = tmp_path / "site.ini"
    if content is not None:
        ini.write_text(content)
    proc = spawn(ini)
    status, err, out = finish(proc)
    assert status == 1 and out == b""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stack: cannot load"), err


def test_inherited_listening_socket(spawn, site: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        proc = spawn(site, stdin=listener.fileno(), stdout=subprocess.DEVNULL)
        address = listener.getsockname()
    with socket.create_connection(address, timeout=WAIT) as sock:
        sock.sendall(fcgi_request(1, fcgi_params("/echo", "POST", b"posted"), b"posted", keep_conn=False))
        out, _, end = RecordReader(sock).response(1)
    assert end == (0, fcgi.REQUEST_COMPLETE)
    assert json.loads(split_cgi(out)[2])["length"] == 6
    proc.terminate()  # SIGTERM: a graceful stop
    status, err, _ = finish(proc)
    assert status == 0, err
    assert "inherited socket 127.0.0.1:" in err


def test_duplex_stdin_answers_on_stdin(spawn, site: Path) -> None:
    """A connected socket as stdin (as IIS's duplex pipe): records go back on it, not on stdout."""
    ours, theirs = socket.socketpair()
    with ours:
        with theirs:
            proc = spawn(site, stdin=theirs.fileno())
        ours.settimeout(WAIT)
        ours.sendall(fcgi_request(1, fcgi_params("/hello")))
        reader = RecordReader(ours)
        out, _, end = reader.response(1)
        assert end == (0, fcgi.REQUEST_COMPLETE) and split_cgi(out)[2] == gateway_apps.HELLO
        ours.sendall(fcgi_request(2, fcgi_params("/hello")))
        assert reader.response(2)[2] == (0, fcgi.REQUEST_COMPLETE)
        ours.shutdown(socket.SHUT_WR)
        assert reader.next() is None
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err.decode()
    assert out == b""


# -- in-process: serve_stdio on os.pipe(), the IIS path split -------------------------------

def serve_bytes(data: bytes) -> tuple[int, bytes]:
    """serve_stdio over a pipe holding ``data``; (exit status, what it wrote)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        os.write(in_w, data)
        os.close(in_w)
        in_w = -1
        status = serve_stdio(gateway_apps.app, in_fd=in_r, out_fd=out_w)
        os.close(out_w)
        out_w = -1
        chunks = []
        while chunk := os.read(out_r, 65536):
            chunks.append(chunk)
        return status, b"".join(chunks)
    finally:
        for fd in (in_r, in_w, out_r, out_w):
            if fd >= 0:
                os.close(fd)


def test_serve_stdio_ends_and_refuses() -> None:
    assert serve_bytes(b"") == (0, b"")
    status, out = serve_bytes(fcgi_request(1, fcgi_params("/hello")))
    assert status == 0 and out.endswith(fcgi.end_request(1))
    # A malformed record: logged, nothing answered, status 1.
    assert serve_bytes(b"\x02" + bytes(7))[0] == 1
    # Input ending in the middle of a request.
    assert serve_bytes(fcgi_request(1, fcgi_params("/hello"))[:40])[0] == 1
    # ABORT_REQUEST while the params come in: ended, and the next request is served.
    data = fcgi.begin_request(3, flags=fcgi.KEEP_CONN) + fcgi.encode_record(fcgi.ABORT_REQUEST, 3)
    status, out = serve_bytes(data + fcgi_request(4, fcgi_params("/hello")))
    assert status == 0 and out.startswith(fcgi.end_request(3, 1)) and out.endswith(fcgi.end_request(4))


@pytest.mark.parametrize("params, split", [
    ({"SCRIPT_NAME": "/a/b", "PATH_INFO": "/a/b", "APPL_MD_PATH": "/LM/W3SVC/1/ROOT"}, ("", "/a/b")),
    ({"SCRIPT_NAME": "/App/x", "PATH_INFO": "/App/x", "APPL_MD_PATH": "/LM/W3SVC/2/ROOT/app"}, ("/App", "/x")),
    ({"SCRIPT_NAME": "/other", "PATH_INFO": "/other", "APPL_MD_PATH": "/LM/W3SVC/2/ROOT/app"}, ("", "/other")),
    ({"SCRIPT_NAME": "/s.py", "PATH_INFO": "/rest", "APPL_MD_PATH": "/LM/W3SVC/1/ROOT"}, ("/s.py", "/rest")),
], ids=["site-root", "virtual-app", "outside-the-app", "already-split"])
def test_iis_paths(params: dict[str, str], split: tuple[str, str]) -> None:
    iis = {"SERVER_SOFTWARE": "Microsoft-IIS/10.0", **params}
    iis_paths(iis)
    assert (iis["SCRIPT_NAME"], iis["PATH_INFO"]) == split
    nginx = {"SERVER_SOFTWARE": "nginx/1.22", **params}
    iis_paths(nginx)
    assert (nginx["SCRIPT_NAME"], nginx["PATH_INFO"]) == (params["SCRIPT_NAME"], params["PATH_INFO"])


def test_module_runs_as_main_quickly(spawn, site: Path) -> None:
    """The ``-m`` entry point starts and stops without a request (no stray output)."""
    started = time.monotonic()
    proc = spawn(site)
    status, err, out = finish(proc)
    assert status == 0 and out == b"", err
    assert time.monotonic() - started < WAIT
    assert "serving the connection on stdin" in err
