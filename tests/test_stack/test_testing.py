"""stack.testing: the kit passes correct middleware and names what broken ones break."""
from __future__ import annotations

import functools
import sys
import zlib
from typing import Any, Callable, Iterable, Iterator

import pytest

from stack.errors import StartResponseError
from stack.testing import (PROBES, CloseTracker, Exchange, Probe, ProbeError, Report,
                           assert_middleware, call, check_middleware, make_environ)
from stack.wsgi import ClosingIterator, add_vary, call_app, remove_header, set_header

ALL = {probe.name for probe in PROBES}


# -- correct middleware ---------------------------------------------------------

class Identity:
    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.app(environ, start_response)


class AddsHeader(Identity):
    """A header-rewriting middleware written the stack.wsgi way."""

    def __init__(self, app: Callable, *, name: str = "X-Frame-Options", value: str = "DENY") -> None:
        super().__init__(app)
        self.name, self.value = name, value

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        response = call_app(self.app, environ)
        headers = add_vary(set_header(response.headers, self.name, self.value), "Accept-Language")
        response.start(start_response, headers=headers)
        return ClosingIterator(response, response.close)


class Compress(Identity):
    """gzip for clients that ask; ``careful`` leaves HEAD, 204, 206 and 304 alone."""

    def __init__(self, app: Callable, *, careful: bool = True) -> None:
        super().__init__(app)
        self.careful = careful

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        response = call_app(self.app, environ)
        bodiless = environ["REQUEST_METHOD"] == "HEAD" or response.status_code() in (204, 206, 304)
        headers = add_vary(response.headers, "Accept-Encoding")
        if "gzip" not in environ.get("HTTP_ACCEPT_ENCODING", "") or (self.careful and bodiless):
            response.start(start_response, headers=headers)
            return ClosingIterator(response, response.close)
        headers = set_header(remove_header(headers, "Content-Length"), "Content-Encoding", "gzip")
        response.start(start_response, headers=headers)

        def body() -> Iterator[bytes]:
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
            for chunk in response:
                yield compressor.compress(chunk)
            yield compressor.flush()
        return ClosingIterator(body(), response.close)


# -- broken middleware, one fault each -------------------------------------------

class ForgetsClose(Identity):
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        response = call_app(self.app, environ)
        response.start(start_response)
        return (chunk for chunk in response)  # the app's close() is never called


class ClosesTwice(Identity):
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = self.app(environ, start_response)
        return ClosingIterator(body, body.close)  # ClosingIterator already closes ``body``


class SwallowsErrors(Identity):
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        response = call_app(self.app, environ)
        response.start(start_response)

        def body() -> Iterator[bytes]:
            try:
                yield from response
            except Exception:
                pass  # "the client has what it has": the server never hears of it
        return ClosingIterator(body(), response.close)


class DropsVary(Identity):
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        response = call_app(self.app, environ)
        response.start(start_response, headers=set_header(response.headers, "Vary", "Accept-Encoding"))
        return ClosingIterator(response, response.close)


class MutatesHeaders(Identity):
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        def add_header(status: str, headers: list, exc_info: Any = None) -> Callable:
            headers.append(("X-Powered-By", "stack"))  # the app's own list
            return start_response(status, headers, exc_info)
        return self.app(environ, add_header)


class SwallowsExcInfo(Identity):
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        write: list[Callable] = []

        def guarded(status: str, headers: list, exc_info: Any = None) -> Callable:
            if exc_info and write:  # "too late to change anything": the error is dropped
                return write[0]
            write.append(start_response(status, headers, exc_info))
            return write[0]
        return self.app(environ, guarded)


class LosesWrite(Identity):
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        buffered: list[bytes] = []

        def capture(status: str, headers: list, exc_info: Any = None) -> Callable:
            start_response(status, headers, exc_info)
            return buffered.append  # buffered, and never sent
        return self.app(environ, capture)


class BodyOnHead(Identity):
    """Fills empty 200 responses with a placeholder page, HEAD included."""

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        response = call_app(self.app, environ)
        response.start(start_response, headers=remove_header(response.headers, "Content-Length"))

        def body() -> Iterator[bytes]:
            empty = True
            for chunk in response:
                empty = empty and not chunk
                yield chunk
            if empty and response.status_code() == 200:
                yield b"<p>nothing here</p>"
        return ClosingIterator(body(), response.close)


