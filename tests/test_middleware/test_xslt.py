"""Tests for stack.middleware.xslt: which responses, which stylesheet, output, limits, errors,
caching and threads, parameters, the security of parsing and stylesheets, the contract kit,
the INI factory and the example site."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
from support import ROOT, call

import stack
from stack.middleware import xslt as xslt_module
from stack.middleware.xslt import XSLT, as_params, filter_factory, parse_param
from stack.errors import ConfigError
from stack.testing import Exchange, Probe, ProbeError, assert_middleware

XSL = "http://www.w3.org/1999/XSL/Transform"


def sheet(body: str, output: str = '<xsl:output method="html" encoding="UTF-8"/>',
          extra_ns: str = "") -> str:
    return (f'<xsl:stylesheet version="1.0" xmlns:xsl="{XSL}" {extra_ns}>{output}'
            f'{body}</xsl:stylesheet>')


#: Lists the <item> texts, and shows the parameters it got.
LIST = sheet("""
  <xsl:param name="title" select="'default title'"/>
  <xsl:template match="/">
    <html><body><h1><xsl:value-of select="$title"/></h1>
      <xsl:for-each select="//item"><p><xsl:value-of select="."/></p></xsl:for-each>
    </body></html>
  </xsl:template>""")

DOC = b'<?xml version="1.0" encoding="utf-8"?><list><item>one</item><item>caf\xc3\xa9</item></list>'


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def theme(tmp_path: Path) -> str:
    return write(tmp_path / "theme.xsl", LIST)


def xml_app(body: bytes = DOC, status: str = "200 OK", ctype: str = "application/xml",
            headers: Iterable[tuple[str, str]] = (), chunks: int = 1) -> Callable:
    """An app answering ``body`` (in ``chunks`` pieces, no Content-Length if more than one)."""
    calls: list[dict] = []

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        calls.append(dict(environ))
        extra = [("Content-Length", str(len(body)))] if chunks == 1 else []
        start_response(status, [("Content-Type", ctype), *extra, *headers])
        size = max(1, -(-len(body) // chunks))
        return [body[i:i + size] for i in range(0, len(body), size)] or [b""]

    app.calls = calls  # type: ignore[attr-defined]
    return app


# -- which responses ------------------------------------------------------------------

def test_transforms_an_xml_response_into_html(theme: str) -> None:
    result = call(XSLT(xml_app(), stylesheet=theme), "/")
    assert result.status == "200 OK"
    assert result.header("Content-Type") == "text/html; charset=UTF-8"
    assert result.header("Content-Length") == str(len(result.body))
    assert "<p>café</p>" in result.body.decode("utf-8")
    assert "<h1>default title</h1>" in result.body.decode()


@pytest.mark.parametrize("ctype, transformed", [
    ("application/xml", True), ("text/xml; charset=utf-8", True), ("application/atom+xml", True),
    ("application/rss+xml", True), ("APPLICATION/XML", True), ("text/html", False),
    ("application/json", False), ("text/plain", False), ("application/xml-dtd", False),
], ids=lambda v: str(v))
def test_default_content_types(theme: str, ctype: str, transformed: bool) -> None:
    result = call(XSLT(xml_app(ctype=ctype), stylesheet=theme), "/")
    assert (result.body != DOC) is transformed
    if not transformed:
        assert result.header("Content-Type") == ctype


@pytest.mark.parametrize("types, ctype, transformed", [
    (["application/vnd.catalogue"], "application/vnd.catalogue", True),
    (["application/vnd.catalogue"], "application/xml", False),
    (["text/*"], "text/anything", True),
    (["*+xml"], "text/xml", False),
])
def test_content_types_option(theme: str, types: list[str], ctype: str, transformed: bool) -> None:
    result = call(XSLT(xml_app(ctype=ctype), stylesheet=theme, content_types=types), "/")
    assert (result.body != DOC) is transformed


def test_only_configured_statuses(theme: str) -> None:
    app = xml_app(status="404 Not Found")
    assert call(XSLT(app, stylesheet=theme), "/").body == DOC
    themed = call(XSLT(app, stylesheet=theme, statuses=[200, 404]), "/")
    assert themed.status == "404 Not Found" and b"<p>one</p>" in themed.body


def test_compressed_xml_passes_through(theme: str) -> None:
    app = xml_app(headers=[("Content-Encoding", "gzip")])
    assert call(XSLT(app, stylesheet=theme), "/").body == DOC


def test_head_keeps_the_body_and_rewrites_headers(theme: str) -> None:
    app = xml_app(headers=[("ETag", '"v1"'), ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")])
    result = call(XSLT(app, stylesheet=theme), "/", method="HEAD")
    assert result.status == "200 OK"
    assert result.body == DOC  # untransformed: a server sends no HEAD body anyway
    assert result.header("Content-Type") == "text/html; charset=UTF-8"
    for name in ("Content-Length", "ETag", "Last-Modified"):
        assert result.header(name) is None


def test_an_inner_xslt_output_is_not_transformed_again(tmp_path: Path) -> None:
    to_xml = write(tmp_path / "inner.xsl", sheet(
        '<xsl:template match="/"><wrapped><xsl:copy-of select="*"/></wrapped></xsl:template>',
        output='<xsl:output method="xml"/>'))
    count = write(tmp_path / "outer.xsl", sheet(
        '<xsl:template match="/"><outer/></xsl:template>', output='<xsl:output method="xml"/>'))
    result = call(XSLT(XSLT(xml_app(), stylesheet=to_xml), stylesheet=count), "/")
    assert b"<wrapped><list>" in result.body and b"<outer" not in result.body


def test_an_outer_xslt_transforms_what_an_inner_one_passed_on(tmp_path: Path, theme: str) -> None:
    (tmp_path / "themes").mkdir()
    inner = XSLT(xml_app(), honor_pi=True, allowed_dirs=[str(tmp_path / "themes")])  # no PI here
    result = call(XSLT(inner, stylesheet=theme), "/")
    assert b"<p>one</p>" in result.body


# -- output ------------------------------------------------------------------------------

@pytest.mark.parametrize("output, root, ctype, body", [
    ('<xsl:output method="html"/>', "html", "text/html; charset=UTF-8", "café".encode()),
    ('<xsl:output method="html" encoding="ISO-8859-1"/>', "html", "text/html; charset=ISO-8859-1",
     "café".encode("latin-1")),
    ('<xsl:output method="text"/>', "t", "text/plain; charset=UTF-8", "café".encode()),
    ('<xsl:output method="xml" media-type="application/atom+xml"/>', "feed",
     "application/atom+xml; charset=UTF-8", "café".encode()),
    ('<xsl:output method="xml" encoding="UTF-16"/>', "doc", "application/xml; charset=UTF-16",
     "café".encode("utf-16-le")),
    ("", "html", "text/html; charset=UTF-8", "café".encode()),
    ("", "doc", "application/xml; charset=UTF-8", "café".encode()),
], ids=["html", "html-latin1", "text", "media-type", "utf16", "auto-html", "auto-xml"])
def test_output_decides_content_type_and_charset(tmp_path: Path, output: str, root: str,
                                                 ctype: str, body: bytes) -> None:
    path = write(tmp_path / "out.xsl", sheet(
        f'<xsl:template match="/"><{root}><xsl:value-of select="//item[2]"/></{root}>'
        "</xsl:template>", output=output))
    result = call(XSLT(xml_app(), stylesheet=path), "/")
    assert result.header("Content-Type") == ctype
    assert body in result.body
    assert result.header("Content-Length") == str(len(result.body))


def test_validators_are_dropped_or_rederived(theme: str) -> None:
    plain = call(XSLT(xml_app(headers=[("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
                                       ("Accept-Ranges", "bytes")]), stylesheet=theme), "/")
    assert plain.header("Last-Modified") is None and plain.header("ETag") is None
    assert plain.header("Accept-Ranges") is None
    tagged = XSLT(xml_app(headers=[("ETag", '"src-1"')]), stylesheet=theme)
    first = call(tagged, "/")
    etag = first.header("ETag")
    assert etag and etag != '"src-1"' and etag == call(tagged, "/").header("ETag")
    assert call(tagged, "/", HTTP_IF_NONE_MATCH='"src-1"').status == "200 OK"
    again = call(tagged, "/", HTTP_IF_NONE_MATCH=f'"other", {etag}')
    assert again.status == "304 Not Modified" and again.body == b"" and again.header("ETag") == etag
    other = XSLT(xml_app(body=DOC.replace(b"one", b"two"), headers=[("ETag", '"src-1"')]),
                 stylesheet=theme)
    assert call(other, "/").header("ETag") != etag


def test_other_app_headers_are_kept(theme: str) -> None:
    app = xml_app(headers=[("Set-Cookie", "a=1"), ("X-Kept", "yes"), ("Cache-Control", "max-age=5")])
    result = call(XSLT(app, stylesheet=theme), "/")
    assert result.header("Set-Cookie") == "a=1" and result.header("X-Kept") == "yes"
    assert result.header("Cache-Control") == "max-age=5"


# -- parameters --------------------------------------------------------------------------

PARAMS = sheet("""
  <xsl:param name="q" select="'none'"/><xsl:param name="p"/><xsl:param name="e"/>
  <xsl:param name="h" select="'no header'"/><xsl:param name="lit"/>
  <xsl:template match="/">q=[<xsl:value-of select="$q"/>] p=[<xsl:value-of select="$p"/>] e=[<xsl:value-of select="$e"/>] h=[<xsl:value-of select="$h"/>] lit=[<xsl:value-of select="$lit"/>]</xsl:template>
