"""stack.wsgi interception overhead per request vs WebOb's Request.get_response.

Each contender is a do-nothing response-intercepting middleware around the
same tiny app: it learns the status and headers, sends them on (adding one
header), and streams the body. Printed: ns per request (call, iterate,
close; the bare app call included) and the ratio to WebOb measured in the
same run.

    python benchmarks/bench_wsgi.py
"""
from __future__ import annotations

import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import ns_per_call, table  # noqa: E402
from webob import Request  # noqa: E402

from stack.wsgi import ClosingIterator, call_app, set_header  # noqa: E402

BODY = b"x" * 200


def list_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "200")])
    return [BODY]


def generator_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield BODY[:100]
    yield BODY[100:]


def write_app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(BODY)
    return []


def stack_middleware(app):
    def middleware(environ, start_response):
        response = call_app(app, environ)
        response.start(start_response, headers=set_header(response.headers, "X-Seen", "1"))
        return ClosingIterator(response)
    return middleware


def webob_middleware(app):
    def middleware(environ, start_response):
        response = Request(environ).get_response(app)
        response.headers["X-Seen"] = "1"
        return response(environ, start_response)
    return middleware


def handwritten_middleware(app):
    """The floor: a closure start_response, no write(), no late-start support."""
    def middleware(environ, start_response):
        def intercept(status, headers, exc_info=None):
            return start_response(status, headers + [("X-Seen", "1")], exc_info)
        return app(environ, intercept)
    return middleware


def environ():
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}


def request(app):
    env = environ()

    def start_response(status, headers, exc_info=None):
        return lambda data: None

    body = app(env, start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def main() -> None:
    rows = []
    for name, app in [("list body", list_app), ("generator body", generator_app),
                      ("write() body", write_app)]:
        bare = ns_per_call(lambda: request(app))
        ours = ns_per_call(lambda m=stack_middleware(app): request(m))
        webob = ns_per_call(lambda m=webob_middleware(app): request(m))
        hand = ns_per_call(lambda m=handwritten_middleware(app): request(m))
        rows.append((name, bare, hand, ours, webob, webob / ours))
    print(table("stack.wsgi interception, ns per request (lower is better)",
                ["app", "bare app", "handwritten", "stack.wsgi", "WebOb", "WebOb/stack"], rows))
    worst = min(row[-1] for row in rows)
    print(f"\nstack.wsgi is {worst:.1f}x faster than WebOb's get_response at worst")


if __name__ == "__main__":
    main()
