"""PasteDeploy factories made from a class and its option table.

A middleware module declares its INI converters once and gets its entry
point from here, so no factory holds logic of its own::

    OPTIONS = {"level": as_int, "min_size": as_size}
    filter_factory = filter_factory_for(Gzip, OPTIONS)
    # pyproject.toml: gzip = "stack.middleware.gzip:filter_factory"

The converters turn INI strings into Python values; the class's
``__init__`` checks them (:mod:`stack.options`), so an INI file and a Python
caller are held to the same rules.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Mapping

from stack.options import Converter, convert_options
from stack.types import Environ, StartResponse, WSGIApp


def _unwrapped(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("this filter was built from a deployment file and not yet given its app")


class DeferredFilter:
    """What a filter factory returns: the middleware, built, waiting for its app.

    The middleware is built when the factory runs -- while PasteDeploy still
    knows which section it came from -- rather than when a pipeline wraps an
    app with it. So a bad option is reported at its own section and line
    (``stack check`` included), and the work ``__init__`` does (a compiled
    stylesheet, a parsed format) is done once per load. Calling it attaches
    the app as ``.app``; a second call gets a shallow copy, so one factory
    result can wrap two apps.
    """

    def __init__(self, cls: type, options: Mapping[str, Any]) -> None:
        self.cls = cls
        self.options = dict(options)
        self.built: Any = cls(_unwrapped, **self.options)
        self._used = False

    def __call__(self, app: WSGIApp) -> Any:
        middleware = copy.copy(self.built) if self._used else self.built
        self._used = True
        middleware.app = app
        return middleware

    def __repr__(self) -> str:
        return f"<filter {self.cls.__name__} waiting for its app>"


def filter_factory_for(cls: type, table: Mapping[str, Converter]
                       ) -> Callable[..., DeferredFilter]:
    """A ``paste.filter_factory`` for ``cls(app, **options)``, options converted by ``table``."""
    def filter_factory(global_conf: dict[str, Any], **local_conf: str) -> DeferredFilter:
        return DeferredFilter(cls, convert_options(local_conf, table))
    filter_factory.__doc__ = f"PasteDeploy ``paste.filter_factory`` building :class:`{cls.__name__}`."
    return filter_factory


def app_factory_for(cls: type, table: Mapping[str, Converter]) -> Callable[..., Any]:
    """A ``paste.app_factory`` for ``cls(**options)``, options converted by ``table``."""
    def app_factory(global_conf: dict[str, Any], **local_conf: str) -> Any:
        return cls(**convert_options(local_conf, table))
    app_factory.__doc__ = f"PasteDeploy ``paste.app_factory`` building :class:`{cls.__name__}`."
    return app_factory


__all__ = ["DeferredFilter", "filter_factory_for", "app_factory_for"]
