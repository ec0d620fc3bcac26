"""ErrorCatcher in process, under wsgiref.validate: pages, reporting, mail, options."""
from __future__ import annotations

import logging
import re
import socket
import time
from functools import partial

from wsgiref.validate import validator

import pytest

from stack.middleware.error_catcher import MASK, ErrorCatcher, filter_factory, preferred_form
from stack.errors import ConfigError
from stack.testing import CloseTracker, assert_middleware, make_environ
from stack.testing import call as strict_server
from support import call

SECRET = "s3cr3t-detail"
INJECTED = "<script>document.title='pwned'</script>"


class Boom(Exception):
    pass


def raising_app(environ, start_response):
    hidden = INJECTED  # noqa: F841 - a local the debug page must show escaped
    password = SECRET  # noqa: F841
    raise Boom(f"failed {INJECTED} {SECRET}")


def late_raising_app(environ, start_response):
    def body():
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise Boom("raised before the first chunk")
        yield b"never"  # pragma: no cover
    return body()


def midstream_app(environ, start_response):
    def body():
        yield b"first "
        raise Boom("raised mid-stream")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return body()


def strict_call(app, path="/"):
    """Through stack.testing's strict server: start_response(exc_info) re-raises once
    body data went out (support.call's server never refuses)."""
    return strict_server(validator(app), make_environ(path))


def records(caplog):
    return [r for r in caplog.records if r.name == "stack.errors"]


# -- the contract -----------------------------------------------------------------

@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_keeps_the_middleware_contract(debug, caplog):
    assert_middleware(partial(ErrorCatcher, debug=debug))


def test_happy_list_body_is_returned_as_is():
    body = [b"ok"]

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body
    assert ErrorCatcher(app)(make_environ(), lambda *a: None) is body


# -- production pages -------------------------------------------------------------

@pytest.mark.parametrize("accept, content_type", [
    ("text/html,application/xhtml+xml,*/*;q=0.8", "text/html"),
    ("application/json", "application/json"),
    ("text/plain", "text/plain"),
    (None, "text/plain"),
], ids=["browser", "api", "plain", "no-accept"])
def test_production_page_has_an_id_and_nothing_else(accept, content_type, caplog):
    extra = {"HTTP_ACCEPT": accept} if accept else {}
    result = call(ErrorCatcher(raising_app), "/fail?x=1", **extra)
    assert result.code == 500
    assert result.header("Content-Type").startswith(content_type)
    assert result.header("Cache-Control") == "no-store"
    assert SECRET.encode() not in result.body and b"script" not in result.body
    assert b"Boom" not in result.body and b"raising_app" not in result.body
    [record] = records(caplog)
    assert record.levelno == logging.ERROR and record.exc_info[0] is Boom
    assert (record.method, record.url) == ("GET", "http://127.0.0.1/fail?x=1")
    assert re.fullmatch(r"[0-9a-f]{12}", record.error_id)
    assert record.error_id.encode() in result.body
    assert record.error_id in record.getMessage() and "/fail?x=1" in record.getMessage()
    if content_type == "application/json":
        assert result.json() == {"status": 500, "error": "Internal Server Error",
                                 "error_id": record.error_id}


def test_error_while_iterating_before_any_chunk_gets_the_page(caplog):
    app = CloseTracker(late_raising_app)
    result = call(ErrorCatcher(app), "/")
    assert result.code == 500 and b"Error id" in result.body
    assert app.closes == [1]
    assert len(records(caplog)) == 1


def test_head_gets_the_status_without_a_body(caplog):
    result = call(ErrorCatcher(raising_app), "/", method="HEAD")
    assert result.code == 500 and result.body == b""


# -- after the response started ---------------------------------------------------

def test_error_mid_stream_is_logged_and_reraised_and_the_body_closed(caplog):
    app = CloseTracker(midstream_app)
    with pytest.raises(Boom, match="mid-stream"):
        strict_call(ErrorCatcher(app), "/stream")
    assert app.closes == [1]
    [record] = records(caplog)
    assert "after the response started" in record.getMessage()
    assert record.exc_info[1].__traceback__.tb_frame.f_code.co_name != "_handle"


def test_error_after_write_is_reraised(caplog):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"already out")
        raise Boom("after write()")
    with pytest.raises(Boom):
        strict_call(ErrorCatcher(app))
    assert "after the response started" in records(caplog)[0].getMessage()


