"""AccessLog: one line per request, Apache style, through ``logging``.

Put it outermost, outside the error catcher, so it logs the status the
client really got (the catcher's 500, not the app's 200) and the bytes that
really went out. Each line is logged at INFO on ``logger`` when the
response's body is closed, so ``%D`` covers the whole response including
streaming. When that logger drops INFO records the middleware steps aside
and costs a level check.

- Size (``%b``, ``%B``) counts the bytes the server took: a chunk counts once
  the server asks for the next one (PEP 3333 servers send a chunk before
  asking for more) or the body ends, plus what went through ``write()``. A
  client that left mid-body is logged with what it got.
- Status: the last status the server accepted. If the app raised before any
  byte went out and nothing inside caught it, the server answers 500: the
  line says 500. ``%X`` is ``X`` for a response that did not complete (an
  exception, or the client left), ``-`` otherwise.

Directives: ``%h`` client address, ``%l`` ``-``, ``%u`` ``REMOTE_USER``,
``%t`` start time ``[10/Oct/2000:13:55:36 +0000]``, ``%r`` request line,
``%s``/``%>s`` status code, ``%b`` bytes (``-`` for none), ``%B`` bytes,
``%D`` microseconds, ``%T`` seconds, ``%m`` method, ``%U`` path, ``%q``
query (with ``?``), ``%H`` protocol, ``%v`` server name, ``%p`` port,
``%X`` completion, ``%{Name}i`` request header, ``%{Name}o`` response
header, ``%{key}e`` environ value, ``%%``. Values are escaped as Apache does
(``"``, ``\\``, control and non-ASCII bytes become ``\\xhh``), so a line
cannot be split or forged.

Python::

    from stack.middleware.access_log import AccessLog
    app = AccessLog(ErrorCatcher(app), format='%h "%r" %>s %b %D')

INI::

    [filter:access_log]
    use = egg:stack#access_log
    logger = stack.access
    # In INI every % is written %% (PasteDeploy interpolates %(name)s)
    format = %%h %%l %%u %%t "%%r" %%>s %%b "%%{Referer}i" "%%{User-Agent}i" %%D
"""
from __future__ import annotations

import logging
import re
import time
from functools import partial
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

from stack.options import as_str, convert_options
from stack.types import Environ, Headers, OptExcInfo, StartResponse, WriteCallable, WSGIApp
from stack.wsgi import get_header

#: Apache's combined format plus the duration in microseconds.
COMBINED = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D'
_DIRECTIVE = re.compile(r"%(?:\{([^}]*)\})?(>?)(.)", re.S)
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PATH_SAFE = "/;=,@:!$&'()*+~"
_PATH_PLAIN = re.compile(r"[A-Za-z0-9_.~/;=,@:!$&'()*+-]*\Z")

Field = Callable[["_Exchange"], str]


