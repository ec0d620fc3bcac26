"""Test helpers importable as ``from support import ...`` (conftest puts tests/ on sys.path)."""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REQUIRE_EXTERNAL = os.environ.get("STACK_REQUIRE_EXTERNAL") == "1"


@dataclass
class Result:
    """What an in-process WSGI call produced."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes
    closed: bool = False
    chunks: list[bytes] = field(default_factory=list)

    @property
    def code(self) -> int:
        return int(self.status[:3])

    def header(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return default

    def json(self) -> Any:
        return json.loads(self.body)


def make_environ(path: str = "/", method: str = "GET", body: bytes = b"", **extra: Any) -> dict:
    """A complete PEP 3333 environ for ``method path`` (query after ``?``)."""
    path_info, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path_info, "QUERY_STRING": query,
        "SCRIPT_NAME": "", "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    setup_testing_defaults(environ)
    environ.update(extra)
    return environ


def call(app: Callable, path: str = "/", method: str = "GET", body: bytes = b"",
         validate: bool = True, **extra: Any) -> Result:
    """Call ``app`` once (under wsgiref.validate) and collect the whole response."""
    environ = make_environ(path, method, body, **extra)
    captured: dict[str, Any] = {}
    written: list[bytes] = []

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers
        return written.append

    target = validator(app) if validate else app
    app_iter = target(environ, start_response)
    chunks: list[bytes] = []
    try:
        for chunk in app_iter:
            chunks.append(chunk)
    finally:
        if hasattr(app_iter, "close"):
            app_iter.close()
    chunks = written + chunks
    return Result(captured["status"], captured["headers"], b"".join(chunks), True, chunks)

def echo_app(environ: dict, start_response: Callable) -> list[bytes]:
    """A JSON echo of the request: method, paths, query, headers and body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    data = {
        "method": environ["REQUEST_METHOD"],
        "script_name": environ.get("SCRIPT_NAME", ""),
        "path_info": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "headers": {k[5:].replace("_", "-").title(): v for k, v in environ.items()
                    if k.startswith("HTTP_")},
        "body": body.decode("latin-1"),
    }
    payload = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(payload)))])
    return [payload]

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0,
                  process: subprocess.Popen | None = None) -> None:
    """Block until ``host:port`` accepts a connection, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"process exited with {process.returncode} before listening:\n{out}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on {host}:{port} within {timeout}s")

def http_get(url: str, timeout: float = 10.0, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """GET ``url``; return (status, headers, body) for any status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()

def require_program(name: str) -> str:
    """Path of an outside program, or skip (fail under STACK_REQUIRE_EXTERNAL=1)."""
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        message = f"{name} is not installed"
        if REQUIRE_EXTERNAL:
            pytest.fail(message + " (STACK_REQUIRE_EXTERNAL=1)")
        pytest.skip(message)
    return path


def named_app_factory(global_conf: dict, name: str, **local_conf: str) -> Callable:
    """``use = call:support:named_app_factory`` with ``name = X``: an app answering JSON
    with its name, the SCRIPT_NAME/PATH_INFO split it saw and, when a router set them,
    ``wsgiorg.routing_args`` (as ``args``) and the route name (as ``route``)."""
    def app(environ: dict, start_response: Callable) -> list[bytes]:
        data = {"app": name, "script_name": environ.get("SCRIPT_NAME", ""),
                "path_info": environ.get("PATH_INFO", "")}
        if "wsgiorg.routing_args" in environ:
            data["args"] = environ["wsgiorg.routing_args"]
            data["route"] = environ.get("stack.route_name")
        payload = json.dumps(data).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(payload)))])
        return [payload]
    return app


def named_apps_ini(*names: str) -> str:
    """``[app:NAME]`` sections of :func:`named_app_factory` apps, to append to a test INI."""
    return "".join(f"\n[app:{name}]\nuse = call:support:named_app_factory\nname = {name}\n"
                   for name in names)
