"""Error catching and access logging on requests that do not fail.

Rows: the bare app, stack's ErrorCatcher, Paste's ErrorMiddleware (the
anchor), and stack's AccessLog twice: with its logger dropping INFO records,
and with a handler formatting every line into a NullHandler-like sink. Each
is timed for a list body (``[b"ok"]``) and a generator body (two chunks).
One "request" = call the app, iterate the body, close it, as a server does.
``added`` is the time over the bare app; the ratio column compares it with
Paste's added time (the target for ErrorCatcher is <= 0.33).

    python benchmarks/bench_errors.py [--quick]
"""
from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import ns_per_call, table  # noqa: E402

from stack.middleware.access_log import AccessLog  # noqa: E402
from stack.middleware.error_catcher import ErrorCatcher  # noqa: E402

HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "4")]
ENVIRON = {
    "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/bench", "QUERY_STRING": "a=1",
    "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "example.com", "HTTP_USER_AGENT": "bench/1.0",
    "HTTP_REFERER": "http://example.com/", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
}


def list_app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [b"okok"]


def generator_app(environ, start_response):
    start_response("200 OK", HEADERS)
    return _chunks()


def _chunks():
    yield b"ok"
    yield b"ok"


def start_response(status, headers, exc_info=None):
    return None


def request(app):
    def one() -> None:
        body = app(ENVIRON.copy(), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return one


class Sink(logging.Handler):
    """Formats every record (as a real handler would) and drops the text."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def paste_error_middleware(app):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from paste.exceptions.errormiddleware import ErrorMiddleware
    except ImportError:
        return None
    return ErrorMiddleware(app, {}, debug=False)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    min_time, repeat = (0.05, 3) if quick else (0.2, 7)
    quiet = logging.getLogger("bench.access.quiet")
    quiet.setLevel(logging.WARNING)
    quiet.propagate = False
    loud = logging.getLogger("bench.access.loud")
    loud.setLevel(logging.INFO)
    loud.propagate = False
    loud.addHandler(Sink())
    wrappers = {
        "bare app": lambda app: app,
        "stack ErrorCatcher": ErrorCatcher,
        "paste ErrorMiddleware": paste_error_middleware,
        "stack AccessLog (dropped)": lambda app: AccessLog(app, logger=quiet.name),
        "stack AccessLog (logged)": lambda app: AccessLog(app, logger=loud.name),
    }
    rows = []
    results: dict[tuple[str, str], float] = {}
    for body, app in (("list", list_app), ("generator", generator_app)):
        for name, wrap in wrappers.items():
            wrapped = wrap(app)
            if wrapped is None:
                print(f"{name}: not installed (pip install -e .[bench])")
                continue
            results[name, body] = ns_per_call(request(wrapped), min_time=min_time, repeat=repeat)
        bare = results["bare app", body]
        paste = results.get(("paste ErrorMiddleware", body))
        paste_added = paste - bare if paste is not None else None
        for name in wrappers:
            if (name, body) not in results:
                continue
            ns = results[name, body]
            ratio = f"{(ns - bare) / paste_added:.2f}" if paste_added and name != "bare app" else "-"
            rows.append((body, name, ns, ns - bare, ratio))
    print(table("ns per request (best of runs); added = over the bare app; "
                "vs paste = added / Paste's added",
                ("body", "middleware", "ns", "added", "vs paste"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
