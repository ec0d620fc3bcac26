"""ErrorCatcher: every exception caught, reported with an id, and explained safely.

Put it outermost (or just inside the access log) so that no exception
reaches the server unreported. It catches what the wrapped app raises when
called, while its body is iterated, and from the body's ``close()`` (which
still runs exactly once).

- Before the response started, the client gets a 500 page in the form its
  ``Accept`` prefers: HTML, JSON or plain text. In production
  (``debug=False``, the default) the page says only that something failed
  and gives an error id; nothing of the exception, the environ or the source
  reaches the client. The same id is in the log record, so an operator finds
  the traceback from what a user quotes.
- After the response started (the server already sent the status line and
  maybe part of the body) the status can no longer change and appending an
  error page would corrupt the body. The error is logged, the app's body is
  closed, and the exception is re-raised to the server, which drops the
  connection. What the client sees:

  * ``stack.server``: the connection closes at once; a chunked body lacks
    its last chunk, a body with ``Content-Length`` is short.
  * gunicorn (sync worker): the connection closes at once; a chunked body
    lacks its last chunk, a body with ``Content-Length`` is short.
  * waitress: the same; the connection closes without the terminating chunk
    (or short of ``Content-Length``).

  A client never sees a response that looks complete.
- An exception from the body's ``close()`` is logged with its own id and not
  re-raised: by then every byte of the body went out.
- With ``debug=True`` the page shows the traceback with source context and
  each frame's local variables (``repr``, truncated, HTML-escaped), and the
  request (method, URL, headers with ``Cookie`` and ``Authorization`` values
  masked, also inside the locals where they appear whole): HTML for browsers,
  JSON for API clients, text otherwise. There is deliberately no interactive
  console: Werkzeug's in-browser console executes Python on the server and
  has repeatedly been an RCE vector when a debug page reached the internet
  (its PIN only slows that down). Never enable ``debug`` in production.

Reporting: one ``logging`` record per error at ERROR on ``logger`` with
``exc_info`` and the error id, method and URL (also as the record attributes
``error_id``, ``method``, ``url``). With ``error_email`` set, each error is
also mailed through ``smtp_server``, from a background thread (never on the
request path), at most one mail per ``mail_interval`` seconds; the next mail
says how many errors were not mailed in between.

Environ keys honoured: ``x-wsgiorg.throw_errors`` / ``paste.throw_errors``
(true: re-raise instead of answering, for test harnesses) and
``paste.expected_exceptions`` (a list of exception classes re-raised as they
are, for control flow that an outer layer handles).

Python::

    from stack.middleware.error_catcher import ErrorCatcher
    app = ErrorCatcher(app, debug=False, error_email=["ops@example.com"],
                       smtp_server="mail.example.com:587", smtp_tls=True)

INI::

    [filter:errors]
    use = egg:stack#errors
    debug = false
    error_email = ops@example.com
    smtp_server = mail.example.com:587
    smtp_tls = true
    from_address = stack@example.com
    mail_interval = 5m
"""
from __future__ import annotations

import builtins
import html
import json
import linecache
import logging
import os
import queue
import re
import reprlib
import secrets
import smtplib
import socket
import ssl
import sys
import threading
import time
import traceback
from email.message import EmailMessage
from functools import partial
from typing import Any, Callable, Iterable, Iterator
from wsgiref.util import request_uri

from stack.options import as_bool, as_duration, as_list, as_str, check_bool, convert_options
from stack.types import Environ, ExcInfo, StartResponse, WSGIApp

MASK = "[masked]"
_SECRET_HEADERS = ("HTTP_COOKIE", "HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION")
_FORMS = ("text/html", "application/json", "text/plain")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_REPR, CONTEXT_LINES, MAX_FRAMES, MAX_CHAIN = 240, 3, 40, 5
STATUS = "500 Internal Server Error"