def test_error_from_close_is_logged_once_and_close_runs_once(caplog):
    closes = []

    class Body:
        def __iter__(self):
            return iter([b"all ", b"sent"])

        def close(self):
            closes.append(1)
            raise Boom("close failed")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()
    result = call(ErrorCatcher(app), "/")
    assert (result.code, result.body, closes) == (200, b"all sent", [1])
    [record] = records(caplog)
    assert "closing the response body" in record.getMessage() and record.exc_info[0] is Boom


def test_close_without_iterating_still_closes_the_app_body():
    app = CloseTracker(midstream_app)
    body = ErrorCatcher(app)(make_environ(), lambda *a: None)
    body.close()
    body.close()
    assert app.closes == [1]


# -- debug pages ------------------------------------------------------------------

SECRET_HEADERS = {"HTTP_COOKIE": "session=cookie-value-123; theme=dark",
                  "HTTP_AUTHORIZATION": "Bearer token-value-456"}


def test_debug_html_escapes_and_shows_frames_locals_request(caplog):
    result = call(ErrorCatcher(raising_app, debug=True), "/page?q=1",
                  HTTP_ACCEPT="text/html", **SECRET_HEADERS)
    page = result.body.decode()
    assert result.code == 500 and result.header("Content-Type").startswith("text/html")
    assert "<script" not in page  # neither the message nor the local made it in raw
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "raising_app" in page and "hidden" in page and "password = SECRET" in page
    assert "test_error_catcher.py" in page and "middleware/error_catcher.py" not in page
    assert "GET http://127.0.0.1/page?q=1" in page
    assert "cookie-value-123" not in page and "token-value-456" not in page and MASK in page
    assert records(caplog)[0].error_id in page
    assert "default-src 'none'" in result.header("Content-Security-Policy")


def test_debug_json_for_api_clients(caplog):
    def app(environ, start_response):
        seen = dict(environ)  # noqa: F841 - a local holding the secrets
        raise Boom("json please")
    result = call(ErrorCatcher(app, debug=True), "/api", HTTP_ACCEPT="application/json",
                  **SECRET_HEADERS)
    data = result.json()
    assert data["error_id"] == records(caplog)[0].error_id
    [exc] = data["exceptions"]
    assert (exc["type"], exc["message"]) == ("Boom", "json please")
    [frame] = exc["frames"]
    assert frame["function"] == "app" and "seen" in frame["locals"]
    assert any(line["current"] and "raise Boom" in line["code"] for line in frame["context"])
    assert data["request"]["headers"]["Cookie"] == MASK
    assert data["request"]["headers"]["Authorization"] == MASK
    assert "cookie-value-123" not in result.body.decode()
    assert "token-value-456" not in result.body.decode()


def test_debug_shows_the_exception_chain_and_survives_broken_reprs(caplog):
    class BadRepr:
        def __repr__(self):
            raise RuntimeError("no repr")

    def app(environ, start_response):
        broken = BadRepr()  # noqa: F841
        huge = "x" * 10_000  # noqa: F841
        try:
            {}["missing"]
        except KeyError as exc:
            raise Boom("wrapped") from exc
    result = call(ErrorCatcher(app, debug=True), "/", HTTP_ACCEPT="application/json")
    first, last = result.json()["exceptions"]
    assert (first["type"], last["type"]) == ("KeyError", "Boom")
    local = last["frames"][0]["locals"]
    assert "BadRepr" in local["broken"]
    assert len(local["huge"]) <= 240


LONG_TOKEN = "s3cr3tSESSIONtoken" + "A1b2C3d4" * 18 + "xyZZtail"  # 170 characters


def _leaks(text: str, secret: str = LONG_TOKEN, size: int = 20) -> list[str]:
    return [secret[i:i + size] for i in range(len(secret) - size + 1) if secret[i:i + size] in text]


@pytest.mark.parametrize("accept", ["text/html", "application/json", "text/plain"])
def test_long_secrets_are_masked_before_reprs_are_shortened(accept, caplog):
    assert len(LONG_TOKEN) == 170

    class Holder:
        def __repr__(self):
            return f"<Holder {self.token}>"

    def app(environ, start_response):
        cookie = environ["HTTP_COOKIE"]  # the raw header in a local
        sid = cookie.split("=", 1)[1].split(";")[0]  # the token alone
        nested = {"auth": [environ["HTTP_AUTHORIZATION"]], "sid": sid}  # noqa: F841
        holder = Holder()
        holder.token = sid
        raise Boom("failed")

    environ = {"HTTP_COOKIE": f"sid={LONG_TOKEN}; theme=dark",
               "HTTP_AUTHORIZATION": f"Bearer {LONG_TOKEN}", "HTTP_ACCEPT": accept}
    result = call(ErrorCatcher(app, debug=True), "/", **environ)
    page = result.body.decode()
    assert result.code == 500 and "cookie" in page and "holder" in page and MASK in page
    assert _leaks(page) == []
    # the mailed report is the plain-text form of the same details
    from stack.middleware.error_catcher import debug_text, describe
    request = {**make_environ("/"), **environ}
    try:
        app(request, None)
    except Boom as exc:
        report = debug_text(describe(request, exc))
    assert "sid = " in report and _leaks(report) == []