""", output='<xsl:output method="text"/>')


@pytest.fixture
def param_app(tmp_path: Path) -> XSLT:
    return XSLT(xml_app(), stylesheet=write(tmp_path / "p.xsl", PARAMS), params={
        "q": "query:q", "p": "path", "e": "environ:stack.test", "h": "header:X-Theme",
        "lit": "'it''s \"quoted\"'"})


def test_params_from_the_request(param_app: XSLT) -> None:
    # PATH_INFO as a server gives it: UTF-8 bytes decoded as latin-1
    result = call(param_app, "/docs/caf\xc3\xa9?q=a%27b%22c&q=second", SCRIPT_NAME="/site",
                  HTTP_X_THEME="dark", **{"stack.test": "from environ"})
    text = result.body.decode()
    assert "q=[a'b\"c]" in text  # the first value, quotes and all
    assert "p=[/site/docs/café]" in text
    assert "e=[from environ]" in text and "h=[dark]" in text
    assert "lit=[it''s \"quoted\"]" in text
    assert "X-Theme" in (result.header("Vary") or "")


def test_missing_params_keep_the_stylesheet_defaults(param_app: XSLT) -> None:
    text = call(param_app, "/").body.decode()
    assert "q=[none]" in text and "h=[no header]" in text and "e=[]" in text


@pytest.mark.parametrize("value, shown", [
    ("concat('x')", "concat('x')"), ("') or true() or ('", "') or true() or ('"),
    ('"]]><x/>', '"]]><x/>'), ("\x00\x01", "\ufffd\ufffd"),  # characters XML cannot hold
])
def test_param_values_are_data_never_xpath(param_app: XSLT, value: str, shown: str) -> None:
    from urllib.parse import quote
    result = call(param_app, "/?q=" + quote(value))
    assert result.status == "200 OK"
    assert f"q=[{shown}]" in result.body.decode()


@pytest.mark.parametrize("name, source, expected", [
    ("q", "query:q", ("query", "q")), ("p", "path", ("path", "")),
    ("e", "environ:REMOTE_ADDR", ("environ", "REMOTE_ADDR")),
    ("h", "header:Accept-Language", ("header", "HTTP_ACCEPT_LANGUAGE")),
    ("t", "header:content-type", ("header", "CONTENT_TYPE")),
    ("l", "'a b'", ("literal", "a b")), ("l2", '"x"', ("literal", "x")),
])
def test_parse_param(name: str, source: str, expected: tuple[str, str]) -> None:
    assert parse_param(name, source) == expected


@pytest.mark.parametrize("name, source", [("q", "cookie:x"), ("q", "query:"), ("1q", "path"),
                                          ("q", "'unclosed"), ("q", "")])
def test_bad_params_are_rejected(theme: str, name: str, source: str) -> None:
    with pytest.raises(ValueError, match="params"):
        XSLT(xml_app(), stylesheet=theme, params={name: source})


# -- limits and errors -----------------------------------------------------------------------

def test_body_over_max_bytes_is_502_with_a_log_line(theme: str, caplog: Any) -> None:
    for chunks in (1, 7):  # announced by Content-Length, and found while reading
        app = xml_app(chunks=chunks)
        with caplog.at_level(logging.ERROR, "stack.xslt"):
            result = call(XSLT(app, stylesheet=theme, max_bytes=40), "/big")
        assert result.status == "502 Bad Gateway"
        assert result.header("Content-Length") == str(len(result.body))
        assert "max_bytes=40" in caplog.text and "GET /big" in caplog.text
        caplog.clear()


def test_body_over_max_bytes_can_pass_through(theme: str) -> None:
    for chunks in (1, 7):
        result = call(XSLT(xml_app(chunks=chunks), stylesheet=theme, max_bytes=40,
                           on_too_large="passthrough"), "/")
        assert result.status == "200 OK" and result.body == DOC


@pytest.mark.parametrize("body", [b"<list><item>unclosed</list>", b"", b"not xml at all",
                                  b"<a/><b/>"], ids=["unclosed", "empty", "text", "two-roots"])
def test_malformed_xml_is_502(theme: str, body: bytes, caplog: Any) -> None:
    with caplog.at_level(logging.ERROR, "stack.xslt"):
        result = call(XSLT(xml_app(body=body), stylesheet=theme), "/feed")
    assert result.status == "502 Bad Gateway"
    assert body not in result.body or not body
    assert "malformed XML" in caplog.text and "GET /feed" in caplog.text


def test_transform_error_is_500_with_the_libxslt_log(tmp_path: Path, caplog: Any) -> None:
    path = write(tmp_path / "stop.xsl", sheet(
        '<xsl:template match="/"><html><xsl:message terminate="yes">theme gave up here'
        "</xsl:message></html></xsl:template>"))
    with caplog.at_level(logging.ERROR, "stack.xslt"):
        result = call(XSLT(xml_app(), stylesheet=path), "/")
    assert result.status == "500 Internal Server Error"
    assert b"theme gave up" not in result.body and b"<html" not in result.body
    assert "transform failed" in caplog.text and "theme gave up here" in caplog.text


@pytest.mark.parametrize("text, message", [
    ("<xsl:stylesheet", "stylesheet"), (sheet('<xsl:template match="/"><xsl:value-of select="(("/></xsl:template>'),
     "stylesheet"),
    ("<not-a-stylesheet/>", "stylesheet")], ids=["malformed", "bad-xpath", "not-xslt"])
def test_a_bad_stylesheet_is_rejected_when_built(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        XSLT(xml_app(), stylesheet=write(tmp_path / "bad.xsl", text))


def test_a_stylesheet_that_breaks_later_gives_500_until_fixed(theme: str, caplog: Any) -> None:
    middleware = XSLT(xml_app(), stylesheet=theme, check_interval=0)
    assert call(middleware, "/").status == "200 OK"
    Path(theme).write_text("<xsl:stylesheet broken", encoding="utf-8")
    with caplog.at_level(logging.ERROR, "stack.xslt"):
        broken = call(middleware, "/")
    assert broken.status == "500 Internal Server Error"
    assert "stylesheet failed" in caplog.text and "theme.xsl" in caplog.text
    Path(theme).write_text(LIST, encoding="utf-8")
    assert call(middleware, "/").status == "200 OK"


def test_errors_in_the_app_propagate_and_close(theme: str) -> None:
    closed = []

    class Body:
        def __iter__(self):
            yield b"<list>"
            raise ProbeError("app failed mid-stream")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict, start_response: Callable) -> Body:
        start_response("200 OK", [("Content-Type", "application/xml")])
        return Body()

    with pytest.raises(ProbeError):
        call(XSLT(app, stylesheet=theme), "/")
    assert closed == [True]


# -- options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({}, "stylesheet"), ({"stylesheet": "/no/such/file.xsl"}, "stylesheet"),
    ({"honor_pi": True}, "honor_pi"), ({"honor_pi": True, "allowed_dirs": ["/no/such/dir"]},
                                       "allowed_dirs"),
    ({"on_refused": "ignore"}, "on_refused"), ({"on_too_large": "drop"}, "on_too_large"),
    ({"statuses": [200, 99]}, "statuses"), ({"statuses": ["200"]}, "statuses"),
    ({"content_types": ["xml"]}, "content_types"), ({"content_types": "text/xml"}, "content_types"),
    ({"check_interval": -1}, "check_interval"), ({"max_bytes": 0}, "max_bytes"),
    ({"statuses": "200"}, "statuses"), ({"statuses": 200}, "statuses"),
    ({"params": ["a"]}, "params"), ({"params": {"a": 1}}, "params"), ({"logger": ""}, "logger"),
    ({"stylesheet": 3}, "stylesheet"),
])
def test_bad_options_name_the_option(theme: str, options: dict, message: str) -> None:
    options = {"stylesheet": theme, **options} if "stylesheet" not in options and options \
        and "honor_pi" not in options else options
    # the message starts with the option, so the loader can point at its line
    with pytest.raises(ValueError, match=f"^option '{message}': "):
        XSLT(xml_app(), **options)


@pytest.mark.parametrize("option", ["honor_pi", "subrequest_stylesheets"])
@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_bool_options_take_real_bools_only(tmp_path: Path, theme: str, option: str,
                                           value: object) -> None:
    # 'false' is a truthy str: it used to switch the option on
    with pytest.raises(ValueError) as info:
        XSLT(xml_app(), stylesheet=theme, allowed_dirs=[str(tmp_path)], **{option: value})
    assert str(info.value) == f"option {option!r}: expected True or False, got {value!r}"


def test_bool_options_keep_real_bools(tmp_path: Path, theme: str) -> None:
    on = XSLT(xml_app(), honor_pi=True, subrequest_stylesheets=True)
    assert on.honor_pi is True and on.subrequest_stylesheets is True
    off = XSLT(xml_app(), stylesheet=theme, honor_pi=False, subrequest_stylesheets=False)
    assert off.honor_pi is False and off.subrequest_stylesheets is False


# -- caching, reloading, threads ----------------------------------------------------------------

@pytest.fixture
def compiles(monkeypatch: Any) -> list[int]:
    """Counts stylesheet compilations (in any thread)."""
    counted: list[int] = []
    real = xslt_module._compile

    def counting(*args: Any) -> Any:
        counted.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(xslt_module, "_compile", counting)
    return counted


def test_compiled_once_and_reloaded_when_changed(theme: str, compiles: list[int]) -> None:
    middleware = XSLT(xml_app(), stylesheet=theme, check_interval=0.2)
    for _ in range(20):
        assert b"default title" in call(middleware, "/").body
    assert len(compiles) == 1
    Path(theme).write_text(LIST.replace("default title", "new title"), encoding="utf-8")
    os.utime(theme, ns=(time.time_ns() + 10**9,) * 2)
    assert b"default title" in call(middleware, "/").body  # not checked again yet
    time.sleep(0.25)
    assert b"new title" in call(middleware, "/").body
    assert len(compiles) == 2


def test_no_stat_inside_check_interval(theme: str, monkeypatch: Any) -> None:
    middleware = XSLT(xml_app(), stylesheet=theme, check_interval=3600)
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(xslt_module.os, "stat", lambda *a, **k: stats.append(a) or real_stat(*a, **k))
    for _ in range(10):
        call(middleware, "/")
    assert stats == []


def test_several_threads_transform_correctly_during_reloads(theme: str, compiles: list[int]) -> None:
    middleware = XSLT(xml_app(), stylesheet=theme, check_interval=0,
                      params={"title": "query:t"})
    failures: list[str] = []
    start = threading.Barrier(9)

    def worker(number: int) -> None:
        start.wait()
        for round_ in range(40):
            tag = f"t{number}-{round_}"
            result = call(middleware, f"/?t={tag}")
            if result.status != "200 OK" or f"<h1>{tag}</h1>".encode() not in result.body \
                    or b"<p>caf\xc3\xa9</p>" not in result.body:
                failures.append(f"{tag}: {result.status} {result.body[:200]!r}")

    def reloader() -> None:
        start.wait()
        for round_ in range(5):
            time.sleep(0.01)
            fresh = Path(theme + ".new")  # replaced atomically, as a deploy should
            fresh.write_text(LIST.replace("<body>", f"<body><!-- v{round_} -->"), encoding="utf-8")
            os.utime(fresh, ns=(time.time_ns() + round_ * 10**9,) * 2)
            os.replace(fresh, theme)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=reloader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(set(compiles)) > 1  # each thread compiled its own copy


# -- <?xml-stylesheet?> ---------------------------------------------------------------------

def pi_doc(href: str, kind: str = "text/xsl") -> bytes:
    return f'<?xml version="1.0"?><?xml-stylesheet type="{kind}" href="{href}"?>'.encode() + \
        DOC.split(b"?>", 1)[1]


@pytest.fixture
def themes(tmp_path: Path) -> Path:
    folder = tmp_path / "themes"
    (folder / "sub").mkdir(parents=True)
    write(folder / "sub" / "site.xsl", LIST.replace("default title", "from the PI"))
    write(tmp_path / "outside.xsl", LIST.replace("default title", "OUTSIDE"))
    return folder


@pytest.mark.parametrize("href", ["sub/site.xsl", "/sub/site.xsl", "sub/./site.xsl",
                                  "sub%2Fsite.xsl", "file://{themes}/sub/site.xsl"])
def test_pi_href_inside_allowed_dirs(themes: Path, href: str) -> None:
    app = xml_app(body=pi_doc(href.format(themes=themes)))
    result = call(XSLT(app, honor_pi=True, allowed_dirs=[str(themes)]), "/")
    assert result.status == "200 OK" and b"from the PI" in result.body


@pytest.mark.parametrize("href", ["../outside.xsl", "sub/../../outside.xsl", "file://{tmp}/outside.xsl",
                                  "http://127.0.0.1:9/site.xsl", "//evil.example/site.xsl",
                                  "ftp://x/site.xsl", "link.xsl", "missing.xsl", ""])
def test_pi_href_outside_is_refused(themes: Path, href: str, caplog: Any) -> None:
    (themes / "link.xsl").symlink_to(themes.parent / "outside.xsl")
    doc = pi_doc(href.format(tmp=themes.parent))
    with caplog.at_level(logging.ERROR, "stack.xslt"):
        refused = call(XSLT(xml_app(body=doc), honor_pi=True, allowed_dirs=[str(themes)]), "/x")
    assert refused.status == "500 Internal Server Error" and b"OUTSIDE" not in refused.body
    assert "refused stylesheet" in caplog.text and "GET /x" in caplog.text
    passed = call(XSLT(xml_app(body=doc), honor_pi=True, allowed_dirs=[str(themes)],
                       on_refused="passthrough"), "/")
    assert passed.status == "200 OK" and passed.body == doc


def test_pi_choice(themes: Path, theme: str) -> None:
    allowed = [str(themes)]
    css = pi_doc("sub/site.xsl", kind="text/css")
    # a CSS PI is not a stylesheet for us; without one the configured stylesheet applies
    assert b"default title" in call(XSLT(xml_app(body=css), stylesheet=theme, honor_pi=True,
                                         allowed_dirs=allowed), "/").body
    assert call(XSLT(xml_app(body=css), honor_pi=True, allowed_dirs=allowed), "/").body == css
    # the document's PI wins over the configured stylesheet; without honor_pi it is ignored
    doc = pi_doc("sub/site.xsl")
    assert b"from the PI" in call(XSLT(xml_app(body=doc), stylesheet=theme, honor_pi=True,
                                       allowed_dirs=allowed), "/").body
    assert b"default title" in call(XSLT(xml_app(body=doc), stylesheet=theme), "/").body


def site_with_theme(doc: bytes, status: str = "200 OK") -> Callable:
    """An app serving ``doc`` everywhere but ``/theme.xsl`` (its stylesheet)."""
    seen: list[dict] = []

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        seen.append(dict(environ))
        if environ["PATH_INFO"] == "/theme.xsl":
            body = LIST.replace("default title", "by subrequest").encode()
            start_response(status, [("Content-Type", "application/xslt+xml")])
            return [body]
        start_response("200 OK", [("Content-Type", "application/xml")])
        return [doc]

    app.seen = seen  # type: ignore[attr-defined]
    return app


@pytest.mark.parametrize("href", ["/site/theme.xsl", "../theme.xsl", "theme.xsl?v=1",
                                  "/site/%74heme.xsl"])
def test_subrequest_stylesheets(href: str) -> None:
    app = site_with_theme(pi_doc(href))
    middleware = XSLT(app, honor_pi=True, subrequest_stylesheets=True, check_interval=3600)
    path = "/docs/page" if href.startswith("..") else "/page"
    for _ in range(3):
        result = call(middleware, path, SCRIPT_NAME="/site", HTTP_IF_NONE_MATCH='"x"',
                      HTTP_ACCEPT_ENCODING="gzip")
        assert result.status == "200 OK" and b"by subrequest" in result.body
    subrequests = [env for env in app.seen if env["PATH_INFO"] == "/theme.xsl"]
    assert len(subrequests) == 1  # cached for check_interval
    sub = subrequests[0]
    assert sub["REQUEST_METHOD"] == "GET" and sub["SCRIPT_NAME"] == "/site"
    assert sub[xslt_module.SUBREQUEST_KEY] is True
    assert "HTTP_IF_NONE_MATCH" not in sub and "HTTP_ACCEPT_ENCODING" not in sub


@pytest.mark.parametrize("href", ["/other/theme.xsl", "../../theme.xsl", "http://localhost/theme.xsl",
                                  "/site/%2e%2e/x/theme.xsl"])
def test_subrequests_stay_inside_the_app(href: str, caplog: Any) -> None:
    app = site_with_theme(pi_doc(href))
    with caplog.at_level(logging.ERROR, "stack.xslt"):
        result = call(XSLT(app, honor_pi=True, subrequest_stylesheets=True), "/page",
                      SCRIPT_NAME="/site")
    assert result.status == "500 Internal Server Error"
    assert [env for env in app.seen if env["PATH_INFO"] != "/page"] == []
    assert "refused stylesheet" in caplog.text


def test_subrequest_stylesheets_are_refetched_and_recompiled_only_when_changed(
        compiles: list[int]) -> None:
    theme = {"text": LIST}

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        if environ["PATH_INFO"] == "/theme.xsl":
            start_response("200 OK", [("Content-Type", "text/xsl")])
            return [theme["text"].encode()]
        start_response("200 OK", [("Content-Type", "application/xml")])
        return [pi_doc("/theme.xsl")]

    middleware = XSLT(app, honor_pi=True, subrequest_stylesheets=True, check_interval=0)
    for _ in range(3):
        assert b"default title" in call(middleware, "/").body
    assert len(compiles) == 1
    theme["text"] = LIST.replace("default title", "changed")
    assert b"changed" in call(middleware, "/").body and len(compiles) == 2


def test_a_failed_subrequest_is_500(caplog: Any) -> None:
    app = site_with_theme(pi_doc("/theme.xsl"), status="404 Not Found")
    with caplog.at_level(logging.ERROR, "stack.xslt"):
        result = call(XSLT(app, honor_pi=True, subrequest_stylesheets=True), "/page")
    assert result.status == "500 Internal Server Error"
    assert "answered '404 Not Found'" in caplog.text


# -- security ------------------------------------------------------------------------------------

@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-VALUE", encoding="utf-8")
    return path


class Listener:
    """A socket on 127.0.0.1 that records whether anything connected to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.3)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return False
        conn.close()
        return True


