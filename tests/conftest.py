"""Shared fixtures: apps under wsgiref.validate, live servers, subprocesses.

Every in-process call goes through :func:`wsgiref.validate.validator` (so
every test is also a PEP 3333 check); every server or process a test starts
is stopped, and every wait is bounded. Plain helpers live in ``support.py``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import ROOT, Result, call, echo_app, wait_for_port  # noqa: E402


@pytest.fixture
def wsgi_call() -> Callable[..., Result]:
    """``wsgi_call(app, "/path?q=1", method="POST", body=b"...")`` -> Result."""
    return call


@pytest.fixture
def echo() -> Callable:
    return echo_app


@pytest.fixture
def live_server() -> Iterator[Callable[[Callable], str]]:
    """``url = live_server(app, **server_options)``: the app on the bundled server.

    The server listens on a free 127.0.0.1 port.

    Every server started is shut down at the end of the test.
    """
    from stack.server import make_server

    started = []

    def start(app: Callable, **options) -> str:
        server = make_server(app, host="127.0.0.1", port=0, **options)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server.url

    yield start
    for server, thread in started:
        server.shutdown()
        thread.join(timeout=10)
        server.close()


@pytest.fixture
def run_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """``proc = run_process([...], port=P)``: start a process, wait for it to listen.

    Output goes to a file under ``tmp_path`` (no pipe to fill up); every
    process is terminated (then killed) at the end of the test.
    """
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], port: int | None = None, timeout: float = 20.0,
              cwd: Path | str | None = None, env: dict | None = None) -> subprocess.Popen:
        log = open(tmp_path / f"proc{len(procs)}.log", "w+")
        proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd or ROOT,
                                env={**os.environ, **(env or {})}, text=True)
        proc.stdout = log  # type: ignore[assignment]  # read back by wait_for_port on failure
        procs.append(proc)
        if port is not None:
            try:
                wait_for_port(port, timeout=timeout, process=proc)
            except AssertionError:
                log.seek(0)
                raise AssertionError(f"{cmd} did not listen on {port}:\n{log.read()}") from None
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]

