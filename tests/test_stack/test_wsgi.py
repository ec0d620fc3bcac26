"""stack.wsgi: header helpers, close-exactly-once, capture with write()/exc_info."""
import sys

import pytest

from stack.errors import HeaderError, StartResponseError
from stack.wsgi import (AppResponse, ClosingIterator, add_vary, call_app, check_header,
                        check_headers, check_status, get_all, get_header, remove_header,
                        set_header, status_code)
from support import call, make_environ


# -- header helpers ---------------------------------------------------------------

HEADERS = [("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2"), ("Vary", "Cookie")]


def test_get_is_case_insensitive():
    assert get_header(HEADERS, "content-type") == "text/plain"
    assert get_header(HEADERS, "X-Missing", "d") == "d"
    assert get_all(HEADERS, "X-A") == ["1", "2"]


def test_set_header_replaces_all_keeps_position_and_copies():
    original = list(HEADERS)
    result = set_header(HEADERS, "X-A", "3")
    assert result == [("Content-Type", "text/plain"), ("X-A", "3"), ("Vary", "Cookie")]
    assert HEADERS == original  # never mutated
    assert set_header([], "New", "v") == [("New", "v")]


def test_remove_header():
    assert remove_header(HEADERS, "x-a", "VARY") == [("Content-Type", "text/plain")]


@pytest.mark.parametrize("headers, fields, expected", [
    ([], ("Accept-Encoding",), "Accept-Encoding"),
    ([("Vary", "Cookie")], ("Accept-Encoding",), "Cookie, Accept-Encoding"),
    ([("Vary", "Cookie, accept-encoding")], ("Accept-Encoding",), "Cookie, accept-encoding"),
    ([("Vary", "Cookie"), ("vary", "Origin")], ("Accept",), "Cookie, Origin, Accept"),
    ([("Vary", "*")], ("Accept-Encoding",), "*"),
])
def test_add_vary(headers, fields, expected):
    result = add_vary(headers, *fields)
    assert get_all(result, "Vary") == [expected]


@pytest.mark.parametrize("name, value", [
    ("X-Bad", "a\r\nSet-Cookie: evil=1"), ("X-Bad", "a\nb"), ("X-Bad", "a\x00"),
    ("Bad Name", "v"), ("Bad:Name", "v"), ("", "v"), ("X", 5), (b"X", "v"),
])
def test_check_header_rejects(name, value):
    with pytest.raises(HeaderError):
        check_header(name, value)


def test_check_header_accepts_token_and_visible_text():
    check_header("X-Custom_1.ok", "any visible text; with \t tab")
    with pytest.raises(HeaderError, match="CR, LF or NUL"):
        set_header([], "Location", "/x\r\nX-Injected: 1")


@pytest.mark.parametrize("status", ["200", "OK 200", "2000 x", "200 OK\r\n", b"200 OK", "099 x"])
def test_check_status_rejects(status):
    with pytest.raises(HeaderError):
        check_status(status)


def test_check_status_and_headers_accept():
    check_status("200 OK")
    check_status("599 ")
    check_headers([("A", "b")])
    assert status_code("404 Not Found") == 404
    with pytest.raises(HeaderError, match="must be a list"):
        check_headers((("A", "b"),))
    with pytest.raises(HeaderError, match="tuple"):
        check_headers([["A", "b"]])


# -- ClosingIterator ----------------------------------------------------------------

class Body:
    """An app iterable that records how often close() ran."""

    def __init__(self, chunks, fail_at=None):
        self.chunks, self.fail_at, self.closed = list(chunks), fail_at, 0

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("mid-stream")
            yield chunk

    def close(self):
        self.closed += 1


def test_closing_iterator_closes_once():
    body = Body([b"a", b"b"])
    extra = []
    wrapper = ClosingIterator(body, lambda: extra.append(1))
    assert list(wrapper) == [b"a", b"b"]
    wrapper.close()
    wrapper.close()
    assert body.closed == 1 and extra == [1]


