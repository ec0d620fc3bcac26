"""Router: dispatch requests to WSGI apps by method and URL pattern.

Use it in front of several small apps (or one app's endpoints) when the
split is by URL *shape* rather than by prefix: typed parameters, method
constraints, 404/405 answered for you. Matching walks a segment trie (a dict
of static segments per node), so 1,000 routes cost about what 10 do.

Python::

    from stack.middleware.router import Router
    api = Router([
        ("GET", "/users", list_users, "users"),
        ("GET,POST", "/users/{id:int}", user, "user"),
        ("GET", "/files/{path:path}", files),
        ("*", "/{tenant}/admin/...", admin_app),      # mounts admin_app
    ], trailing_slash="redirect")
    api.add("GET", "/archive/{year:\\d{4}}", archive, "archive")
    api.url_for("user", id=42)           # "/users/42" (under SCRIPT_NAME)

INI (one route a line: ``METHOD[,METHOD] PATTERN APP_NAME [name=ROUTE_NAME]``)::

    [composite:api]
    use = egg:stack#router
    routes =
        GET       /users              users        name=users
        GET,POST  /users/{id:int}     user         name=user
        *         /{tenant}/admin/... admin
    trailing_slash = redirect
    not_found_app = fallback

Patterns match ``PATH_INFO`` (below the router's ``SCRIPT_NAME``) as decoded
text: write ``/café``, not ``/caf%C3%A9``. In INI, PasteDeploy's ``%(var)s``
interpolation applies: write ``%%`` for a literal ``%``.

- ``{name}`` or ``{name:str}`` one non-empty segment; ``{name:int}`` digits,
  given to the app as an ``int``; ``{name:path}`` the rest of the path (one
  or more segments, only last); ``{name:REGEX}`` a segment the regex
  matches whole, e.g. ``{year:\\d{4}}``; a bare word that is no type
  (``{id:integer}``) is an error, not a regex matching that word. A segment
  may mix text and parameters: ``/v{version:int}``, ``/{name}.{ext}``; such
  a segment with a ``{name:REGEX}`` in it never matches a request segment
  longer than 256 characters (the cost of a miss stays bounded).
- A pattern ending in ``/...`` consumes its matched prefix: the prefix moves
  to ``SCRIPT_NAME`` and the app gets the rest as ``PATH_INFO``, so mounted
  frameworks and nested routers build correct URLs.
- At each segment the router tries: the static segment, regex and mixed
  segments (in the order added), ``int``, ``str``, ``path``, then a ``/...``
  prefix ending there. A branch that fails, or whose route lacks the
  method, backtracks: ``/users/me/x`` still reaches ``/users/{id}/x``, and
  ``POST /users/me`` reaches ``POST /users/{id}`` beside ``GET /users/me``.
- Two routes with the same shape (only parameter names differ) and a common
  method are an error naming both, as are two routes with one name.
  ``*`` (any method) may sit beside explicit methods: they win.

Responses the router gives itself: 404 when no pattern matches (or
``not_found_app``), 405 with ``Allow`` when the path matches but the method
does not, 204 with ``Allow`` for ``OPTIONS`` when no route takes it. A
method outside GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT and
TRACE (a typo such as ``GTE``) works, but gives a ``ConfigWarning``. ``HEAD``
goes to a ``HEAD`` route, else to the ``GET`` route (body dropped), else to
``*``. A path holding a ``.`` or ``..`` segment never matches (404): put
:class:`~stack.middleware.mount.Mount` in front to resolve them.

The app gets ``wsgiorg.routing_args`` = ``(positional, named)`` (merged with
an outer router's; ours win) and ``stack.route_name`` (``None`` for an
unnamed route). Parameter values are text decoded from UTF-8 (``int``
parameters are ints). Add every route before serving: ``add`` is not
meant to race with requests.
"""
from __future__ import annotations

import re
import sys
import warnings
from contextvars import ContextVar
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import quote, urlencode

from stack.errors import ConfigError, ConfigWarning, suggest
from stack.options import as_choice, as_str, convert_options
from stack.types import Environ, StartResponse, WSGIApp
from stack.wsgi import ClosingIterator, call_app

