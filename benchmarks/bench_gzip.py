"""Gzip throughput and memory: stack's Gzip vs paste.gzipper vs raw zlib.

Run: ``python benchmarks/bench_gzip.py`` (``--quick`` for a short run).

All three compress the same bytes at the same level. Raw
``zlib.compressobj(level)`` over the bytes is the physical limit (also shown
with gzip framing, ``wbits=31``, whose CRC-32 both middlewares pay); each
middleware runs a whole WSGI request (``Accept-Encoding: gzip``) and its
body is read to the end. Two shapes: a 100 KB HTML page handed over as a
list, and a 50 MB stream in 64 KB chunks from a generator. Peak RSS growth
for the stream is measured in a fresh subprocess per contender (the peak
resident set, ``VmHWM``, before and after the request; the chunks are made
before the first reading), with the tracemalloc peak (another subprocess)
beside it.
"""
from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import ns_per_call, table  # noqa: E402

from stack.middleware.gzip import Gzip  # noqa: E402

LEVEL = 6
PAGE_SIZE = 100 * 1024
CHUNK = 64 * 1024
STREAM_SIZE = 50 * 1024 * 1024
WORDS = ("stack", "paste", "wsgi", "middleware", "gzip", "request", "response", "header",
         "deploy", "server", "filter", "pipeline", "router", "mount", "static", "proxy")


def html(size: int, seed: int) -> bytes:
    """A deterministic HTML page of ``size`` bytes: table rows of varied text and numbers."""
    rng = random.Random(seed)
    rows = ["<!doctype html><html><head><title>bench</title></head><body><table>"]
    total = len(rows[0])
    while total < size:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        row = (f'<tr class="r{rng.randint(0, 9)}"><td>{rng.randint(0, 10**9)}</td>'
               f'<td><a href="/item/{rng.randint(0, 10**6)}">{text}</a></td>'
               f'<td>{rng.random():.6f}</td></tr>\n')
        rows.append(row)
        total += len(row)
    return "".join(rows).encode()[:size]


def stream_chunks() -> list[bytes]:
    """Sixteen distinct 64 KB chunks, cycled to make the stream."""
    return [html(CHUNK, seed) for seed in range(16)]


def page_app(page: bytes) -> Callable:
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))]

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        start_response("200 OK", list(headers))
        return [page]
    return app


def stream_app(chunks: list[bytes], total: int) -> Callable:
    def body() -> Iterator[bytes]:
        for index in range(total // CHUNK):
            yield chunks[index % len(chunks)]

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return body()
    return app


def run_request(app: Callable) -> int:
    """One request through ``app``: the compressed size (body read to the end, closed)."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_ACCEPT_ENCODING": "gzip"}
    captured = []
    body = app(environ, lambda status, headers, exc_info=None: captured.append(headers))
    try:
        return sum(len(chunk) for chunk in body)
    finally:
        if hasattr(body, "close"):
            body.close()


def raw_zlib(pieces: Callable[[], Iterable[bytes]], wbits: int = zlib.MAX_WBITS) -> int:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, wbits)
    size = sum(len(compressor.compress(piece)) for piece in pieces())
    return size + len(compressor.flush())


def contenders(app: Callable, pieces: Callable[[], Iterable[bytes]]) -> dict[str, Callable[[], int]]:
    from paste.gzipper import stack.middleware as paste_gzipper
    return {
        "raw zlib.compressobj": lambda: raw_zlib(pieces),
        "raw zlib, gzip framing": lambda: raw_zlib(pieces, 31),
        "stack Gzip": lambda: run_request(Gzip(app, level=LEVEL)),
        "paste.gzipper": lambda: run_request(paste_gzipper(app, compress_level=LEVEL)),
    }


def throughput(title: str, size: int, app: Callable, pieces: Callable[[], Iterable[bytes]],
               rounds: int, min_time: float) -> str:
    """MB/s of each contender; rounds interleave them, so load on the machine hits all alike."""
    fns = contenders(app, pieces)
    out = {name: fn() for name, fn in fns.items()}  # warm up; compressed sizes
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], ns_per_call(fn, min_time=min_time, repeat=1))
    base = size / (best["raw zlib.compressobj"] / 1e9) / 1e6
    rows = []
    for name, ns in best.items():
        mb_s = size / (ns / 1e9) / 1e6
        rows.append((name, mb_s, f"{mb_s / base:.2f}x", f"{size / out[name]:.2f}", f"{ns / 1e3:,.0f}"))
    return table(title, ["contender", "MB/s", "vs zlib", "ratio in/out", "us/request"], rows)


def peak_rss_kb() -> int:
    """This process's peak resident set in KB.

    ``VmHWM`` where Linux has it: ``getrusage``'s ``ru_maxrss`` survives
    ``exec`` on Linux, so a child would start with its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_memory(name: str, total: int, trace: bool) -> dict:
    """In this (fresh) process: stream ``total`` bytes through ``name``; memory growth."""
    import tracemalloc
    chunks = stream_chunks()
    app = stream_app(chunks, total)
    fn = contenders(app, lambda: (chunks[i % len(chunks)] for i in range(total // CHUNK)))[name]
    if trace:
        tracemalloc.start()
    before = peak_rss_kb()
    out = fn()
    after = peak_rss_kb()
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    return {"rss_kb": after - before, "traced": peak, "out": out}


def memory_table(total: int) -> str:
    rows = []
    for name in ("raw zlib.compressobj", "stack Gzip", "paste.gzipper"):  # framing: same memory
        result = {}
        for trace in (False, True):
            proc = subprocess.run([sys.executable, __file__, "--memory", name, str(total),
                                   "trace" if trace else "rss"],
                                  capture_output=True, text=True, check=True)
            result[trace] = json.loads(proc.stdout)
        rows.append((name, result[False]["rss_kb"] / 1024, result[True]["traced"] / 2**20))
    return table(f"stream of {total // 2**20} MB in 64 KB chunks: memory growth (MB)",
                 ["contender", "peak RSS growth", "tracemalloc peak"], rows)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--memory"]:
        print(json.dumps(measure_memory(argv[1], int(argv[2]), argv[3] == "trace")))
        return 0
    quick = "--quick" in argv
    stream_size = STREAM_SIZE // 10 if quick else STREAM_SIZE
    page = html(PAGE_SIZE, 0)
    print(throughput(f"100 KB HTML page, level {LEVEL}", len(page), page_app(page),
                     lambda: (page,), rounds=3 if quick else 7, min_time=0.1 if quick else 0.2))
    print()
    chunks = stream_chunks()
    pieces = lambda: (chunks[i % len(chunks)] for i in range(stream_size // CHUNK))  # noqa: E731
    print(throughput(f"{stream_size // 2**20} MB stream in 64 KB chunks, level {LEVEL}",
                     stream_size, stream_app(chunks, stream_size), pieces,
                     rounds=2 if quick else 3, min_time=0.0))
    print()
    print(memory_table(stream_size))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