def test_closing_iterator_runs_every_closer_even_if_one_fails():
    ran = []

    def bad():
        ran.append("bad")
        raise ValueError("closer failed")

    wrapper = ClosingIterator([b"x"], bad, lambda: ran.append("good"))
    with pytest.raises(ValueError, match="closer failed"):
        wrapper.close()
    assert ran == ["bad", "good"]
    wrapper.close()  # still only once
    assert ran == ["bad", "good"]


def test_closing_iterator_abandoned_generator_is_finalised():
    events = []

    def generate():
        try:
            yield b"1"
            yield b"2"
        finally:
            events.append("generator finally")

    gen = generate()
    wrapper = ClosingIterator(gen, lambda: events.append("closer"))
    assert next(wrapper) == b"1"
    wrapper.close()  # the server gave up after one chunk
    assert events == ["generator finally", "closer"]


def test_closing_iterator_exception_mid_stream_then_close():
    body = Body([b"a", b"b"], fail_at=1)
    wrapper = ClosingIterator(body)
    with pytest.raises(RuntimeError, match="mid-stream"):
        list(wrapper)
    wrapper.close()
    assert body.closed == 1


# -- call_app -------------------------------------------------------------------------

def list_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", b"world"]


def late_app(environ, start_response):
    # A generator: start_response runs only when first iterated.
    yield b""  # an empty chunk may come before start_response...
    start_response("201 Created", [("Content-Type", "text/plain")])
    yield b"late"
    yield b" body"


def write_app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written-1 ")
    write(b"written-2 ")
    return [b"returned"]


def test_call_app_list_fast_path():
    response = call_app(list_app, make_environ())
    assert response.status == "200 OK" and response.status_code() == 200
    assert response.content_type() == "text/plain"
    assert b"".join(response) == b"hello world"
    response.close()


def test_call_app_late_start_response():
    response = call_app(late_app, make_environ())
    assert response.status == "201 Created"
    assert b"".join(response) == b"late body"
    response.close()


def test_call_app_write_comes_first_in_order():
    response = call_app(write_app, make_environ())
    assert list(response) == [b"written-1 ", b"written-2 ", b"returned"]


def test_call_app_write_from_inside_generator():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        yield b"a"
        write(b"b")
        yield b"c"
        write(b"d")

    response = call_app(app, make_environ())
    assert b"".join(response) == b"abcd"


def test_call_app_raises_before_start_response():
    def app(environ, start_response):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        call_app(app, make_environ())


def test_call_app_generator_failing_before_start_is_closed():
    body = Body([b"x"], fail_at=0)

    def app(environ, start_response):
        return body

    with pytest.raises(RuntimeError, match="mid-stream"):
        call_app(app, make_environ())
    assert body.closed == 1


def test_call_app_without_start_response_is_an_error_and_closes():
    body = Body([b"x", b"y"])
    with pytest.raises(StartResponseError, match="without calling start_response"):
        call_app(lambda environ, start_response: body, make_environ())
    assert body.closed == 1


def test_start_response_twice_without_exc_info():
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("500 Error", [])
        return []

    with pytest.raises(StartResponseError, match="second time"):
        call_app(app, make_environ())


def test_exc_info_before_commit_replaces_status():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("500 Internal Server Error", [("X-Err", "1")], sys.exc_info())
        return [b"error page"]

    response = call_app(app, make_environ())
    assert response.status == "500 Internal Server Error"
    assert response.headers == [("X-Err", "1")]
    assert b"".join(response) == b"error page"


def test_exc_info_after_commit_reraises():
    seen = []

    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"first"
        try:
            raise ValueError("late failure")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        seen.append("not reached")
        yield b"never"

    response = call_app(app, make_environ())
    response.start(lambda status, headers, exc_info=None: None)
    body = iter(response)
    assert next(body) == b"first"
    with pytest.raises(ValueError, match="late failure"):
        next(body)
    assert seen == []
    response.close()


