"""The app every gateway test serves (importable as ``gateway_apps``; PasteDeploy: ``call:gateway_apps:factory``).

Paths (after ``SCRIPT_NAME``):

- ``/hello``: a fixed body with ``Content-Length``;
- ``/echo``: reads the body in pieces, answers its length and SHA-256;
- ``/stream``: :data:`STREAM_CHUNKS` chunks from a generator, no length;
- ``/headers``: repeated ``Set-Cookie`` and ``X-Multi`` headers;
- ``/error``: raises before ``start_response`` (a 500);
- ``/late-error``: raises after the first chunk went out (an abort);
- ``/write``: the legacy ``write()`` callable, then an empty iterable;
- ``/environ...``: a JSON of what the app sees (paths, query, scheme, a header).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterator

HELLO = b"Hello, gateway!\n"
STREAM_CHUNKS = [b"chunk %d " % n + b"x" * 1000 + b"\n" for n in range(8)]
closed: list[str] = []  # paths whose iterable was closed (in-process tests)


class Body:
    """An iterable with close(), to check the gateway closes it exactly once."""

    def __init__(self, chunks: list[bytes], path: str, fail_after: int | None = None) -> None:
        self.chunks, self.path, self.fail_after = chunks, path, fail_after

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_after:
                raise RuntimeError("failed mid-stream")
            yield chunk

    def close(self) -> None:
        closed.append(self.path)


def app(environ: dict[str, Any], start_response: Callable) -> Any:
    path = environ.get("PATH_INFO", "")
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
        return [HELLO]
    if path == "/echo":
        digest, size = hashlib.sha256(), 0
        stream = environ["wsgi.input"]
        while True:
            data = stream.read(65536)
            if not data:
                break
            digest.update(data)
            size += len(data)
        body = json.dumps({"length": size, "sha256": digest.hexdigest()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(STREAM_CHUNKS, path)
    if path == "/headers":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1; Path=/"),
                                  ("Set-Cookie", "b=2; Path=/"), ("X-Multi", "one"),
                                  ("X-Multi", "two"), ("Content-Length", "2")])
        return [b"ok"]
    if path == "/error":
        raise RuntimeError("the app failed on purpose")
    if path == "/late-error":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"first\n", b"second\n"], path, fail_after=1)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"twice\n")
        return []
    if path.startswith("/environ"):
        data = {key: environ.get(key) for key in ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                                                  "REQUEST_METHOD", "HTTP_X_TEST", "CONTENT_TYPE",
                                                  "SERVER_PROTOCOL", "STACK_CONFIG")}
        data["url_scheme"] = environ["wsgi.url_scheme"]
        body = json.dumps(data).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"not found\n"]


def factory(global_conf: dict[str, Any], **local_conf: str) -> Callable:
    """``paste.app_factory`` for ``use = call:gateway_apps:factory``."""
    return app
