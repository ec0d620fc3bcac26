"""The demo site's apps (``config/demo.ini``): one plain WSGI, one WebOb.

Both are mounted side by side by the demo's mount table, and each builds
its links from ``SCRIPT_NAME``, so each works wherever it is mounted.

Python, without an INI file::

    from stack.middleware.mount import Mount
    from stack.examples.demo import home, hello
    app = Mount({"/": home, "/webob": hello})
"""
from __future__ import annotations

import html
from typing import Any, Iterable

from webob import Request, Response
from webob.dec import wsgify

from stack.types import Environ, StartResponse

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def home(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """A plain WSGI app: the demo's front page, linking to the other apps."""
    if environ.get("PATH_INFO", "/") not in ("", "/"):
        body = PAGE.format(title="Not found", body="<p>No such page.</p>").encode()
        start_response("404 Not Found", [("Content-Type", "text/html; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]
    root = html.escape(environ.get("SCRIPT_NAME", "").rstrip("/"))
    body = PAGE.format(title="stack demo", body=(
        "<p>One process, one deployment file, several apps side by side.</p><ul>"
        f'<li><a href="{root}/webob/">a WebOb app</a> mounted at /webob</li>'
        f'<li><a href="{root}/flask/">a Flask app</a> mounted at /flask</li>'
        f'<li><a href="{root}/catalogue/">an XML catalogue themed by XSLT</a></li>'
        f'<li><a href="{root}/boom">a page that raises</a>, caught by the error catcher</li>'
        "</ul>")).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


@wsgify
def hello(request: Request) -> Response:
    """A WebOb app: greets, and shows how the request reached it."""
    name = request.GET.get("name", "world")
    text = (f"Hello from WebOb, {name}!\n"
            f"SCRIPT_NAME={request.script_name!r} PATH_INFO={request.path_info!r}\n"
            f"my URL is {request.application_url}/\n")
    return Response(text, content_type="text/plain", charset="utf-8")


def boom(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Fails on purpose, to show the error catcher's page."""
    detail = "a local variable the debug page shows"  # noqa: F841
    raise RuntimeError("boom: this route fails on purpose")


def home_factory(global_conf: dict[str, Any], **local_conf: str) -> Any:
    """``use = call:stack.examples.demo:home_factory``"""
    return home


def hello_factory(global_conf: dict[str, Any], **local_conf: str) -> Any:
    """``use = call:stack.examples.demo:hello_factory``"""
    return hello


def boom_factory(global_conf: dict[str, Any], **local_conf: str) -> Any:
    """``use = call:stack.examples.demo:boom_factory``"""
    return boom
