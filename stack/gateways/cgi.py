"""CGI (entry point ``egg:stack#cgi``): serve one request from the CGI environment.

The web server starts a process per request with the request in
``os.environ`` and the body on stdin; the response goes to stdout as a
CGI-style head (``Status:``, headers, a blank line) and the body, flushed
chunk by chunk so streaming stays streaming. Logging goes to stderr (the
web server's error log). Slow (a process and an INI load per request), but
it runs anywhere a web server runs CGI scripts.

The one-line CGI script (mark it executable; use your virtualenv's python)::

    #!/srv/venv/bin/python
    import stack.gateways.cgi; stack.gateways.cgi.run("/srv/site.ini")

Python::

    from stack.gateways.cgi import run
    run(app)                    # or run("/srv/site.ini", name="main")

INI (then ``stack serve site.ini`` is itself a CGI program)::

    [server:main]
    use = egg:stack#cgi
    # script_name = /app   (only if the web server does not split the path)
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from functools import partial
from typing import Any, BinaryIO, Callable, Mapping

from stack.gateways.base import (Exchange, StreamInput, body_length, build_environ, cgi_head,
                                 check_script_name, error_response, sized_body)
from stack.options import as_size, as_str, check_size
from stack.server.parser import ParseError
from stack.server.runner import config_from_ini
from stack.server.task import FileWrapper
from stack.types import WSGIApp

log = logging.getLogger("stack.gateways")


@dataclasses.dataclass(frozen=True)
class CGIConfig:
    """The options of :func:`run` (and of ``egg:stack#cgi``):

    - ``script_name``: the URL prefix to re-split ``SCRIPT_NAME``/``PATH_INFO``
      at (only if the web server does not split the path); empty keeps its split.
    - ``max_request_body_size``: a larger ``CONTENT_LENGTH`` is a 413.
    """

    script_name: str = ""
    max_request_body_size: int = 1024**3

    def __post_init__(self) -> None:
        object.__setattr__(self, "script_name", check_script_name(self.script_name))
        check_size(self.max_request_body_size, "max_request_body_size")


OPTIONS = {"script_name": as_str, "max_request_body_size": as_size}


class Writer:
    """The response onto stdout, flushed after every piece."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def start(self, status: str, headers: list[tuple[str, str]], body: bytes, last: bool) -> None:
        self.out.write(cgi_head(status, headers) + body)
        self.out.flush()

    def send(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()

    def end(self) -> None:
        self.out.flush()


def cgi_environ() -> dict[str, str]:
    """``os.environ`` as PEP 3333 wants it: the raw bytes decoded as latin-1."""
    if hasattr(os, "environb"):
        return {key.decode("latin-1"): value.decode("latin-1") for key, value in os.environb.items()}
    return dict(os.environ)


def _private_stdout() -> BinaryIO:
    """The response's own copy of stdout; fd 1 and ``sys.stdout`` then go to stderr,
    so an app's ``print()`` can never land in the response."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def run(target: str | os.PathLike[str] | WSGIApp, *, name: str | None = None,
        script_name: str = "", max_request_body_size: int = 1024**3,
        environ: Mapping[str, str] | None = None, stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None) -> bool:
    """Serve one CGI request with ``target`` (an app, or a deployment file to load).

    Returns True when the response ended cleanly. A deployment file that
    fails to load is a 500 on stdout and its error on stderr. The options
    are :class:`CGIConfig`'s.
    """
    config = CGIConfig(script_name, max_request_body_size)
    out = stdout or _private_stdout()
    writer = Writer(out)
    if not callable(target):
        try:
            import stack

            target = stack.load(os.fspath(target), name)
        except Exception as exc:
            print(f"stack: cannot load {os.fspath(target)!r}: {exc}", file=sys.stderr, flush=True)
            headers, body = error_response("500 Internal Server Error")
            writer.start("500 Internal Server Error", headers, body, True)
            return False
    params = cgi_environ() if environ is None else dict(environ)
    base = {"wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": True,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": FileWrapper}
    env = build_environ(base, params, script_name=config.script_name)
    exchange = Exchange(writer, env)
    try:
        remaining = body_length(env) or 0
    except ParseError as exc:
        return exchange.fail(exc.status, str(exc), logging.INFO)
    if remaining > config.max_request_body_size:
        return exchange.fail("413 Content Too Large", f"body of {remaining} bytes over the limit",
                             logging.INFO)
    source = stdin or sys.stdin.buffer
    env["wsgi.input"] = StreamInput(sized_body(
        source.read, remaining, "stdin ended {remaining} bytes before CONTENT_LENGTH"))
    return exchange.run(target)


def server_factory(global_conf: dict[str, Any], **local_conf: str) -> Callable[[WSGIApp], bool]:
    """PasteDeploy ``paste.server_factory``: the runner serves the one CGI request.

    Options are checked when the file loads, as for the other servers.
    """
    config = config_from_ini(CGIConfig, local_conf, OPTIONS)
    return partial(run, **dataclasses.asdict(config))


__all__ = ["run", "server_factory", "cgi_environ", "CGIConfig", "OPTIONS"]
