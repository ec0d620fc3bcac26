"""The benchmark app and one runner per server, for ``bench_server.py``.

``app`` answers three paths, the same under every server:

- ``/``: hello world with ``Content-Length`` (13 bytes);
- ``/stream``: 4 MiB in 64 KiB chunks from a generator, no ``Content-Length``
  (chunked on HTTP/1.1);
- ``/file``: the file named by ``$BENCH_FILE`` through ``wsgi.file_wrapper``
  (with ``Content-Length``; a plain read loop where a server has no wrapper).

Run one server in the foreground (``bench_server.py`` does this in a child
process pinned to a core)::

    python benchmarks/_servers.py NAME PORT

NAME is one of :data:`RUNNERS` (gunicorn is started by its own command line,
see :func:`command`). Every server listens on 127.0.0.1 only.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

HOST = "127.0.0.1"
HELLO = b"Hello, World!"
CHUNK_SIZE = 64 * 1024
STREAM_SIZE = 4 * 1024 * 1024
_CHUNK = b"x" * CHUNK_SIZE
_HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]


def _stream() -> Iterator[bytes]:
    for _ in range(STREAM_SIZE // CHUNK_SIZE):
        yield _CHUNK


def _read_blocks(file: Any, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    try:
        while True:
            data = file.read(size)
            if not data:
                return
            yield data
    finally:
        file.close()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    path = environ.get("PATH_INFO", "/")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _stream()
    if path == "/file":
        name = os.environ["BENCH_FILE"]
        file = open(name, "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(os.path.getsize(name)))])
        wrapper = environ.get("wsgi.file_wrapper")
        return wrapper(file, CHUNK_SIZE) if wrapper is not None else _read_blocks(file)
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


# -- runners (each blocks serving ``app`` until the process is signalled) --------

def run_stack(port: int) -> None:
    from stack.server import serve

    serve(app, host=HOST, port=port)  # the server's defaults (threads=8)


def run_waitress(port: int) -> None:
    import waitress

    waitress.serve(app, host=HOST, port=port, _quiet=True)  # defaults: threads=4


def run_cheroot(port: int) -> None:
    import signal

    from cheroot import wsgi

    server = wsgi.Server((HOST, port), app)  # defaults: numthreads=10

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.start()
    finally:
        server.stop()


def run_bjoern(port: int) -> None:
    import bjoern

    bjoern.run(app, HOST, port)


RUNNERS: dict[str, Callable[[int], None]] = {
    "stack": run_stack, "waitress": run_waitress, "cheroot": run_cheroot, "bjoern": run_bjoern,
}

# gunicorn: its own command line (a master and one worker).
GUNICORN = {
    "gunicorn-sync": ["-k", "sync", "-w", "1"],
    "gunicorn-gthread": ["-k", "gthread", "-w", "1", "--threads", "4"],
}


def command(name: str, port: int) -> list[str]:
    """The argv that serves ``app`` with server ``name`` on ``port``."""
    here = str(Path(__file__).resolve().parent)
    if name in GUNICORN:
        return [sys.executable, "-m", "gunicorn", *GUNICORN[name], "-b", f"{HOST}:{port}",
                "--pythonpath", here, "--graceful-timeout", "2", "--log-level", "warning",
                "_servers:app"]
    if name not in RUNNERS:
        raise ValueError(f"unknown server {name!r}")
    return [sys.executable, str(Path(__file__).resolve()), name, str(port)]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    RUNNERS[sys.argv[1]](int(sys.argv[2]))
