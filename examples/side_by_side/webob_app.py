"""The plain WebOb app of the side-by-side example (mounted at the root)."""
from __future__ import annotations

from typing import Any

from webob import Request, Response, exc
from webob.dec import wsgify

FRAMEWORKS = ("flask", "django", "bottle", "pyramid")


@wsgify
def app(request: Request) -> Response:
    if request.path_info == "/" and request.method in ("GET", "HEAD"):
        base = request.application_url
        links = "".join(f'<li><a href="{base}/{name}/">{name}</a></li>' for name in FRAMEWORKS)
        return Response(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>side by side</title><link rel='stylesheet' href='" + base + "/static/site.css'>"
            f"</head><body><h1>WebOb here</h1><ul>{links}</ul>"
            f"<p>form at {base}/form</p></body></html>",
            content_type="text/html", charset="utf-8")
    if request.path_info == "/form" and request.method == "POST":
        return Response(f"WebOb got name={request.POST.get('name', '')}\n", content_type="text/plain")
    if request.path_info == "/go":
        return exc.HTTPFound(location=request.application_url + "/")
    return Response("WebOb says: no such page\n", status=404, content_type="text/plain")


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> Any:
    return app
