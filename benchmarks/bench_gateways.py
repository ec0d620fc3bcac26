"""Gateway throughput: nginx → FastCGI → hello app vs nginx → proxy_pass → the bundled HTTP server.

One nginx (one worker, keep-alive upstreams) fronts two backends serving
``_servers.app``'s 13-byte hello, each in its own process with the server's
defaults (8 threads): ``stack.gateways.fastcgi`` (``fastcgi_keep_conn``)
and ``stack.server`` (HTTP/1.1 ``proxy_pass``). wrk drives both in the same
run, one after the other; the table gives req/s and the FastCGI/HTTP ratio.

    python benchmarks/bench_gateways.py [--quick]

Needs nginx and wrk (Debian: ``apt-get install nginx wrk``).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _timing import table  # noqa: E402

FASTCGI = ("import sys; sys.path.insert(0, {here!r}); import _servers; "
           "from stack.gateways.fastcgi import serve; serve(_servers.app, host='127.0.0.1', port={port})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listened on {port} within {timeout}s")


def nginx_conf(tmp: Path, fcgi_front: int, fcgi_port: int, http_front: int, http_port: int) -> Path:
    temps = "\n".join(f"{kind}_temp_path {tmp}/{kind};" for kind in
                      ("client_body", "proxy", "fastcgi", "scgi", "uwsgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off; {temps}
    upstream fcgi {{ server 127.0.0.1:{fcgi_port}; keepalive 32; }}
    upstream http {{ server 127.0.0.1:{http_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{fcgi_front};
        location / {{
            fastcgi_pass fcgi; fastcgi_keep_conn on;
            fastcgi_param REQUEST_METHOD $request_method; fastcgi_param QUERY_STRING $query_string;
            fastcgi_param SCRIPT_NAME ""; fastcgi_param PATH_INFO $uri;
            fastcgi_param SERVER_NAME $server_name; fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_PROTOCOL $server_protocol; fastcgi_param REMOTE_ADDR $remote_addr;
        }}
    }}
    server {{
        listen 127.0.0.1:{http_front};
        location / {{ proxy_pass http://http; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
}}
""")
    return conf


def wrk(port: int, seconds: int, connections: int) -> float:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk failed or saw errors:\n{out}")
    return float(match.group(1))


def main() -> None:
    quick = "--quick" in sys.argv
    for program in ("nginx", "wrk"):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} is not installed (apt-get install nginx wrk)")
    seconds, connections = (2, 16) if quick else (5, 32)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        ports = [free_port() for _ in range(4)]
        fcgi_front, fcgi_port, http_front, http_port = ports
        try:
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            procs.append(subprocess.Popen([sys.executable, "-c", FASTCGI.format(here=str(HERE), port=fcgi_port)],
                                          **quiet))
            procs.append(subprocess.Popen([sys.executable, str(HERE / "_servers.py"), "stack", str(http_port)],
                                          **quiet))
            conf = nginx_conf(tmp, fcgi_front, fcgi_port, http_front, http_port)
            procs.append(subprocess.Popen(["nginx", "-p", str(tmp), "-e", str(tmp / "error.log"),
                                           "-c", str(conf)], **quiet))
            for port in ports:
                wait_for(port)
            wrk(fcgi_front, 1, connections)  # warm-up
            wrk(http_front, 1, connections)
            fcgi_rate = wrk(fcgi_front, seconds, connections)
            http_rate = wrk(http_front, seconds, connections)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
    print(table(f"nginx front, hello app, wrk -c{connections} -d{seconds}s (req/s)",
                ["path", "req/s", "vs HTTP"],
                [["nginx -> FastCGI -> stack.gateways.fastcgi", fcgi_rate, f"{fcgi_rate / http_rate:.2f}x"],
                 ["nginx -> proxy_pass -> stack.server (HTTP)", http_rate, "1.00x"]]))


if __name__ == "__main__":
    main()
