"""Tiny timing helpers shared by the benchmark scripts.

Every script times stack and its anchors in the same run and prints ratios:
the machine is shared and noisy, so only ratios measured together mean much.
"""
from __future__ import annotations

import gc
import time
from typing import Callable, Sequence


def ns_per_call(fn: Callable[[], object], *, min_time: float = 0.2, repeat: int = 5) -> float:
    """Best-of-``repeat`` nanoseconds per call of ``fn`` (each run >= ``min_time`` s)."""
    number = 1
    while True:  # find a loop count that runs for at least min_time
        start = time.perf_counter_ns()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter_ns() - start
        if elapsed >= min_time * 1e9:
            break
        number *= 2 if elapsed == 0 else max(2, min(10, int(min_time * 1e9 / elapsed) + 1))
    best = elapsed / number
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat - 1):
            start = time.perf_counter_ns()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter_ns() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: a title line, a header row, and aligned rows."""
    cells = [[str(c) for c in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells[1:]]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


# -- a tiny app and request for dispatch benchmarks (mount, router) ------------------------

BODY = [b"ok"]
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "2")]


def bare_app(environ: dict, start_response: Callable) -> list[bytes]:
    """The app every dispatcher routes to: its own cost is the floor."""
    start_response("200 OK", HEADERS)
    return BODY


def start_response(status: str, headers: list, exc_info: object = None) -> None:
    return None


def environ_for(path: str) -> dict:
    """A minimal GET environ for ``path`` (copy it per request: apps change it)."""
    return {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path,
        "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "HTTP_HOST": "www.example.com", "wsgi.url_scheme": "http",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