def test_bad_headers_from_app_are_rejected():
    def app(environ, start_response):
        start_response("200 OK", [("X-Split", "a\r\nSet-Cookie: x=1")])
        return [b""]

    with pytest.raises(HeaderError):
        call_app(app, make_environ())


def test_close_exactly_once_via_response_and_wrapper():
    body = Body([b"a", b"b"])

    def app(environ, start_response):
        start_response("200 OK", [])
        return body

    response = call_app(app, make_environ())
    wrapper = ClosingIterator(response, response.close)
    list(wrapper)
    wrapper.close()
    response.close()
    wrapper.close()
    assert body.closed == 1


def test_app_response_repr_free_state():
    response = AppResponse()
    assert response.status is None and response.headers == []
    response.close()  # no app iterable yet: nothing to close, no error


# -- a middleware built from the pieces, under wsgiref.validate ---------------------------

class Upper:
    """Upper-cases text bodies; adds Vary; keeps everything else."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        response = call_app(self.app, environ)
        if not response.content_type().startswith("text/"):
            response.start(start_response)
            return ClosingIterator(response, response.close)
        headers = add_vary(remove_header(response.headers, "Content-Length"), "Accept")
        response.start(start_response, headers=headers)
        return ClosingIterator((chunk.upper() for chunk in response), response.close)


@pytest.mark.parametrize("app, expected", [
    (list_app, b"HELLO WORLD"), (late_app, b"LATE BODY"), (write_app, b"WRITTEN-1 WRITTEN-2 RETURNED"),
])
def test_sample_middleware_under_validator(app, expected):
    result = call(Upper(app))
    assert result.body == expected
    assert result.header("Vary") == "Accept"


def test_sample_middleware_closes_app_exactly_once_on_error():
    body = Body([b"a", b"b", b"c"], fail_at=2)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    with pytest.raises(RuntimeError):
        call(Upper(app))
    assert body.closed == 1


def test_exc_info_after_a_non_empty_chunk_reraises_even_before_commit():
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"partial"
        try:
            raise ValueError("after body")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        yield b"error page"

    response = call_app(app, make_environ())
    body = iter(response)
    assert next(body) == b"partial"
    with pytest.raises(ValueError, match="after body"):
        next(body)
    response.close()


def test_exc_info_after_write_reraises():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"sent")
        try:
            raise ValueError("after write")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return []

    with pytest.raises(ValueError, match="after write"):
        call_app(app, make_environ())


def test_complete_tells_a_list_body_from_a_stream():
    assert call_app(list_app, make_environ()).complete == [b"hello ", b"world"]
    assert call_app(late_app, make_environ()).complete is None


def test_on_write_takes_written_data_while_the_app_runs():
    seen = []

    def on_write(response):
        seen.append(("decided", response.status))
        return lambda data: seen.append(data)

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one")
        write(b"")
        write(b"two")
        yield b"three"
        write(b"four")  # from inside the iteration: into the body, in order

    response = call_app(app, make_environ(), on_write=on_write)
    assert seen == [("decided", "200 OK"), b"one", b"two"]
    assert list(response) == [b"three", b"four"]


def test_max_written_bounds_what_is_held():
    from stack.errors import WriteLimitError

    def app(environ, start_response):
        write = start_response("200 OK", [])
        for _ in range(10):
            write(b"x" * 100)
        return []

    with pytest.raises(WriteLimitError, match="more than 500 bytes"):
        call_app(app, make_environ(), max_written=500)
    assert b"".join(call_app(app, make_environ(), max_written=1000)) == b"x" * 1000


def test_write_rejects_text():
    def app(environ, start_response):
        start_response("200 OK", [])("text")
        return []

    with pytest.raises(TypeError, match="bytes"):
        call_app(app, make_environ())