TRAILING_SLASH = ("redirect", "strict", "ignore")
TYPES = ("str", "int", "path")  # parameter types; {name:ANYTHING_ELSE} is a regex
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
ROUTING_ARGS = "wsgiorg.routing_args"
ROUTE_NAME = "stack.route_name"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+\Z")
_REGEX_SIGN = re.compile(r"[\\\[\](){}.*+?|^$]")  # a spec holding one of these is a regex
_SEGMENT_SAFE = "!$&'()*+,;=:@~"
_INT_DIGITS = 64  # longer digit runs are no int (int() of huge strings is slow)
# Longer segments never match a mixed segment holding a {x:REGEX}: the lazy
# groups around it backtrack polynomially on a miss, so their cost stays bounded.
MAX_REGEX_SEGMENT = 256
_TEXT = ("Content-Type", "text/plain; charset=utf-8")

Test = Callable[[str], "tuple[Any, ...] | None"]


# -- patterns -------------------------------------------------------------------

class _Param:
    __slots__ = ("name", "kind", "regex")

    def __init__(self, name: str, kind: str, regex: str = "") -> None:
        self.name, self.kind, self.regex = name, kind, regex

    def __repr__(self) -> str:
        return f"{{{self.name}:{self.regex or self.kind}}}"


def _split(pattern: str) -> list[str]:
    """Split at ``/`` outside braces: ``"a/{x:\\d{2}}/b"`` -> ``["a", "{x:\\d{2}}", "b"]``."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(pattern):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced '}'")
        elif char == "/" and depth == 0:
            parts.append(pattern[start:index])
            start = index + 1
    if depth:
        raise ValueError("unbalanced '{'")
    parts.append(pattern[start:])
    return parts


def _pieces(segment: str, pattern: str = "") -> list[str | _Param]:
    """``"v{n:int}.json"`` -> ``["v", _Param("n", "int"), ".json"]``."""
    pieces: list[str | _Param] = []
    index = 0
    while index < len(segment):
        start = segment.find("{", index)
        if start < 0:
            pieces.append(segment[index:])
            break
        if start > index:
            pieces.append(segment[index:start])
        depth, end = 0, start
        for end in range(start, len(segment)):
            depth += {"{": 1, "}": -1}.get(segment[end], 0)
            if depth == 0:
                break
        pieces.append(_param(segment[start + 1:end], pattern))
        index = end + 1
    return pieces


def _param(text: str, pattern: str = "") -> _Param:
    name, _, spec = text.partition(":")
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a parameter name")
    if spec in ("", *TYPES):
        return _Param(name, spec or "str")
    if not _REGEX_SIGN.search(spec):  # a bare word: a mistyped type, not a one-word regex
        hint = suggest(spec.lower(), TYPES).partition("known:")[0]  # "did you mean 'int'? "
        where = pattern or "{" + text + "}"
        raise ValueError(f"unknown parameter type {spec!r} in {where!r}"
                         f"{'; ' + hint if hint else ' '}"
                         f"(types: {', '.join(TYPES)}; anything else must be a regex)")
    try:
        re.compile(spec)
    except re.error as exc:
        raise ValueError(f"bad regex {spec!r} for {{{name}}}: {exc}") from None
    return _Param(name, "re", spec)


def parse_pattern(pattern: str) -> tuple[list[list[str | _Param]], bool]:
    """``"/users/{id:int}/..."`` -> ``([["users"], [{id:int}]], True)`` (pieces are str or _Param).

    The list holds each segment's pieces; the flag says the pattern ends in
    ``/...`` (a prefix route). Raises ``ValueError`` saying what is wrong.
    """
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ValueError("a pattern is a str starting with '/'")
    if any(ord(char) < 32 or ord(char) == 127 for char in pattern):
        raise ValueError("control characters are not allowed")
    prefix = pattern == "/..." or pattern.endswith("/...")
    body = pattern[1:-4] if prefix else pattern[1:]
    segments = [_pieces(part, pattern) for part in _split(body)] if (body or not prefix) else []
    names: list[str] = []
    for index, pieces in enumerate(segments):
        if pieces in (["."], [".."], ["..."]):
            raise ValueError("'.', '..' segments are not allowed ('/...' only at the end)")
        for piece in pieces:
            if isinstance(piece, str) and ("?" in piece or "#" in piece):
                raise ValueError("'?' and '#' are not allowed outside parameters")
            if isinstance(piece, _Param):
                if piece.name in names:
                    raise ValueError(f"parameter {piece.name!r} appears twice")
                names.append(piece.name)
                if piece.kind == "path" and (len(pieces) > 1 or index < len(segments) - 1
                                             or prefix):
                    raise ValueError("{name:path} must be the whole last segment")
        kind, regex = _segment_key(pieces) if names else ("", "")
        if kind == "re":
            try:
                re.compile(regex)
            except re.error as exc:
                raise ValueError(f"bad regex in segment {''.join(map(str, pieces))!r}: "
                                 f"{exc}") from None
    return segments, prefix


def _segment_key(pieces: list[str | _Param]) -> tuple[str, str]:
    """The trie key of a parameter segment: its kind and, for regexes, the regex."""
    if not any(isinstance(piece, _Param) for piece in pieces):
        return ("static", "")
    if len(pieces) == 1 and isinstance(pieces[0], _Param):  # {x}, {x:int}, {x:REGEX}
        return (pieces[0].kind, pieces[0].regex)
    parts = []
    for index, piece in enumerate(pieces):
        if isinstance(piece, str):
            parts.append(re.escape(piece))
        else:
            inner = {"str": "[^/]+?", "int": f"[0-9]{{1,{_INT_DIGITS}}}"}.get(piece.kind,
                                                                             piece.regex)
            parts.append(f"(?P<_{index}>{inner})")
    return ("re", "".join(parts))


def _int(segment: str) -> tuple[int] | None:
    if segment.isdigit() and segment.isascii() and len(segment) <= _INT_DIGITS:
        return (int(segment),)
    return None


def _str(segment: str) -> tuple[str] | None:
    return (segment,) if segment else None


def _regex_test(regex: str, pieces: list[str | _Param]) -> Test:
    """The test of a regex segment (``{x:REGEX}``) or a mixed one (``v{n:int}.json``).

    A mixed segment's literal head and tail are checked first. Its lazy
    ``str`` and ``int`` groups would backtrack polynomially on a miss (one
    power per parameter), so a long segment is matched by :func:`_split_mixed`
    in linear time instead (same answer); a mixed segment holding a
    ``{x:REGEX}`` never matches a segment longer than
    :data:`MAX_REGEX_SEGMENT`. The last answer is remembered, so the walk of
    the allowed methods after a miss does not run the match again.
    """
    match = re.compile(regex).fullmatch
    if len(pieces) == 1:  # the whole segment is the value: the user's own regex
        return lambda segment: (segment,) if match(segment) else None
    params = [p for p in pieces if isinstance(p, _Param)]
    groups = [(f"_{i}", p.kind == "int") for i, p in enumerate(pieces) if isinstance(p, _Param)]
    head = pieces[0] if isinstance(pieces[0], str) else ""
    tail = pieces[-1] if isinstance(pieces[-1], str) else ""
    plain = all(p.kind in ("str", "int") for p in params)
    # Up to this length the regex is quick (about length ** params steps at worst).
    quick = int(2 ** (16 / len(params))) if plain else MAX_REGEX_SEGMENT
    last: list[Any] = [("", None)]  # (segment, answer): one tuple, so threads see a pair

    def test(segment: str) -> tuple[Any, ...] | None:
        if not segment.startswith(head) or not segment.endswith(tail):
            return None
        known, answer = last[0]
        if known == segment:
            return answer
        if len(segment) <= quick:
            found = match(segment)
            answer = None if found is None else tuple(
                int(v) if is_int else v for v, (_, is_int) in
                zip([found.group(group) for group, _ in groups], groups))
        elif plain:
            answer = _split_mixed(pieces, segment)
        else:
            answer = None
        last[0] = (segment, answer)
        return answer
    return test


def _split_mixed(pieces: list[str | _Param], segment: str) -> tuple[Any, ...] | None:
    """Match text, ``{x}`` and ``{x:int}`` pieces like the regex does, in O(pieces x length).

    ``ends[k][p]``: pieces ``k:`` match ``segment[p:]`` exactly. Then, piece
    by piece, each ``str`` takes the shortest and each ``int`` the longest
    run that still lets the rest match: the regex's own choice (lazy
    ``[^/]+?``, greedy ``[0-9]{1,64}``).
    """
    n = len(segment)
    after = [False] * n + [True]
    ends = [after]
    for piece in reversed(pieces):
        here = [False] * (n + 1)
        if isinstance(piece, str):
            size = len(piece)
            for p in range(n - size + 1):
                here[p] = after[p + size] and segment.startswith(piece, p)
        else:
            digits = piece.kind == "int"
            limit = _INT_DIGITS if digits else n
            run, first = 0, n + 1  # chars of the piece's class from p; first q > p with after[q]
            for p in range(n - 1, -1, -1):
                if after[p + 1]:
                    first = p + 1
                char = segment[p]
                run = run + 1 if (("0" <= char <= "9") if digits else char != "/") else 0
                here[p] = first <= p + min(run, limit)
        ends.append(here)
        after = here
    ends.reverse()
    if not ends[0][0]:
        return None
    values: list[Any] = []
    p = 0
    for k, piece in enumerate(pieces):
        if isinstance(piece, str):
            p += len(piece)
            continue
        rest = ends[k + 1]
        if piece.kind == "int":
            q = p + 1
            while q < n and q - p < _INT_DIGITS and "0" <= segment[q] <= "9":
                q += 1
            while not rest[q]:
                q -= 1
            values.append(int(segment[p:q]))
        else:
            q = p + 1
            while not rest[q]:
                q += 1
            values.append(segment[p:q])
        p = q
    return tuple(values)


_RANK = {"re": 0, "int": 1, "str": 2}


# -- routes and the trie ------------------------------------------------------------

class Route:
    """One route: its methods, pattern, app and name, as given."""

    __slots__ = ("methods", "pattern", "app", "name", "label", "names", "segments",
                 "prefix", "serves_head")

    def __init__(self, methods: str | Iterable[str], pattern: str, app: WSGIApp,
                 name: str | None = None) -> None:
        self.methods = _parse_methods(methods)
        self.label = f"{','.join(self.methods)} {pattern}"
        for method in self.methods:
            if method != "*" and method not in METHODS:
                warnings.warn(ConfigWarning(
                    f"route {self.label!r}: {method!r} is not a standard HTTP method "
                    f"({suggest(method, METHODS)}); only requests using exactly it match"),
                    stacklevel=_caller_level())
        try:
            self.segments, self.prefix = parse_pattern(pattern)
        except ValueError as exc:
            raise ConfigError(f"bad route pattern {pattern!r}: {exc}", option="routes",
                              value=pattern) from None
        if not callable(app):
            raise ConfigError(f"route {self.label!r}: app must be a WSGI app (a callable), "
                              f"got {app!r}", option="routes")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"route {self.label!r}: name must be a non-empty str, got {name!r}",
                              option="routes")
        self.pattern, self.app, self.name = pattern, app, name
        self.names = tuple(piece.name for pieces in self.segments for piece in pieces
                           if isinstance(piece, _Param))
        self.serves_head = "HEAD" in self.methods or "*" in self.methods

    def __repr__(self) -> str:
        return f"<Route {self.label}" + (f" name={self.name!r}>" if self.name else ">")

    def build(self, params: dict[str, Any]) -> str:
        """The path for ``params`` (percent-encoded); ``ValueError`` for a bad value."""
        missing = [name for name in self.names if name not in params]
        if missing:
            raise ValueError(f"route {self.name!r} ({self.pattern}) needs {', '.join(missing)}")
        parts = ["".join(_format(piece, params) for piece in pieces) for pieces in self.segments]
        return "/" + "/".join(parts)

    def __iter__(self) -> Iterator[Any]:
        yield from (",".join(self.methods), self.pattern, self.app, self.name)


def _format(piece: str | _Param, params: dict[str, Any]) -> str:
    if isinstance(piece, str):
        return quote(piece, safe=_SEGMENT_SAFE)
    value = params[piece.name]
    if piece.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"parameter {piece.name!r} must be an int >= 0, got {value!r}")
        return str(value)
    text = str(value)
    if piece.kind == "path":
        if not text or any(part in (".", "..") for part in text.split("/")):
            raise ValueError(f"parameter {piece.name!r} must be a non-empty path "
                             f"without '.' or '..' segments, got {value!r}")
        return quote(text, safe=_SEGMENT_SAFE + "/")
    if not text or "/" in text or text in (".", ".."):
        raise ValueError(f"parameter {piece.name!r} must be one path segment, got {value!r}")
    if piece.kind == "re" and not re.fullmatch(piece.regex, text):
        raise ValueError(f"parameter {piece.name!r}: {text!r} does not match {piece.regex!r}")
    return quote(text, safe=_SEGMENT_SAFE)


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this module (for a warning)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    return level


def _parse_methods(methods: str | Iterable[str]) -> tuple[str, ...]:
    words = methods.split(",") if isinstance(methods, str) else list(methods)
    words = [str(word).strip().upper() for word in words]
    if not words or not all(_METHOD.match(word) for word in words) or (
            "*" in words and len(words) > 1):
        raise ConfigError(f"bad methods {methods!r}: expected 'GET', 'GET,POST' or '*'",
                          option="routes", value=methods)
    return tuple(dict.fromkeys(words))


class _Node:
    """A trie node: children by segment kind, and the routes ending here."""

    __slots__ = ("static", "regexes", "int_child", "str_child", "tail", "routes", "mounts",
                 "dynamic", "keys")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.regexes: tuple[tuple[Test, _Node], ...] = ()  # regex and mixed segments
        self.int_child: _Node | None = None
        self.str_child: _Node | None = None
        self.tail: _Node | None = None  # {name:path}
        self.routes: dict[str, Route] | None = None  # method -> route ending here
        self.mounts: dict[str, Route] | None = None  # method -> '/...' route ending here
        self.dynamic: tuple[tuple[Test, _Node], ...] = ()  # every parameter child, in order
        self.keys: list[tuple[tuple[str, str], Test, _Node]] = []

    def child(self, pieces: list[str | _Param]) -> _Node:
        """The child for one pattern segment, made if new (build time only)."""
        if len(pieces) <= 1 and not any(isinstance(p, _Param) for p in pieces):
            return self.static.setdefault(pieces[0] if pieces else "", _Node())
        key = _segment_key(pieces)
        if key[0] == "path":
            self.tail = self.tail or _Node()
            return self.tail
        for known, _test, node in self.keys:
            if known == key:
                return node
        node = _Node()
        test = {"int": _int, "str": _str}.get(key[0]) or _regex_test(key[1], pieces)
        self.keys.append((key, test, node))
        self.keys.sort(key=lambda item: _RANK[item[0][0]])  # stable: regexes keep their order
        self.dynamic = tuple((test, child) for _key, test, child in self.keys)
        self.regexes = tuple((test, child) for k, test, child in self.keys if k[0] == "re")
        self.int_child = node if key[0] == "int" else self.int_child
        self.str_child = node if key[0] == "str" else self.str_child
        return node


def _pick(table: dict[str, Route], method: str) -> Route | None:
    route = table.get(method)
    if route is None:
        if method == "HEAD":
            route = table.get("GET")
        if route is None:
            route = table.get("*")
    return route


def _find(node: _Node, segs: list[str], i: int, method: str,
          values: list[Any]) -> tuple[Route, int] | None:
    """Depth-first match of ``segs[i:]``: (route, segments consumed) or None.

    Tries the static child, regex children, the int child, the str child, a
    path parameter, then a prefix route ending here; ``values`` collects the
    parameter values along the way (and loses them again on backtracking).
    """
    if i == len(segs):
        if node.routes is not None:
            route = _pick(node.routes, method)
            if route is not None:
                return route, i
    else:
        seg = segs[i]
        child = node.static.get(seg)
        if child is not None:
            found = _find(child, segs, i + 1, method, values)
            if found is not None:
                return found
        mark = len(values)
        for test, child in node.regexes:
            got = test(seg)
            if got is not None:
                values.extend(got)
                found = _find(child, segs, i + 1, method, values)
                if found is not None:
                    return found
                del values[mark:]
        child = node.int_child
        if child is not None and seg.isdigit() and seg.isascii() and len(seg) <= _INT_DIGITS:
            values.append(int(seg))
            found = _find(child, segs, i + 1, method, values)
            if found is not None:
                return found
            values.pop()
        child = node.str_child
        if child is not None and seg:
            values.append(seg)
            found = _find(child, segs, i + 1, method, values)
            if found is not None:
                return found
            values.pop()
        tail = node.tail
        if tail is not None and tail.routes is not None:
            rest = "/".join(segs[i:])
            route = _pick(tail.routes, method) if rest else None
            if route is not None:
                values.append(rest)
                return route, len(segs)
    if node.mounts is not None:
        route = _pick(node.mounts, method)
        if route is not None:
            return route, i
    return None


def _allowed(node: _Node, segs: list[str], i: int, out: set[str]) -> None:
    """Add to ``out`` the methods of every route whose pattern matches ``segs[i:]``."""
    if node.mounts is not None:
        out.update(node.mounts)
    if i == len(segs):
        out.update(node.routes or ())
        return
    child = node.static.get(segs[i])
    if child is not None:
        _allowed(child, segs, i + 1, out)
    for test, child in node.dynamic:
        if test(segs[i]) is not None:
            _allowed(child, segs, i + 1, out)
    if node.tail is not None and "/".join(segs[i:]):
        out.update(node.tail.routes or ())


def _segments(path: str) -> list[str]:
    return path[1:].split("/") if path else [""]


def _decode(path: str) -> str:
    """A WSGI (latin-1) path as text; undecodable UTF-8 stays as it came."""
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path


def _url(text: str, wsgi: bool = True) -> str:
    return quote(text.encode("latin-1") if wsgi else text, safe=_SEGMENT_SAFE + "/")


# -- the router -----------------------------------------------------------------------

class Router:
    """Dispatch to the route whose method and pattern match the request.

    - ``routes``: ``(methods, pattern, app)`` or ``(methods, pattern, app,
      name)`` tuples (INI ``routes``, one a line). Bad or conflicting routes
      raise :class:`~stack.errors.ConfigError` (a ``ValueError``).
    - ``trailing_slash`` (INI ``trailing_slash``): what a path that matches
      only with its trailing slash added or removed gets. ``redirect``
      (default): a 308 to that path (query kept); ``strict``: a 404;
      ``ignore``: served by that route, ``PATH_INFO`` unchanged.
    - ``root`` (INI ``root``): the ``SCRIPT_NAME`` :meth:`url_for` uses
      outside a request, e.g. ``/api``; default ``""``.
    - ``not_found_app`` (INI ``not_found_app = NAME``): the app for paths no
      route matches; default a plain-text 404.
    """

    def __init__(self, routes: Iterable[Sequence[Any]] = (), *, trailing_slash: str = "redirect",
                 root: str = "", not_found_app: WSGIApp | None = None) -> None:
        if trailing_slash not in TRAILING_SLASH:
            raise ValueError(f"option 'trailing_slash': expected one of {', '.join(TRAILING_SLASH)}, "
                             f"got {trailing_slash!r}")
        if not isinstance(root, str) or (root and not root.startswith("/")):
            raise ValueError(f"option 'root': expected '' or a path starting with '/', got {root!r}")
        if not_found_app is not None and not callable(not_found_app):
            raise ValueError(f"option 'not_found_app': expected a WSGI app (a callable), "
                             f"got {not_found_app!r}")
        self.trailing_slash, self.root = trailing_slash, root.rstrip("/")
        self.not_found_app = not_found_app
        self.routes: list[Route] = []
        self._names: dict[str, Route] = {}
        self._tree = _Node()
        self._script_name: ContextVar[str] = ContextVar(f"stack.router.{id(self):x}")
        for route in routes:
            if not isinstance(route, (tuple, list)) or len(route) not in (3, 4):
                raise ConfigError(f"a route is (methods, pattern, app[, name]), got {route!r}",
                                  option="routes")
            self.add(*route)

    def add(self, methods: str | Iterable[str], pattern: str, app: WSGIApp,
            name: str | None = None) -> Route:
        """Add a route; a duplicate, an ambiguous pattern or a reused name is a ConfigError."""
        route = Route(methods, pattern, app, name)
        if name is not None and name in self._names:
            raise ConfigError(f"route name {name!r} is used by both "
                              f"{self._names[name].label!r} and {route.label!r}", option="routes")
        node = self._tree
        for pieces in route.segments:
            node = node.child(pieces)
        attr = "mounts" if route.prefix else "routes"
        table = getattr(node, attr) or {}
        for method in route.methods:
            other = table.get(method)
            if other is not None:
                what = "duplicate" if other.pattern == route.pattern else "ambiguous"
                raise ConfigError(f"{what} routes: {other.label!r} and {route.label!r} both "
                                  f"match {method} {pattern}", option="routes")
        table.update(dict.fromkeys(route.methods, route))
        setattr(node, attr, table)
        self.routes.append(route)
        if name is not None:
            self._names[name] = route
        return route

    def children(self) -> Iterator[tuple[str, WSGIApp]]:
        """``("GET /users/{id:int}", app)`` for each route, in the order added."""
        for route in self.routes:
            yield route.label, route.app

    def url_for(self, name: str, /, **params: Any) -> str:
        """The URL path of route ``name``; parameters the pattern lacks go in the query.

        Under the current request's ``SCRIPT_NAME`` when called while this
        router dispatches (in the app call, and while the server iterates or
        closes a streaming body it returned), else under ``root``.
        """
        route = self._names.get(name)
        if route is None:
            raise KeyError(f"no route named {name!r}; {suggest(name, self._names)}")
        script_name = self._script_name.get(None)
        base = _url(self.root, wsgi=False) if script_name is None else _url(script_name)
        url = base + route.build(params)
        extra = {key: value for key, value in params.items() if key not in route.names}
        return url + "?" + urlencode(extra, doseq=True) if extra else url

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        text = path if path.isascii() else _decode(path)
        if path and path[0] != "/" or "/." in text and _dot_segment(text):
            return self._not_found(environ, start_response)
        segs = text[1:].split("/") if text else [""]
        values: list[Any] = []
        found = _find(self._tree, segs, 0, method, values)
        if found is None:
            return self._miss(environ, start_response, path, segs)
        return self._dispatch(environ, start_response, found, values, path)

    def _dispatch(self, environ: Environ, start_response: StartResponse,
                  found: tuple[Route, int], values: list[Any], path: str) -> Iterable[bytes]:
        route, consumed = found
        names = route.names
        if not names:
            named: dict[str, Any] = {}
        elif len(names) == 1:
            named = {names[0]: values[0]}
        else:
            named = dict(zip(names, values))
        outer = environ.get(ROUTING_ARGS)
        environ[ROUTING_ARGS] = ((), named) if outer is None else _merge(outer, named)
        environ[ROUTE_NAME] = route.name
        script_name = environ.get("SCRIPT_NAME", "")
        if route.prefix:
            wsgi_segs = _segments(path)
            if consumed:
                environ["SCRIPT_NAME"] = script_name + "/" + "/".join(wsgi_segs[:consumed])
            rest = wsgi_segs[consumed:]
            environ["PATH_INFO"] = "/" + "/".join(rest) if rest else ""
        if environ["REQUEST_METHOD"] == "HEAD" and not route.serves_head:
            return self._head(environ, start_response, route, script_name)
        if not self._names:  # no named routes: url_for has nothing to build
            return route.app(environ, start_response)
        token = self._script_name.set(script_name)
        try:
            body = route.app(environ, start_response)
        finally:
            self._script_name.reset(token)
        if type(body) is list or type(body) is tuple:  # nothing runs after the app returned
            return body
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body, wrapper):  # keep the server's sendfile
            return body
        return _InContext(body, self._script_name, script_name)

    def _head(self, environ: Environ, start_response: StartResponse, route: Route,
              script_name: str) -> Iterable[bytes]:
        """HEAD served by a GET route: its status and headers, its body dropped."""
        token = self._script_name.set(script_name)
        try:
            response = call_app(route.app, environ)
        finally:
            self._script_name.reset(token)
        try:
            response.start(start_response)
        except BaseException:  # the server refused the headers: nobody else can close it
            response.close()
            raise
        return ClosingIterator((), partial(_run_in, self._script_name, script_name,
                                           response.close))

    def _miss(self, environ: Environ, start_response: StartResponse, path: str,
              segs: list[str]) -> Iterable[bytes]:
        allowed: set[str] = set()
        _allowed(self._tree, segs, 0, allowed)
        if not allowed and self.trailing_slash != "strict" and (path or "/") != "/":
            alt = path[:-1] if path.endswith("/") else (path or "/") + "/"
            alt_segs = _segments(alt if alt.isascii() else _decode(alt))
            if self.trailing_slash == "redirect":
                _allowed(self._tree, alt_segs, 0, allowed)
                if allowed:
                    return _redirect(environ, start_response, alt)
            else:
                values: list[Any] = []
                found = _find(self._tree, alt_segs, 0, environ["REQUEST_METHOD"], values)
                if found is not None:
                    return self._dispatch(environ, start_response, found, values,
                                          alt if found[0].prefix else path)
                _allowed(self._tree, alt_segs, 0, allowed)
        if not allowed:
            return self._not_found(environ, start_response)
        methods = sorted(allowed | ({"HEAD"} if "GET" in allowed else set()) | {"OPTIONS"})
        headers = [("Allow", ", ".join(methods))]
        if environ["REQUEST_METHOD"] == "OPTIONS":
            start_response("204 No Content", headers)
            return []
        return _plain(environ, start_response, "405 Method Not Allowed", headers)

    def _not_found(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.not_found_app is not None:
            return self.not_found_app(environ, start_response)
        return _plain(environ, start_response, "404 Not Found")

    def __repr__(self) -> str:
        return f"<Router {len(self.routes)} routes>"


def _run_in(var: ContextVar[str], value: str, function: Callable[[], Any]) -> Any:
    """``function()`` with ``var`` set to ``value`` (url_for's SCRIPT_NAME)."""
    token = var.set(value)
    try:
        return function()
    finally:
        var.reset(token)


class _InContext:
    """The app's body, with url_for's SCRIPT_NAME set while it runs.

    A generator app runs its code when the server iterates it, after the
    router returned: each step and ``close()`` run with the request's
    ``SCRIPT_NAME`` set again, so :meth:`Router.url_for` builds the same URLs
    there as in the app call itself.
    """

    __slots__ = ("_body", "_iterator", "_var", "_value", "_closed")

    def __init__(self, body: Iterable[bytes], var: ContextVar[str], value: str) -> None:
        self._body, self._iterator, self._var, self._value = body, None, var, value
        self._closed = False

    def __iter__(self) -> _InContext:
        return self

    def __next__(self) -> bytes:
        token = self._var.set(self._value)
        try:
            iterator = self._iterator
            if iterator is None:
                iterator = self._iterator = iter(self._body)
            return next(iterator)
        finally:
            self._var.reset(token)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._body, "close", None)
        if close is not None:
            _run_in(self._var, self._value, close)