@pytest.fixture
def listener() -> Iterable[Listener]:
    server = Listener()
    yield server
    server.sock.close()


COPY = sheet('<xsl:template match="/"><html><body><xsl:copy-of select="/"/>[<xsl:value-of '
             'select="/"/>]</body></html></xsl:template>')


def attacks(secret: Path, url: str) -> dict[str, bytes]:
    return {
        "xxe-passwd": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                      b"<r>&x;</r>",
        "xxe-file": f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]><r>&x;</r>'.encode(),
        "xxe-parameter": f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{secret}"> %p;]><r>x</r>'.encode(),
        "xxe-network": f'<!DOCTYPE r [<!ENTITY x SYSTEM "{url}/x">]><r>&x;</r>'.encode(),
        "external-dtd": f'<!DOCTYPE r SYSTEM "{url}/evil.dtd"><r>&e;</r>'.encode(),
        "billion-laughs": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "lollollollollol">'
                          + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'
                                     .encode() for i in range(9))
                          + b"]><l>&j;</l>",
    }


@pytest.mark.parametrize("name", ["xxe-passwd", "xxe-file", "xxe-parameter", "xxe-network",
                                  "external-dtd", "billion-laughs"])
def test_hostile_documents_fail_safely(tmp_path: Path, secret: Path, listener: Listener,
                                       name: str) -> None:
    doc = attacks(secret, listener.url)[name]
    started = time.monotonic()
    result = call(XSLT(xml_app(body=doc), stylesheet=write(tmp_path / "copy.xsl", COPY)), "/")
    assert time.monotonic() - started < 5
    assert result.status in ("200 OK", "502 Bad Gateway")
    assert b"TOP-SECRET" not in result.body and b"root:" not in result.body
    assert len(result.body) < 10_000  # nothing expanded
    assert not listener.connected()


