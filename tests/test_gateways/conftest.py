"""Fixtures for the gateway tests: a gateway server in a thread, a raw socket to it."""
from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator
from wsgiref.validate import validator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_apps  # noqa: E402


@pytest.fixture
def serve_gateway() -> Iterator[Callable[..., Any]]:
    """``server = serve_gateway(module, app=None, **options)``: running on a free port, stopped after.

    The app (default :func:`gateway_apps.app`) runs under ``wsgiref.validate``.
    """
    started = []

    def start(module: Any, app: Any = None, **options: Any) -> Any:
        options.setdefault("threads", 2)
        server = module.make_server(validator(app or gateway_apps.app), host="127.0.0.1", port=0,
                                    **options)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        thread.join(timeout=10)
        server.close()


@pytest.fixture
def connect() -> Iterator[Callable[[Any], socket.socket]]:
    """``sock = connect(server)``: a client socket (5 s timeout), closed after the test."""
    socks: list[socket.socket] = []

    def open_(server: Any) -> socket.socket:
        sock = socket.create_connection(server.server_address[:2], timeout=5)
        socks.append(sock)
        return sock

    yield open_
    for sock in socks:
        sock.close()