def test_debug_plain_text(caplog):
    result = call(ErrorCatcher(raising_app, debug=True), "/", HTTP_ACCEPT="text/plain")
    text = result.body.decode()
    assert text.startswith("Traceback (most recent call last):")
    assert "Boom: failed" in text and "Request: GET http://127.0.0.1/" in text


# -- environ switches -------------------------------------------------------------

@pytest.mark.parametrize("key", ["x-wsgiorg.throw_errors", "paste.throw_errors"])
def test_throw_errors_reraises_without_reporting(key, caplog):
    with pytest.raises(Boom):
        call(ErrorCatcher(raising_app), "/", **{key: True})
    with pytest.raises(Boom):
        call(ErrorCatcher(late_raising_app), "/", **{key: True})
    assert records(caplog) == []


def test_expected_exceptions_pass_through(caplog):
    with pytest.raises(Boom):
        call(ErrorCatcher(raising_app), "/", **{"paste.expected_exceptions": [KeyError, Boom]})
    assert records(caplog) == []
    result = call(ErrorCatcher(raising_app), "/", **{"paste.expected_exceptions": [KeyError]})
    assert result.code == 500


@pytest.mark.parametrize("accept, form", [
    ("text/html", "text/html"),
    ("application/json, text/html;q=0.9", "application/json"),
    ("text/*", "text/html"),
    ("*/*", "text/html"),
    ("application/*", "application/json"),
    ("image/png", "text/plain"),
    ("text/html;q=0, */*", "application/json"),
    ("text/plain;q=bogus, application/json;q=0.1", "application/json"),
    ("", "text/plain"),
], ids=lambda v: v or "empty")
def test_preferred_form(accept, form):
    assert preferred_form(accept) == form


# -- options ----------------------------------------------------------------------