def test_a_stylesheet_cannot_use_entities_either(tmp_path: Path, secret: Path) -> None:
    text = (f'<!DOCTYPE xsl:stylesheet [<!ENTITY s SYSTEM "file://{secret}">]>'
            + sheet('<xsl:template match="/"><html>[&s;]</html></xsl:template>'))
    path = write(tmp_path / "ent.xsl", text)
    try:
        result = call(XSLT(xml_app(), stylesheet=path), "/")
    except ValueError:
        return  # refused when built: safe too
    assert b"TOP-SECRET" not in result.body


EXSL = 'xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl"'


@pytest.mark.parametrize("what", ["write_file", "create_dir", "write_network", "read_network"])
def test_access_control(tmp_path: Path, listener: Listener, what: str, caplog: Any) -> None:
    target = {
        "write_file": str(tmp_path / "written.txt"),
        "create_dir": str(tmp_path / "newdir" / "written.txt"),
        "write_network": listener.url + "/upload",
    }.get(what)
    if what == "read_network":
        body = f"<html><xsl:copy-of select=\"document('{listener.url}/data.xml')\"/></html>"
    else:
        body = f'<html><exsl:document href="{target}" method="text">leaked</exsl:document></html>'
    path = write(tmp_path / "ac.xsl", sheet(f'<xsl:template match="/">{body}</xsl:template>',
                                            extra_ns=EXSL))
    with caplog.at_level(logging.ERROR, "stack.xslt"):
        result = call(XSLT(xml_app(), stylesheet=path), "/")
    assert result.status == "500 Internal Server Error"
    assert not (tmp_path / "written.txt").exists() and not (tmp_path / "newdir").exists()
    assert not listener.connected()
    assert "transform failed" in caplog.text