class ErrorCatcher:
    """Catch, report and explain the exceptions of ``app``.

    - ``debug`` (INI ``debug``): show the traceback, locals and request to
      the client. Development only: it reveals source and data.
    - ``error_email``: addresses to mail each error to (INI: a list).
    - ``smtp_server``: ``host`` or ``host:port`` (default port 25).
    - ``smtp_tls``: STARTTLS with certificate checks before sending.
    - ``smtp_username`` / ``smtp_password``: SMTP AUTH (put the password in
      an environment variable, ``${SMTP_PASSWORD}``, not in the file).
    - ``from_address``: the mails' ``From`` (default ``stack@<hostname>``).
    - ``mail_interval``: at most one mail per this many seconds (INI ``5m``).
    - ``logger``: the logger name for the error records.
    """

    def __init__(self, app: WSGIApp, *, debug: bool = False, error_email: Iterable[str] = (),
                 smtp_server: str = "localhost", smtp_tls: bool = False,
                 smtp_username: str | None = None, smtp_password: str | None = None,
                 from_address: str | None = None, mail_interval: float = 60.0,
                 logger: str = "stack.errors") -> None:
        check_bool(debug, "debug")
        if isinstance(error_email, str):
            addresses = [error_email]
        elif isinstance(error_email, Iterable) and not isinstance(error_email, bytes):
            addresses = list(error_email)
        else:
            addresses = [error_email]  # refused just below
        if any(not isinstance(a, str) or "@" not in a or _CONTROL.search(a) for a in addresses):
            raise ValueError(f"option 'error_email': expected e-mail addresses, got {error_email!r}")
        if not isinstance(logger, str) or not logger:
            raise ValueError(f"option 'logger': expected a logger name, got {logger!r}")
        # The mail options are checked even without error_email: a mistake in
        # them shows now, not on the day mail is switched on.
        _check_mail_options(smtp_server, smtp_tls, smtp_username, smtp_password,
                            from_address, mail_interval)
        self.app = app
        self.debug = debug
        self.logger = logging.getLogger(logger)
        self.mailer = Mailer(addresses, smtp_server, tls=smtp_tls, username=smtp_username,
                             password=smtp_password, from_address=from_address,
                             interval=mail_interval, logger=self.logger) if addresses else None
        # What `stack show` prints (never the password).
        self.error_email = tuple(addresses)
        self.smtp_server, self.smtp_tls, self.smtp_username = smtp_server, smtp_tls, smtp_username
        self.from_address, self.mail_interval = from_address, mail_interval

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = self.app(environ, start_response)
        except Exception:
            page = self._handle(environ, start_response, sys.exc_info())  # type: ignore[arg-type]
            if page is None:
                raise
            return page
        if type(body) is list:  # nothing can fail while a list is iterated
            return body
        guarded = self._guard(environ, start_response, body)
        next(guarded)  # started, so that close() always reaches the finally below
        return guarded

    def _guard(self, environ: Environ, start_response: StartResponse,
               body: Iterable[bytes]) -> Iterator[bytes]:
        try:
            yield b""  # consumed by __call__
            sent = False  # even an empty chunk makes some servers (wsgiref) send headers
            try:
                for chunk in body:
                    yield chunk
                    sent = True
            except Exception:
                page = self._handle(environ, start_response, sys.exc_info(), sent)  # type: ignore[arg-type]
                if page is None:
                    raise
                yield from page
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self.report(environ, sys.exc_info(), new_error_id(),  # type: ignore[arg-type]
                                "while closing the response body")

    def _handle(self, environ: Environ, start_response: StartResponse,
                exc_info: ExcInfo, sent: bool = False) -> list[bytes] | None:
        """Answer with an error page, or return None: the caller re-raises.

        ``sent``: body data already went to the server. Otherwise the
        server's ``start_response(..., exc_info)`` tells: it re-raises when
        the headers are out.
        """
        exc, tb = exc_info[1], exc_info[2]
        if environ.get("x-wsgiorg.throw_errors") or environ.get("paste.throw_errors"):
            return None
        expected = environ.get("paste.expected_exceptions")
        if expected and isinstance(exc, tuple(expected)):
            return None
        error_id = new_error_id()
        try:
            content_type, page = self.render(environ, exc_info, error_id)
        except Exception:  # a broken __repr__ must not hide the real error
            content_type, page = "text/plain; charset=utf-8", production_text(error_id)
        body = page.encode("utf-8")
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
        if content_type.startswith("text/html"):
            headers.append(("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"))
        started = sent
        if not sent:
            try:
                start_response(STATUS, headers, exc_info)
            except Exception:  # the server re-raised: the response already started
                started = True
                exc.with_traceback(tb)
        self.report(environ, exc_info, error_id,
                    "after the response started; dropping the connection" if started else "")
        if started:
            return None
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def report(self, environ: Environ, exc_info: ExcInfo, error_id: str, note: str = "") -> None:
        """Log one ERROR record for ``exc_info`` (and queue a mail, if configured)."""
        method = _printable(str(environ.get("REQUEST_METHOD", "-")))
        url = _printable(request_uri(environ))
        self.logger.error("error %s: %s %s%s", error_id, method, url, f" ({note})" if note else "",
                          exc_info=exc_info, extra={"error_id": error_id, "method": method, "url": url})
        if self.mailer is not None:
            details = describe(environ, exc_info[1])
            self.mailer.report(f"error {error_id}: {details['title']}",
                               f"Error id: {error_id}\n{note}\n\n" + debug_text(details))

    def render(self, environ: Environ, exc_info: ExcInfo, error_id: str) -> tuple[str, str]:
        """``(content_type, page)`` for the client's preferred form."""
        form = preferred_form(environ.get("HTTP_ACCEPT"))
        if not self.debug:
            return _PRODUCTION[form](error_id)
        details = describe(environ, exc_info[1])
        details["error_id"] = error_id
        if form == "text/html":
            return "text/html; charset=utf-8", debug_html(details)
        if form == "application/json":
            return "application/json", json.dumps(details, indent=1)
        return "text/plain; charset=utf-8", debug_text(details)


