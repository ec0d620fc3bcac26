"""A contract kit for WSGI middleware: does it keep HTTP's and PEP 3333's rules?

Give :func:`check_middleware` a *factory* -- anything that takes a WSGI app
and returns the wrapped app: a middleware class, or
``functools.partial(Class, **options)``. It sends each :class:`Probe` (an
inner app, a request, an expectation) through it: HEAD/204/304 carry no
body, ``Vary`` and ``Content-Range`` survive, ``write()`` data is neither
lost nor reordered, ``exc_info`` is honoured, errors propagate, ``close()``
runs exactly once on every path, the app's header list is left alone. Both
sides of the middleware run under :func:`wsgiref.validate.validator`, whose
warnings count as failures too.

Probes that compare bodies send no ``Accept-Encoding``, so a compressing
middleware leaves them alone; HEAD, 204 and 304 probes send
``Accept-Encoding: gzip``, since those stay empty whatever the encoding.
Every probe requests ``/probe``.
A middleware that rightly does otherwise skips a probe by name, with why::

    from functools import partial
    from stack.testing import assert_middleware, check_middleware

    def test_gzip_keeps_the_contract():
        assert_middleware(partial(Gzip, min_size=0))

    print(check_middleware(XSLT, skip={"exc_info_after_body": "buffers XML"}))

The building blocks serve a middleware's own tests: :func:`make_environ`,
:func:`call` (a strict little server: collects status, headers and body,
closes the body once) and :class:`CloseTracker`. No pytest needed.
"""
from __future__ import annotations

import functools
import io
import sys
import traceback
import warnings
import wsgiref.validate
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import WSGIWarning, validator

from stack.errors import StartResponseError, suggest
from stack.types import Environ, Filter, Headers, OptExcInfo, WSGIApp
from stack.wsgi import close_iterable, get_all

TEXT = ("Content-Type", "text/plain; charset=utf-8")


class ProbeError(Exception):
    """The exception the probe apps raise; it must reach the server."""


# -- building blocks ----------------------------------------------------------

def make_environ(path: str = "/", method: str = "GET", headers: Mapping[str, str] | None = None,
                 body: bytes = b"") -> Environ:
    """A complete PEP 3333 environ for ``method path`` (query string after ``?``).

    >>> make_environ("/a?b=1", "POST", {"Accept-Encoding": "gzip"}, b"x")["HTTP_ACCEPT_ENCODING"]
    'gzip'
    """
    path_info, _, query = path.partition("?")
    environ: Environ = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path_info,
        "QUERY_STRING": query, "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    setup_testing_defaults(environ)
    return environ


@dataclass
class Response:
    """What :func:`call` collected. ``error`` is set only with ``raise_errors=False``."""

    status: str | None = None
    headers: Headers = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> str | None:
        """All values of header ``name`` (any case) joined by ``", "``, or None."""
        values = get_all(self.headers, name)
        return ", ".join(values) if values else None


def call(app: WSGIApp, environ: Environ | None = None, *, abandon_after: int | None = None,
         raise_errors: bool = True) -> Response:
    """Call ``app`` as a strict server would and collect its response.

    Headers count as sent at the first non-empty chunk (iterated or
    written): after that ``start_response(..., exc_info)`` re-raises, before
    it the new status wins; a second call without ``exc_info`` raises
    :class:`StartResponseError`. ``abandon_after=N`` drops the body after N
    chunks, like a client gone away. The body is closed exactly once.
    """
    environ = make_environ() if environ is None else environ
    response = Response()
    sent = False

    def write(data: bytes) -> None:
        nonlocal sent
        if response.status is None:
            raise StartResponseError("body data came before start_response was called")
        sent = sent or bool(data)
        response.chunks.append(data)

    def start_response(status: str, headers: Headers, exc_info: OptExcInfo = None) -> Callable:
        if exc_info:
            try:
                if sent:
                    raise exc_info[1].with_traceback(exc_info[2])  # type: ignore[union-attr]
            finally:
                exc_info = None
        elif response.status is not None:
            raise StartResponseError("start_response called a second time without exc_info")
        response.status, response.headers = status, list(headers)
        return write

    try:
        body = app(environ, start_response)
        try:
            for count, chunk in enumerate(body, 1):
                write(chunk)
                if count == abandon_after:
                    break
            if response.status is None:
                raise StartResponseError("body ended without start_response being called")
        finally:
            close_iterable(body)
    except Exception as exc:
        if raise_errors:
            raise
        response.error = exc
    return response


