"""Tests for stack.middleware.router: patterns, precedence, conflicts, HTTP answers, url_for, INI."""
from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import pytest
from support import call, echo_app, http_get, make_environ, named_apps_ini

import stack
from stack.middleware.router import Router, parse_pattern, parse_route_line
from stack.errors import ConfigError, ConfigWarning
from stack.tree import format_tree


def named(name: str, router: list[Router] | None = None, url: dict | None = None):
    """An app (under wsgiref.validate) answering with its name and what routing gave it.

    With ``router=[r]`` and ``url={"name": ..., **params}`` it also reports
    ``r.url_for(...)`` built while the request is being served.
    """

    def app(environ, start_response):
        data: dict[str, Any] = {
            "app": name, "method": environ["REQUEST_METHOD"],
            "script_name": environ.get("SCRIPT_NAME", ""),
            "path_info": environ.get("PATH_INFO", ""),
            "args": environ.get("wsgiorg.routing_args"),
            "route": environ.get("stack.route_name"),
        }
        if router and url:
            params = dict(url)
            data["url"] = router[0].url_for(params.pop("name"), **params)
        payload = json.dumps(data).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(payload)))])
        return [payload]

    app.__name__ = name
    return validator(app)


def hit(app, path: str, method: str = "GET", **environ) -> dict[str, Any]:
    result = call(app, path, method=method, **environ)
    assert result.code == 200, (result.status, result.body)
    return result.json()


# -- patterns --------------------------------------------------------------------------

@pytest.fixture
def api() -> Router:
    return Router([
        ("GET", "/", named("root"), "root"),
        ("GET", "/users", named("users"), "users"),
        ("GET", "/users/me", named("me")),
        ("GET,POST", "/users/{id:int}", named("user"), "user"),
        ("GET", "/users/{slug}", named("slug")),
        ("GET", "/users/{id:int}/posts/{post}", named("post")),
        ("GET", "/files/{path:path}", named("files"), "files"),
        ("GET", "/archive/{year:\\d{4}}", named("year"), "year"),
        ("GET", "/tags/{tag:(?i)[a-z]+-?}", named("tag")),
        ("GET", "/archive/{year:\\d{4}}/{month:int}", named("month")),
        ("GET", "/api/v{version:int}/{name}.{ext}", named("versioned"), "versioned"),
        ("GET", "/users/me/settings", named("settings")),
        ("GET", "/users/{id}/friends", named("friends")),
    ])


@pytest.mark.parametrize("path, app, args", [
    ("/", "root", {}),
    ("", "root", {}),
    ("/users", "users", {}),
    ("/users/me", "me", {}),
    ("/users/42", "user", {"id": 42}),
    ("/users/bob", "slug", {"slug": "bob"}),
    ("/users/42/posts/hello", "post", {"id": 42, "post": "hello"}),
    ("/files/a", "files", {"path": "a"}),
    ("/files/a/b/c.txt", "files", {"path": "a/b/c.txt"}),
    ("/archive/2024", "year", {"year": "2024"}),
    ("/tags/Python-", "tag", {"tag": "Python-"}),
    ("/archive/2024/7", "month", {"year": "2024", "month": 7}),
    ("/api/v2/report.csv", "versioned", {"version": 2, "name": "report", "ext": "csv"}),
    ("/users/me/settings", "settings", {}),
    ("/users/me/friends", "friends", {"id": "me"}),  # backtracks from the static 'me'
    ("/users/%C3%A9t%C3%A9".encode().decode("latin-1"), "slug", {"slug": "%C3%A9t%C3%A9"}),
    ("/users/\xc3\xa9t\xc3\xa9", "slug", {"slug": "été"}),  # UTF-8 bytes in a WSGI str
], ids=lambda value: value if isinstance(value, str) else None)
def test_pattern_types(api, path, app, args):
    data = hit(api, path)
    assert (data["app"], data["args"]) == (app, [[], args])
    assert data["path_info"] == path and data["script_name"] == ""


@pytest.mark.parametrize("path", [
    "/users/", "/archive/24", "/archive/20245", "/api/vx/report.csv", "/files/", "/nope",
    "/users/42/posts", "/users/" + "9" * 65 + "/posts/x",
])
def test_no_match_is_404(api, path):
    result = call(api, path)
    assert result.code in (404, 308) and result.header("Allow") is None


