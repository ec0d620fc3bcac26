"""Apps for test_error_pages.py, importable by gunicorn and waitress as ``error_apps:app``.

Paths: ``/ok``; ``/boom`` raises before starting the response;
``/midstream-length`` sends 10 of a promised 100 bytes, then raises;
``/midstream-chunked`` (no Content-Length) sends a chunk, then raises.
``debug=1`` in the query string picks the debug catcher.
"""
from __future__ import annotations

import logging

from stack.middleware.access_log import AccessLog
from stack.middleware.error_catcher import ErrorCatcher

INJECTED = "<script>document.title='pwned';document.body.insertAdjacentHTML('beforeend','<p id=\"pwned\">ran</p>')</script>"

logging.basicConfig(level=logging.INFO)


def inner(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/ok":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    if path == "/boom":
        injected_local = INJECTED  # noqa: F841 - shown (escaped) by the debug page
        raise ValueError("boom " + INJECTED)
    if path == "/midstream-length":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return _midstream()
    if path == "/midstream-chunked":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _midstream()
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


def _midstream():
    yield b"0123456789"
    raise RuntimeError("failed after the headers went out")


production = ErrorCatcher(inner)
debug = ErrorCatcher(inner, debug=True)


def app(environ, start_response):
    chosen = debug if "debug=1" in environ.get("QUERY_STRING", "") else production
    return chosen(environ, start_response)


logged = AccessLog(app)
