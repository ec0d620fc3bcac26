"""mod_python: the pipeline of a deployment file inside Apache, through ``mod_python.wsgi``.

mod_python's own WSGI handler (``PythonHandler mod_python.wsgi``) is enough:
it builds the environ (``SCRIPT_NAME`` from the ``<Location>``), streams the
body and calls ``close()``. It needs a module-level WSGI callable, which is
:data:`application` here: it loads the file named by ``SetEnv STACK_CONFIG``
(and the app named by ``STACK_APP``, default ``main``) once per Apache
process, and serves it.

Apache (``libapache2-mod-python``; the virtualenv's python must be the
version mod_python was built for)::

    <Location /app>
        SetHandler mod_python
        PythonHandler mod_python.wsgi
        PythonOption mod_python.wsgi.application stack.gateways.modpython::application
        PythonPath "['/srv/venv/lib/python3.11/site-packages'] + sys.path"
        SetEnv STACK_CONFIG /srv/site.ini
    </Location>

The apps run inside Apache's processes: Apache's MPM decides the
processes and threads, and a reload is an Apache graceful restart.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable

from stack.types import StartResponse, WSGIApp

_apps: dict[tuple[str, str], WSGIApp] = {}
_lock = threading.Lock()


def load(config: str, name: str = "main") -> WSGIApp:
    """The app of ``config`` (loaded once per process and cached)."""
    key = (config, name)
    app = _apps.get(key)
    if app is None:
        with _lock:
            app = _apps.get(key)
            if app is None:
                import stack

                app = _apps[key] = stack.load(config, name)
    return app


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI callable for ``mod_python.wsgi``: serves ``$STACK_CONFIG``'s app."""
    config = environ.get("STACK_CONFIG")
    if not config:
        body = b"STACK_CONFIG is not set (SetEnv STACK_CONFIG /path/site.ini)\n"
        start_response("500 Internal Server Error", [("Content-Type", "text/plain"),
                                                    ("Content-Length", str(len(body)))])
        environ["wsgi.errors"].write(body.decode())
        return [body]
    return load(config, environ.get("STACK_APP") or "main")(environ, start_response)


__all__ = ["application", "load"]
