"""Tests for stack.middleware.mount: matching, host rules, normalisation, 404s, INI, sockets."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from wsgiref.validate import validator

import pytest
from support import call, echo_app, http_get, make_environ, named_apps_ini

from webob import Request, Response
from webob.dec import wsgify

import stack
from stack.middleware.mount import Mount, normalise_path, parse_key
from stack.errors import ConfigError
from stack.tree import format_tree


def named(name: str):
    """An app (under wsgiref.validate) that answers with its name and the paths it saw."""

    def app(environ, start_response):
        payload = json.dumps({"app": name, "script_name": environ.get("SCRIPT_NAME", ""),
                              "path_info": environ.get("PATH_INFO", "")}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(payload)))])
        return [payload]

    app.__name__ = name
    return validator(app)


def hit(mount: Mount, path: str, **environ) -> tuple[str, str, str]:
    """(app name, SCRIPT_NAME, PATH_INFO) the request reached."""
    result = call(mount, path, **environ)
    assert result.code == 200, result.body
    data = result.json()
    return data["app"], data["script_name"], data["path_info"]


@pytest.fixture
def site() -> Mount:
    return Mount({"/": named("home"), "/blog": named("blog"), "/blog/admin": named("admin"),
                  "/api/v1/": named("v1")})


# -- prefixes -------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ("/", ("home", "", "/")),
    ("", ("home", "", "")),
    ("/other/x", ("home", "", "/other/x")),
    ("/blog", ("blog", "/blog", "")),
    ("/blog/", ("blog", "/blog", "/")),
    ("/blog/2024/post", ("blog", "/blog", "/2024/post")),
    ("/blogger", ("home", "", "/blogger")),
    ("/blog/admin", ("admin", "/blog/admin", "")),
    ("/blog/admin/users", ("admin", "/blog/admin", "/users")),
    ("/blog/administrator", ("blog", "/blog", "/administrator")),
    ("/api/v1/items/3", ("v1", "/api/v1", "/items/3")),
    ("/api/v2/items", ("home", "", "/api/v2/items")),
    ("/api", ("home", "", "/api")),
], ids=lambda value: value if isinstance(value, str) else None)
def test_longest_prefix_whole_segments(site, path, expected):
    assert hit(site, path) == expected


def test_mount_under_existing_script_name(site):
    assert hit(site, "/blog/x", SCRIPT_NAME="/site") == ("blog", "/site/blog", "/x")
    assert hit(site, "/x", SCRIPT_NAME="/site") == ("home", "/site", "/x")


def test_deep_prefixes_without_shallow_ones():
    mount = Mount({"/a/b/c": named("abc"), "/x": named("x")})
    assert hit(mount, "/a/b/c/d") == ("abc", "/a/b/c", "/d")
    assert hit(mount, "/x/b/c/d") == ("x", "/x", "/b/c/d")
    assert call(mount, "/a/b").code == 404
    assert call(mount, "/a/b/cd").code == 404


@pytest.mark.parametrize("path", ["*", "x" * 10_000, "x/../y", "blog/x"])
def test_path_not_starting_with_slash_only_reaches_root(path):
    # Not a valid PATH_INFO (so no validator here): only the root mount takes it, unchanged.
    seen = []

    def root(environ, start_response):
        seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"]))
        return []

    environ = {"REQUEST_METHOD": "OPTIONS", "SCRIPT_NAME": "", "PATH_INFO": path}
    Mount({"/": root, "/blog": echo_app, "/x": echo_app})(environ, None)
    assert seen == [("", path)]


def test_add_and_children():
    blog = named("blog")
    mount = Mount({"/": named("home")})
    mount.add("/blog/", blog)
    mount.add("domain API.example.com port 8080 /v1", named("api"))
    mount.add("//*.example.com/files", named("files"))
    assert hit(mount, "/blog/x") == ("blog", "/blog", "/x")
    labels = [label for label, _app in mount.children()]
    assert labels == ["/", "/blog", "//api.example.com:8080/v1", "//*.example.com/files"]
    assert dict(mount.children())["/blog"] is blog
    tree = format_tree(mount)
    assert "/blog -> " in tree and "//api.example.com:8080/v1 -> " in tree


def test_children_include_not_found_app():
    fallback = named("fallback")
    assert ("(not found)", fallback) in list(Mount({"/a": echo_app}, not_found_app=fallback).children())


def test_mapping_may_be_pairs():
    mount = Mount([("/a", named("a")), ("/b", named("b"))])
    assert hit(mount, "/b/c") == ("b", "/b", "/c")


# -- hosts ------------------------------------------------------------------------

@pytest.fixture
def hosts() -> Mount:
    return Mount({
        "/": named("any"),
        "/blog": named("blog"),
        "//example.com": named("site"),
        "//example.com/shop": named("shop"),
        "//example.com:8080/shop": named("shop8080"),
        "//api.example.com/v1": named("api"),
        "//*.example.com/files": named("files"),
        "//*.deep.example.com/files": named("deepfiles"),
        "//[::1]:8000/six": named("six"),
    })


@pytest.mark.parametrize("path, environ, app", [
    ("/shop/x", {"HTTP_HOST": "example.com"}, "shop"),
    ("/shop/x", {"HTTP_HOST": "EXAMPLE.com"}, "shop"),
    ("/shop/x", {"HTTP_HOST": "example.com."}, "shop"),
    ("/shop/x", {"HTTP_HOST": "example.com:80"}, "shop"),
    ("/shop/x", {"HTTP_HOST": "example.com:8080"}, "shop8080"),
    ("/shop/x", {"HTTP_HOST": "example.com:9000"}, "shop"),
    ("/blog/x", {"HTTP_HOST": "example.com"}, "site"),  # the host's table wins first
    ("/blog/x", {"HTTP_HOST": "other.org"}, "blog"),
    ("/v1/x", {"HTTP_HOST": "api.example.com"}, "api"),
    ("/v2/x", {"HTTP_HOST": "api.example.com"}, "any"),  # falls through to any host
    ("/blog", {"HTTP_HOST": "api.example.com"}, "blog"),
    ("/files/a", {"HTTP_HOST": "cdn.example.com"}, "files"),
    ("/files/a", {"HTTP_HOST": "a.b.example.com:1234"}, "files"),
    ("/files/a", {"HTTP_HOST": "x.deep.example.com"}, "deepfiles"),
    ("/files/a", {"HTTP_HOST": "deep.example.com"}, "files"),
    ("/files/a", {"HTTP_HOST": "example.com"}, "site"),  # *.example.com is not example.com
    ("/files/a", {"HTTP_HOST": "badexample.com"}, "any"),
    ("/six/a", {"HTTP_HOST": "[::1]:8000"}, "six"),
    ("/six/a", {"HTTP_HOST": "[::1]"}, "any"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_host_matching(hosts, path, environ, app):
    assert hit(hosts, path, **environ)[0] == app


def test_host_default_port_follows_scheme():
    mount = Mount({"//example.com:443/s": named("tls"), "//example.com:80/s": named("plain")})
    assert hit(mount, "/s", HTTP_HOST="example.com")[0] == "plain"
    assert hit(mount, "/s", HTTP_HOST="example.com", **{"wsgi.url_scheme": "https"})[0] == "tls"
    assert hit(mount, "/s", HTTP_HOST="example.com:443")[0] == "tls"


def test_server_name_and_port_when_no_host_header():
    mount = Mount({"//example.com:8080/s": named("s"), "/": named("any")})
    for server_port, app in [("8080", "s"), ("80", "any"), ("8080", "s")]:
        environ = make_environ("/s/x", SERVER_NAME="Example.com", SERVER_PORT=server_port)
        del environ["HTTP_HOST"]
        body = validator(mount)(environ, lambda status, headers, exc_info=None: None)
        try:
            assert json.loads(b"".join(body))["app"] == app
        finally:
            body.close()


def test_host_cache_is_bounded_and_reset_by_add(monkeypatch):
    import stack.middleware.mount as module
    monkeypatch.setattr(module, "HOST_CACHE_SIZE", 4)
    mount = Mount({"//a.example.com/x": named("a"), "/": named("any")})
    for number in range(20):
        assert hit(mount, "/x", HTTP_HOST=f"h{number}.example.com")[0] == "any"
    assert len(mount._host_cache) <= 4
    mount.add("//*.example.com/x", named("wild"))
    assert hit(mount, "/x", HTTP_HOST="h1.example.com")[0] == "wild"
    assert hit(mount, "/x", HTTP_HOST="a.example.com")[0] == "a"


# -- keys ---------------------------------------------------------------------------

@pytest.mark.parametrize("key, parsed", [
    ("/", (None, "", "")),
    ("", (None, "", "")),
    ("/api", (None, "", "/api")),
    ("/api/", (None, "", "/api")),
    ("/api//v1//", (None, "", "/api/v1")),
    ("//API.Example.com", ("api.example.com", "", "")),
    ("//example.com.:0080/x/", ("example.com", "80", "/x")),
    ("//*.example.com/f", ("*.example.com", "", "/f")),
    ("//[::1]:8000/", ("[::1]", "8000", "")),
    ("domain example.com", ("example.com", "", "")),
    ("domain example.com /blog", ("example.com", "", "/blog")),
    ("domain Example.com port 8080 /blog/", ("example.com", "8080", "/blog")),
    ("port 8080 domain example.com", ("example.com", "8080", "")),
])
def test_keys_are_normalised(key, parsed):
    assert parse_key(key) == parsed


@pytest.mark.parametrize("key, fragment", [
    ("blog", "bad mount key 'blog'"),
    ("http://example.com/x", "write '//example.com/x'"),
    ("/a/../b", "'.' and '..'"),
    ("/a/./b", "'.' and '..'"),
    ("/a\nb", "control characters"),
    ("//exa mple.com/", "not a host name"),
    ("///x", "not a host name"),
    ("//example.com:99999/", "port '99999'"),
    ("//example.com:x/", "port 'x'"),
    ("domain", "needs a value"),
    ("port 80 /x", "a port needs a domain"),
    ("domain a.com domain b.com", "domain given twice"),
    ("domain a.com /x /y", "path given twice"),
    ("domain a.com x", "must start with '/'"),
    ("domain a.com:80 port 81", "port given twice"),
])
def test_bad_keys_are_rejected_naming_them(key, fragment):
    with pytest.raises(ConfigError) as info:
        Mount({key: echo_app})
    assert fragment in str(info.value)
    assert info.value.option == key


def test_duplicate_keys_name_both():
    with pytest.raises(ConfigError, match=r"'/api' and '/api/' are the same mount '/api'"):
        Mount({"/api": echo_app, "/api/": echo_app})
    mount = Mount({"domain example.com port 80 /x": echo_app})
    with pytest.raises(ConfigError, match="same mount '//example.com:80/x'"):
        mount.add("//EXAMPLE.com:80/x/", echo_app)
    Mount({"//example.com/x": echo_app, "//example.com:80/x": echo_app, "/x": echo_app})


@pytest.mark.parametrize("kwargs, fragment", [
    ({"not_found_app": "nope"}, "not_found_app"),
    ({"debug": "yes"}, "debug"),
])
def test_bad_options(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        Mount({"/": echo_app}, **kwargs)


def test_app_must_be_callable():
    with pytest.raises(ValueError, match="'/x'"):
        Mount({"/x": "not an app"})


# -- normalisation: dot segments and // ----------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ("/", "/"),
    ("", ""),
    ("//", "/"),
    ("/a//b///c", "/a/b/c"),
    ("/a/./b/.", "/a/b/"),
    ("/a/b/..", "/a/"),
    ("/a/b/../", "/a/"),
    ("/public/../admin", "/admin"),
    ("/../../admin", "/admin"),
    ("/..", "/"),
    ("/a/.hidden/..b/...", "/a/.hidden/..b/..."),
    ("relative/../x", "relative/../x"),
])
def test_normalise_path(path, expected):
    assert normalise_path(path) == expected


@pytest.fixture
def guarded() -> Mount:
    return Mount({"/": named("home"), "/public": named("public"), "/admin": named("admin")})


@pytest.mark.parametrize("path, expected", [
    ("/public/../admin", ("admin", "/admin", "")),
    ("/public/../admin/users", ("admin", "/admin", "/users")),
    ("/public/./../admin/", ("admin", "/admin", "/")),
    ("/public/x/../../admin", ("admin", "/admin", "")),
    ("/../admin", ("admin", "/admin", "")),
    ("/admin/../public/x", ("public", "/public", "/x")),
    ("/public/..", ("home", "", "/")),
    ("/public/x/..", ("public", "/public", "/")),
    ("//public//x", ("public", "/public", "/x")),
    ("/public//..//admin", ("admin", "/admin", "")),
    ("/./admin", ("admin", "/admin", "")),
    ("/public/.x/..y", ("public", "/public", "/.x/..y")),
])
def test_dot_segments_and_slash_runs(guarded, path, expected):
    assert hit(guarded, path) == expected


def test_normalised_path_reaches_the_root_app_too():
    assert hit(Mount({"/": named("home")}), "/a//b/../c") == ("home", "", "/a/c")


# -- not found -----------------------------------------------------------------------

def test_default_404_leaks_nothing():
    mount = Mount({"/secret-admin": echo_app, "//internal.example.com": echo_app})
    result = call(mount, "/nope/<script>", HTTP_HOST="example.com", HTTP_X_TOKEN="t0ps3cret")
    assert result.code == 404
    assert result.header("Content-Type") == "text/plain; charset=utf-8"
    assert result.header("X-Content-Type-Options") == "nosniff"
    assert int(result.header("Content-Length")) == len(result.body)
    for leak in (b"secret-admin", b"internal", b"<script>", b"nope", b"t0ps3cret", b"PATH_INFO"):
        assert leak not in result.body


def test_debug_404_lists_mounts_tried_for_the_host():
    mount = Mount({"/blog": echo_app, "//a.example.com/x": echo_app,
                   "//b.example.com/hidden": echo_app}, debug=True)
    result = call(mount, "/nope", HTTP_HOST="a.example.com")
    assert result.code == 404
    assert b"//a.example.com/x" in result.body and b"/blog" in result.body
    assert b"hidden" not in result.body
    assert b"HTTP_" not in result.body


def test_not_found_app_gets_the_request():
    fallback = named("fallback")
    mount = Mount({"/blog": named("blog")}, not_found_app=fallback)
    assert hit(mount, "/x//y", SCRIPT_NAME="/s") == ("fallback", "/s", "/x/y")


def test_closes_the_mounted_apps_iterable():
    closed = []

    class Body:
        def __iter__(self):
            yield b"x"

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    assert call(Mount({"/a": app}), "/a").body == b"x"
    assert closed == [True]


# -- WebOb: URLs built from SCRIPT_NAME ------------------------------------------------

@wsgify
def webob_app(request: Request) -> Response:
    return Response(json={"application_url": request.application_url, "path_url": request.path_url,
                          "link": request.relative_url("other")})


def test_webob_app_builds_urls_under_its_mount():
    mount = Mount({"/": echo_app, "/shop": validator(webob_app)})
    result = call(mount, "/shop/cart/items", HTTP_HOST="example.com")
    data = result.json()
    assert data["application_url"] == "http://example.com/shop"
    assert data["path_url"] == "http://example.com/shop/cart/items"
    assert data["link"] == "http://example.com/shop/cart/other"


# -- INI ----------------------------------------------------------------------------------

APPS_INI = named_apps_ini('home', 'blog', 'api', 'missing')


@pytest.fixture
def write_ini(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "site.ini"
        path.write_text(textwrap.dedent(text) + APPS_INI)
        return path

    return write


def test_ini_mount(write_ini):
    path = write_ini("""
        [composite:main]
        use = egg:stack#mount
        / = home
        /blog/ = blog
        //api.example.com/v1 = api
        not_found_app = missing
        debug = true
    """)
    app = stack.load(path)
    assert isinstance(app, Mount) and app.debug is True
    assert hit(app, "/blog/x") == ("blog", "/blog", "/x")
    assert hit(app, "/v1/x", HTTP_HOST="api.example.com") == ("api", "/v1", "/x")
    assert [label for label, _ in app.children()] == ["/", "/blog", "//api.example.com/v1",
                                                      "(not found)"]
    assert hit(Mount({"/x": echo_app}, not_found_app=app.not_found_app), "/y")[0] == "missing"


PASTE_STYLE = """
    [composite:main]
    use = {use}
    / = home
    /blog = blog
    domain api.example.com port 8080 /v1 = api
    domain www.example.com = blog