def new_error_id() -> str:
    """A short random id that ties the page a user saw to the log record."""
    return secrets.token_hex(6)


def _printable(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# -- choosing the form ----------------------------------------------------------

def preferred_form(accept: str | None) -> str:
    """``text/html``, ``application/json`` or ``text/plain`` for an ``Accept`` value.

    The highest ``q`` wins (the most specific range decides an offer's ``q``);
    ties go in that order. No header, or nothing acceptable: plain text.
    """
    if not accept:
        return "text/plain"
    ranges = []
    for part in accept.split(","):
        media, *params = part.split(";")
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((media.strip().lower(), q))
    best, best_q = "text/plain", 0.0
    for offer in _FORMS:
        kind = offer.split("/")[0] + "/*"
        found = [(3 if m == offer else 2 if m == kind else 1, q)
                 for m, q in ranges if m in (offer, kind, "*/*")]
        q = max(found)[1] if found else 0.0
        if q > best_q:
            best, best_q = offer, q
    return best


# -- production pages -------------------------------------------------------------

def production_text(error_id: str) -> str:
    return (f"Internal Server Error\n\nThe server could not complete your request.\n"
            f"Error id: {error_id}\n")


_PRODUCTION: dict[str, Callable[[str], tuple[str, str]]] = {
    "text/plain": lambda eid: ("text/plain; charset=utf-8", production_text(eid)),
    "application/json": lambda eid: ("application/json", json.dumps(
        {"status": 500, "error": "Internal Server Error", "error_id": eid})),
    "text/html": lambda eid: ("text/html; charset=utf-8", (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>500 Internal Server Error</title></head><body>"
        "<h1>Internal Server Error</h1><p>The server could not complete your request.</p>"
        f"<p>Error id: <code>{eid}</code></p></body></html>\n")),
}


# -- debug details ----------------------------------------------------------------

def describe(environ: Environ, exc: BaseException) -> dict[str, Any]:
    """The debug details as plain data: request, exception chain, frames, locals."""
    secrets_ = _secrets(environ)
    chain: list[BaseException] = []
    while exc is not None and exc not in chain and len(chain) < MAX_CHAIN:
        chain.insert(0, exc)
        cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        exc = cause  # type: ignore[assignment]
    exceptions = [{
        "type": type(item).__qualname__,
        "message": _mask(_safe_str(item), secrets_),
        "frames": [_frame(frame, lineno, secrets_)
                   for frame, lineno in list(traceback.walk_tb(item.__traceback__))[-MAX_FRAMES:]
                   if frame.f_code.co_filename != __file__],  # not ours: the app's
    } for item in chain]
    last = exceptions[-1]
    return {"title": _printable(f"{last['type']}: {last['message']}")[:200],
            "request": _request(environ), "exceptions": exceptions}


def _request(environ: Environ) -> dict[str, Any]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key[5:] if key.startswith("HTTP_") else key
            headers[name.replace("_", "-").title()] = MASK if key in _SECRET_HEADERS else str(value)
    return {"method": str(environ.get("REQUEST_METHOD", "")), "url": request_uri(environ),
            "headers": headers}


def _secrets(environ: Environ) -> list[str]:
    """Header values to mask, whole and in parts (each cookie, each credential)."""
    found = []
    for key in _SECRET_HEADERS:
        value = str(environ.get(key, ""))
        found.append(value)
        for part in value.split(";") if key == "HTTP_COOKIE" else [value.partition(" ")[2]]:
            found.append(part.partition("=")[2] if key == "HTTP_COOKIE" else part)
    return sorted({s.strip() for s in found if len(s.strip()) >= 4}, key=len, reverse=True)


def _mask(text: str, secrets_: list[str]) -> str:
    for secret in secrets_:
        text = text.replace(secret, MASK)
    return text


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__qualname__}>"


