"""The Pyramid app of the side-by-side example."""
from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound
from pyramid.response import Response


def index(request: Any) -> Response:
    return Response(f"Pyramid here. form at {request.route_url('form')}\n", content_type="text/plain")


def form(request: Any) -> Response:
    return Response(f"Pyramid got name={request.POST.get('name', '')}\n", content_type="text/plain")


def go(request: Any) -> HTTPFound:
    return HTTPFound(location=request.route_url("index"))


def not_found(request: Any) -> Response:
    return Response("Pyramid says: no such page\n", status=404, content_type="text/plain")


def make_app() -> Any:
    with Configurator() as config:
        config.add_route("index", "/")
        config.add_route("form", "/form")
        config.add_route("go", "/go")
        config.add_view(index, route_name="index", request_method="GET")
        config.add_view(form, route_name="form", request_method="POST")
        config.add_view(go, route_name="go")
        config.add_notfound_view(not_found)
        return config.make_wsgi_app()


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> Any:
    return make_app()