"""


@pytest.mark.parametrize("path, environ, expected", [
    ("/blog/x", {}, ("blog", "/blog", "/x")),
    ("/v1/x", {"HTTP_HOST": "api.example.com:8080"}, ("api", "/v1", "/x")),
    ("/v1/x", {"HTTP_HOST": "api.example.com"}, ("home", "", "/v1/x")),
    ("/other", {"HTTP_HOST": "www.example.com"}, ("blog", "", "/other")),
    ("/other", {"HTTP_HOST": "example.com"}, ("home", "", "/other")),
])
@pytest.mark.parametrize("use", ["egg:stack#urlmap", "egg:Paste#urlmap"])
def test_ini_urlmap_paste_syntax(write_ini, use, path, environ, expected):
    if use.startswith("egg:Paste"):
        pytest.importorskip("paste.urlmap")
    app = stack.load(write_ini(PASTE_STYLE.format(use=use)))
    assert hit(app, path, **environ) == expected


def test_ini_urlmap_takes_not_found_app_from_defaults_like_paste(write_ini):
    path = write_ini("""
        [DEFAULT]
        not_found_app = missing

        [composite:main]
        use = egg:stack#urlmap
        /blog = blog
    """)
    assert hit(stack.load(path), "/x")[0] == "missing"


@pytest.mark.parametrize("line, fragment", [
    ("debgu = true", "unknown option 'debgu'; did you mean 'debug'?"),
    ("blog = blog", "unknown option 'blog'"),
    ("debug = maybe", "option 'debug'"),
    ("domain api.example.com port http = api", "port 'http'"),
    ("/a/../b = blog", "'.' and '..'"),
    ("/x = ", "names no app"),
])
def test_ini_errors_name_the_key(write_ini, line, fragment):
    path = write_ini(f"""
        [composite:main]
        use = egg:stack#mount
        / = home
        {line}
    """)
    with pytest.raises(ConfigError) as info:
        stack.load(path)
    message = str(info.value)
    assert fragment in message and "site.ini" in message and "[composite:main]" in message


def test_ini_duplicate_after_normalising(write_ini):
    path = write_ini("""
        [composite:main]
        use = egg:stack#mount
        /blog = blog
        /blog/ = home
    """)
    with pytest.raises(ConfigError, match="'/blog' and '/blog/' are the same mount"):
        stack.load(path)


# -- real socket ---------------------------------------------------------------------------

def test_live_server(live_server):
    url = live_server(Mount({"/": named("home"), "/public": named("public"),
                             "/admin": named("admin")}))
    status, headers, body = http_get(url + "/public/css/site.css")
    assert status == 200
    assert json.loads(body) == {"app": "public", "script_name": "/public", "path_info": "/css/site.css"}
    # The server decodes %2e%2e to "..": the mount must still resolve it first.
    status, headers, body = http_get(url + "/public/%2e%2e/admin/x")
    assert json.loads(body) == {"app": "admin", "script_name": "/admin", "path_info": "/x"}
    status, headers, body = http_get(url.replace("127.0.0.1", "localhost") + "/public")
    assert status == 200 and json.loads(body)["path_info"] == ""


def test_live_server_404(live_server):
    url = live_server(Mount({"/only": named("only")}))
    status, headers, body = http_get(url + "/elsewhere")
    assert status == 404 and b"/only" not in body


# -- the same answers as Paste's URLMap where Paste is right ---------------------------------

def test_differential_against_paste_urlmap():
    """Random tables and paths through both; same app, SCRIPT_NAME and PATH_INFO.

    Intended differences, kept out of the generated cases: dot segments
    (Paste passes ``..`` through; stack resolves them), a host mounted both
    with and without a port (Paste tries the one without first, by sort
    order; stack tries the port-specific one first), upper case in a domain
    key (Paste never matches it), SERVER_NAME without Host (Paste ignores
    SERVER_PORT), and the not-found app's PATH_INFO (Paste passes the raw
    path; stack the normalised one, as to every app).
    """
    hypothesis = pytest.importorskip("hypothesis")
    urlmap = pytest.importorskip("paste.urlmap")
    st = hypothesis.strategies

    segment = st.sampled_from(["a", "b", "ab"])
    key_path = st.lists(segment, max_size=3).map(lambda parts: "/" + "/".join(parts))
    domain = st.sampled_from([None, "x.com", "y.com:8080"])
    table = st.dictionaries(st.tuples(domain, key_path), st.just(None), min_size=1, max_size=8)
    request_path = st.lists(st.sampled_from(["a", "b", "ab", "c", ""]), max_size=5).map(
        lambda parts: "/" + "/".join(parts))
    host = st.sampled_from(["x.com", "X.COM", "x.com:80", "y.com:8080", "y.com", "z.org"])

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(table, request_path, host)
    def check(mounts, path, host_header):
        paste_map = urlmap.URLMap(not_found_app=named("none"))
        pairs = []
        for number, (dom, key) in enumerate(mounts):
            name = f"app{number}"
            paste_map[f"http://{dom}{key}" if dom else key] = named(name)
            pairs.append((f"//{dom}{key}" if dom else key, named(name)))
        ours = Mount(pairs, not_found_app=named("none"))
        theirs = call(paste_map, path, HTTP_HOST=host_header).json()
        mine = call(ours, path, HTTP_HOST=host_header).json()
        if theirs["app"] == "none":  # Paste hands its not-found app the raw path
            theirs["path_info"] = normalise_path(theirs["path_info"])
        assert mine == theirs, (mounts, path, host_header)

    check()


# -- the middleware contract ------------------------------------------------------------

@pytest.mark.parametrize("key", ["/", "/probe", "//127.0.0.1/"])  # the kit asks for 127.0.0.1
def test_mount_keeps_the_middleware_contract(key):
    from stack.testing import assert_middleware

    assert_middleware(lambda app: Mount({key: app}))