def _merge(outer: Any, named: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``wsgiorg.routing_args`` with an outer router's named arguments under ours."""
    if isinstance(outer, tuple) and len(outer) == 2 and isinstance(outer[1], dict):
        return outer[0], {**outer[1], **named}
    return (), named


def _dot_segment(text: str) -> bool:
    return any(seg in (".", "..") for seg in text.split("/"))


def _plain(environ: Environ, start_response: StartResponse, status: str,
           headers: Sequence[tuple[str, str]] = ()) -> Iterable[bytes]:
    body = b"" if environ["REQUEST_METHOD"] == "HEAD" else status.encode() + b"\n"
    start_response(status, [_TEXT, ("Content-Length", str(len(status) + 1)), *headers])
    return [body]


def _redirect(environ: Environ, start_response: StartResponse, path: str) -> Iterable[bytes]:
    location = _url(environ.get("SCRIPT_NAME", "") + path)
    query = environ.get("QUERY_STRING")
    return _plain(environ, start_response, "308 Permanent Redirect",
                  [("Location", location + ("?" + query if query else ""))])


# -- PasteDeploy ------------------------------------------------------------------------

OPTIONS = {"routes": as_str, "trailing_slash": partial(as_choice, choices=TRAILING_SLASH),
           "root": as_str, "not_found_app": as_str}


def parse_route_line(line: str) -> tuple[str, str, str, str | None]:
    """``"GET,POST /u/{id:int} user name=u"`` -> ``("GET,POST", "/u/{id:int}", "user", "u")``."""
    words = line.split()
    name = None
    if len(words) == 4 and words[3].startswith("name="):
        name = words.pop()[5:]
    if len(words) != 3 or name == "":
        raise ConfigError(f"bad route line {line!r}: expected "
                          f"'METHOD[,METHOD] PATTERN APP_NAME [name=ROUTE_NAME]'",
                          option="routes", value=line)
    methods, pattern, app_name = words
    try:
        _parse_methods(methods)
        parse_pattern(pattern)
    except (ValueError, ConfigError) as exc:
        detail = exc.message if isinstance(exc, ConfigError) else str(exc)
        raise ConfigError(f"bad route line {line!r}: {detail}", option="routes",
                          value=line) from None
    return methods, pattern, app_name, name


def composite_factory(loader: Any, global_conf: dict[str, Any], **local_conf: str) -> Router:
    """``[composite:NAME] use = egg:stack#router``: ``routes`` lines plus the options."""
    options = convert_options(local_conf, OPTIONS)
    lines = [line.strip() for line in options.pop("routes", "").splitlines()]
    parsed = [(line, parse_route_line(line)) for line in lines if line and line[0] != "#"]
    if not parsed:
        raise ConfigError("no routes: give 'routes' one 'METHOD PATTERN APP_NAME' a line",
                          option="routes")
    not_found = options.pop("not_found_app", "")
    if not_found:
        options["not_found_app"] = loader.get_app(not_found, global_conf=global_conf)
    apps: dict[str, WSGIApp] = {}
    for _line, (_m, _p, app_name, _n) in parsed:
        if app_name not in apps:
            apps[app_name] = loader.get_app(app_name, global_conf=global_conf)
    router = Router(**options)
    for line, (methods, pattern, app_name, name) in parsed:
        try:
            router.add(methods, pattern, apps[app_name], name)
        except ConfigError as exc:
            raise ConfigError(f"route line {line!r}: {exc.message}", option="routes",
                              value=line) from None
    return router


__all__ = ["Router", "Route", "parse_pattern", "parse_route_line", "composite_factory",
           "TRAILING_SLASH", "ROUTING_ARGS", "ROUTE_NAME"]
