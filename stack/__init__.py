"""stack: a Paste-style WSGI metaframework.

The public API in one place:

- :func:`load` builds an app from a paste-style deployment file;
  :func:`load_server` builds its server runner.
- :func:`pipeline` wraps an app in filters, in the order an INI
  ``pipeline =`` line lists them (outermost first).
- :func:`serve` runs an app on the bundled server.

>>> from functools import partial
>>> app = pipeline(my_app, partial(ErrorCatcher, debug=True), Gzip)
>>> # the same tree as:  [pipeline:main] pipeline = errors gzip my_app
"""
from __future__ import annotations

from typing import Callable

from stack.deploy import load, load_server, setup_logging
from stack.errors import ConfigError, StackError
from stack.server import serve
from stack.types import WSGIApp

__version__ = "0.1.0"


def pipeline(app: WSGIApp, *filters: Callable[[WSGIApp], WSGIApp]) -> WSGIApp:
    """Wrap ``app`` in ``filters``; the first filter ends up outermost.

    Each filter is a callable taking the app it wraps: a middleware class, or
    ``functools.partial(Class, option=value)`` with the same option names as
    the INI file. ``pipeline(app, A, B)`` is ``A(B(app))``, as
    ``pipeline = a b app`` is in INI.
    """
    for make_filter in reversed(filters):
        if not callable(make_filter):
            raise TypeError(f"pipeline filters must be callables taking an app, got {make_filter!r}")
        app = make_filter(app)
    return app


__all__ = [
    "load", "load_server", "setup_logging", "pipeline", "serve",
    "ConfigError", "StackError", "__version__",
]