def test_int_parameter_rejects_non_ascii_digits_and_huge_numbers():
    router = Router([("GET", "/n/{n:int}", named("int")), ("GET", "/n/{s}", named("str"))])
    assert hit(router, "/n/\xb2")["app"] == "str"  # '²'.isdigit() is True
    assert hit(router, "/n/" + "1" * 65)["app"] == "str"
    assert hit(router, "/n/" + "1" * 64)["args"][1]["n"] == int("1" * 64)


def test_regex_and_mixed_segments_come_before_int_and_str_in_order_added():
    router = Router([
        ("GET", "/x/{s}", named("str")),
        ("GET", "/x/{n:int}", named("int")),
        ("GET", "/x/{code:[0-9]{3}}", named("code")),
        ("GET", "/x/{id}.json", named("json")),
        ("GET", "/x/{hex:[0-9a-f]+}", named("hex")),
    ])
    assert hit(router, "/x/123")["app"] == "code"
    assert hit(router, "/x/12")["app"] == "hex"  # the earlier regex did not match
    assert hit(router, "/x/1234567")["app"] == "hex"
    assert hit(router, "/x/12345678Z")["app"] == "str"
    assert hit(router, "/x/5.json")["args"][1] == {"id": "5"}
    router.add("GET", "/y/{n:int}", named("int"))
    assert hit(router, "/y/7")["app"] == "int"


def test_static_beats_parameters_whatever_the_order():
    router = Router([("POST", "/a/{x}", named("param")), ("GET", "/a/b", named("static"))])
    assert hit(router, "/a/b")["app"] == "static"
    assert hit(router, "/a/c", "POST")["app"] == "param"
    assert hit(router, "/a/b", "POST")["app"] == "param"  # the static route lacks POST


def test_url_for_takes_a_parameter_called_name():
    router = Router([("GET", "/people/{name}", echo_app, "person")])
    assert router.url_for("person", name="ada") == "/people/ada"


def test_parse_pattern_shapes():
    segments, prefix = parse_pattern("/users/{id:int}/...")
    assert prefix and [[getattr(p, "kind", p) for p in s] for s in segments] == [["users"], ["int"]]
    assert parse_pattern("/...") == ([], True)
    assert parse_pattern("/")[0] == [[]]
    assert len(parse_pattern("/a/")[0]) == 2


@pytest.mark.parametrize("pattern, fragment", [
    ("users", "starting with '/'"),
    ("/a/{id", "unbalanced '{'"),
    ("/a/id}", "unbalanced '}'"),
    ("/a/{1x}", "not a parameter name"),
    ("/a/{x:(}", "bad regex"),
    ("/{p:path}/more", "whole last segment"),
    ("/x{p:path}", "whole last segment"),
    ("/{p:path}/...", "whole last segment"),
    ("/{a}/{a}", "appears twice"),
    ("/a/../b", "'.', '..'"),
    ("/a/.../b", "'/...' only at the end"),
    ("/a?b", "'?' and '#'"),
    ("/a\x00", "control characters"),
    ("/{a}-{b:(?i)x}", "bad regex in segment '{a:str}-{b:(?i)x}'"),
])
def test_bad_patterns(pattern, fragment):
    with pytest.raises(ConfigError, match="bad route pattern") as info:
        Router([("GET", pattern, echo_app)])
    assert fragment in str(info.value) and repr(pattern) in str(info.value)


@pytest.mark.parametrize("pattern, word, hint", [
    ("/items/{id:integer}", "integer", "; did you mean 'int'? "),
    ("/items/{id:Int}", "Int", "; did you mean 'int'? "),
    ("/items/{id:string}", "string", "; did you mean 'str'? "),
    ("/files/{p:Path}", "Path", "; did you mean 'path'? "),
    ("/v{n:number}.json", "number", " "),
    ("/items/{id:digits}", "digits", " "),
])
def test_an_unknown_parameter_type_is_an_error_not_a_literal_regex(pattern, word, hint):
    # {id:integer} used to compile as the regex 'integer', matching only /items/integer
    with pytest.raises(ConfigError) as info:
        Router([("GET", pattern, echo_app)])
    assert info.value.option == "routes"
    assert str(info.value).endswith(
        f"unknown parameter type {word!r} in {pattern!r}{hint}"
        "(types: str, int, path; anything else must be a regex)")
    with pytest.raises(ValueError, match=f"unknown parameter type {word!r}"):
        parse_pattern(pattern)


