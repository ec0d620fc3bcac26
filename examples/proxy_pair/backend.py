"""The backend of the proxy pair: a plain WSGI app that says who it is.

Run two of them (``config/proxy-backends.ini``)::

    stack serve config/proxy-backends.ini --port 9001            # a
    stack serve config/proxy-backends.ini --app b --port 9002

Python::

    from stack.examples.proxy_pair.backend import Backend
    app = Backend("a")

Paths: ``/healthz``; ``/download?size=N`` streams N bytes (no
``Content-Length``); ``/upload`` hashes the request body as it arrives;
``/redirect`` answers 302 to ``/echo`` under its own URL; ``/cookie`` sets a
cookie with its own path; anything else echoes the request as JSON.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qs
from wsgiref.util import application_uri

from stack.types import Environ, StartResponse

BLOCK = 65536
JSON = ("Content-Type", "application/json")


def pattern(size: int) -> Iterator[bytes]:
    """``size`` deterministic bytes in blocks of 64 KiB (what ``/download`` sends)."""
    block = bytes(range(256)) * (BLOCK // 256)
    while size > 0:
        yield block[:size]
        size -= BLOCK


class Backend:
    """One backend, named ``name`` (the name comes back in every JSON answer)."""

    def __init__(self, name: str = "backend") -> None:
        self.name = name

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        if path == "/download":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return pattern(int(query.get("size", ["0"])[0]))
        if path == "/redirect":
            location = application_uri(environ).rstrip("/") + "/echo"
            start_response("302 Found", [("Location", location), ("Content-Type", "text/plain"),
                                         ("Content-Length", "0")])
            return []
        if path == "/cookie":
            cookie_path = environ.get("SCRIPT_NAME", "") or "/"
            return self._json(start_response, {"backend": self.name},
                              [("Set-Cookie", f"seen={self.name}; Path={cookie_path}; HttpOnly")])
        return self._json(start_response, self._echo(environ, path))

    def _echo(self, environ: Environ, path: str) -> dict[str, Any]:
        digest, size = hashlib.sha256(), 0
        stream, length = environ["wsgi.input"], environ.get("CONTENT_LENGTH")
        # Without a Content-Length, read to the end only if the server says it ends.
        left = int(length) if length else (-1 if environ.get("wsgi.input_terminated") else 0)
        while left:
            chunk = stream.read(BLOCK if left < 0 else min(left, BLOCK))
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            left = left - len(chunk) if left > 0 else left
        return {
            "backend": self.name, "method": environ["REQUEST_METHOD"], "path": path,
            "script_name": environ.get("SCRIPT_NAME", ""), "query": environ.get("QUERY_STRING", ""),
            "headers": {key[5:].replace("_", "-").title(): value
                        for key, value in environ.items() if key.startswith("HTTP_")},
            "body_size": size, "body_sha256": digest.hexdigest(),
        }

    def _json(self, start_response: StartResponse, data: dict[str, Any],
              extra: list[tuple[str, str]] = ()) -> list[bytes]:  # type: ignore[assignment]
        body = json.dumps(data).encode()
        start_response("200 OK", [JSON, ("Content-Length", str(len(body))), *extra])
        return [body]


def app_factory(global_conf: dict[str, Any], name: str = "backend") -> Backend:
    """``use = call:stack.examples.proxy_pair.backend:app_factory`` with ``name = a``."""
    return Backend(name)
