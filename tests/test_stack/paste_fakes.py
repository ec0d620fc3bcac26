"""Factories named by the PasteDeploy compatibility configs (``sample_configs/``).

The configs reach them as ``call:test_stack.paste_fakes:NAME`` or through an
explicit ``paste.*_factory = test_stack.paste_fakes:NAME`` key (``tests/`` is
on ``sys.path``, see conftest). Every object a factory builds remembers the
``global_conf`` and ``local_conf`` it was given, and :func:`describe` turns a
built tree into plain data, so a tree built by ``paste.deploy`` and one built
by ``stack.load`` can be compared with ``==``.

Each kind of factory PasteDeploy knows is here: ``paste.app_factory``,
``paste.composite_factory``, ``paste.filter_factory``,
``paste.filter_app_factory``, ``paste.server_factory`` and
``paste.server_runner``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

# ---------------------------------------------------------------- apps


def fixed_page(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """One module-level app: factories return *this* object, so identity is checkable."""
    body = b"fixed page\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def other_page(environ: dict, start_response: Callable) -> Iterable[bytes]:
    body = b"other page\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_fixed_page(global_conf: dict, **local_conf: str) -> Callable:
    """app factory returning the shared :func:`fixed_page` (options ignored)."""
    return fixed_page


def make_other_page(global_conf: dict, **local_conf: str) -> Callable:
    return other_page


class Recorder:
    """An app that keeps what its factory was given and answers with its label."""

    kind = "app"

    def __init__(self, global_conf: dict, local_conf: dict) -> None:
        self.global_conf = dict(global_conf)
        self.local_conf = dict(local_conf)
        self.label = local_conf.get("label", "")

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = f"app {self.label}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]


def make_recorder(global_conf: dict, **local_conf: str) -> Recorder:
    """``paste.app_factory``: a fresh :class:`Recorder` each call."""
    return Recorder(global_conf, local_conf)


# ---------------------------------------------------------------- composite


class Dispatch:
    """Picks a child app by the first path segment; ``""`` is the fallback."""

    kind = "composite"

    def __init__(self, routes: dict, global_conf: dict, local_conf: dict) -> None:
        self.routes = routes
        self.global_conf = dict(global_conf)
        self.local_conf = dict(local_conf)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        first = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
        return self.routes.get(first, self.routes[""])(environ, start_response)


def make_dispatch(loader: Any, global_conf: dict, **local_conf: str) -> Dispatch:
    """``paste.composite_factory``: ``route.SEGMENT = app-name`` keys, ``route. = ...`` fallback.

    Children are built with ``loader.get_app(name, global_conf)``, the way
    real composites (urlmap) do; a ``wrap.SEGMENT = filter-name`` key wraps
    that child with ``loader.get_filter``.
    """
    routes = {}
    for key, value in local_conf.items():
        if key.startswith("route."):
            routes[key[len("route."):]] = loader.get_app(value, global_conf=global_conf)
    for key, value in local_conf.items():
        if key.startswith("wrap."):
            segment = key[len("wrap."):]
            routes[segment] = loader.get_filter(value, global_conf=global_conf)(routes[segment])
    return Dispatch(routes, global_conf, local_conf)


# ---------------------------------------------------------------- filters


class Stamp:
    """A filter that appends its tag to the response body."""

    kind = "filter"

    def __init__(self, app: Callable, global_conf: dict, **local_conf: str) -> None:
        self.app = app
        self.global_conf = dict(global_conf)
        self.local_conf = dict(local_conf)
        self.tag = local_conf.get("tag", "stamp")

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = b"".join(_drain(self.app(environ, _no_length(start_response))))
        return [body + f"[{self.tag}]".encode()]


def make_stamp(global_conf: dict, **local_conf: str) -> Callable[[Callable], Stamp]:
    """``paste.filter_factory``: returns ``app -> Stamp(app, ...)``."""
    def wrap(app: Callable) -> Stamp:
        return Stamp(app, global_conf, **local_conf)
    return wrap


# ``paste.filter_app_factory``: ``Stamp(app, global_conf, **local_conf)`` itself.
stamp_app = Stamp


def _no_length(start_response: Callable) -> Callable:
    def start(status: str, headers: list, exc_info: Any = None) -> Any:
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        return start_response(status, headers, exc_info)
    return start


def _drain(app_iter: Iterable[bytes]) -> Iterable[bytes]:
    try:
        yield from app_iter
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()


# ---------------------------------------------------------------- servers


class FakeServer:
    """What a server factory/runner builds; calling it "serves" by recording the app."""

    kind = "server"

    def __init__(self, protocol: str, global_conf: dict, local_conf: dict) -> None:
        self.protocol = protocol
        self.global_conf = dict(global_conf)
        self.local_conf = dict(local_conf)
        self.served: list = []

    def __call__(self, app: Callable) -> "FakeServer":
        self.served.append(app)
        return self


def make_server(global_conf: dict, **local_conf: str) -> FakeServer:
    """``paste.server_factory``: returns ``serve(app)``."""
    return FakeServer("server_factory", global_conf, local_conf)


def run_server(app: Callable, global_conf: dict, **local_conf: str) -> FakeServer:
    """``paste.server_runner``: "serves" ``app`` at once and returns the record."""
    return FakeServer("server_runner", global_conf, local_conf)(app)


# ---------------------------------------------------------------- describe


def describe(obj: Any) -> Any:
    """A built object as plain, comparable data (recursing into wrapped apps)."""
    if obj is fixed_page or obj is other_page:
        return {"kind": "function", "name": obj.__name__}
    kind = getattr(obj, "kind", None)
    if kind is None:  # something from another library (PasteDeploy's PrefixMiddleware)
        data = {"kind": "foreign", "type": f"{type(obj).__module__}.{type(obj).__qualname__}"}
        data.update({k: v for k, v in vars(obj).items() if k != "app" and not callable(v)})
        if hasattr(obj, "app"):
            data["app"] = describe(obj.app)
        return data
    data = {"kind": kind, "type": type(obj).__name__, "global_conf": obj.global_conf,
            "local_conf": obj.local_conf}
    if isinstance(obj, Stamp):
        data["app"] = describe(obj.app)
    elif isinstance(obj, Dispatch):
        data["routes"] = {k: describe(v) for k, v in sorted(obj.routes.items())}
    elif isinstance(obj, FakeServer):
        data["protocol"] = obj.protocol
        data["served"] = [describe(app) for app in obj.served]
    return data


def chain(obj: Any) -> list[str]:
    """Outermost first: the tags of the filters around an app, then the app's name."""
    names = []
    while hasattr(obj, "app"):
        names.append(getattr(obj, "tag", type(obj).__name__))
        obj = obj.app
    names.append(describe(obj).get("name") or getattr(obj, "label", "") or type(obj).__name__)
    return names