@pytest.mark.parametrize("pattern, path, value", [
    ("/f/{f:json|xml}", "/f/xml", "xml"),
    ("/y/{y:\\d{4}}", "/y/2024", "2024"),
    ("/c/{c:[a-z]+}", "/c/abc", "abc"),
    ("/v/{v:v1.0}", "/v/v1x0", "v1x0"),
    ("/s/{s:a*}", "/s/aaa", "aaa"),
    ("/o/{o:(on|off)}", "/o/on", "on"),
    ("/e/{e:^end$}", "/e/end", "end"),
    ("/q/{q:colou?r}", "/q/color", "color"),
])
def test_a_spec_with_regex_signs_stays_a_regex(pattern, path, value):
    router = Router([("GET", pattern, named("re"))])
    data = hit(router, path)
    assert data["app"] == "re" and list(data["args"][1].values()) == [value]


# -- methods -------------------------------------------------------------------------------

@pytest.mark.parametrize("methods, odd", [("GTE", "GTE"), ("GET,PSOT", "PSOT"),
                                          (["FETCH"], "FETCH")])
def test_a_non_standard_method_warns(methods, odd):
    with pytest.warns(ConfigWarning, match=f"{odd!r} is not a standard HTTP method"):
        router = Router([(methods, "/x", echo_app)])
    # it still works, exactly as written (wsgiref.validate would warn about the method)
    assert call(router, "/x", odd, validate=False).code == 200
    assert call(router, "/x", "DELETE").code == 405


def test_the_warning_suggests_the_close_method():
    with pytest.warns(ConfigWarning, match="route 'GTE /x': 'GTE' .*did you mean 'GET'"):
        Router([("GTE", "/x", echo_app)])


def test_standard_methods_and_star_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Router([("get,head,post,put,delete,patch,options,connect,trace", "/a", echo_app),
                ("*", "/b", echo_app)])


def test_ini_non_standard_method_warns(write_ini):
    path = write_ini("""
        [composite:main]
        use = egg:stack#router
        routes = GTE /users users
    """)
    with pytest.warns(ConfigWarning, match="'GTE' is not a standard HTTP method"):
        stack.load(path)


# -- conflicts ---------------------------------------------------------------------------

@pytest.mark.parametrize("first, second, word", [
    (("GET", "/users/{id}"), ("GET", "/users/{id}"), "duplicate"),
    (("GET", "/users/{id}"), ("GET,POST", "/users/{name}"), "ambiguous"),
    (("GET", "/f/{a:int}"), ("GET", "/f/{b:int}"), "ambiguous"),
    (("GET", "/f/{a:\\d+}"), ("GET", "/f/{b:\\d+}"), "ambiguous"),
    (("GET", "/f/{a}.{b}"), ("GET", "/f/{c}.{d}"), "ambiguous"),
    (("GET", "/f/{a:path}"), ("GET", "/f/{b:path}"), "ambiguous"),
    (("*", "/m/{t}/..."), ("*", "/m/{u}/..."), "ambiguous"),
    (("*", "/x"), ("*", "/x"), "duplicate"),
])
def test_conflicts_name_both_routes(first, second, word):
    router = Router([(*first, echo_app)])
    with pytest.raises(ConfigError) as info:
        router.add(*second, echo_app)
    message = str(info.value)
    assert message.startswith(word)
    assert repr(" ".join(first)) in message and repr(" ".join(second)) in message


def test_not_conflicts():
    router = Router([
        ("GET", "/u/{id}", named("get")), ("POST", "/u/{name}", named("post")),  # methods differ
        ("GET", "/u/{id:int}", named("int")),  # another kind
        ("*", "/u/{id}", named("any")),  # '*' beside explicit methods
        ("GET", "/p", named("exact")), ("GET", "/p/...", named("prefix")),
    ])
    assert hit(router, "/u/x")["app"] == "get"
    assert hit(router, "/u/x", "POST")["args"][1] == {"name": "x"}
    assert hit(router, "/u/x", "PUT")["app"] == "any"
    assert hit(router, "/u/1")["app"] == "int"
    assert hit(router, "/p")["app"] == "exact" and hit(router, "/p/x")["app"] == "prefix"


def test_route_names_are_unique():
    router = Router([("GET", "/a", echo_app, "home")])
    with pytest.raises(ConfigError,
                       match="route name 'home' is used by both 'GET /a' and 'GET /b'"):
        router.add("GET", "/b", echo_app, "home")