# -- the kit on correct and broken middleware -------------------------------------------

@pytest.mark.parametrize("factory", [
    Identity, AddsHeader, functools.partial(AddsHeader, name="X-Probe", value="yes"),
    Compress, lambda app: app,
], ids=["identity", "adds-header", "partial", "compress", "lambda"])
def test_correct_middleware_passes_every_probe(factory: Callable) -> None:
    report = assert_middleware(factory)
    assert report.ok and report.failed == []
    assert [r.name for r in report.results] == [probe.name for probe in PROBES]


CLOSES = {"close_on_end", "close_on_abandon", "close_on_error"}


@pytest.mark.parametrize("factory, failing, words", [
    pytest.param(ForgetsClose, CLOSES, "called 0 times", id="forgets-close"),
    pytest.param(ClosesTwice, CLOSES, "called 2 times", id="closes-twice"),
    pytest.param(DropsVary, {"vary"}, "Vary lost Cookie, Accept-Language", id="drops-vary"),
    pytest.param(MutatesHeaders, {"headers_not_mutated"}, "changed in place", id="mutates-headers"),
    pytest.param(SwallowsExcInfo, {"exc_info_before_body", "exc_info_after_body"}, "swallowed",
                 id="swallows-exc-info"),
    pytest.param(SwallowsErrors, {"error_mid_stream", "exc_info_after_body"}, "swallowed",
                 id="swallows-errors"),
    pytest.param(LosesWrite, {"write_callable"}, "write() was lost", id="loses-write"),
    pytest.param(BodyOnHead, {"head"}, "19 bytes came out: b'<p>nothing here</p>'",
                 id="body-on-head"),
    pytest.param(functools.partial(Compress, careful=False), {"head", "no_content", "not_modified"},
                 "no body allowed, but 20 bytes came out: b'\\x1f\\x8b", id="compresses-empty"),
])
def test_broken_middleware_fails_the_right_probes(factory: Callable, failing: set[str],
                                                  words: str) -> None:
    report = check_middleware(factory)
    assert set(report.failed) == failing, str(report)
    assert all(report[name].outcome == "pass" for name in ALL - failing)
    assert any(words in report[name].message for name in failing), str(report)


def test_swallowed_exc_info_messages() -> None:
    report = check_middleware(SwallowsExcInfo)
    assert "'500 Internal Server Error' from the app came out as '200 OK'" in \
        report["exc_info_before_body"].message
    assert report["exc_info_after_body"].message.startswith(
        "the app's exception given to start_response(exc_info) was swallowed")


def test_assert_middleware_lists_every_failure() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_middleware(ForgetsClose)
    text = str(caught.value)
    assert text.startswith("middleware contract for ForgetsClose: 13 passed, 3 failed, 0 skipped")
    for name in ("close_on_end", "close_on_abandon", "close_on_error"):
        assert f"FAIL {name}: close() of the app's body was called 0 times" in text


def test_skip_by_name_with_reason() -> None:
    report = assert_middleware(DropsVary, skip={"vary": "sets Vary on purpose"})
    assert report["vary"].outcome == "skip"
    assert "SKIP vary: sets Vary on purpose" in str(report)
    assert "1 skipped" in str(report)


def test_skip_of_unknown_probe_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown probe 'vray'.*did you mean 'vary'"):
        check_middleware(Identity, skip={"vray": "typo"})


def test_partial_is_described_with_its_options() -> None:
    report = check_middleware(functools.partial(AddsHeader, name="X-A"))
    assert str(report).startswith("middleware contract for AddsHeader(name='X-A'):")


def test_validator_findings_are_failures_naming_wsgiref() -> None:
    class TextBody(Identity):
        def __call__(self, environ: dict, start_response: Callable) -> Iterable[Any]:
            response = call_app(self.app, environ)
            response.start(start_response)
            return ClosingIterator([chunk.decode("latin-1") for chunk in response], response.close)

    report = check_middleware(TextBody)
    assert "body" in report.failed
    assert report["body"].message.startswith("wsgiref.validate: Iterator yielded non-bytestring")