def test_document_reads_only_inside_allowed_dirs(tmp_path: Path, secret: Path) -> None:
    data = tmp_path / "themes" / "data"
    data.mkdir(parents=True)
    write(data / "menu.xml", "<menu><entry>Home</entry></menu>")
    (data / "escape.xml").symlink_to(secret)

    def run(href: str, **options: Any) -> Any:
        path = write(tmp_path / "themes" / "doc.xsl", sheet(
            f"<xsl:template match=\"/\"><html><xsl:copy-of select=\"document('{href}')\"/>"
            "</html></xsl:template>"))
        return call(XSLT(xml_app(), stylesheet=path, **options), "/")

    assert b"<entry>Home</entry>" in run("data/menu.xml").body  # beside the stylesheet
    for href in (str(secret), f"file://{secret}", "../secret.txt", "data/escape.xml",
                 "file:///etc/passwd"):
        result = run(href)
        assert result.status == "500 Internal Server Error", href
        assert b"TOP-SECRET" not in result.body and b"root:" not in result.body
    public = write(tmp_path / "public.xml", "<menu><entry>Public</entry></menu>")
    assert run(public).status == "500 Internal Server Error"
    assert run(public, allowed_dirs=[str(data)]).status == "500 Internal Server Error"
    assert b"<entry>Public</entry>" in run(public, allowed_dirs=[str(tmp_path)]).body