@pytest.mark.parametrize("route, fragment", [
    (("get,", "/a", echo_app), "bad methods"),
    (("GET POST", "/a", echo_app), "bad methods"),
    (("*,GET", "/a", echo_app), "bad methods"),
    (("GET", "/a", "not an app"), "must be a WSGI app"),
    (("GET", "/a", echo_app, ""), "name must be a non-empty str"),
    (("GET", "/a"), "a route is (methods, pattern, app[, name])"),
])
def test_bad_routes(route, fragment):
    with pytest.raises(ConfigError) as info:
        Router([route])
    assert fragment in str(info.value)


def test_methods_forms():
    router = Router([("get, post", "/a", named("a")), (["PUT"], "/a", named("put"))])
    assert hit(router, "/a", "POST")["app"] == "a" and hit(router, "/a", "PUT")["app"] == "put"
    assert [label for label, _ in router.children()] == ["GET,POST /a", "PUT /a"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"trailing_slash": "sometimes"},
     "^option 'trailing_slash': expected one of redirect, strict, ignore"),
    ({"root": "api"}, "^option 'root': expected"),
    ({"not_found_app": 3}, "^option 'not_found_app': expected"),
])
def test_bad_options(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        Router(**kwargs)


# -- what the router answers itself ------------------------------------------------------

@pytest.fixture
def methods() -> Router:
    return Router([("GET", "/r", named("get")), ("POST", "/r", named("post")),
                   ("PUT", "/r/{x}", named("put")), ("DELETE", "/only-delete", named("del")),
                   ("HEAD", "/h", named("head")), ("GET", "/h", named("get-h")),
                   ("OPTIONS", "/o", named("options")), ("GET", "/o", named("get-o"))])


def test_404_says_little(methods):
    result = call(methods, "/nowhere")
    assert result.code == 404 and result.body == b"404 Not Found\n"
    assert result.header("Content-Length") == str(len(result.body))
    head = call(methods, "/nowhere", method="HEAD")
    assert head.code == 404 and head.body == b""


def test_405_lists_allowed_methods_from_every_matching_route(methods):
    result = call(methods, "/r", method="DELETE")
    assert result.code == 405 and result.header("Allow") == "GET, HEAD, OPTIONS, POST"
    # /r/{x} and /r are different shapes; both are looked at for /r/x
    assert call(methods, "/r/x", method="GET").header("Allow") == "OPTIONS, PUT"
    assert call(methods, "/only-delete").header("Allow") == "DELETE, OPTIONS"


def test_head_is_served_by_get_without_body(methods):
    result = call(methods, "/r", method="HEAD")
    assert result.code == 200 and result.body == b""
    assert int(result.header("Content-Length")) > 0  # what GET would send


def test_explicit_head_route_wins(methods):
    result = call(Router([("HEAD", "/h", named("head")), ("GET", "/h", named("get"))]), "/h",
                  method="HEAD")
    assert json.loads(result.body)["app"] == "head"


def test_head_via_get_closes_a_late_generator_app_once():
    closed = []

    class Body:
        def __init__(self, start_response):
            self.start_response = start_response

        def __iter__(self):
            self.start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"late body"

        def close(self):
            closed.append(1)

    router = Router([("GET", "/g", lambda environ, start_response: Body(start_response))])
    result = call(router, "/g", method="HEAD")
    assert result.code == 200 and result.body == b"" and closed == [1]


def test_options_answers_allow(methods):
    result = call(methods, "/r", method="OPTIONS")
    assert result.code == 204 and result.body == b""
    assert result.header("Allow") == "GET, HEAD, OPTIONS, POST"
    assert hit(methods, "/o", "OPTIONS")["app"] == "options"
    assert call(methods, "/nowhere", method="OPTIONS").code == 404


def test_any_method_route_takes_options_and_head():
    router = Router([("*", "/a", named("any"))])
    for method in ("OPTIONS", "HEAD", "PATCH", "DELETE"):
        assert hit(router, "/a", method)["method"] == method


def test_not_found_app_gets_misses_but_not_405():
    router = Router([("GET", "/a", named("a"))], not_found_app=named("fallback"))
    assert hit(router, "/b")["app"] == "fallback"
    assert call(router, "/a", method="POST").code == 405


@pytest.mark.parametrize("path", ["/a/../b", "/a/./b", "/a/..", "/.", "/files/x/../../etc"])
def test_dot_segments_never_match(path):
    router = Router([("GET", "/{p:path}", named("any")), ("GET", "/a/{x}/b", named("x"))])
    assert call(router, path).code == 404


def test_path_not_starting_with_slash_is_404():
    router = Router([("GET", "/{p:path}", echo_app)])
    assert call(router, "/x", PATH_INFO="x", validate=False).code == 404


# -- routing_args and the route name ------------------------------------------------------

def test_routing_args_and_route_name(api):
    data = hit(api, "/users/7")
    assert data["args"] == [[], {"id": 7}] and data["route"] == "user"
    assert hit(api, "/users/me")["route"] is None


def test_routing_args_merge_with_an_outer_router():
    environ_args = ((1,), {"tenant": "acme", "id": "outer"})
    router = Router([("GET", "/{id:int}", named("inner"))])
    data = hit(router, "/5", **{"wsgiorg.routing_args": environ_args})
    assert data["args"] == [[1], {"tenant": "acme", "id": 5}]
    data = hit(router, "/5", **{"wsgiorg.routing_args": "junk"})
    assert data["args"] == [[], {"id": 5}]


# -- url_for ------------------------------------------------------------------------------

def test_url_for_outside_a_request(api):
    assert api.url_for("root") == "/"
    assert api.url_for("user", id=42) == "/users/42"
    assert api.url_for("files", path="a b/ü.txt") == "/files/a%20b/%C3%BC.txt"
    assert api.url_for("year", year=2024) == "/archive/2024"
    assert api.url_for("versioned", version=3, name="r", ext="csv") == "/api/v3/r.csv"
    assert api.url_for("users", page=2, q="a&b") == "/users?page=2&q=a%26b"
    rooted = Router([("GET", "/users/{id:int}", echo_app, "user")], root="/api/")
    assert rooted.root == "/api" and rooted.url_for("user", id=1) == "/api/users/1"


@pytest.mark.parametrize("name, params, fragment", [
    ("user", {}, "needs id"),
    ("user", {"id": "42"}, "must be an int"),
    ("user", {"id": True}, "must be an int"),
    ("user", {"id": -1}, "must be an int"),
    ("year", {"year": 24}, "does not match"),
    ("files", {"path": "a/../b"}, "without '.' or '..'"),
    ("versioned", {"version": 1, "name": "a/b", "ext": "c"}, "one path segment"),
])
def test_url_for_bad_params(api, name, params, fragment):
    with pytest.raises(ValueError, match=fragment):
        api.url_for(name, **params)


def test_url_for_unknown_name(api):
    with pytest.raises(KeyError, match="no route named 'usr'; did you mean 'user'"):
        api.url_for("usr")


def test_url_for_inside_a_request_uses_its_script_name():
    holder: list[Router] = []
    router = Router([("GET", "/users/{id:int}", named("user", holder, {"name": "user", "id": 9}),
                      "user")], root="/default")
    holder.append(router)
    assert hit(router, "/users/1", SCRIPT_NAME="/my app")["url"] == "/my%20app/users/9"
    assert hit(router, "/users/1")["url"] == "/users/9"
    assert router.url_for("user", id=9) == "/default/users/9"  # reset after the request


def test_url_for_inside_a_nested_router():
    outer_holder: list[Router] = []
    inner_holder: list[Router] = []
    inner = Router([("GET", "/docs/{doc}", named("doc", inner_holder, {"name": "doc", "doc": "x"}),
                     "doc"),
                    ("GET", "/home", named("home", outer_holder, {"name": "tenant", "t": "b"}))])
    inner_holder.append(inner)
    outer = Router([("*", "/{t}/...", inner, "tenant")])
    outer_holder.append(outer)
    data = hit(outer, "/acme/docs/readme", SCRIPT_NAME="/site")
    assert (data["script_name"], data["path_info"]) == ("/site/acme", "/docs/readme")
    assert data["url"] == "/site/acme/docs/x"
    assert data["args"] == [[], {"t": "acme", "doc": "readme"}]
    assert hit(outer, "/acme/home", SCRIPT_NAME="/site")["url"] == "/site/b"


# -- trailing slash -------------------------------------------------------------------------

@pytest.fixture
def slashes():
    routes = [("GET", "/a", named("a")), ("POST", "/b/", named("b")), ("GET", "/", named("root"))]
    return lambda policy: Router(routes, trailing_slash=policy)


@pytest.mark.parametrize("path, method, location", [
    ("/a/", "GET", "/app/a?q=1"),
    ("/b", "POST", "/app/b/?q=1"),
    ("/b", "GET", "/app/b/?q=1"),  # then a 405 there
])
def test_trailing_slash_redirect(slashes, path, method, location):
    result = call(slashes("redirect"), path + "?q=1", method=method, SCRIPT_NAME="/app")
    assert result.code == 308 and result.header("Location") == location


def test_trailing_slash_redirect_encodes_the_location(slashes):
    result = call(Router([("GET", "/café/", echo_app)]), "/caf\xc3\xa9", SCRIPT_NAME="/a b")
    assert result.code == 308 and result.header("Location") == "/a%20b/caf%C3%A9/"
    assert call(slashes("redirect"), "/c/").code == 404


def test_trailing_slash_strict(slashes):
    router = slashes("strict")
    assert call(router, "/a/").code == 404 and call(router, "/b", method="POST").code == 404
    assert hit(router, "/a")["app"] == "a"


def test_trailing_slash_ignore(slashes):
    router = slashes("ignore")
    data = hit(router, "/a/")
    assert (data["app"], data["path_info"]) == ("a", "/a/")
    assert hit(router, "/b", "POST")["app"] == "b"
    result = call(router, "/b")
    assert result.code == 405 and result.header("Allow") == "OPTIONS, POST"


# -- prefix routes and nesting --------------------------------------------------------------------

@pytest.mark.parametrize("path, script_name, path_info", [
    ("/acme/admin", "/acme/admin", ""),
    ("/acme/admin/", "/acme/admin", "/"),
    ("/acme/admin/users/7", "/acme/admin", "/users/7"),
])
def test_prefix_route_moves_the_prefix_to_script_name(path, script_name, path_info):
    router = Router([("*", "/{tenant}/admin/...", named("admin"))])
    data = hit(router, path, SCRIPT_NAME="/x")
    assert (data["script_name"], data["path_info"]) == ("/x" + script_name, path_info)
    assert data["args"][1] == {"tenant": "acme"}


def test_root_prefix_route_takes_everything_left():
    router = Router([("GET", "/api/{id:int}", named("api")), ("*", "/...", named("rest"))])
    assert hit(router, "/api/1")["app"] == "api"
    data = hit(router, "/api/x/y")
    assert (data["app"], data["script_name"], data["path_info"]) == ("rest", "", "/api/x/y")


def test_deeper_routes_beat_a_prefix_route():
    router = Router([("*", "/api/...", named("mounted")), ("GET", "/api/health", named("health"))])
    assert hit(router, "/api/health")["app"] == "health"
    assert hit(router, "/api/health", "POST")["app"] == "mounted"
    assert hit(router, "/api/other")["path_info"] == "/other"


def test_routers_nest_with_non_ascii_prefixes():
    inner = Router([("GET", "/items/{item}", named("item"))])
    outer = Router([("GET", "/{shop}/...", inner)])
    data = hit(outer, "/caf\xc3\xa9/items/th\xc3\xa9")
    assert data["script_name"] == "/caf\xc3\xa9" and data["path_info"] == "/items/th\xc3\xa9"
    assert data["args"][1] == {"shop": "café", "item": "thé"}
    assert call(outer, "/cafe/nothing").code == 404


def test_webob_app_builds_urls_under_the_consumed_prefix():
    from webob import Request, Response
    from webob.dec import wsgify

    @wsgify
    def app(request: Request) -> Response:
        return Response(json.dumps({"url": request.application_url, "path": request.path_info}),
                        content_type="application/json", charset="utf-8")

    router = Router([("GET", "/shop/{id:int}/...", app)])
    assert hit(router, "/shop/3/cart") == {"url": "http://127.0.0.1/shop/3", "path": "/cart"}


# -- stack show ------------------------------------------------------------------------------

def test_children_and_tree(api):
    labels = [label for label, _ in api.children()]
    assert labels[:4] == ["GET /", "GET /users", "GET /users/me", "GET,POST /users/{id:int}"]
    tree = format_tree(Router([("GET", "/users/{id:int}", echo_app)], trailing_slash="strict"))
    assert "stack.middleware.router.Router (trailing_slash='strict', root=''," in tree
    assert "  GET /users/{id:int} -> support.echo_app" in tree
    assert repr(api) == "<Router 13 routes>"
    assert repr(api.routes[3]) == "<Route GET,POST /users/{id:int} name='user'>"
    assert list(api.routes[0])[:2] == ["GET", "/"]


# -- INI -------------------------------------------------------------------------------------

APPS_INI = named_apps_ini('users', 'user', 'admin', 'missing')


@pytest.fixture
def write_ini(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "site.ini"
        path.write_text(textwrap.dedent(text) + APPS_INI)
        return path

    return write


def test_ini_router(write_ini):
    path = write_ini(r"""
        [composite:main]
        use = egg:stack#router
        routes =
            # comments and blank lines are skipped

            GET       /users                users  name=users
            GET,POST  /users/{id:int}       user   name=user
            GET       /archive/{y:\d{4}}    users
            *         /{tenant}/admin/...   admin
        trailing_slash = strict
        root = /api
        not_found_app = missing
    """)
    app = stack.load(path)
    assert isinstance(app, Router) and app.trailing_slash == "strict" and app.root == "/api"
    assert hit(app, "/users/3", "POST")["args"] == [[], {"id": 3}]
    assert hit(app, "/users")["route"] == "users"
    assert hit(app, "/archive/2024")["args"][1] == {"y": "2024"}
    data = hit(app, "/acme/admin/x")
    assert (data["app"], data["script_name"], data["path_info"]) == ("admin", "/acme/admin", "/x")
    assert hit(app, "/users/")["app"] == "missing"  # strict: no redirect
    assert app.url_for("user", id=3) == "/api/users/3"
    assert app.routes[0].app is app.routes[2].app  # one app per name


@pytest.mark.parametrize("line, fragment", [
    ("GET /users", "bad route line 'GET /users': expected"),
    ("GET /users users name=", "bad route line 'GET /users users name='"),
    ("GET /users users extra", "bad route line 'GET /users users extra'"),
    ("GET users users", "bad route line 'GET users users': a pattern"),
    ("GE;T /users users", "bad route line 'GE;T /users users': bad methods"),
    ("GET /u/{id users", "bad route line 'GET /u/{id users': unbalanced"),
    ("GET /u/{id:integer} users", "bad route line 'GET /u/{id:integer} users': unknown "
                                  "parameter type 'integer' in '/u/{id:integer}'; did you mean 'int'?"),
    ("GET /users user", "route line 'GET /users user': duplicate routes: 'GET /users' and "
                        "'GET /users'"),
    ("GET /other user name=users", "route line 'GET /other user name=users': route name 'users'"),
])
def test_ini_bad_routes_lines_name_the_line(write_ini, line, fragment):
    path = write_ini(f"""
        [composite:main]
        use = egg:stack#router
        routes =
            GET /users users name=users
            {line}
    """)
    with pytest.raises(ConfigError) as info:
        stack.load(path)
    message = str(info.value)
    assert fragment in message and "site.ini" in message and "[composite:main]" in message


@pytest.mark.parametrize("option, fragment", [
    ("trailing_slashes = strict",
     "unknown option 'trailing_slashes'; did you mean 'trailing_slash'"),
    ("trailing_slash = maybe", "expected one of redirect, strict, ignore"),
])
def test_ini_bad_options(write_ini, option, fragment):
    path = write_ini(f"""
        [composite:main]
        use = egg:stack#router
        routes = GET /users users
        {option}
    """)
    with pytest.raises(ConfigError, match=fragment):
        stack.load(path)


def test_ini_without_routes(write_ini):
    path = write_ini("""
        [composite:main]
        use = egg:stack#router
        trailing_slash = ignore
    """)
    with pytest.raises(ConfigError, match="no routes"):
        stack.load(path)


def test_parse_route_line():
    assert parse_route_line("get,post  /a/{b}  app  name=x") == ("get,post", "/a/{b}", "app", "x")
    assert parse_route_line("* /... app") == ("*", "/...", "app", None)


# -- real socket -------------------------------------------------------------------------------

def test_live_server(live_server):
    holder: list[Router] = []
    router = Router([("GET", "/users/{id:int}", named("user", holder, {"name": "user", "id": 1}),
                      "user"), ("POST", "/users", named("create"))])
    holder.append(router)
    url = live_server(router)
    status, _headers, body = http_get(url + "/users/5")
    data = json.loads(body)
    assert status == 200 and data["args"] == [[], {"id": 5}] and data["url"] == "/users/1"
    status, headers, _body = http_get(url + "/users")
    assert status == 405 and headers["Allow"] == "OPTIONS, POST"
    status, _headers, body = http_get(url + "/users/5/")  # redirect followed by urllib
    assert status == 200 and json.loads(body)["path_info"] == "/users/5"
    status, _headers, _body = http_get(url + "/users/%2e%2e/x")
    assert status == 404


# -- the middleware contract -----------------------------------------------------------------------

@pytest.mark.parametrize("routes", [
    [("*", "/{path:path}")],
    [("GET,DELETE", "/{path:path}")],  # HEAD served by the GET route
    [("*", "/...")],
    [("GET", "/probe"), ("*", "/probe/...")],
], ids=["any-path", "get-head", "prefix", "exact"])
def test_router_keeps_the_middleware_contract(routes):
    from stack.testing import assert_middleware

    assert_middleware(lambda app: Router([(methods, pattern, app) for methods, pattern in routes]))


# -- regressions -----------------------------------------------------------------------------

def _text(body: bytes = b"ok"):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    return app


def test_mixed_segments_cost_stays_bounded_on_a_miss():
    import time

    wheel = Router([("GET", "/files/{name}-{version}-{arch}.whl", _text()),
                    ("GET", "/w/{name}-{version}-{py}-{abi}-{platform:int}", _text()),
                    ("GET", "/i/{a:int}-{b:int}-{c:int}.whl", _text())])
    for path, code in [("/files/" + "-" * 10_000, 404), ("/files/" + "-" * 10_000 + ".whl", 200),
                       ("/files/" + "-" * 10_000 + "/", 404),  # and the trailing-slash retry
                       ("/w/" + "-" * 10_000 + "x", 404), ("/w/" + "-" * 255 + "x", 404),
                       ("/w/" + "-" * 40 + "x", 404), ("/i/" + "1-" * 5_000 + ".whl", 404)]:
        started = time.perf_counter()
        result = call(wheel, path)
        assert (result.code, time.perf_counter() - started < 0.5) == (code, True), path[:12]


def test_long_mixed_segments_split_like_short_ones():
    router = Router([("GET", "/w/{name}-{version:int}-{py}.{ext}", named("w")),
                     ("GET", "/v{n:int}", named("v"))])
    for name in ("pkg", "p" * 500):  # short: the regex; long: the linear matcher
        segment = f"{name}-12-py3-x.tar.gz"
        data = hit(router, "/w/" + segment)
        assert data["args"] == [[], {"name": name, "version": 12, "py": "py3-x",
                                     "ext": "tar.gz"}]
    assert hit(router, "/v" + "7" * 64)["args"] == [[], {"n": int("7" * 64)}]
    assert call(router, "/v" + "7" * 65).code == 404  # like {n:int} alone: no huge ints


def test_head_via_get_closes_the_body_when_start_response_raises():
    closed = []

    class Body:
        def __iter__(self):
            return iter([b"hi"])

        def close(self):
            closed.append(1)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return Body()

    def refusing_start_response(status, headers, exc_info=None):
        raise AssertionError("Hop-by-hop headers not allowed")

    router = Router([("GET", "/", app)])
    with pytest.raises(AssertionError, match="Hop-by-hop"):
        router(make_environ("/", method="HEAD"), refusing_start_response)
    assert closed == [1]


def test_url_for_inside_a_streaming_body_uses_the_request_script_name():
    holder: list[Router] = []
    events = []

    def streaming(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            yield holder[0].url_for("item", id=7).encode()
            yield b" " + holder[0].url_for("item", id=8).encode()
        finally:
            events.append(holder[0].url_for("item", id=9))  # close() runs in the request too

    router = Router([("GET", "/s", streaming), ("GET", "/items/{id:int}", _text(), "item")],
                    root="/root")
    holder.append(router)
    result = call(router, "/s", SCRIPT_NAME="/api")
    assert result.body == b"/api/items/7 /api/items/8" and events == ["/api/items/9"]
    assert router.url_for("item", id=1) == "/root/items/1"  # and not after the request
    body = router(make_environ("/s", SCRIPT_NAME="/x"),
                  lambda status, headers, exc_info=None: None)
    body.close()  # abandoned before the first chunk: close still works
    assert router.url_for("item", id=1) == "/root/items/1"
