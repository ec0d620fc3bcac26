"""Each gateway through the real web server that speaks it.

nginx (``fastcgi_pass``, ``scgi_pass``), lighttpd (``mod_cgi``,
``mod_fastcgi``, ``mod_scgi``) and Apache (``mod_proxy_ajp``, mod_python's
``mod_python.wsgi``), each started on a free 127.0.0.1 port with a config
generated into a temp dir (pid and logs there too) and stopped by
``run_process``. The gateway servers run in this process on free ports.

Every pair is checked the same way (:func:`check_site`): a GET, a POST of
5 MB compared by SHA-256, a streamed response, repeated header names, an app
error (500 through the gateway) and the ``SCRIPT_NAME``/``PATH_INFO`` split
the front server passes. A missing server or module skips (fails under
``STACK_REQUIRE_EXTERNAL=1``).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from support import REQUIRE_EXTERNAL, ROOT, free_port, require_program

APPS_DIR = ROOT / "tests" / "test_gateways"
sys.path.insert(0, str(APPS_DIR))
import gateway_apps  # noqa: E402

from stack.gateways import ajp, fastcgi, scgi  # noqa: E402

BIG = hashlib.sha256(b"seed").digest() * (5 * 1024 * 1024 // 32)
BIG_DIGEST = hashlib.sha256(BIG).hexdigest()
APACHE_MODULES = Path("/usr/lib/apache2/modules")
AJP_SECRET = "gateway-test-secret"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def require_file(path: Path, what: str) -> None:
    if not path.exists():
        message = f"{what} is not installed ({path})"
        if REQUIRE_EXTERNAL:
            pytest.fail(message + " (STACK_REQUIRE_EXTERNAL=1)")
        pytest.skip(message)


# -- the gateway servers (in this process) -----------------------------------------------

@pytest.fixture
def gateway() -> Iterator[Callable[..., int]]:
    """``port = gateway(module, **options)``: a gateway server on a free port, stopped after."""
    started = []

    def start(module: Any, **options: Any) -> int:
        server = module.make_server(gateway_apps.app, host="127.0.0.1", port=0, threads=4, **options)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server.server_address[1]

    yield start
    for server, thread in started:
        server.shutdown()
        thread.join(timeout=10)
        server.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temp dir other users can read (Apache's children run as www-data under root)."""
    path = Path(tempfile.mkdtemp(prefix="stack-gw-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def site_ini(directory: Path) -> Path:
    ini = directory / "site.ini"
    ini.write_text("[app:main]\nuse = call:gateway_apps:factory\n")
    ini.chmod(0o644)
    return ini


# -- the checks --------------------------------------------------------------------------

def fetch(port: int, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name.lower()]


def check_site(port: int, prefix: str, logs: Path | None = None) -> None:
    """The six checks every front server/gateway pair must pass."""
    where = f"{prefix} on port {port}" + (f" (logs in {logs})" if logs else "")

    status, headers, body = fetch(port, "GET", prefix + "/hello")
    assert (status, body) == (200, gateway_apps.HELLO), where

    status, headers, body = fetch(port, "POST", prefix + "/echo", BIG,
                                  {"Content-Type": "application/octet-stream"})
    assert status == 200, (where, body[:300])
    assert json.loads(body) == {"length": len(BIG), "sha256": BIG_DIGEST}, where

    status, headers, body = fetch(port, "GET", prefix + "/stream")
    assert (status, body) == (200, b"".join(gateway_apps.STREAM_CHUNKS)), where

    status, headers, body = fetch(port, "GET", prefix + "/headers")
    assert status == 200, where
    assert values(headers, "Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"], (where, headers)
    assert ", ".join(values(headers, "X-Multi")) == "one, two", (where, headers)

    status, headers, body = fetch(port, "GET", prefix + "/error")
    assert status == 500, (where, body[:300])

    status, headers, body = fetch(port, "GET", prefix + "/environ/a%20b?q=1&r=2", headers={"X-Test": "yes"})
    assert status == 200, (where, body[:300])
    seen = json.loads(body)
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == (prefix, "/environ/a b"), (where, seen)
    assert (seen["QUERY_STRING"], seen["HTTP_X_TEST"], seen["REQUEST_METHOD"]) == ("q=1&r=2", "yes", "GET")


def logs_of(directory: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(directory.glob("*.log")))


# -- nginx ------------------------------------------------------------------------------

NGINX_PARAMS = """
            {kind}_param REQUEST_METHOD $request_method;
            {kind}_param QUERY_STRING $query_string;
            {kind}_param CONTENT_TYPE $content_type;
            {kind}_param REQUEST_URI $request_uri;
            {kind}_param SERVER_PROTOCOL $server_protocol;
            {kind}_param REMOTE_ADDR $remote_addr;
            {kind}_param REMOTE_PORT $remote_port;
            {kind}_param SERVER_NAME $server_name;
            {kind}_param SERVER_PORT $server_port;
            {kind}_param REQUEST_SCHEME $scheme;
"""


def nginx_config(tmp: Path, port: int, fcgi_port: int, scgi_port: int) -> Path:
    temp = "\n".join(f"    {kind}_temp_path {tmp}/{kind}_temp;"
                     for kind in ("client_body", "proxy", "fastcgi", "scgi", "uwsgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
{"user root;" if IS_ROOT else ""}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/nginx-access.log;
{temp}
    client_max_body_size 16m;
    upstream fcgi {{ server 127.0.0.1:{fcgi_port}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        location /fcgi/ {{
            fastcgi_pass fcgi;
            fastcgi_keep_conn on;
            fastcgi_split_path_info ^(/fcgi)(/.*)$;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param PATH_INFO $fastcgi_path_info;
            fastcgi_param CONTENT_LENGTH $content_length;
{NGINX_PARAMS.format(kind="fastcgi")}
        }}
        location ~ ^(/scgi)(/.*)$ {{
            scgi_pass 127.0.0.1:{scgi_port};
            scgi_param SCRIPT_NAME $1;
            scgi_param PATH_INFO $2;
            scgi_param SCGI 1;
{NGINX_PARAMS.format(kind="scgi")}
        }}
    }}
}}
""")
    return conf


@pytest.fixture
def nginx(tmp_path: Path, run_process: Callable, gateway: Callable) -> int:
    binary = require_program("nginx")
    port = free_port()
    conf = nginx_config(tmp_path, port, gateway(fastcgi), gateway(scgi))
    run_process([binary, "-p", tmp_path, "-e", tmp_path / "nginx-error.log", "-c", conf], port=port)
    return port


def test_nginx_fastcgi_and_scgi(nginx: int, tmp_path: Path) -> None:
    check_site(nginx, "/fcgi", tmp_path)
    check_site(nginx, "/scgi", tmp_path)
    # the FastCGI connection was kept (fastcgi_keep_conn): many requests, few connections
    for _ in range(5):
        assert fetch(nginx, "GET", "/fcgi/hello")[0] == 200


# -- lighttpd ----------------------------------------------------------------------------

def cgi_script(directory: Path, ini: Path) -> Path:
    script = directory / "site.cgi"
    script.write_text(f"#!{sys.executable}\n"
                      f"import sys; sys.path.insert(0, {str(APPS_DIR)!r})\n"
                      f"import stack.gateways.cgi; stack.gateways.cgi.run({str(ini)!r})\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def lighttpd(tmp_path: Path, run_process: Callable, gateway: Callable) -> int:
    binary = require_program("lighttpd")
    port = free_port()
    script = cgi_script(tmp_path, site_ini(tmp_path))
    backend = '(( "host" => "127.0.0.1", "port" => {}, "check-local" => "disable" ))'
    conf = tmp_path / "lighttpd.conf"
    conf.write_text(f"""
server.document-root = "{tmp_path}"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{tmp_path}/lighttpd.pid"
server.errorlog = "{tmp_path}/lighttpd-error.log"
server.max-request-size = 16384
server.upload-dirs = ( "{tmp_path}" )
server.modules = ( "mod_alias", "mod_cgi", "mod_fastcgi", "mod_scgi" )
alias.url = ( "/cgi" => "{script}" )
$HTTP["url"] =~ "^/cgi" {{ cgi.assign = ( "" => "" ) }}
fastcgi.server = ( "/fcgi" => {backend.format(gateway(fastcgi))} )
scgi.server = ( "/scgi" => {backend.format(gateway(scgi))} )
""")
    run_process([binary, "-D", "-f", conf], port=port)
    return port


def test_lighttpd_cgi_fastcgi_scgi(lighttpd: int, tmp_path: Path) -> None:
    for prefix in ("/fcgi", "/scgi", "/cgi"):
        check_site(lighttpd, prefix, tmp_path)


# -- Apache: mod_proxy_ajp and mod_python -------------------------------------------------

def apache_config(directory: Path, port: int, ajp_port: int, *, mod_python: bool) -> Path:
    modules = ["mpm_prefork", "authz_core", "proxy", "proxy_ajp"] + (["env", "python"] if mod_python else [])
    loads = "\n".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so" for name in modules)
    paths = [str(ROOT), str(APPS_DIR), sysconfig.get_paths()["purelib"]]
    python = f"""
<Location /modpy>
    SetHandler mod_python
    PythonHandler mod_python.wsgi
    PythonOption mod_python.wsgi.application stack.gateways.modpython::application
    PythonPath "{paths!r} + sys.path"
    SetEnv STACK_CONFIG {site_ini(directory)}
</Location>""" if mod_python else ""
    conf = directory / "apache.conf"
    conf.write_text(f"""
ServerRoot {directory}
DefaultRuntimeDir {directory}
PidFile {directory}/apache.pid
ErrorLog {directory}/apache-error.log
LogLevel warn
Listen 127.0.0.1:{port}
ServerName 127.0.0.1
{loads}
{"User www-data" if IS_ROOT else ""}
{"Group www-data" if IS_ROOT else ""}
StartServers 1
MinSpareServers 1
MaxSpareServers 3
LimitRequestBody 0
ProxyPass /ajp ajp://127.0.0.1:{ajp_port}/ajp secret={AJP_SECRET} ttl=30
{python}
""")
    return conf


@pytest.fixture
def apache(shared_dir: Path, run_process: Callable, gateway: Callable) -> tuple[int, Path]:
    binary = require_program("apache2") if shutil.which("apache2") else require_program("httpd")
    for name in ("mpm_prefork", "proxy", "proxy_ajp"):
        require_file(APACHE_MODULES / f"mod_{name}.so", f"Apache's mod_{name}")
    ajp_port = gateway(ajp, script_name="/ajp", secret=AJP_SECRET)
    port = free_port()
    has_python = (APACHE_MODULES / "mod_python.so").exists()
    conf = apache_config(shared_dir, port, ajp_port, mod_python=has_python)
    # Its own session: prefork's shutdown signals its whole process group.
    setsid = require_program("setsid")
    run_process([setsid, binary, "-f", conf, "-DFOREGROUND"], port=port)
    return port, shared_dir


def test_apache_ajp(apache: tuple[int, Path]) -> None:
    port, directory = apache
    check_site(port, "/ajp", directory)


def test_apache_mod_python(apache: tuple[int, Path]) -> None:
    port, directory = apache
    require_file(APACHE_MODULES / "mod_python.so", "libapache2-mod-python")
    check_site(port, "/modpy", directory)
    status, _, body = fetch(port, "GET", "/modpy/environ")
    assert json.loads(body)["STACK_CONFIG"] == str(directory / "site.ini")
