"""The front site's own page (mounted at ``/`` by ``config/proxy.ini``)."""
from __future__ import annotations

import html
from typing import Any, Iterable

from stack.types import Environ, StartResponse

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>proxy pair</title></head>
<body><h1>proxy pair</h1>
<p>This page is local. <a href="{root}/remote/">/remote/</a> is a pool of two
backends behind <code>egg:stack#proxy</code>: reload it to see both names.</p>
</body></html>
"""


def home(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """A plain WSGI page linking to the proxied pool."""
    if environ.get("PATH_INFO", "/") not in ("", "/"):
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    root = html.escape(environ.get("SCRIPT_NAME", "").rstrip("/"))
    body = PAGE.format(root=root).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


def home_factory(global_conf: dict[str, Any]) -> Any:
    """``use = call:stack.examples.proxy_pair.front:home_factory``."""
    return home