def test_imports_outside_allowed_dirs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "themes").mkdir()
    write(tmp_path / "other.xsl", LIST)
    path = write(tmp_path / "themes" / "main.xsl",
                 sheet('<xsl:import href="../other.xsl"/>', output=""))
    with pytest.raises(ValueError, match="refused"):
        XSLT(xml_app(), stylesheet=path)
    assert call(XSLT(xml_app(), stylesheet=path, allowed_dirs=[str(tmp_path)]), "/").status == "200 OK"


# -- the contract kit ---------------------------------------------------------------------------

def test_keeps_the_middleware_contract(theme: str) -> None:
    assert_middleware(partial(XSLT, stylesheet=theme))


XML = ("Content-Type", "application/xml")


def probe_app(*, written: Iterable[bytes] = (), chunks: Iterable[bytes] = (b"<list><item>a",
              b"</item><item>b</item></list>"), late: bool = False, error: bool = False,
              after_body_exc_info: bool = False) -> Callable:
    def body(start_response: Callable | None) -> Iterable[bytes]:
        if start_response is not None:
            start_response("200 OK", [XML])
        for number, chunk in enumerate(chunks):
            yield chunk
            if after_body_exc_info and number == 0:
                try:
                    raise ProbeError("after body")
                except ProbeError:
                    start_response_ref[0]("500 Internal Server Error",
                                          [("Content-Type", "text/plain")], __import__("sys").exc_info())
        if error:
            raise ProbeError("raised mid-stream")

    start_response_ref: list[Callable] = []

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        start_response_ref[:] = [start_response]
        if late:
            return body(start_response)
        write_ = start_response("200 OK", [XML])
        for data in written:
            write_(data)
        return body(None)
    return app