def test_wsgi_warnings_are_failures() -> None:
    def no_reason(app: Callable) -> Callable:
        def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
            return app(environ, lambda s, h, e=None: start_response(s[:3], h, e))
        return wrapped

    report = check_middleware(no_reason)
    assert "status_line" in report.failed
    assert "should be a three-digit integer" in report["status_line"].message


def test_a_factory_that_raises_fails_every_probe() -> None:
    def broken(app: Callable) -> Callable:
        raise TypeError("missing option")

    report = check_middleware(broken)
    assert set(report.failed) == ALL
    assert report["head"].message == "probe crashed with TypeError: missing option"


# -- the building blocks -------------------------------------------------------------

def hello(environ: dict, start_response: Callable) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"hello "
    yield b"world"


def test_make_environ() -> None:
    environ = make_environ("/a/b?x=1", "POST", {"Content-Type": "text/plain", "X-Thing": "y"}, b"data")
    assert (environ["PATH_INFO"], environ["QUERY_STRING"], environ["REQUEST_METHOD"]) == \
        ("/a/b", "x=1", "POST")
    assert environ["CONTENT_TYPE"] == "text/plain" and environ["HTTP_X_THING"] == "y"
    assert environ["CONTENT_LENGTH"] == "4" and environ["wsgi.input"].read() == b"data"
    assert environ["SERVER_NAME"] and environ["wsgi.url_scheme"] == "http"


def test_call_collects_and_closes_once() -> None:
    tracked = CloseTracker(hello)
    response = call(tracked)
    assert (response.status, response.body, response.chunks) == ("200 OK", b"hello world",
                                                                 [b"hello ", b"world"])
    assert response.header("content-type") == "text/plain" and response.header("Vary") is None
    assert tracked.closes == [1]


def test_call_abandon_after() -> None:
    tracked = CloseTracker(hello)
    assert call(tracked, abandon_after=1).body == b"hello "
    assert tracked.closes == [1]


def test_call_reraises_exc_info_once_headers_are_sent() -> None:
    def app(environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        try:
            raise ProbeError("late")
        except ProbeError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())

    tracked = CloseTracker(app)
    with pytest.raises(ProbeError, match="late"):
        call(tracked)
    assert tracked.closes == [1]
    response = call(app, raise_errors=False)
    assert isinstance(response.error, ProbeError) and response.body == b"partial"


def test_call_rejects_a_second_start_response_without_exc_info() -> None:
    def app(environ: dict, start_response: Callable) -> list[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return []

    with pytest.raises(StartResponseError, match="second time without exc_info"):
        call(app)


def test_call_requires_start_response() -> None:
    with pytest.raises(StartResponseError, match="without start_response"):
        call(lambda environ, start_response: [])


def test_close_tracker_counts_per_call_and_releases() -> None:
    tracked = CloseTracker(hello)
    body = tracked(make_environ(), lambda *args: None)
    body.close()
    body.close()
    forgotten = tracked(make_environ(), lambda *args: None)
    assert tracked.closes == [2, 0]
    tracked.release()
    assert tracked.closes == [2, 0]
    assert next(iter(forgotten), None) is None  # the generator underneath was closed


def test_report_is_a_readable_list() -> None:
    report = check_middleware(DropsVary, skip={"range": "no ranges here"})
    assert isinstance(report, Report)
    lines = str(report).splitlines()
    assert lines[0] == "middleware contract for DropsVary: 14 passed, 1 failed, 1 skipped"
    assert "  PASS head" in lines and "  SKIP range: no ranges here" in lines
    assert any(line.startswith("  FAIL vary: Vary lost") for line in lines)


def test_custom_probes_use_the_same_machinery() -> None:
    def greeting_kept(x: Exchange) -> str | None:
        if x.response.body != b"hello world" or x.closes != [1]:
            return f"got {x.response.body!r}, closes {x.closes}"
        return None

    probe = Probe("greeting", "the greeting comes through, closed once", hello, greeting_kept,
                  headers={"Accept-Encoding": "gzip"})
    assert assert_middleware(Identity, probes=[probe]).results[0].outcome == "pass"
    report = check_middleware(Compress, probes=[probe])
    assert report.failed == ["greeting"] and report["greeting"].message.startswith("got b'\\x1f")