@pytest.mark.parametrize("options, option", [
    ({"debug": "yes"}, "debug"),
    ({"error_email": ["not-an-address"]}, "error_email"),
    ({"error_email": "a@b.c", "smtp_server": "host:port"}, "smtp_server"),
    ({"error_email": "a@b.c", "mail_interval": -1}, "mail_interval"),
    ({"error_email": "a@b.c", "smtp_username": "u"}, "smtp_username"),
    ({"logger": ""}, "logger"),
    ({"error_email": "a@b.c", "smtp_tls": "false"}, "smtp_tls"),
    ({"error_email": "a@b.c", "smtp_password": "p"}, "smtp_password"),
    ({"error_email": 5}, "error_email"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_options_name_the_option(options, option):
    # the message starts with the option, so the loader can point at its line
    with pytest.raises(ValueError, match=f"^option '{option}': "):
        ErrorCatcher(raising_app, **options)


@pytest.mark.parametrize("option", ["debug", "smtp_tls"])
@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_bool_options_take_real_bools_only(option, value):
    # 'false' is a truthy str: smtp_tls='false' used to turn STARTTLS on
    with pytest.raises(ValueError) as info:
        ErrorCatcher(raising_app, error_email="a@b.c", **{option: value})
    assert str(info.value) == f"option {option!r}: expected True or False, got {value!r}"


def test_smtp_tls_keeps_real_bools():
    assert ErrorCatcher(raising_app, error_email="a@b.c", smtp_tls=True).mailer.tls is True
    assert ErrorCatcher(raising_app, error_email="a@b.c", smtp_tls=False).mailer.tls is False


@pytest.mark.parametrize("options, option", [
    ({"smtp_server": "host:port"}, "smtp_server"),
    ({"smtp_server": "host:0"}, "smtp_server"),
    ({"smtp_server": "host:65536"}, "smtp_server"),
    ({"smtp_server": ":25"}, "smtp_server"),
    ({"smtp_server": ""}, "smtp_server"),
    ({"smtp_username": "u"}, "smtp_username"),
    ({"smtp_password": "p"}, "smtp_password"),
    ({"smtp_tls": "yes"}, "smtp_tls"),
    ({"mail_interval": -1}, "mail_interval"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_mail_options_are_checked_without_error_email(options, option):
    # a mistake shows when the file is loaded, not the day error_email is added
    with pytest.raises(ValueError, match=f"^option '{option}': "):
        ErrorCatcher(raising_app, **options)


@pytest.mark.parametrize("server, host, port", [
    ("mail.example.com", "mail.example.com", 25), ("127.0.0.1:2525", "127.0.0.1", 2525),
    ("h:1", "h", 1), ("h:65535", "h", 65535),
])
def test_good_smtp_servers_pass_with_or_without_error_email(server, host, port):
    assert ErrorCatcher(raising_app, smtp_server=server, smtp_username="u",
                        smtp_password="p").mailer is None
    mailer = ErrorCatcher(raising_app, error_email="a@b.c", smtp_server=server).mailer
    assert (mailer.host, mailer.port) == (host, port)


def test_ini_mail_options_are_checked_without_error_email():
    with pytest.raises(ValueError, match="^option 'smtp_server': "):
        filter_factory({}, smtp_server="host:port")
    with pytest.raises(ValueError, match="^option 'smtp_username': "):
        filter_factory({}, smtp_username="u")


def test_factory_converts_ini_strings(caplog):
    wrap = filter_factory({}, debug="true", error_email="a@example.com b@example.com",
                          smtp_server="127.0.0.1:2525", mail_interval="5m")
    catcher = wrap(raising_app)
    assert catcher.debug is True and catcher.app is raising_app
    assert catcher.mailer.to == ["a@example.com", "b@example.com"]
    assert (catcher.mailer.host, catcher.mailer.port, catcher.mailer.interval) == ("127.0.0.1", 2525, 300.0)
    with pytest.raises(ConfigError, match="did you mean 'debug'"):
        filter_factory({}, debgu="true")
    with pytest.raises(ConfigError, match="debug"):
        filter_factory({}, debug="perhaps")


# -- mail -------------------------------------------------------------------------

@pytest.fixture
def smtp_server():
    """A real aiosmtpd server on 127.0.0.1; yields (port, list of received messages)."""
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.smtp import AuthResult
    received: list = []
    logins: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"pw")

    from support import free_port
    controller = aiosmtpd.Controller(Handler(), hostname="127.0.0.1", port=free_port(),
                                     authenticator=authenticator, auth_require_tls=False)
    controller.start()
    try:
        yield controller.port, received, logins
    finally:
        controller.stop()


def mails(received):
    import email
    import email.policy
    return [email.message_from_bytes(envelope.content, policy=email.policy.default)
            for envelope in received]


def test_mail_is_sent_and_throttled(smtp_server, caplog):
    port, received, logins = smtp_server
    catcher = ErrorCatcher(raising_app, error_email=["ops@example.com"],
                           smtp_server=f"127.0.0.1:{port}", from_address="stack@example.com",
                           smtp_username="user", smtp_password="pw", mail_interval=0.5)
    for _ in range(3):  # a storm: one mail, two counted
        assert call(catcher, "/storm").code == 500
    assert catcher.mailer.flush(10)
    ids = [r.error_id for r in records(caplog)]
    [first] = mails(received)
    assert first["To"] == "ops@example.com" and first["From"] == "stack@example.com"
    assert ids[0] in first["Subject"] and "Boom" in first["Subject"]
    assert "raising_app" in first.get_content() and "GET http://127.0.0.1/storm" in first.get_content()
    assert logins == [(b"user", b"pw")]
    time.sleep(0.6)
    call(catcher, "/later")
    assert catcher.mailer.flush(10)
    second = mails(received)[1]
    assert "2 more error(s)" in second.get_content()
    assert records(caplog)[-1].error_id in second["Subject"]


def test_mail_is_sent_off_the_request_path(caplog):
    """An SMTP server that never answers does not slow the request down."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        catcher = ErrorCatcher(raising_app, error_email="ops@example.com",
                               smtp_server="127.0.0.1:%d" % silent.getsockname()[1])
        start = time.monotonic()
        assert call(catcher, "/").code == 500
        assert time.monotonic() - start < 1.0
        assert not catcher.mailer.flush(0.2)  # still waiting for the greeting, in the background


def test_mail_failure_is_logged(caplog):
    from support import free_port
    catcher = ErrorCatcher(raising_app, error_email="ops@example.com",
                           smtp_server=f"127.0.0.1:{free_port()}")  # nothing listens
    call(catcher, "/")
    assert catcher.mailer.flush(10)
    assert any("could not mail" in r.getMessage() for r in records(caplog))