class _MaskingRepr(reprlib.Repr):
    """``reprlib`` limits, with secrets masked in each whole string before it is cut.

    Masking only the shortened repr would miss a long secret: the cut leaves
    its head and tail, which no longer equal it. Strings (also inside dicts,
    lists and other containers) and other objects' reprs are masked whole.
    """

    def __init__(self, secrets_: list[str]) -> None:
        super().__init__()
        self.maxstring = self.maxother = 160
        self.maxlevel, self.maxdict, self.maxlist = 3, 12, 12
        self.secrets = secrets_

    def repr_str(self, x: str, level: int) -> str:
        return self._shorten(builtins.repr(_mask(x, self.secrets)), self.maxstring)

    def repr_instance(self, x: object, level: int) -> str:
        try:
            text = builtins.repr(x)
        except Exception:
            return f"<{type(x).__qualname__} instance at {id(x):#x}>"
        return self._shorten(_mask(text, self.secrets), self.maxother)

    @staticmethod
    def _shorten(text: str, limit: int) -> str:
        if len(text) <= limit:
            return text
        i = max(0, (limit - 3) // 2)
        j = max(0, limit - 3 - i)
        return text[:i] + "..." + text[len(text) - j:]


def _safe_repr(value: object, secrets_: list[str]) -> str:
    try:
        text = _MaskingRepr(secrets_).repr(value)
    except Exception:
        text = f"<unrepresentable {type(value).__qualname__}>"
    text = _mask(text, secrets_)
    return text if len(text) <= MAX_REPR else text[:MAX_REPR - 3] + "..."


def _frame(frame: Any, lineno: int, secrets_: list[str]) -> dict[str, Any]:
    filename = frame.f_code.co_filename
    first = max(1, lineno - CONTEXT_LINES)
    context = [{"line": n, "code": linecache.getline(filename, n, frame.f_globals).rstrip("\n"),
                "current": n == lineno} for n in range(first, lineno + CONTEXT_LINES + 1)]
    while context and not context[-1]["code"]:
        context.pop()
    return {"file": filename, "line": lineno, "function": frame.f_code.co_name,
            "context": context,
            "locals": {name: _safe_repr(value, secrets_) for name, value in frame.f_locals.items()}}


def debug_text(details: dict[str, Any]) -> str:
    lines = []
    for index, exc in enumerate(details["exceptions"]):
        if index:
            lines.append("\nwhich led to:\n")
        lines.append("Traceback (most recent call last):")
        for frame in exc["frames"]:
            lines.append(f'  File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}')
            lines += [f"    {'>' if c['current'] else ' '} {c['line']:5} {c['code']}"
                      for c in frame["context"]]
            lines += [f"      {name} = {value}" for name, value in frame["locals"].items()]
        lines.append(f"{exc['type']}: {exc['message']}")
    request = details["request"]
    lines += ["", f"Request: {request['method']} {request['url']}"]
    lines += [f"  {name}: {value}" for name, value in request["headers"].items()]
    return "\n".join(lines) + "\n"


_STYLE = ("body{font:14px/1.4 sans-serif;margin:2em;color:#222}pre{margin:0;background:#f6f6f6;"
          "padding:.4em;overflow-x:auto}.current{background:#fde2e2;font-weight:bold}"
          ".frame{border-top:1px solid #ccc;margin:1em 0}td{vertical-align:top;padding:0 .6em 0 0;"
          "font-family:monospace}table{border-collapse:collapse}")


def debug_html(details: dict[str, Any]) -> str:
    e = html.escape
    out = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
           f"<title>500 {e(details['title'])}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{e(details['title'])}</h1>",
           f"<p>Error id: <code>{e(details['error_id'])}</code>. Debug page: never enable "
           "<code>debug</code> in production.</p>"]
    for exc in details["exceptions"]:
        out.append(f'<section class="exception"><h2>{e(exc["type"])}: {e(exc["message"])}</h2>')
        for frame in exc["frames"]:
            out.append(f'<div class="frame"><h3>File <code>{e(frame["file"])}</code>, line '
                       f'{frame["line"]}, in <code>{e(frame["function"])}</code></h3><pre>')
            out += [f'<span class="{"current" if c["current"] else "line"}">{c["line"]:5} '
                    f'{e(c["code"])}</span>\n' for c in frame["context"]]
            out.append('</pre><table class="locals">')
            out += [f"<tr><td>{e(name)}</td><td>{e(value)}</td></tr>"
                    for name, value in frame["locals"].items()]
            out.append("</table></div>")
        out.append("</section>")
    request = details["request"]
    out.append(f'<h2>Request</h2><p><code>{e(request["method"])} {e(request["url"])}</code></p>'
               '<table class="request">')
    out += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in request["headers"].items()]
    out.append("</table></body></html>\n")
    return "".join(out)


