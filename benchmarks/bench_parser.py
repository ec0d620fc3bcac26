"""Request-head parsing: stack's parser vs h11 vs httptools (llhttp), in one run.

Each contender turns the same raw request head into what the server needs
(method, target, version, header list) — for httptools that means Python
callbacks collecting the fields, as a server using it must. Printed: µs per
head and the ratio to stack.

    python benchmarks/bench_parser.py
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import ns_per_call, table  # noqa: E402

from stack.server.parser import find_head_end, parse_head  # noqa: E402

BROWSER = (
    b"GET /articles/2024/stack-metaframework?utm_source=feed&page=2 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-GB,en;q=0.7,fr;q=0.3\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Referer: https://www.example.com/articles/\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark; consent=yes\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Priority: u=0, i\r\n"
    b"\r\n"
)
MINIMAL = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def stack_parse(data: bytes) -> object:
    end = find_head_end(data)
    return parse_head(data[:end])


def h11_parse(data: bytes) -> object:
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    return conn.next_event()


class _Collect:
    __slots__ = ("url", "headers", "done")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.done = True


def httptools_parse(data: bytes) -> object:
    import httptools

    collect = _Collect()
    parser = httptools.HttpRequestParser(collect)
    parser.feed_data(data)
    return parser.get_method(), collect.url, parser.get_http_version(), collect.headers


def main() -> None:
    contenders = [("stack", stack_parse), ("h11", h11_parse), ("httptools", httptools_parse)]
    rows = []
    for label, data in (("browser head (14 fields)", BROWSER), ("minimal head", MINIMAL)):
        timings = {}
        for name, parse in contenders:
            try:
                parse(data)
            except ImportError:
                continue
            timings[name] = ns_per_call(lambda p=parse, d=data: p(d)) / 1000
        ours = timings["stack"]
        rows.append((label, *(timings.get(n, float("nan")) for n, _ in contenders),
                     *(f"{timings[n] / ours:.2f}x" if n in timings else "-" for n, _ in contenders[1:])))
    print(table("request head parsing, µs per head (lower is better); ratio = other / stack",
                ["request", "stack", "h11", "httptools", "h11/stack", "httptools/stack"], rows))


if __name__ == "__main__":
    main()