class CloseTracker:
    """Wrap an app so each body it returns counts its ``close()`` calls.

    ``closes`` holds one count per call of the app (``[1]``: one request,
    closed once). :meth:`release` closes, uncounted, what was left open.

    >>> app = CloseTracker(my_app); call(Gzip(app)); assert app.closes == [1]
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.bodies: list[_TrackedBody] = []

    def __call__(self, environ: Environ, start_response: Callable) -> Iterable[bytes]:
        self.bodies.append(_TrackedBody(self.app(environ, start_response)))
        return self.bodies[-1]

    @property
    def closes(self) -> list[int]:
        return [body.closes for body in self.bodies]

    def release(self) -> None:
        for body in self.bodies:
            if not body.closes:
                close_iterable(body.iterable)


class _TrackedBody:
    def __init__(self, iterable: Iterable[bytes]) -> None:
        self.iterable, self.iterator, self.closes = iterable, iter(iterable), 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self.iterator)

    def close(self) -> None:
        self.closes += 1
        if self.closes == 1:
            close_iterable(self.iterable)


# -- probes -------------------------------------------------------------------

class Exchange(NamedTuple):
    """One probe request as seen from outside: the inner app, the response, close counts."""

    app: WSGIApp
    response: Response
    closes: list[int]


Check = Callable[[Exchange], "str | None"]


@dataclass(frozen=True)
class Probe:
    """An inner app, a request, and a check returning None or what went wrong."""

    name: str
    doc: str
    app: WSGIApp
    check: Check
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    abandon_after: int | None = None

    def run(self, factory: Filter) -> str | None:
        """``validator(factory(CloseTracker(validator(app))))``, one request, the check."""
        tracker = CloseTracker(validator(self.app))
        try:
            outer = validator(factory(tracker))
            environ = make_environ("/probe", self.method, self.headers)
            response = call(outer, environ, abandon_after=self.abandon_after, raise_errors=False)
            return self.check(Exchange(self.app, response, tracker.closes))
        finally:
            tracker.release()


def _app(status: str = "200 OK", headers: Iterable[tuple[str, str]] = (TEXT,),
         chunks: Iterable[bytes] = (b"hello ", b"world"), *, written: Iterable[bytes] = (),
         late: bool = False, error: bool = False) -> WSGIApp:
    """An app streaming ``chunks`` after ``write()``-ing ``written`` (``late``: calls
    start_response when first iterated; ``error``: raises ProbeError after the chunks)."""
    def body(start_response: Callable | None) -> Iterator[bytes]:
        if start_response is not None:
            start_response(status, list(headers))
        yield from chunks
        if error:
            raise ProbeError("raised by the probe app mid-stream")

    def app(environ: Environ, start_response: Callable) -> Iterable[bytes]:
        if late:
            return body(start_response)
        write = start_response(status, list(headers))
        for data in written:
            write(data)
        return body(None)
    return app


def _exc_info_app(after_body: bool) -> WSGIApp:
    """start_response, then (after a first chunk) an error handled with exc_info."""
    def fail(start_response: Callable) -> None:
        try:
            raise ProbeError("raised by the probe app " + ("mid-stream" if after_body else "early"))
        except ProbeError:
            start_response("500 Internal Server Error", [TEXT], sys.exc_info())

    def body(start_response: Callable) -> Iterator[bytes]:
        yield b"partial "
        fail(start_response)
        yield b"error page"  # reached only if the exception was swallowed

    def app(environ: Environ, start_response: Callable) -> Iterable[bytes]:
        start_response("200 OK", [TEXT])
        if after_body:
            return body(start_response)
        fail(start_response)
        return [b"error page"]
    return app


class _KeptHeaders:
    """An app that remembers the header list it sent, and a copy of it."""

    def __call__(self, environ: Environ, start_response: Callable) -> Iterable[bytes]:
        self.sent: Headers = [TEXT, ("Content-Length", "5"), ("X-Probe", "kept")]
        self.before = list(self.sent)
        start_response("200 OK", self.sent)
        return [b"hello"]


def _error(x: Exchange) -> str | None:
    """A message for an unexpected exception, naming wsgiref.validate if it raised."""
    exc = x.response.error
    if exc is None:
        return None
    frames = traceback.extract_tb(exc.__traceback__)
    from_validator = frames and frames[-1].filename == wsgiref.validate.__file__
    return f"{'wsgiref.validate' if from_validator else 'raised ' + type(exc).__name__}: {exc}"


def _short(x: Exchange) -> str:
    text = repr(x.response.body)
    return text if len(text) <= 80 else text[:76] + "...'"


def _all(*checks: Check) -> Check:
    return lambda x: next((problem for check in checks if (problem := check(x))), None)


def _expect(status: str, body: bytes | None = None, *keep: tuple[str, str]) -> Check:
    """Check: no error; ``status``, ``body`` and the ``keep`` headers as the app sent them."""
    def check(x: Exchange) -> str | None:
        for name, value in [("status", status), *keep]:
            got = x.response.status if name == "status" else x.response.header(name)
            if name.lower() == "etag" and got == "W/" + value:
                continue  # weakened by a middleware that changes the encoding: still the tag
            if got != value:
                return f"{name} {value!r} from the app came out as {got!r}"
        if body == b"" and x.response.body:
            return f"no body allowed, but {len(x.response.body)} bytes came out: {_short(x)}"
        if body is not None and x.response.body != body:
            return f"body {body!r} from the app came out as {_short(x)}"
        return None
    return _all(_error, check)


def _length_matches(x: Exchange) -> str | None:
    length, size = x.response.header("Content-Length"), len(x.response.body)
    if length is not None and length != str(size):
        return f"Content-Length {length!r} does not match the {size}-byte body"
    return None


def _vary_kept(x: Exchange) -> str | None:
    value = x.response.header("Vary")
    fields = {part.strip().lower() for part in (value or "").split(",")}
    lost = [name for name in ("Cookie", "Accept-Language") if name.lower() not in fields]
    if lost and "*" not in fields:
        return f"Vary lost {', '.join(lost)}: the app sent 'Cookie, Accept-Language', got {value!r}"
    return None


def _write_kept(x: Exchange) -> str | None:
    if b"written" not in x.response.body:
        return f"data given to write() was lost: the body is {x.response.body!r}"
    return None


def _propagates(what: str) -> Check:
    def check(x: Exchange) -> str | None:
        if isinstance(x.response.error, ProbeError):
            return None
        if x.response.error is None:
            return (f"{what} was swallowed: the response ended as {x.response.status!r} "
                    f"with body {_short(x)}")
        return f"{what} did not propagate; instead {_error(x)}"
    return check


def _closed_once(path: str) -> Check:
    def check(x: Exchange) -> str | None:
        if len(x.closes) != 1:
            return f"the app was called {len(x.closes)} times (expected once)"
        if x.closes[0] != 1:
            return f"close() of the app's body was called {x.closes[0]} times {path} (expected once)"
        return None
    return check


def _headers_untouched(x: Exchange) -> str | None:
    app: Any = x.app
    if not x.closes:
        return _error(x) or "the app was never called"
    if len(app.sent) != len(app.before) or any(a is not b for a, b in zip(app.sent, app.before)):
        return f"the app's header list was changed in place: {app.before!r} became {app.sent!r}"
    return _error(x)


_GZIP = {"Accept-Encoding": "gzip"}
_CHUNKS = (b"first chunk\n", b"", b"second chunk\n", b"\xff\x00 third\n")
_LENGTH = ("Content-Length", str(sum(map(len, _CHUNKS))))
_RANGE = ("Content-Range", "bytes 0-4/11")

#: The probes :func:`check_middleware` runs, in order.
PROBES: tuple[Probe, ...] = (
    Probe("status_line", "the app's status line comes through unchanged",
          _app("201 Created"), _expect("201 Created")),
    Probe("body", "body bytes and Content-Length come through (no Accept-Encoding)",
          _app(headers=[TEXT, _LENGTH], chunks=_CHUNKS),
          _all(_expect("200 OK", b"".join(_CHUNKS)), _length_matches)),
    Probe("head", "a HEAD response has no body, even with Accept-Encoding: gzip",
          _app(headers=[("Content-Type", "text/html"), ("Content-Length", "11")], chunks=()),
          _expect("200 OK", b""), "HEAD", _GZIP),
    Probe("no_content", "a 204 stays a 204 with no body",
          _app("204 No Content", headers=[], chunks=()), _expect("204 No Content", b""),
          "DELETE", _GZIP),
    Probe("not_modified", "a 304 stays a 304 with no body and keeps its ETag (or its weak form)",
          _app("304 Not Modified", headers=[("ETag", '"v1"')], chunks=()),
          _expect("304 Not Modified", b"", ("ETag", '"v1"')), "GET",
          {"If-None-Match": '"v1"', **_GZIP}),
    Probe("range", "a 206 keeps its status, Content-Range and partial body",
          _app("206 Partial Content", [TEXT, _RANGE, ("Content-Length", "5")], (b"hello",)),
          _expect("206 Partial Content", b"hello", _RANGE), "GET", {"Range": "bytes=0-4"}),
    Probe("vary", "fields the app named in Vary stay there (more may be added)",
          _app(headers=[TEXT, ("Vary", "Cookie, Accept-Language")]), _all(_error, _vary_kept)),
    Probe("late_start_response", "a generator app may call start_response when first iterated",
          _app(headers=[TEXT, ("X-Late", "yes")], chunks=(b"late ", b"start"), late=True),
          _expect("200 OK", b"late start", ("X-Late", "yes"))),
    Probe("write_callable", "data given to write() comes first, in order, none lost",
          _app(written=(b"written ", b"first, "), chunks=(b"then ", b"iterated")),
          _all(_error, _write_kept, _expect("200 OK", b"written first, then iterated"))),
    Probe("exc_info_before_body", "start_response(exc_info) before any body: the new status wins",
          _exc_info_app(after_body=False), _expect("500 Internal Server Error", b"error page")),
    Probe("exc_info_after_body", "start_response(exc_info) after the body started re-raises",
          _exc_info_app(after_body=True),
          _propagates("the app's exception given to start_response(exc_info)")),
    Probe("error_mid_stream", "an exception raised mid-stream reaches the server",
          _app(error=True), _propagates("the app's exception mid-stream")),
    Probe("close_on_end", "close() is called once when the body is read to the end",
          _app(), _closed_once("when the body was read to the end")),
    Probe("close_on_abandon", "close() is called once when the client leaves after one chunk",
          _app(chunks=(b"one ", b"two ", b"three")),
          _closed_once("when the body was abandoned after one chunk"), abandon_after=1),
    Probe("close_on_error", "close() is called once after an exception mid-stream",
          _app(error=True), _closed_once("after an exception mid-stream")),
    Probe("headers_not_mutated", "the app's header list and its tuples are left as they were",
          _KeptHeaders(), _headers_untouched),
)


# -- the report ---------------------------------------------------------------

@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome (``"pass"``, ``"fail"`` or ``"skip"``) and why."""

    name: str
    outcome: str
    message: str = ""

    def __str__(self) -> str:
        return f"{self.outcome.upper():4} {self.name}" + (f": {self.message}" if self.message else "")