# -- mail -----------------------------------------------------------------------

class Mailer:
    """Send error mails from a background thread, at most one per ``interval`` seconds."""

    def __init__(self, to: list[str], server: str, *, tls: bool = False,
                 username: str | None = None, password: str | None = None,
                 from_address: str | None = None, interval: float = 60.0,
                 logger: logging.Logger | None = None) -> None:
        host, port = _check_mail_options(server, tls, username, password, from_address, interval)
        self.to, self.host, self.port = to, host, port
        self.tls, self.username, self.password = tls, username, password
        self.from_address = from_address or f"stack@{socket.gethostname()}"
        self.interval = float(interval)
        self.logger = logger or logging.getLogger("stack.errors")
        self._lock = threading.Lock()
        self._queue: queue.Queue[EmailMessage] = queue.Queue()
        self._last_sent = float("-inf")
        self._skipped = 0
        self._thread_pid = 0

    def report(self, subject: str, text: str) -> bool:
        """Queue a mail unless one went out less than ``interval`` ago; True if queued."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_sent < self.interval:
                self._skipped += 1
                return False
            skipped, self._skipped, self._last_sent = self._skipped, 0, now
            if self._thread_pid != os.getpid():  # none yet, or we are a forked worker
                self._thread_pid = os.getpid()
                threading.Thread(target=self._run, name="stack-error-mail", daemon=True).start()
        if skipped:
            text = f"{skipped} more error(s) since the last mail were logged, not mailed.\n\n" + text
        message = EmailMessage()
        message["Subject"] = _printable(subject)[:200]
        message["From"], message["To"] = self.from_address, ", ".join(self.to)
        message.set_content(text)
        self._queue.put(message)
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued mail was handled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            try:
                self.send(message)
            except Exception:
                self.logger.warning("could not mail error report to %s via %s:%s",
                                    ", ".join(self.to), self.host, self.port, exc_info=True)
            finally:
                self._queue.task_done()

    def send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            if self.tls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username is not None:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)


def _check_mail_options(server: Any, tls: Any, username: Any, password: Any,
                        from_address: Any, interval: Any) -> tuple[str, int]:
    """Refuse a bad mail option with a ValueError naming it; ``(host, port)`` of ``server``."""
    if not isinstance(server, str):
        raise ValueError(f"option 'smtp_server': expected 'host' or 'host:port', got {server!r}")
    text = server.strip()
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "25")
    if (not host or _CONTROL.search(host) or any(c.isspace() for c in host)
            or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536):
        raise ValueError(f"option 'smtp_server': expected 'host' or 'host:port' "
                         f"(port 1-65535), got {server!r}")
    check_bool(tls, "smtp_tls")
    for option, value in (("smtp_username", username), ("smtp_password", password),
                          ("from_address", from_address)):
        if value is not None and (not isinstance(value, str) or _CONTROL.search(value)):
            raise ValueError(f"option {option!r}: expected a str without control characters "
                             f"or None, got {value!r}")
    if (username is None) != (password is None):
        given = "smtp_username" if password is None else "smtp_password"
        raise ValueError(f"option {given!r}: give smtp_username and smtp_password both or "
                         "neither")
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not interval >= 0:
        raise ValueError(f"option 'mail_interval': expected seconds >= 0, got {interval!r}")
    return host, int(port)


OPTIONS = {
    "debug": as_bool, "error_email": as_list, "smtp_server": as_str, "smtp_tls": as_bool,
    "smtp_username": as_str, "smtp_password": as_str, "from_address": as_str,
    "mail_interval": as_duration, "logger": as_str,
}


def filter_factory(global_conf: dict[str, Any], **local_conf: str) -> Callable[[WSGIApp], ErrorCatcher]:
    """``[filter:NAME] use = egg:stack#errors``: the options of :class:`ErrorCatcher`."""
    options = convert_options(local_conf, OPTIONS)
    ErrorCatcher(_no_app, **options)  # reject bad values when the file is loaded
    return partial(ErrorCatcher, **options)


def _no_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("placeholder app")


__all__ = ["ErrorCatcher", "Mailer", "filter_factory", "preferred_form", "describe",
           "new_error_id", "MASK"]