def transformed(*items: str) -> Callable[[Exchange], str | None]:
    def check(x: Exchange) -> str | None:
        if x.response.error is not None:
            return f"raised {x.response.error!r}"
        body = x.response.body
        if x.response.header("Content-Length") != str(len(body)):
            return "Content-Length does not match"
        missing = [item for item in items if f"<p>{item}</p>".encode() not in body]
        return f"items {missing} missing from {body!r}" if missing else None
    return check


def propagates(x: Exchange) -> str | None:
    return None if isinstance(x.response.error, ProbeError) else f"got {x.response.error!r}"


def closed_once(x: Exchange) -> str | None:
    return None if x.closes == [1] else f"closes {x.closes}"


XML_PROBES = (
    Probe("xml_body", "XML streamed in chunks is transformed whole", probe_app(), transformed("a", "b")),
    Probe("xml_write_callable", "XML given to write() comes first",
          probe_app(written=(b"<list><item>w</item>",), chunks=(b"<item>i</item></list>",)),
          transformed("w", "i")),
    Probe("xml_late_start_response", "a late start_response still gets transformed",
          probe_app(late=True), transformed("a", "b")),
    Probe("xml_error_mid_stream", "an app error while buffering reaches the server",
          probe_app(error=True), propagates),
    Probe("xml_exc_info_after_body", "start_response(exc_info) after XML body re-raises",
          probe_app(after_body_exc_info=True), propagates),
    Probe("xml_close_on_end", "close() once after a transform", probe_app(), closed_once),
    Probe("xml_close_on_error", "close() once after an app error", probe_app(error=True),
          closed_once),
    Probe("xml_close_on_abandon", "close() once when the client leaves", probe_app(), closed_once,
          abandon_after=1),
    Probe("xml_head", "HEAD passes through without a transform", probe_app(chunks=()),
          lambda x: None if x.response.body == b"" and x.response.error is None
          else f"{x.response.error!r} {x.response.body!r}", "HEAD"),
)


