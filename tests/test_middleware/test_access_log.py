"""AccessLog in process, under wsgiref.validate: format, size, duration, status."""
from __future__ import annotations

import logging
import re
import time
from functools import partial
from wsgiref.validate import validator

import pytest

from stack.middleware.access_log import COMBINED, AccessLog, compile_format, escape, filter_factory
from stack.middleware.error_catcher import ErrorCatcher
from stack.errors import ConfigError
from stack.testing import CloseTracker, assert_middleware, make_environ
from support import call

COMBINED_LINE = re.compile(
    r'(?P<host>\S+) - (?P<user>\S+) \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" (?P<us>\d+)\Z')


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="stack.access")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "stack.access"]


def text_app(chunks=(b"hello ", b"world"), status="200 OK"):
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain"), ("X-Trace", "t-1")])
        return iter(chunks)
    return app


def test_keeps_the_middleware_contract(lines):
    assert_middleware(AccessLog)
    assert len(lines()) == 16  # one line per probe request


def test_combined_format_with_duration(lines):
    call(AccessLog(text_app()), "/a/b?x=1", REMOTE_ADDR="10.0.0.7", REMOTE_USER="ann",
         HTTP_REFERER="http://ref/", HTTP_USER_AGENT="agent/1.0", SERVER_PROTOCOL="HTTP/1.1")
    [line] = lines()
    match = COMBINED_LINE.match(line)
    assert match, line
    assert match["host"] == "10.0.0.7" and match["user"] == "ann"
    assert match["request"] == "GET /a/b?x=1 HTTP/1.1"
    assert (match["status"], match["size"]) == ("200", "11")
    assert (match["referer"], match["agent"]) == ("http://ref/", "agent/1.0")


def test_size_is_what_the_server_took():
    """A chunk the server could not send (its write failed) is not counted."""
    logged = []
    log = AccessLog(text_app((b"12345", b"678", b"9")), format="%b %X")
    log.logger.setLevel(logging.INFO)
    log.logger.info = logged.append  # type: ignore[method-assign]
    try:
        body = log(make_environ(), lambda *a: None)
        assert next(iter(body)) == b"12345"
        assert next(iter(body)) == b"678"  # asked for more: "12345" went out
        body.close()  # the client left while "678" was being written
    finally:
        del log.logger.info
        log.logger.setLevel(logging.NOTSET)
    assert logged == ["5 X"]


def test_write_bytes_count(lines):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"abc")
        return [b"de"]
    call(AccessLog(app, format="%B"), "/")
    assert lines() == ["5"]


def test_duration_runs_until_close(lines):
    class Body:
        def __iter__(self):
            return iter([b"x"])

        def close(self):
            time.sleep(0.05)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()
    call(AccessLog(app, format="%D %T"), "/")
    micros, seconds = lines()[0].split()
    assert int(micros) >= 50_000 and seconds == "0"


def test_real_status_from_an_error_catcher_inside(lines, caplog):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError("after start_response")
    result = call(AccessLog(ErrorCatcher(app), format="%>s %b %X"), "/")
    [line] = lines()
    status, size, done = line.split()
    assert (status, size, done) == ("500", str(len(result.body)), "-")


def test_uncaught_error_logs_500_and_propagates(lines):
    def app(environ, start_response):
        raise RuntimeError("nobody catches this")
    with pytest.raises(RuntimeError):
        call(AccessLog(app, format="%>s %b %X"), "/")
    assert lines() == ["500 - X"]


def test_error_after_start_response_before_any_body_logs_500(lines):
    import io
    from wsgiref.handlers import SimpleHandler

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError("db down")

    with pytest.raises(RuntimeError):  # caught by nobody: the server answers 500
        call(AccessLog(app, format="%>s %b %X"), "/")
    assert lines() == ["500 - X"]

    out = io.BytesIO()  # a real PEP 3333 handler: it sends the 500 the line must log
    handler = SimpleHandler(io.BytesIO(), out, io.StringIO(), make_environ("/"))
    handler.run(AccessLog(app, format="%>s %b %X"))
    assert out.getvalue().startswith(b"HTTP/1.0 500 ")
    assert lines()[-1] == "500 - X"


def test_error_after_write_keeps_the_sent_status(lines):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"12345")
        raise RuntimeError("after write")

    with pytest.raises(RuntimeError):
        call(AccessLog(app, format="%>s %b %X"), "/")
    assert lines() == ["200 5 X"]


def test_error_mid_stream_keeps_the_sent_status_and_size(lines):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"12345"
        raise RuntimeError("mid-stream")
    tracked = CloseTracker(app)
    with pytest.raises(RuntimeError):
        call(AccessLog(tracked, format="%>s %b %X"), "/")
    assert lines() == ["200 5 X"] and tracked.closes == [1]


def test_values_are_escaped(lines):
    call(AccessLog(text_app(), format='"%{User-Agent}i" %U'), "/a b/\xe9",
         HTTP_USER_AGENT='evil" 200 -\\\x01')
    assert lines() == ['"evil\\x22 200 -\\x5c\\x01" /a%20b/%E9']
    assert escape("ok plain") == "ok plain" and escape("\u20ac") == "\\xe2\\x82\\xac"


def test_other_directives(lines):
    fmt = "%m %U%q %H %v %p %{X-Trace}o %{Missing}o %{PATH_INFO}e %B %% %l"
    call(AccessLog(text_app(), format=fmt), "/p?q=1", method="POST", body=b"x",
         SERVER_PROTOCOL="HTTP/1.1", HTTP_X_TRACE="ignored")
    assert lines() == ["POST /p?q=1 HTTP/1.1 127.0.0.1 80 t-1 - /p 11 % -"]


def test_raw_uri_is_used_when_the_server_gives_it(lines):
    call(AccessLog(text_app(), format="%r"), "/decoded", RAW_URI="/enc%2Fo?ded=1")
    assert lines() == ["GET /enc%2Fo?ded=1 HTTP/1.0"]


def test_steps_aside_when_the_logger_drops_info():
    body = [b"ok"]

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body
    log = AccessLog(app, logger="test.access.quiet")
    log.logger.setLevel(logging.WARNING)
    assert log(make_environ(), lambda *a: None) is body


@pytest.mark.parametrize("fmt", ["%Z", "%{x}s", "50%", "", "%{Referer"], ids=repr)
def test_bad_format_names_the_option(fmt):
    # the message starts with the option, so the loader can point at its line
    with pytest.raises(ValueError, match="^option 'format': "):
        AccessLog(text_app(), format=fmt)


@pytest.mark.parametrize("logger", ["", None, 3])
def test_bad_logger_names_the_option(logger):
    with pytest.raises(ValueError, match="^option 'logger': "):
        AccessLog(text_app(), logger=logger)


def test_factory(lines):
    log = filter_factory({}, format="%s", logger="stack.access")(text_app())
    assert log.format == "%s" and log.logger.name == "stack.access"
    call(validator(log), "/")
    assert lines() == ["200"]
    with pytest.raises(ConfigError, match="did you mean 'format'"):
        filter_factory({}, fromat="%h")
    with pytest.raises(ValueError, match="format"):
        filter_factory({}, format="%Z")


def test_default_is_combined_plus_duration():
    assert COMBINED.endswith(" %D") and compile_format(COMBINED)
    assert partial(AccessLog, format=COMBINED)(text_app()).format == COMBINED
