"""stack.middleware.static: safe paths, validators and 304, ranges, types, index, file handles."""
from __future__ import annotations

import os
import re
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from support import call, http_get

import stack.middleware.static as static_module
from stack.middleware.static import FileIter, Static, app_factory, content_type, parse_range, split_path
from stack import load
from stack.errors import ConfigError
from stack.testing import call as strict_call
from stack.testing import make_environ

SECRET = b"TOP SECRET outside the root\n"
DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A served tree under tmp/root, plus tmp/outside holding a secret."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "hello.txt").write_text("hello world\n")
    (root / "style.css").write_text("body{}\n")
    (root / "data.json").write_text("{}\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "archive.tar.gz").write_bytes(b"\x1f\x8b fake")
    (root / "README").write_text("plain\n")
    (root / "data.bin").write_bytes(DATA)
    (root / "empty.txt").write_bytes(b"")
    (root / ".secret").write_bytes(SECRET)
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("<h1>sub</h1>\n")
    (root / "sub" / "page.html").write_text("<p>page</p>\n")
    (root / "empty").mkdir()
    (root / "evil.com").mkdir()
    (root / "evil.com" / "index.html").write_text("not evil\n")
    (root / "x%2e%2e").write_text("a literal name\n")
    os.symlink(root / "hello.txt", root / "link_in")
    os.symlink(outside / "secret.txt", root / "link_out")
    os.symlink(outside, root / "dirlink_out")
    os.mkfifo(root / "pipe")
    return root


@pytest.fixture
def app(site: Path) -> Static:
    return Static(site)


def test_get_serves_file_with_validators(app: Static, site: Path) -> None:
    result = call(app, "/hello.txt")
    assert result.code == 200
    assert result.body == b"hello world\n"
    assert result.header("Content-Type") == "text/plain; charset=utf-8"
    assert result.header("Content-Length") == "12"
    assert result.header("Accept-Ranges") == "bytes"
    info = (site / "hello.txt").stat()
    assert result.header("ETag") == f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
    assert result.header("Last-Modified") == formatdate(int(info.st_mtime), usegmt=True)
    assert result.header("Cache-Control") is None


def test_symlink_inside_root_is_served(app: Static) -> None:
    assert call(app, "/link_in").body == b"hello world\n"


# -- paths that must not escape -------------------------------------------------------

HOSTILE = [
    ("/../outside/secret.txt", 404),
    ("/../etc/passwd", 404),
    ("/../../../../../../etc/passwd", 404),
    ("/sub/../../outside/secret.txt", 404),
    ("/sub/../hello.txt", 404),  # dot segments are refused, not resolved
    ("/%2e%2e/outside/secret.txt", 404),  # a server that does not decode: a literal name
    ("/a/..%2f..", 404),  # literal, undecoded: no such name
    ("/a/../..", 404),  # the same as a server decodes %2f
    ("/..", 404),
    ("/..\\outside\\secret.txt", 404),
    ("\\..\\..\\outside\\secret.txt", 404),
    ("/sub\\..\\..\\outside\\secret.txt", 404),
    ("/hello.txt\x00.png", 400),
    ("/\x00", 400),
    ("/link_out", 404),
    ("/dirlink_out/secret.txt", 404),
    ("//etc/passwd", 404),
    ("/etc/passwd", 404),
    ("/C:/Windows/win.ini", 404),
    ("/.secret", 404),
    ("/sub/.secret", 404),
    ("/\xc0\xae\xc0\xae/outside/secret.txt", 404),  # overlong UTF-8 dots, as latin-1
    ("/pipe", 404),  # a FIFO: never opened for reading
]


@pytest.mark.parametrize("path, status", HOSTILE, ids=[repr(p) for p, _ in HOSTILE])
def test_hostile_paths_never_escape(app: Static, path: str, status: int) -> None:
    # wsgiref.validate insists on a leading "/"; a broken server may not.
    result = call(app, path, validate=path.startswith("/"))
    assert result.code == status
    assert SECRET not in result.body


def test_absolute_path_of_outside_file_stays_under_root(app: Static, site: Path) -> None:
    result = call(app, str(site.parent / "outside" / "secret.txt"))
    assert result.code == 404 and SECRET not in result.body


def test_literal_percent_names_are_not_decoded_again(app: Static) -> None:
    assert call(app, "/x%2e%2e").body == b"a literal name\n"
    assert call(app, "/x..").code == 404


def test_path_info_outside_latin1_is_refused(app: Static) -> None:
    assert call(app, "/\u2603", validate=False).code == 404


def test_symlinks_out_can_be_allowed(site: Path) -> None:
    app = Static(site, allow_symlinks_out=True)
    assert call(app, "/link_out").body == SECRET
    assert call(app, "/dirlink_out/secret.txt").body == SECRET
    assert call(app, "/../outside/secret.txt").code == 404  # `..` stays refused


def test_hidden_files_can_be_allowed(site: Path) -> None:
    assert call(Static(site, allow_hidden=True), "/.secret").body == SECRET


@pytest.mark.parametrize("path, segments", [
    ("/a//b/./c", ["a", "b", "c"]),
    ("", []),
    ("/", []),
    ("/a/../b", None),
    ("/a\\b", None),
    ("/.git/config", None),
])
def test_split_path(path: str, segments: list[str] | None) -> None:
    assert split_path(path) == segments


# -- conditional requests -------------------------------------------------------------

def _validators(app: Static) -> tuple[str, str]:
    result = call(app, "/hello.txt")
    return str(result.header("ETag")), str(result.header("Last-Modified"))


@pytest.mark.parametrize("headers, status", [
    ({"HTTP_IF_NONE_MATCH": "{etag}"}, 304),
    ({"HTTP_IF_NONE_MATCH": "W/{etag}"}, 304),
    ({"HTTP_IF_NONE_MATCH": '"other", {etag}'}, 304),
    ({"HTTP_IF_NONE_MATCH": "*"}, 304),
    ({"HTTP_IF_NONE_MATCH": '"other"'}, 200),
    ({"HTTP_IF_MODIFIED_SINCE": "{date}"}, 304),
    ({"HTTP_IF_MODIFIED_SINCE": "Sat, 01 Jan 2000 00:00:00 GMT"}, 200),
    ({"HTTP_IF_MODIFIED_SINCE": "not a date"}, 200),
    ({"HTTP_IF_MODIFIED_SINCE": "Mon, 01 Jan 99999 00:00:00 GMT"}, 200),
    ({"HTTP_IF_NONE_MATCH": '"other"', "HTTP_IF_MODIFIED_SINCE": "{date}"}, 200),
    ({"HTTP_IF_MATCH": '"other"'}, 412),
    ({"HTTP_IF_MATCH": "W/{etag}"}, 412),  # If-Match compares strongly
    ({"HTTP_IF_MATCH": "{etag}"}, 200),
    ({"HTTP_IF_MATCH": "*"}, 200),
    ({"HTTP_IF_UNMODIFIED_SINCE": "Sat, 01 Jan 2000 00:00:00 GMT"}, 412),
    ({"HTTP_IF_UNMODIFIED_SINCE": "{date}"}, 200),
], ids=lambda value: str(value) if isinstance(value, int) else ",".join(value.values()))
def test_conditional_get(app: Static, headers: dict[str, str], status: int) -> None:
    etag, date = _validators(app)
    environ = {key: value.format(etag=etag, date=date) for key, value in headers.items()}
    for method in ("GET", "HEAD"):
        result = call(app, "/hello.txt", method=method, **environ)
        assert result.code == status, method
        if status == 304:
            assert result.body == b""
            assert result.header("ETag") == etag
            assert result.header("Content-Type") is None
        elif status == 200:
            assert result.body == (b"hello world\n" if method == "GET" else b"")


def test_cache_control_on_200_and_304(site: Path) -> None:
    app = Static(site, cache_control="public, max-age=600")
    result = call(app, "/hello.txt")
    assert result.header("Cache-Control") == "public, max-age=600"
    again = call(app, "/hello.txt", HTTP_IF_NONE_MATCH=str(result.header("ETag")))
    assert again.code == 304 and again.header("Cache-Control") == "public, max-age=600"


# -- ranges ---------------------------------------------------------------------------

@pytest.mark.parametrize("header, first, last", [
    ("bytes=0-99", 0, 99),
    ("bytes=-500", len(DATA) - 500, len(DATA) - 1),
    ("bytes=500-", 500, len(DATA) - 1),
    ("bytes=10000-20000", 10000, len(DATA) - 1),
    ("bytes=0-99999999999999999999999999", 0, len(DATA) - 1),
    ("bytes=-99999", 0, len(DATA) - 1),
    ("BYTES = 3-3", 3, 3),
    ("bytes=0-9, 5-19", 0, 19),  # overlapping ranges are merged
    ("bytes=0-9,10-19", 0, 19),  # and adjacent ones
    ("bytes=0-9, 99999-", 0, 9),  # unsatisfiable parts are dropped
])
def test_single_range(app: Static, header: str, first: int, last: int) -> None:
    result = call(app, "/data.bin", HTTP_RANGE=header)
    assert result.code == 206
    assert result.header("Content-Range") == f"bytes {first}-{last}/{len(DATA)}"
    assert result.header("Content-Length") == str(last - first + 1)
    assert result.header("Content-Type") == "application/octet-stream"
    assert result.body == DATA[first:last + 1]


def _parts(result: Any) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/byteranges body, checked for framing."""
    match = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", str(result.header("Content-Type")))
    assert match, result.header("Content-Type")
    delimiter = b"--" + match.group(1).encode()
    assert result.body.startswith(delimiter + b"\r\n")
    assert result.body.endswith(b"\r\n" + delimiter + b"--\r\n")
    parts = []
    for raw in result.body[len(delimiter) + 2:-len(delimiter) - 6].split(b"\r\n" + delimiter + b"\r\n"):
        head, _, body = raw.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((fields, body))
    return parts


def test_multiple_ranges_give_multipart_byteranges(app: Static) -> None:
    result = call(app, "/data.bin", HTTP_RANGE="bytes=0-0, -1, 100-199")
    assert result.code == 206
    assert result.header("Content-Range") is None
    assert result.header("Content-Length") == str(len(result.body))
    parts = _parts(result)
    size = len(DATA)
    assert [fields["Content-Range"] for fields, _ in parts] == [
        f"bytes 0-0/{size}", f"bytes 100-199/{size}", f"bytes {size - 1}-{size - 1}/{size}"]
    assert [body for _, body in parts] == [DATA[0:1], DATA[100:200], DATA[-1:]]
    assert {fields["Content-Type"] for fields, _ in parts} == {"application/octet-stream"}


@pytest.mark.parametrize("header", ["bytes=20000-", "bytes=10240-", "bytes=-0", "bytes=99999-, 20000-30000"])
def test_unsatisfiable_range_is_416(app: Static, header: str) -> None:
    result = call(app, "/data.bin", HTTP_RANGE=header)
    assert result.code == 416
    assert result.header("Content-Range") == f"bytes */{len(DATA)}"
    assert DATA[:10] not in result.body


@pytest.mark.parametrize("header", [
    "bytes=abc", "bytes=5-1", "bytes=0-1, 9-3", "items=0-1", "bytes=", "bytes=-", "bytes 0-1",
    "bytes=1-2-3", "bytes=\u0661-2", ",".join(["bytes=0-0"] + ["2-2"] * 16),
])
def test_malformed_range_gives_full_200(app: Static, header: str) -> None:
    result = call(app, "/data.bin", HTTP_RANGE=header)
    assert result.code == 200
    assert result.body == DATA
    assert result.header("Content-Range") is None


def test_range_on_empty_file_is_ignored(app: Static) -> None:
    result = call(app, "/empty.txt", HTTP_RANGE="bytes=0-10")
    assert (result.code, result.body) == (200, b"")


def test_range_is_ignored_for_head(app: Static) -> None:
    result = call(app, "/data.bin", method="HEAD", HTTP_RANGE="bytes=0-9")
    assert (result.code, result.body) == (200, b"")
    assert result.header("Content-Length") == str(len(DATA))


def test_if_range(app: Static) -> None:
    head = call(app, "/data.bin", method="HEAD")
    etag, date = str(head.header("ETag")), str(head.header("Last-Modified"))
    cases = [(etag, 206), ('"stale"', 200), ("W/" + etag, 200), (date, 206),
             ("Sat, 01 Jan 2000 00:00:00 GMT", 200), ("garbage", 200)]
    for value, status in cases:
        result = call(app, "/data.bin", HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=value)
        assert result.code == status, value
        assert result.body == (DATA[:10] if status == 206 else DATA)


def test_parse_range_directly() -> None:
    assert parse_range("bytes=0-99, 50-199, -100", 1000) == [(0, 199), (900, 999)]
    assert parse_range("bytes=2000-", 1000) == []
    assert parse_range("bytes=5-1", 1000) is None
    assert parse_range("bytes=0-1,2-3,4-5", 1000, max_ranges=2) is None


# -- types, HEAD, methods ----------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("hello.txt", "text/plain; charset=utf-8"),
    ("index.html", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("data.json", "application/json"),
    ("image.png", "image/png"),
    ("archive.tar.gz", "application/gzip"),
    ("README", "application/octet-stream"),
])
def test_content_types(app: Static, name: str, expected: str) -> None:
    result = call(app, "/" + name)
    assert result.header("Content-Type") == expected
    assert result.header("Content-Encoding") is None
    assert result.header("X-Content-Type-Options") == "nosniff"


def test_content_type_does_not_read_names_as_urls() -> None:
    assert content_type("data:text/html,x") == "application/octet-stream"


def test_head_sends_headers_only(app: Static) -> None:
    result = call(app, "/data.bin", method="HEAD")
    assert (result.code, result.body) == (200, b"")
    assert result.header("Content-Length") == str(len(DATA))
    assert result.header("ETag")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_are_405(app: Static, method: str) -> None:
    result = call(app, "/hello.txt", method=method)
    assert result.code == 405
    assert result.header("Allow") == "GET, HEAD"


# -- directories ---------------------------------------------------------------------

@pytest.mark.parametrize("path, status, body", [
    ("/", 200, b"<h1>home</h1>\n"),
    ("/sub/", 200, b"<h1>sub</h1>\n"),
    ("/sub//", 200, b"<h1>sub</h1>\n"),
    ("/sub/page.html", 200, b"<p>page</p>\n"),
    ("/empty/", 404, None),
    ("/empty", 404, None),
    ("/hello.txt/", 404, None),
    ("/missing.txt", 404, None),
    ("/missing/", 404, None),
])
def test_index_and_directories(app: Static, path: str, status: int, body: bytes | None) -> None:
    result = call(app, path)
    assert result.code == status
    if body is not None:
        assert result.body == body
    if path.endswith("/") and status == 200:
        assert result.header("Content-Type") == "text/html; charset=utf-8"


@pytest.mark.parametrize("script, path, query, location", [
    ("", "/sub", "", "/sub/"),
    ("/static", "/sub", "", "/static/sub/"),
    ("/static", "/sub", "a=1&b=%2F", "/static/sub/?a=1&b=%2F"),
    ("/static", "", "", "/static/"),
    ("/st atic", "/sub", "", "/st%20atic/sub/"),
    ("", "//evil.com", "", "/evil.com/"),  # never a protocol-relative "//evil.com/"
])
def test_directory_without_slash_redirects(app: Static, script: str, path: str, query: str,
                                            location: str) -> None:
    result = call(app, path + ("?" + query if query else ""), SCRIPT_NAME=script)
    assert result.code == 301
    assert result.header("Location") == location


def test_index_none_disables_directories(site: Path) -> None:
    app = Static(site, index=None)
    assert call(app, "/").code == 404
    assert call(app, "/sub").code == 404
    assert call(app, "/sub/index.html").code == 200


# -- file handles ----------------------------------------------------------------------

class RecordingWrapper:
    """A ``wsgi.file_wrapper`` that records what it was given."""

    made: list[RecordingWrapper] = []

    def __init__(self, file: Any, block_size: int = 8192) -> None:
        self.file, self.block_size, self.closes = file, block_size, 0
        RecordingWrapper.made.append(self)

    def __iter__(self) -> Any:
        return iter(lambda: self.file.read(self.block_size), b"")

    def close(self) -> None:
        self.closes += 1
        self.file.close()


def test_file_wrapper_is_used_when_offered(app: Static) -> None:
    RecordingWrapper.made = []
    result = call(app, "/data.bin", **{"wsgi.file_wrapper": RecordingWrapper})
    assert result.body == DATA
    [wrapper] = RecordingWrapper.made
    assert wrapper.block_size == app.block_size
    assert wrapper.closes == 1 and wrapper.file.closed


def test_file_wrapper_not_used_for_ranges_or_head(app: Static) -> None:
    RecordingWrapper.made = []
    environ = {"wsgi.file_wrapper": RecordingWrapper}
    assert call(app, "/data.bin", HTTP_RANGE="bytes=0-9", **environ).body == DATA[:10]
    assert call(app, "/data.bin", method="HEAD", **environ).body == b""
    assert RecordingWrapper.made == []


def test_without_file_wrapper_a_closing_reader_is_returned(site: Path) -> None:
    app = Static(site, block_size=1000)
    environ = make_environ("/data.bin")
    environ.pop("wsgi.file_wrapper", None)
    body = app(environ, lambda status, headers, exc_info=None: None)
    assert isinstance(body, FileIter)
    chunks = list(body)
    assert b"".join(chunks) == DATA and max(map(len, chunks)) == 1000
    body.close()


class _CountingFile:
    def __init__(self, file: Any, log: list) -> None:
        self._file, self.closes = file, 0
        log.append(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        self.closes += 1
        self._file.close()


@pytest.mark.parametrize("method, environ, abandon", [
    ("GET", {}, None),
    ("GET", {}, 1),
    ("GET", {"HTTP_RANGE": "bytes=0-9"}, None),
    ("GET", {"HTTP_RANGE": "bytes=0-9,20-29"}, 1),
    ("GET", {"HTTP_RANGE": "bytes=99999-"}, None),
    ("GET", {"HTTP_IF_NONE_MATCH": "*"}, None),
    ("GET", {"HTTP_IF_MATCH": '"nope"'}, None),
    ("HEAD", {}, None),
    ("GET", {"wsgi.file_wrapper": RecordingWrapper}, None),
    ("GET", {"wsgi.file_wrapper": RecordingWrapper}, 1),
], ids=lambda value: repr(value))
def test_files_are_closed_exactly_once(site: Path, monkeypatch: pytest.MonkeyPatch, method: str,
                                       environ: dict[str, Any], abandon: int | None) -> None:
    opened: list[_CountingFile] = []
    monkeypatch.setattr(static_module, "open", lambda *a, **k: _CountingFile(open(*a, **k), opened),
                        raising=False)
    app = Static(site, block_size=100)
    request = make_environ("/data.bin", method)
    request.pop("wsgi.file_wrapper", None)
    request.update(environ)
    strict_call(app, request, abandon_after=abandon)
    assert [file.closes for file in opened] == [1]
    assert opened[0].closed


def test_file_that_shrinks_while_sent_raises(site: Path) -> None:
    path = site / "shrinking.bin"
    path.write_bytes(b"x" * 1000)
    with open(path, "rb") as file:
        body = FileIter(file, [(b"", 0, 1000)], 100)
        path.write_bytes(b"")
        with pytest.raises(OSError, match="shrank"):
            next(body)
        assert file.closed


# -- options and INI -------------------------------------------------------------------

@pytest.mark.parametrize("options, word", [
    ({"index": ""}, "index"),
    ({"index": "../x.html"}, "index"),
    ({"index": "a/b.html"}, "index"),
    ({"cache_control": "x\r\nSet-Cookie: a=b"}, "cache_control"),
    ({"cache_control": ""}, "cache_control"),
    ({"allow_symlinks_out": "yes"}, "allow_symlinks_out"),
    ({"allow_hidden": 1}, "allow_hidden"),
    ({"max_ranges": 0}, "max_ranges"),
    ({"block_size": 0}, "block_size"),
])
def test_bad_options_name_the_option(site: Path, options: dict[str, Any], word: str) -> None:
    # the message starts with the option, so the loader can point at its line
    with pytest.raises(ValueError, match=f"^option '{word}': "):
        Static(site, **options)


@pytest.mark.parametrize("option", ["allow_symlinks_out", "allow_hidden"])
@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_bool_options_take_real_bools_only(site: Path, option: str, value: object) -> None:
    with pytest.raises(ValueError) as info:
        Static(site, **{option: value})
    assert str(info.value) == f"option {option!r}: expected True or False, got {value!r}"


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^option 'directory': .* is not an existing directory"):
        Static(tmp_path / "nope")
    with pytest.raises(ValueError, match="^option 'directory': expected a path"):
        Static(None)  # type: ignore[arg-type]


def test_app_factory_converts_strings(site: Path) -> None:
    app = app_factory({}, directory=str(site), index="", cache_control="no-cache",
                      allow_symlinks_out="true", max_ranges="2", block_size="1KB")
    assert (app.index, app.cache_control, app.allow_symlinks_out) == (None, "no-cache", True)
    assert (app.max_ranges, app.block_size) == (2, 1024)
    with pytest.raises(ConfigError, match="unknown option 'cache'.*cache_control"):
        app_factory({}, directory=str(site), cache="x")
    with pytest.raises(ConfigError, match="directory"):
        app_factory({})


@pytest.mark.parametrize("directory", ["%(here)s/root", "root"])
def test_ini_loading(site: Path, directory: str) -> None:
    ini = site.parent / "site.ini"
    ini.write_text(f"[app:main]\nuse = egg:stack#static\ndirectory = {directory}\n"
                   "cache_control = public, max-age=60\n")
    app = load(str(ini))
    assert isinstance(app, Static) and app.directory == str(site.resolve())
    result = call(app, "/hello.txt")
    assert result.body == b"hello world\n"
    assert result.header("Cache-Control") == "public, max-age=60"


def test_ini_unknown_option_names_known_ones(site: Path) -> None:
    ini = site.parent / "bad.ini"
    ini.write_text("[app:main]\nuse = egg:stack#static\ndirectory = root\nindx = a.html\n")
    with pytest.raises(ConfigError, match=r"indx.*index"):
        load(str(ini))


# -- a real socket ---------------------------------------------------------------------

def test_big_file_over_a_real_socket(tmp_path: Path, live_server: Any) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(payload)
    url = live_server(Static(tmp_path))
    status, headers, body = http_get(url + "/big.bin", timeout=30)
    assert status == 200
    assert int(headers["Content-Length"]) == len(payload)
    assert body == payload
    status, headers, body = http_get(url + "/big.bin", headers={"Range": "bytes=1000000-1999999"})
    assert status == 206 and body == payload[1000000:2000000]
    status, _, body = http_get(url + "/big.bin", headers={"If-None-Match": headers["ETag"]})
    assert (status, body) == (304, b"")
