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
