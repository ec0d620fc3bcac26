"""stack.middleware.cascade: first non-caught answer wins, skipped bodies closed, body replayed."""
from __future__ import annotations

import io
import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from support import call, echo_app, make_environ

import stack.middleware.cascade as cascade_module
from stack.middleware.cascade import Cascade, composite_factory
from stack import load
from stack.errors import ConfigError
from stack.testing import CloseTracker, assert_middleware
from stack.tree import format_tree


def status_app(status: str, body: bytes = b"") -> Callable:
    """An app answering ``status`` with ``body`` (default: the status line)."""
    payload = body or status.encode()

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))])
        return [payload]
    app.__qualname__ = f"status_app({status!r})"
    return app


def reader_app(how: str, status: str = "404 Not Found") -> Callable:
    """An app that reads the request body ``how`` (all, part, lines, iter, none), then answers."""
    seen: list[bytes] = []

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        stream = environ["wsgi.input"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if how == "all":
            seen.append(stream.read(length))
        elif how == "part":
            seen.append(stream.read(3))
        elif how == "lines":
            seen.append(b"".join(iter(lambda: stream.readline(), b"")))
        elif how == "readline_limit":
            seen.append(stream.readline(4))
        start_response(status, [("Content-Type", "text/plain")])
        return [b"reader"]
    app.seen = seen  # type: ignore[attr-defined]
    return app


def late_app(status: str) -> Callable:
    """A generator app calling start_response only when first iterated."""
    def app(environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response(status, [("Content-Type", "text/plain")])
        yield b"late "
        yield status.encode()
    return app


NOT_FOUND = status_app("404 Not Found")


# -- choosing the answer ---------------------------------------------------------------

@pytest.mark.parametrize("statuses, catch, winner", [
    (["404 Not Found", "200 OK", "201 Created"], (404, 405), 1),
    (["200 OK", "404 Not Found"], (404, 405), 0),
    (["405 Method Not Allowed", "404 Not Found", "302 Found"], (404, 405), 2),
    (["405 Method Not Allowed", "200 OK"], (404,), 0),
    (["404 Not Found", "500 Internal Server Error", "200 OK"], (404,), 1),
    (["404 Not Found", "404 Not Found"], (404, 405), 1),  # the last answers whatever it says
    (["500 Internal Server Error", "200 OK"], (404, 500), 1),
    (["404 Not Found", "204 No Content"], (), 0),
])
def test_first_uncaught_status_wins(statuses: list[str], catch: tuple[int, ...], winner: int) -> None:
    apps = [CloseTracker(status_app(status, f"app{index}".encode()))
            for index, status in enumerate(statuses)]
    result = call(Cascade(apps, catch=catch))
    assert result.status == statuses[winner]
    assert result.body == (b"" if result.code == 204 else f"app{winner}".encode())
    for index, app in enumerate(apps):
        assert app.closes == ([1] if index <= winner else []), index


def test_skipped_generator_bodies_are_closed_once() -> None:
    first, second = CloseTracker(late_app("404 Not Found")), CloseTracker(late_app("200 OK"))
    result = call(Cascade([first, second]))
    assert result.body == b"late 200 OK"
    assert (first.closes, second.closes) == ([1], [1])


def test_write_callable_of_a_middle_winner_is_kept() -> None:
    def writer(environ: dict, start_response: Callable) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"iterated"]
    assert call(Cascade([writer, NOT_FOUND])).body == b"written iterated"


def test_error_in_an_app_propagates_after_closing_the_skipped() -> None:
    def broken(environ: dict, start_response: Callable) -> list[bytes]:
        raise RuntimeError("boom")
    first = CloseTracker(NOT_FOUND)
    with pytest.raises(RuntimeError, match="boom"):
        call(Cascade([first, broken, NOT_FOUND]), validate=False)
    assert first.closes == [1]


def test_skipped_apps_get_their_own_environ() -> None:
    def meddler(environ: dict, start_response: Callable) -> list[bytes]:
        environ["PATH_INFO"] = "/changed"
        environ["SCRIPT_NAME"] = "/moved"
        environ["meddled"] = True
        return NOT_FOUND(environ, start_response)
    result = call(Cascade([meddler, echo_app]), "/original")
    assert (result.json()["path_info"], result.json()["script_name"]) == ("/original", "")


@pytest.mark.parametrize("make", [
    lambda app: Cascade([NOT_FOUND, app]),
    lambda app: Cascade([late_app("405 Method Not Allowed"), app]),
    lambda app: Cascade([app, NOT_FOUND]),
    lambda app: Cascade([app]),
], ids=["probe_last", "probe_last_after_late_405", "probe_first", "probe_alone"])
def test_contract_kit(make: Callable) -> None:
    assert_middleware(make)


# -- request bodies -----------------------------------------------------------------------

class Spools:
    """Records the spools the cascade makes (patched over tempfile's classes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.memory: list[Any] = []
        self.disk: list[Any] = []
        spools = self

        make_temporary = tempfile.TemporaryFile

        class Spooled(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.written = 0
                spools.memory.append(self)

            def write(self, data: bytes) -> int:
                self.written += len(data)
                return super().write(data)

        def temporary(*args: Any, **kwargs: Any) -> Any:
            file = make_temporary(*args, **kwargs)
            spools.disk.append(file)
            return file

        monkeypatch.setattr(cascade_module.tempfile, "SpooledTemporaryFile", Spooled)
        monkeypatch.setattr(cascade_module.tempfile, "TemporaryFile", temporary)

    @property
    def all(self) -> list[Any]:
        return self.memory + self.disk


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> Spools:
    return Spools(monkeypatch)


SMALL = b"name=value&x=1\nsecond line\nthird"
BIG = bytes(range(256)) * 4000  # 1,024,000 bytes


@pytest.mark.parametrize("how", ["all", "part", "lines", "readline_limit", "none"])
@pytest.mark.parametrize("body", [SMALL, BIG], ids=["small", "big"])
def test_body_is_replayed_to_the_next_app(spools: Spools, how: str, body: bytes) -> None:
    first, second = reader_app(how), reader_app("all", status="200 OK")
    result = call(Cascade([first, second, NOT_FOUND], spool_size=64 * 1024), "/form",
                  method="POST", body=body)
    assert result.body == b"reader"
    assert second.seen == [body]
    if how == "all":
        assert first.seen == [body]
    if how == "none":
        assert first.seen == []
    if how == "all" and body is BIG:
        [spool] = spools.memory
        assert spool._rolled  # over spool_size: on disk, not in memory
    for spool in spools.memory:  # in memory only up to spool_size
        assert spool._rolled == (spool.written > 64 * 1024)
    for spool in spools.all:
        assert spool.closed


def test_last_app_reads_body_directly_after_replay(spools: Spools) -> None:
    first = reader_app("part")
    result = call(Cascade([first, echo_app]), "/", method="POST", body=SMALL)
    assert result.json()["body"] == SMALL.decode()
    [spool] = spools.all
    assert spool.written == 3  # only what the first app read was recorded
    assert spool.closed


def test_third_app_gets_the_body_after_two_readers(spools: Spools) -> None:
    result = call(Cascade([reader_app("part"), reader_app("lines"), echo_app]), "/",
                  method="POST", body=SMALL)
    assert result.json()["body"] == SMALL.decode()


def test_winning_middle_app_reads_without_recording(spools: Spools) -> None:
    winner = reader_app("all", status="200 OK")
    result = call(Cascade([reader_app("part"), winner, NOT_FOUND]), "/", method="POST", body=SMALL)
    assert result.code == 200 and winner.seen == [SMALL]
    [spool] = spools.all
    assert spool.closed


def test_spool_size_zero_spools_to_disk(spools: Spools) -> None:
    second = reader_app("all")
    call(Cascade([reader_app("all"), second], spool_size=0), "/", method="POST", body=SMALL)
    assert second.seen == [SMALL]
    assert spools.memory == [] and len(spools.disk) == 1 and spools.disk[0].closed


@pytest.mark.parametrize("method, environ", [
    ("GET", {}),
    ("POST", {"CONTENT_LENGTH": "0"}),
    ("POST", {"CONTENT_LENGTH": "garbage"}),
])
def test_no_body_no_spool(spools: Spools, method: str, environ: dict) -> None:
    result = call(Cascade([NOT_FOUND, status_app("200 OK")]), "/", method=method, validate=False,
                  **environ)
    assert result.code == 200
    assert spools.all == []


def test_one_app_needs_no_spool(spools: Spools) -> None:
    assert call(Cascade([echo_app]), "/", method="POST", body=SMALL).json()["body"] == SMALL.decode()
    assert spools.all == []


def test_chunked_body_without_length_is_replayed(spools: Spools) -> None:
    def eof_reader(environ: dict, start_response: Callable) -> list[bytes]:
        data = b"".join(iter(lambda: environ["wsgi.input"].read(7), b""))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [data]
    result = call(Cascade([reader_app("part"), eof_reader]), "/", method="POST",
                  **{"wsgi.input": io.BytesIO(SMALL), "wsgi.input_terminated": True,
                     "HTTP_TRANSFER_ENCODING": "chunked"})
    assert result.body == SMALL
    assert len(spools.all) == 1


def test_spool_closed_when_an_app_raises(spools: Spools) -> None:
    def broken(environ: dict, start_response: Callable) -> list[bytes]:
        environ["wsgi.input"].read(2)
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        call(Cascade([reader_app("all"), broken, echo_app]), "/", method="POST", body=SMALL,
             validate=False)
    [spool] = spools.all
    assert spool.closed


@pytest.mark.parametrize("body", [b"", SMALL], ids=["no-body", "spooled"])
def test_winner_closed_when_the_server_refuses_its_headers(spools: Spools, body: bytes) -> None:
    closed: list[int] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"hi"])

        def close(self) -> None:
            closed.append(1)

    def winner(environ: dict, start_response: Callable) -> Body:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))  # recorded
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return Body()

    def refusing_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
        raise AssertionError("Hop-by-hop headers not allowed")  # as wsgiref's handler does

    environ = make_environ("/", method="POST" if body else "GET", body=body)
    with pytest.raises(AssertionError, match="Hop-by-hop"):
        Cascade([winner, NOT_FOUND])(environ, refusing_start_response)
    assert closed == [1]
    assert len(spools.all) == (1 if body else 0) and all(spool.closed for spool in spools.all)


def test_readlines_and_iteration_replay(spools: Spools) -> None:
    lines: list[list[bytes]] = []

    def lister(environ: dict, start_response: Callable) -> list[bytes]:
        lines.append(environ["wsgi.input"].readlines())
        return NOT_FOUND(environ, start_response)

    def iterator(environ: dict, start_response: Callable) -> list[bytes]:
        lines.append(list(environ["wsgi.input"]))
        return NOT_FOUND(environ, start_response)

    call(Cascade([lister, iterator, lister], ), "/", method="POST", body=SMALL, validate=False)
    expected = [b"name=value&x=1\n", b"second line\n", b"third"]
    assert lines == [expected, expected, expected]


def test_body_replay_over_a_real_socket(live_server: Any) -> None:
    url = live_server(Cascade([reader_app("part"), reader_app("all", "405 Method Not Allowed"),
                               echo_app], spool_size=1024))
    payload = BIG[:200_000]
    request = urllib.request.Request(url + "/upload", data=payload, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.loads(response.read())
    assert data["body"].encode("latin-1") == payload


# -- options, tree, INI -------------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, word", [
    (([],), {}, "apps"),
    (("app",), {}, "apps"),
    (([NOT_FOUND, "x"],), {}, "apps"),
    (([NOT_FOUND],), {"catch": 404}, "catch"),
    (([NOT_FOUND],), {"catch": ["404"]}, "catch"),
    (([NOT_FOUND],), {"catch": [99]}, "catch"),
    (([NOT_FOUND],), {"catch": [True]}, "catch"),
    (([NOT_FOUND],), {"spool_size": -1}, "spool_size"),
    (([NOT_FOUND],), {"spool_size": 1.5}, "spool_size"),
])
def test_bad_options_name_the_option(args: tuple, kwargs: dict, word: str) -> None:
    # the message starts with the option, so the loader can point at its line
    with pytest.raises(ValueError, match=f"^option '{word}': "):
        Cascade(*args, **kwargs)


def test_children_and_tree() -> None:
    cascade = Cascade([NOT_FOUND, echo_app], catch=[405, 404, 404])
    assert list(cascade.children()) == [("#1", NOT_FOUND), ("#2", echo_app)]
    assert cascade.catch == (404, 405)
    text = format_tree(cascade)
    assert "stack.middleware.cascade.Cascade (catch=(404, 405), spool_size=262144)" in text
    assert "  #1 -> " in text and "  #2 -> " in text


class FakeLoader:
    def __init__(self, apps: dict[str, Callable]) -> None:
        self.apps, self.calls = apps, []

    def get_app(self, name: str, global_conf: dict | None = None) -> Callable:
        self.calls.append((name, global_conf))
        return self.apps[name]


def test_composite_factory_converts_strings() -> None:
    loader = FakeLoader({"a": NOT_FOUND, "b": echo_app})
    cascade = composite_factory(loader, {"g": "1"}, apps="a, b", catch="404 500", spool_size="1MB")
    assert cascade.apps == [NOT_FOUND, echo_app]
    assert (cascade.catch, cascade.spool_size) == ((404, 500), 1024 * 1024)
    assert loader.calls == [("a", {"g": "1"}), ("b", {"g": "1"})]
    with pytest.raises(ConfigError, match="apps"):
        composite_factory(loader, {})
    with pytest.raises(ConfigError, match="catch"):
        composite_factory(loader, {}, apps="a", catch="404 nope")
    with pytest.raises(ConfigError, match=r"unknown option 'cach'.*catch"):
        composite_factory(loader, {}, apps="a", cach="404")


def _site(tmp_path: Path, extra: str = "") -> Path:
    for name, files in {"first": {"a.txt": "from first\n", "both.txt": "first wins\n"},
                        "second": {"b.txt": "from second\n", "both.txt": "second\n"}}.items():
        (tmp_path / name).mkdir()
        for file, text in files.items():
            (tmp_path / name / file).write_text(text)
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[composite:main]\nuse = egg:stack#cascade\napps = first second echo\n"
        f"catch = 404 405\n{extra}\n"
        "[app:first]\nuse = egg:stack#static\ndirectory = %(here)s/first\n\n"
        "[app:second]\nuse = egg:stack#static\ndirectory = second\n\n"
        "[app:echo]\nuse = egg:stack#static\ndirectory = second\nindex = b.txt\n")
    return ini


def test_ini_loading(tmp_path: Path) -> None:
    app = load(str(_site(tmp_path, "spool_size = 10KB")))
    assert isinstance(app, Cascade) and app.spool_size == 10 * 1024
    assert call(app, "/a.txt").body == b"from first\n"
    assert call(app, "/b.txt").body == b"from second\n"
    assert call(app, "/both.txt").body == b"first wins\n"
    assert call(app, "/").body == b"from second\n"  # the third app's index
    assert call(app, "/missing").code == 404
    assert call(app, "/a.txt", method="POST", body=b"x").code == 405  # every app said 405


def test_ini_errors_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"catch"):
        load(str(_site(tmp_path, "catch_all = true")))