@dataclass
class Report:
    """Every probe's result for one middleware; ``str()`` is a readable list."""

    subject: str
    results: list[ProbeResult]

    @property
    def failed(self) -> list[str]:
        """Names of the probes that failed, in run order."""
        return [result.name for result in self.results if result.outcome == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def __getitem__(self, name: str) -> ProbeResult:
        return {result.name: result for result in self.results}[name]

    def __str__(self) -> str:
        count = {o: sum(r.outcome == o for r in self.results) for o in ("pass", "fail", "skip")}
        head = (f"middleware contract for {self.subject}: {count['pass']} passed, "
                f"{count['fail']} failed, {count['skip']} skipped")
        return "\n  ".join([head, *map(str, self.results)])


def _describe(factory: Any) -> str:
    if isinstance(factory, functools.partial):
        options = ", ".join(f"{key}={value!r}" for key, value in factory.keywords.items())
        return f"{_describe(factory.func)}({options})"
    return getattr(factory, "__qualname__", None) or repr(factory)


def check_middleware(factory: Filter, *, skip: Mapping[str, str] | None = None,
                     probes: Iterable[Probe] = PROBES) -> Report:
    """Run ``probes`` through ``factory``; ``skip`` maps probe names to reasons.

    A probe that raises, or sets off a :class:`WSGIWarning`, is a failure.
    """
    probes, skip = list(probes), dict(skip or {})
    names = [probe.name for probe in probes]
    for name in skip:
        if name not in names:
            raise ValueError(f"unknown probe {name!r} in skip: {suggest(name, names)}")
    results = []
    for probe in probes:
        if probe.name in skip:
            results.append(ProbeResult(probe.name, "skip", skip[probe.name]))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", WSGIWarning)
                problem = probe.run(factory)
        except Exception as exc:
            problem = f"probe crashed with {type(exc).__name__}: {exc}"
        results.append(ProbeResult(probe.name, "fail" if problem else "pass", problem or ""))
    return Report(_describe(factory), results)


def assert_middleware(factory: Filter, *, skip: Mapping[str, str] | None = None,
                      probes: Iterable[Probe] = PROBES) -> Report:
    """Like :func:`check_middleware`, but raise AssertionError listing every failure."""
    report = check_middleware(factory, skip=skip, probes=probes)
    if not report.ok:
        raise AssertionError(str(report))
    return report


__all__ = [
    "PROBES", "Probe", "Exchange", "ProbeError", "ProbeResult", "Report", "Response",
    "CloseTracker", "make_environ", "call", "check_middleware", "assert_middleware",
]