def escape(value: str) -> str:
    """Apache's escaping: ``"``, ``\\``, control and non-ASCII characters as ``\\xhh``."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return _UNSAFE.sub(_hex, value)


def _hex(match: re.Match[str]) -> str:
    char = match.group()
    data = char.encode("latin-1") if ord(char) <= 0xff else char.encode("utf-8")  # WSGI: latin-1
    return "".join(f"\\x{byte:02x}" for byte in data)


_clock: list[Any] = [0, ""]


def apache_time(when: float) -> str:
    """``[10/Oct/2000:13:55:36 +0000]`` in local time; cached per second."""
    second = int(when)
    cached = _clock
    if cached[0] == second:
        return cached[1]
    t = time.localtime(second)
    offset = t.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    text = (f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:"
            f"{t.tm_min:02d}:{t.tm_sec:02d} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}]")
    _clock[:] = [second, text]
    return text


def _path(x: _Exchange) -> str:
    e = x.environ
    raw = e.get("RAW_URI") or e.get("REQUEST_URI")
    if raw:
        return escape(raw.split("?", 1)[0])
    path = e.get("SCRIPT_NAME", "") + e.get("PATH_INFO", "")
    if _PATH_PLAIN.match(path):
        return path
    return escape(quote(path, safe=_PATH_SAFE, encoding="latin-1"))


def _query(x: _Exchange) -> str:
    query = x.environ.get("QUERY_STRING")
    return "?" + escape(query) if query else ""


def _request_line(x: _Exchange) -> str:
    e = x.environ
    raw = e.get("RAW_URI") or e.get("REQUEST_URI")
    target = escape(raw) if raw else _path(x) + _query(x)
    return f"{escape(e.get('REQUEST_METHOD', '-'))} {target} {escape(e.get('SERVER_PROTOCOL', '-'))}"


def _environ(key: str) -> Field:
    return lambda x: escape(str(x.environ.get(key) or "-"))


def _request_header(name: str) -> Field:
    key = name.upper().replace("-", "_")
    return _environ(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key)


def _response_header(name: str) -> Field:
    return lambda x: escape(get_header(x.headers, name) or "-")


_SIMPLE: dict[str, Field] = {
    "h": _environ("REMOTE_ADDR"),
    "l": lambda x: "-",
    "u": _environ("REMOTE_USER"),
    "t": lambda x: apache_time(x.started),
    "r": _request_line,
    "s": lambda x: x.status[:3],
    "b": lambda x: str(x.size) if x.size else "-",
    "B": lambda x: str(x.size),
    "D": lambda x: str(int(x.duration * 1e6)),
    "T": lambda x: str(int(x.duration)),
    "m": _environ("REQUEST_METHOD"),
    "U": _path,
    "q": _query,
    "H": _environ("SERVER_PROTOCOL"),
    "v": _environ("SERVER_NAME"),
    "p": _environ("SERVER_PORT"),
    "X": lambda x: "X" if x.aborted else "-",
}
_NAMED: dict[str, Callable[[str], Field]] = {"i": _request_header, "o": _response_header, "e": _environ}


def compile_format(fmt: str) -> Callable[[_Exchange], str]:
    """Turn an Apache-style format into a function of one exchange.

    >>> compile_format('%m %U %>s')(exchange)
    'GET /index.html 200'
    """
    parts: list[tuple[str, Field]] = []
    literal, position = "", 0
    for match in _DIRECTIVE.finditer(fmt):
        name, _, letter = match.groups()
        literal += fmt[position:match.start()]
        position = match.end()
        if letter == "%" and name is None:
            literal += "%"
        elif name is not None and letter in _NAMED:
            parts.append((literal, _NAMED[letter](name)))
            literal = ""
        elif name is None and letter in _SIMPLE:
            parts.append((literal, _SIMPLE[letter]))
            literal = ""
        else:
            raise ValueError(f"option 'format': unknown directive {match.group()!r} in {fmt!r}")
    if "%" in fmt[position:]:
        raise ValueError(f"option 'format': a lone '%' at the end of {fmt!r} (write '%%')")
    tail = literal + fmt[position:]

    def render(x: _Exchange) -> str:
        out = [literal + field(x) for literal, field in parts]
        out.append(tail)
        return "".join(out)
    return render


class AccessLog:
    """Log one line per request.

    - ``format`` (INI ``format``): an Apache-style format; default
      :data:`COMBINED` (combined plus ``%D``). Header values are logged: do
      not log ``%{Authorization}i`` or ``%{Cookie}i``.
    - ``logger``: the logger name; lines go out at INFO.
    """

    def __init__(self, app: WSGIApp, *, format: str = COMBINED,  # noqa: A002 - Apache's word
                 logger: str = "stack.access") -> None:
        if not isinstance(format, str) or not format:
            raise ValueError(f"option 'format': expected an Apache-style format string, "
                             f"got {format!r}")
        if not isinstance(logger, str) or not logger:
            raise ValueError(f"option 'logger': expected a logger name, got {logger!r}")
        self.app = app
        self.format = format
        self.render = compile_format(format)
        self.logger = logging.getLogger(logger)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self.logger.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        exchange = _Exchange(self, environ, start_response)
        try:
            body = self.app(environ, exchange.start_response)
        except BaseException:
            if not exchange.size:  # no body went out: the server answers 500 itself
                exchange.status = "500"
            exchange.finish(failed=True)
            raise
        stream = exchange.stream(body)
        next(stream)  # started, so that close() always reaches its finally
        return stream


class _Exchange:
    """One request's status, size and timing; streams the body and logs at the end."""

    __slots__ = ("log", "environ", "server_start_response", "server_write", "status",
                 "headers", "size", "started", "begin", "duration", "aborted")

    def __init__(self, log: AccessLog, environ: Environ, start_response: StartResponse) -> None:
        self.log, self.environ, self.server_start_response = log, environ, start_response
        self.status, self.headers, self.size, self.aborted = "500", [], 0, False
        self.started, self.begin = time.time(), time.perf_counter()

    def start_response(self, status: str, headers: Headers, exc_info: OptExcInfo = None) -> WriteCallable:
        self.server_write = self.server_start_response(status, headers, exc_info)
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        self.server_write(data)
        self.size += len(data)

    def stream(self, body: Iterable[bytes]) -> Iterator[bytes]:
        complete = False
        try:
            yield b""  # consumed by AccessLog.__call__
            for chunk in body:
                yield chunk
                self.size += len(chunk)  # the server asked for more: it took this one
            complete = True
        except Exception:
            if not self.size:  # nothing went out: the server answers 500 itself
                self.status = "500"
            raise
        finally:
            try:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
            finally:
                self.finish(failed=not complete)

    def finish(self, failed: bool) -> None:
        self.duration = time.perf_counter() - self.begin
        self.aborted = failed
        try:
            line = self.log.render(self)
        except Exception:  # a broken environ value must not fail the request
            self.log.logger.exception("could not format the access log line")
            return
        self.log.logger.info(line)


OPTIONS = {"format": as_str, "logger": as_str}


def filter_factory(global_conf: dict[str, Any], **local_conf: str) -> Callable[[WSGIApp], AccessLog]:
    """``[filter:NAME] use = egg:stack#access_log``: ``format`` and ``logger``."""
    options = convert_options(local_conf, OPTIONS)
    AccessLog(_no_app, **options)  # reject a bad format when the file is loaded
    return partial(AccessLog, **options)


def _no_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("placeholder app")


__all__ = ["AccessLog", "COMBINED", "compile_format", "escape", "apache_time", "filter_factory"]
