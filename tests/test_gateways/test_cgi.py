"""CGI: one request from an environ, stdin and stdout, in-process and as a real process."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from wsgiref.validate import validator

import pytest

import gateway_apps
from gateway_client import split_cgi
from stack.errors import ConfigError
from stack.gateways import cgi
from support import BIN

APPS_DIR = Path(__file__).resolve().parent


def cgi_env(path: str, method: str = "GET", body: bytes = b"", **extra: str) -> dict[str, str]:
    path_info, _, query = path.partition("?")
    env = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method, "SCRIPT_NAME": "/cgi",
           "PATH_INFO": path_info, "QUERY_STRING": query, "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1"}
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    env.update(extra)
    return env


def run(path: str, method: str = "GET", body: bytes = b"", **extra: str) -> tuple[bool, str, list, bytes]:
    out = io.BytesIO()
    ok = cgi.run(validator(gateway_apps.app), environ=cgi_env(path, method, body, **extra),
                 stdin=io.BytesIO(body), stdout=out)
    return (ok, *split_cgi(out.getvalue()))


def test_get_post_stream_headers() -> None:
    assert run("/hello")[1:] == ("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "16")],
                                 gateway_apps.HELLO)
    big = os.urandom(300_000)
    ok, status, _, body = run("/echo", "POST", big)
    assert json.loads(body) == {"length": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    assert run("/stream")[3] == b"".join(gateway_apps.STREAM_CHUNKS)
    headers = run("/headers")[2]
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    seen = json.loads(run("/environ/x?q=1", HTTPS="on", HTTP_X_TEST="t")[3])
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/cgi", "/environ/x", "q=1")
    assert (seen["url_scheme"], seen["HTTP_X_TEST"]) == ("https", "t")


def test_errors() -> None:
    assert run("/error")[:2] == (True, "500 Internal Server Error")
    ok, status, _, body = run("/late-error")
    assert (ok, status, body) == (False, "200 OK", b"first\n")  # aborted after the headers


def test_short_stdin_and_limits() -> None:
    out = io.BytesIO()
    ok = cgi.run(gateway_apps.app, environ=cgi_env("/echo", "POST", b"x" * 100),
                 stdin=io.BytesIO(b"x" * 10), stdout=out)
    assert not ok and out.getvalue() == b""  # the web server went away: nothing to answer
    out = io.BytesIO()
    cgi.run(gateway_apps.app, environ=cgi_env("/echo", "POST", b"x" * 100), stdin=io.BytesIO(b"x" * 100),
            stdout=out, max_request_body_size=50)
    assert split_cgi(out.getvalue())[0] == "413 Content Too Large"


def test_bad_deployment_file_is_a_500(tmp_path: Path, capsys) -> None:
    out = io.BytesIO()
    assert not cgi.run(tmp_path / "missing.ini", environ=cgi_env("/"), stdin=io.BytesIO(), stdout=out)
    assert split_cgi(out.getvalue())[0] == "500 Internal Server Error"
    assert "cannot load" in capsys.readouterr().err


@pytest.fixture
def site(tmp_path: Path) -> Path:
    ini = tmp_path / "site.ini"
    ini.write_text("[app:main]\nuse = call:gateway_apps:factory\n\n"
                   "[server:main]\nuse = egg:stack#cgi\n")
    return ini


def run_process(cmd: list[str], path: str, body: bytes = b"", method: str = "GET") -> bytes:
    env = {**os.environ, **cgi_env(path, method, body), "PYTHONPATH": str(APPS_DIR)}
    result = subprocess.run(cmd, input=body, env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_the_one_line_script(site: Path, tmp_path: Path) -> None:
    script = tmp_path / "site.cgi"
    script.write_text(f"#!{sys.executable}\n"
                      f"import stack.gateways.cgi; stack.gateways.cgi.run({str(site)!r})\n")
    script.chmod(0o755)
    body = b"z" * 100_000
    out = run_process([str(script)], "/echo", body, "POST")
    assert json.loads(split_cgi(out)[2])["sha256"] == hashlib.sha256(body).hexdigest()


def test_stack_serve_with_the_cgi_server_section(site: Path) -> None:
    out = run_process([str(BIN / "stack"), "serve", str(site)], "/hello")
    assert split_cgi(out)[1:] == ([("Content-Type", "text/plain"), ("Content-Length", "16")],
                                  gateway_apps.HELLO)


def test_factory() -> None:
    assert callable(cgi.server_factory({}, script_name="/cgi", max_request_body_size="10MB"))
    with pytest.raises(ConfigError, match="unknown option 'port'"):
        cgi.server_factory({}, port="80")


def test_an_apps_print_never_lands_in_the_response(tmp_path: Path) -> None:
    script = tmp_path / "talkative.cgi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import stack.gateways.cgi\n"
        "def app(environ, start_response):\n"
        "    print('debug: handling', environ['PATH_INFO'], flush=True)\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '6')])\n"
        "    print('more debug')\n"
        "    return [b'hello\\n']\n"
        "stack.gateways.cgi.run(app)\n")
    script.chmod(0o755)
    env = {**os.environ, **cgi_env("/x")}
    result = subprocess.run([str(script)], input=b"", env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.endswith(b"\r\n\r\nhello\n")
    assert b"debug" not in result.stdout and b"debug: handling /x" in result.stderr