def test_keeps_the_contract_on_xml_responses(theme: str) -> None:
    assert_middleware(partial(XSLT, stylesheet=theme), probes=XML_PROBES)


# -- INI ------------------------------------------------------------------------------------------

def test_filter_factory_converts_ini_strings(tmp_path: Path, theme: str) -> None:
    (tmp_path / "themes").mkdir()
    make = filter_factory({"here": str(tmp_path)}, stylesheet="theme.xsl", honor_pi="true",
                          allowed_dirs="themes", statuses="200 404", check_interval="500ms",
                          max_bytes="1MB", on_refused="passthrough", content_types="text/xml, *+xml",
                          params="\n title = query:t\n# a comment\n site = 'My site'\n")
    middleware = make(xml_app())
    assert middleware.stylesheet == theme and middleware.honor_pi is True
    assert middleware.allowed_dirs == [str((tmp_path / "themes").resolve())]
    assert middleware.statuses == {200, 404} and middleware.check_interval == 0.5
    assert middleware.max_bytes == 1024 * 1024 and middleware.on_refused == "passthrough"
    assert middleware.params == {"title": "query:t", "site": "'My site'"}


@pytest.mark.parametrize("options, message", [
    ({"stylesheet": "theme.xsl", "stylsheet": "x"}, "unknown option 'stylsheet'.*known:.*stylesheet"),
    ({"stylesheet": "theme.xsl", "honor_pi": "maybe"}, "honor_pi"),
    ({"stylesheet": "missing.xsl"}, "stylesheet"),
    ({"stylesheet": "theme.xsl", "params": "no equals sign"}, "params"),
    ({"stylesheet": "theme.xsl", "params": "a = 'x'\na = 'y'"}, "params"),
    ({"stylesheet": "theme.xsl", "statuses": "200 abc"}, "statuses"),
])
def test_filter_factory_errors(tmp_path: Path, theme: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        filter_factory({"here": str(tmp_path)}, **options)


def test_a_deployment_file_error_names_the_place(tmp_path: Path, theme: str) -> None:
    example()
    config = tmp_path / "site.ini"
    config.write_text("[app:main]\nuse = call:stack.examples.xslt_site:app_factory\n"
                      "filter-with = theme\n\n[filter:theme]\nuse = egg:stack#xslt\n"
                      "stylesheet = theme.xsl\ncheck_interval = soon\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        stack.load(str(config))
    assert "site.ini" in str(caught.value) and "check_interval" in str(caught.value)


def test_as_params_passes_dicts() -> None:
    assert as_params({"a": "path"}) == {"a": "path"}


def test_loads_from_a_deployment_file() -> None:
    """The demo's [pipeline:catalogue] section, as config/demo.ini writes it."""
    app = stack.load(ROOT / "config" / "demo.ini", "catalogue")
    result = call(app, "/?q=green", SCRIPT_NAME="/catalogue")
    assert result.status == "200 OK" and result.header("Content-Type") == "text/html; charset=utf-8"
    body = result.body.decode()
    assert "Teas matching “green”" in body and 'href="/catalogue/tea/sencha"' in body


# -- the example site -------------------------------------------------------------------------------

def example() -> Any:
    from stack.examples import xslt_site
    return xslt_site


def test_example_site_pages() -> None:
    site = example()
    app = site.make_site()
    page = call(app, "/tea/baihao", SCRIPT_NAME="/shop")
    assert page.status == "200 OK" and page.header("Content-Type") == "text/html; charset=utf-8"
    text = page.body.decode()
    assert "<title>Bai Hao Yinzhen · stack tea catalogue</title>" in text
    assert "honeyed &lt;and&gt; delicate" in text
    missing = call(app, "/tea/nope")
    assert missing.status == "404 Not Found" and "No such tea." in missing.body.decode()
    raw = call(site.catalogue, "/", SCRIPT_NAME="/shop")
    assert raw.header("Content-Type") == "application/xml; charset=utf-8"
    assert b'<?xml-stylesheet type="text/xsl" href="/shop/theme.xsl"?>' in raw.body


def test_review_fixes_write_limit_missing_document_and_log_injection(tmp_path: Path, caplog: Any) -> None:
    """write() beyond max_bytes is a 502 without holding it all; a missing document()
    is a logged 500; control characters in the path cannot forge log lines."""
    sheet = tmp_path / "s.xsl"
    sheet.write_text('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
                     '<xsl:template match="/"><p><xsl:value-of select="document(\'missing.xml\')/x"/>'
                     '</p></xsl:template></xsl:stylesheet>')

    def writer(environ: Any, start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "application/xml")])
        for _ in range(100):
            write(b"<x>" + b"y" * 10_000 + b"</x>")
        return []

    result = call(XSLT(writer, stylesheet=str(sheet), max_bytes=50_000))
    assert result.status == "502 Bad Gateway"

    def doc(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/xml")])
        return [b"<r/>"]

    result = call(XSLT(doc, stylesheet=str(sheet), allowed_dirs=[str(tmp_path)]), "/a\nFORGED")
    assert result.status == "500 Internal Server Error"
    assert "/a\\x0aFORGED" in caplog.text and "\nFORGED" not in caplog.text
