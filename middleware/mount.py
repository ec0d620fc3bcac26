"""Mount: several WSGI apps under path prefixes (and hosts) of one site.

Use it to put apps written with different frameworks side by side in one
process, each believing it owns the site: the matched prefix moves from
``PATH_INFO`` to the end of ``SCRIPT_NAME``, so every mounted app builds
correct URLs. It replaces Paste's ``urlmap`` (same INI key syntax).

Python::

    from stack.middleware.mount import Mount
    site = Mount({"/": home, "/blog": blog, "//api.example.com/v1": api},
                 not_found_app=my_404)

INI (``egg:stack#urlmap`` is the same factory, for files written for
``egg:Paste#urlmap``)::

    [composite:main]
    use = egg:stack#mount
    / = home
    /blog = blog
    domain api.example.com port 8080 /v1 = api
    //*.example.com/files = files
    not_found_app = my_404
    debug = false

Keys:

- ``/path`` mounts on every host; ``/`` (or ``""``) is the root mount, which
  matches every path. A trailing slash and ``//`` runs are dropped, so
  ``/api/`` and ``/api`` are the same mount; ``.`` and ``..`` segments are
  refused.
- ``//host[:port][/path]`` or Paste's ``domain HOST [port PORT] [/path]``
  mounts on one host (INI keys cannot hold ``:``: use the ``port`` word
  there). Hosts compare case-insensitively; a key without a port matches
  every port, and a request without a port has its scheme's default (80 for
  http, 443 for https). ``*.example.com`` matches every name below
  ``example.com`` (not ``example.com`` itself).

Matching rule:

1. ``PATH_INFO`` is normalised first, and the app is given the normalised
   path: runs of ``/`` become one ``/``; ``.`` segments are removed; ``..``
   removes the segment before it and never climbs above the root of the
   mount table (``/public/../admin`` is ``/admin``, as is ``%2e%2e`` once the
   server has decoded it). A request can therefore only reach an app
   through a prefix its normalised path really starts with.
2. The host is ``HTTP_HOST`` (else ``SERVER_NAME`` and ``SERVER_PORT``).
   Tables are tried from the most specific host to the least: exact host
   and port, exact host, wildcards (longest suffix first, port before no
   port), then the mounts for every host. The first table holding a prefix
   of the path wins.
3. Within a table the longest prefix wins, matching whole segments only
   (``/blog`` matches ``/blog`` and ``/blog/x``, never ``/blogger``).

Dispatch does not scan the mounts: each table is a dict of prefixes, looked
up from the longest candidate prefix of the path (no deeper than the
deepest mount) to the shortest, so 1,000 mounts cost what 10 do. With
host mounts, the tables for a Host value are merged into one once and
remembered (at most ``HOST_CACHE_SIZE`` Host values, as clients pick them).

A request no mount takes goes to ``not_found_app``, or gets a plain 404
that shows neither the mounts nor the environ; with ``debug`` on it lists
the mounts that were tried for the request's host.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping

from stack.errors import ConfigError, suggest
from stack.options import as_bool, as_str, convert_options
from stack.types import Environ, StartResponse, WSGIApp

_HOST = re.compile(r"(?:\*\.)?[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\Z|\[[0-9a-f:.]+\]\Z")
_KEY_HELP = ("a mount key is '/path', '//host[:port][/path]' or "
             "'domain HOST [port PORT] [/path]'")
_ANY_PORT = ""


def normalise_path(path: str) -> str:
    """Collapse ``//`` runs and resolve ``.``/``..`` segments (never above ``/``).

    >>> normalise_path("/public//../admin/./x/")
    '/admin/x/'

    A path that does not start with ``/`` is returned unchanged (only the
    root mount can match it).
    """
    if not path.startswith("/"):
        return path
    parts = path.split("/")
    kept: list[str] = []
    for part in parts:
        if part == "..":
            if kept:
                kept.pop()
        elif part and part != ".":
            kept.append(part)
    result = "/" + "/".join(kept)
    if kept and parts[-1] in ("", ".", ".."):
        result += "/"
    return result


def parse_key(key: str) -> tuple[str | None, str, str]:
    """A mount key as ``(host or None, port or "", path)``, normalised.

    >>> parse_key("//API.example.com:8080/v1/")
    ('api.example.com', '8080', '/v1')
    >>> parse_key("domain example.com port 80 /blog")
    ('example.com', '80', '/blog')

    Raises :class:`ConfigError` (a ``ValueError``) naming a bad key.
    """
    if not isinstance(key, str):
        raise ConfigError(f"mount key {key!r} must be a str; {_KEY_HELP}", option=str(key))
    text = key.strip()
    words = text.split()
    if words and words[0] in ("domain", "port"):
        host, port, path = _parse_paste_words(key, words)
    elif text.startswith("//"):
        hostport, slash, rest = text[2:].partition("/")
        path = slash + rest
        host, port = _split_host_port(key, hostport)
    elif text == "" or text.startswith("/"):
        host, port, path = None, _ANY_PORT, text
    else:
        hint = ""
        scheme, sep, rest = text.partition("://")
        if sep and scheme.lower() in ("http", "https"):
            hint = f" (the scheme is not matched: write '//{rest}')"
        raise ConfigError(f"bad mount key {key!r}{hint}; {_KEY_HELP}", option=key)
    return host, port, _normalise_key_path(key, path)


def _parse_paste_words(key: str, words: list[str]) -> tuple[str, str, str]:
    found: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        name = word if word in ("domain", "port") else "path"
        if name != "path":
            index += 1
            if index == len(words):
                raise ConfigError(f"bad mount key {key!r}: {word!r} needs a value", option=key)
            word = words[index]
        if name in found:
            raise ConfigError(f"bad mount key {key!r}: {name} given twice", option=key)
        found[name] = word
        index += 1
    if "domain" not in found:
        raise ConfigError(f"bad mount key {key!r}: a port needs a domain", option=key)
    path = found.get("path", "")
    if path and not path.startswith("/"):
        raise ConfigError(f"bad mount key {key!r}: the path must start with '/'", option=key)
    host, port = _split_host_port(key, found["domain"])
    if "port" in found:
        if port:
            raise ConfigError(f"bad mount key {key!r}: port given twice", option=key)
        port = _check_port(key, found["port"])
    return host, port, path


def _split_host_port(key: str, text: str) -> tuple[str, str]:
    host, port = text.lower(), _ANY_PORT
    if not host.endswith("]") and ":" in host:
        host, _, port = host.rpartition(":")
        port = _check_port(key, port)
    host = host.rstrip(".")
    if not _HOST.match(host):
        raise ConfigError(f"bad mount key {key!r}: {host!r} is not a host name; {_KEY_HELP}",
                          option=key)
    return host, port


def _check_port(key: str, port: str) -> str:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bad mount key {key!r}: port {port!r} is not a number from 1 "
                          f"to 65535", option=key)
    return str(int(port))


def _normalise_key_path(key: str, path: str) -> str:
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise ConfigError(f"bad mount key {key!r}: control characters in the path", option=key)
    segments = [part for part in path.split("/") if part]
    if "." in segments or ".." in segments:
        raise ConfigError(f"bad mount key {key!r}: '.' and '..' segments are not allowed",
                          option=key)
    return "".join("/" + part for part in segments)


def mount_label(host: str | None, port: str, path: str) -> str:
    """The canonical spelling of a mount: ``/blog``, ``/``, ``//api.example.com:8080/v1``."""
    if host is None:
        return path or "/"
    return "//" + host + (":" + port if port else "") + path


class _Table:
    """Prefixes mounted for one host pattern: ``{prefix: app}`` and the deepest prefix's depth."""

    __slots__ = ("prefixes", "depth")

    def __init__(self) -> None:
        self.prefixes: dict[str, WSGIApp] = {}
        self.depth = 0

    def add(self, path: str, app: WSGIApp) -> None:
        self.prefixes[path] = app
        self.depth = max(self.depth, path.count("/"))


def merge_tables(tables: tuple[_Table, ...]) -> _Table:
    """One table that answers as ``tables`` tried in order (first with a match wins).

    A prefix of a later table is left out when an earlier table holds it or
    one of its ancestors (``""`` included): every path under it goes to the
    earlier table. Longest-prefix lookup in the result then gives the same
    answer as trying the tables one after the other.
    """
    if len(tables) == 1:
        return tables[0]
    merged = _Table()
    earlier: list[dict[str, WSGIApp]] = []
    for table in tables:
        for prefix, app in table.prefixes.items():
            if not any(ancestor in done for done in earlier for ancestor in _ancestors(prefix)):
                merged.add(prefix, app)
        earlier.append(table.prefixes)
    return merged


def _ancestors(prefix: str) -> Iterator[str]:
    """``"/a/b"`` -> ``"/a/b"``, ``"/a"``, ``""``."""
    while prefix:
        yield prefix
        prefix = prefix[:prefix.rfind("/")]
    yield ""


#: Most distinct Host values remembered (clients choose them, so it is bounded).
HOST_CACHE_SIZE = 512


class Mount:
    """Dispatch to the app mounted at the longest matching prefix.

    - ``mapping``: ``{key: app}`` or ``(key, app)`` pairs; keys as in the
      module docstring. Two keys that normalise to the same mount are an
      error naming both.
    - ``not_found_app`` (INI ``not_found_app = NAME``): the app for requests
      no mount takes; default a plain-text 404.
    - ``debug`` (INI ``debug = true``): the default 404 lists the mounts
      tried for the request's host. Off by default: it discloses the site's
      layout.
    """

    def __init__(self, mapping: Mapping[str, WSGIApp] | Iterable[tuple[str, WSGIApp]] = (),
                 *, not_found_app: WSGIApp | None = None, debug: bool = False) -> None:
        if not_found_app is not None and not callable(not_found_app):
            raise ValueError(f"not_found_app must be a WSGI app (a callable), got {not_found_app!r}")
        if not isinstance(debug, bool):
            raise ValueError(f"debug must be a bool, got {debug!r}")
        self.not_found_app = not_found_app
        self.debug = debug
        # (host, port, path) -> (key as given, app, table it is in); in order added
        self._mounts: dict[tuple[str | None, str, str], tuple[str, WSGIApp, _Table]] = {}
        self._any = _Table()
        self._exact: dict[str, dict[str, _Table]] = {}  # host -> port ("" any) -> table
        self._wild: dict[str, dict[str, _Table]] = {}  # ".example.com" -> port -> table
        self._hosted = False  # any host-specific mount? (else the host is never looked at)
        self._ported = False  # any port-specific mount? (then the scheme matters)
        self._host_cache: dict[str, _Table] = {}  # Host (+ scheme) -> merged table
        self._simple: dict[str, WSGIApp] | None = self._any.prefixes  # see add()
        self._merged: dict[tuple[_Table, ...], _Table] = {}
        items = mapping.items() if isinstance(mapping, Mapping) else mapping
        for key, app in items:
            self.add(key, app)

    def add(self, key: str, app: WSGIApp) -> None:
        """Mount ``app`` at ``key``; a key already mounted is a ``ConfigError``."""
        host, port, path = parse_key(key)
        if not callable(app):
            raise ValueError(f"mount {key!r}: the app must be a WSGI app (a callable), got {app!r}")
        known = self._mounts.get((host, port, path))
        if known is not None:
            raise ConfigError(f"mount keys {known[0]!r} and {key!r} are the same mount "
                              f"{mount_label(host, port, path)!r}", option=key)
        if host is None:
            table = self._any
        else:
            hosts, name = (self._wild, host[1:]) if host.startswith("*.") else (self._exact, host)
            table = hosts.setdefault(name, {}).setdefault(port, _Table())
            self._hosted = True
            self._ported = self._ported or bool(port)
        table.add(path, app)
        self._mounts[(host, port, path)] = (key, app, table)
        self._host_cache = {}
        self._merged = {}
        # The common shape gets its own path in __call__.
        simple = not self._hosted and self._any.depth <= 1
        self._simple = self._any.prefixes if simple else None

    def children(self) -> Iterator[tuple[str, WSGIApp]]:
        """``(label, app)`` for every mount in the order added, then the not-found app."""
        for (host, port, path), (_key, app, _table) in self._mounts.items():
            yield mount_label(host, port, path), app
        if self.not_found_app is not None:
            yield "(not found)", self.not_found_app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if "/." in path or "//" in path:
            path = environ["PATH_INFO"] = normalise_path(path)
        simple = self._simple
        if simple is not None:  # no host mounts, one-segment prefixes: one lookup
            end = path.find("/", 1)
            head = path if end < 0 else path[:end]
            app = simple.get(head)
            if app is not None:
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + head
                environ["PATH_INFO"] = path[end:] if end >= 0 else ""
                return app(environ, start_response)
            app = simple.get("")
            if app is None:
                return self._not_found(environ, start_response)
            return app(environ, start_response)
        if self._hosted:
            key = environ.get("HTTP_HOST") or ""
            if self._ported:
                key += " " + environ.get("wsgi.url_scheme", "")
            table = self._host_cache.get(key) or self._table_for(environ, key)
        else:
            table = self._any
        prefixes = table.prefixes
        depth = table.depth
        # The head of the path as deep as the deepest prefix, then shorter heads.
        if depth == 1:  # the common table: one-segment prefixes
            end = path.find("/", 1)
            head = path if end < 0 else path[:end]
        elif depth:
            head = "/".join(path.split("/", depth + 1)[:depth + 1])
        else:
            head = ""
        app = prefixes.get(head)
        while app is None:
            if not head:
                return self._not_found(environ, start_response)
            cut = head.rfind("/")
            head = head[:cut] if cut > 0 else ""
            app = prefixes.get(head)
        if head:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + head
            environ["PATH_INFO"] = path[len(head):]
        return app(environ, start_response)

    def _table_for(self, environ: Environ, key: str) -> _Table:
        """The merged table for the request's host; remembered under ``key``."""
        tables = tuple(self._find_tables(*request_host(environ)))
        table = self._merged.get(tables)
        if table is None:
            table = self._merged[tables] = merge_tables(tables)
        if environ.get("HTTP_HOST"):  # without one, SERVER_NAME/PORT decide: not cached
            if len(self._host_cache) >= HOST_CACHE_SIZE:
                self._host_cache = {}
            self._host_cache[key] = table
        return table

    def _find_tables(self, host: str, port: str) -> Iterator[_Table]:
        """The tables that apply to ``host:port``, most specific first."""
        ports = self._exact.get(host)
        if ports:
            yield from _for_port(ports, port)
        dot = host.find(".")
        while dot >= 0 and self._wild:
            ports = self._wild.get(host[dot:])
            if ports:
                yield from _for_port(ports, port)
            dot = host.find(".", dot + 1)
        yield self._any

    def _not_found(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.not_found_app is not None:
            return self.not_found_app(environ, start_response)
        text = "404 Not Found\n\nNo application is mounted at this URL.\n"
        if self.debug:
            text += self._debug_text(environ)
        body = text.encode("utf-8", "replace")
        start_response("404 Not Found", [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
        ])
        return [body]

    def _debug_text(self, environ: Environ) -> str:
        host, port = request_host(environ)
        tried = [mount_label(*where) for table in self._find_tables(host, port)
                 for where, (_key, _app, mounted_in) in self._mounts.items()
                 if mounted_in is table]
        return (f"\n(debug) path {environ.get('PATH_INFO', '')!r} on host {host!r} port "
                f"{port!r}; mounts tried: {', '.join(tried) or 'none'}\n")


def _for_port(ports: dict[str, _Table], port: str) -> Iterator[_Table]:
    for key in (port, _ANY_PORT):
        table = ports.get(key)
        if table is not None:
            yield table


def request_host(environ: Environ) -> tuple[str, str]:
    """``(host, port)`` of a request, lower-cased, port defaulted from the scheme."""
    host = environ.get("HTTP_HOST")
    port = ""
    if host:
        host = host.lower()
        if not host.endswith("]") and ":" in host:
            host, _, port = host.rpartition(":")
    else:
        host = environ.get("SERVER_NAME", "").lower()
        port = environ.get("SERVER_PORT", "")
    if not port:
        port = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
    if host.endswith("."):
        host = host.rstrip(".")
    return host, port


# -- PasteDeploy ---------------------------------------------------------------

OPTIONS = {"debug": as_bool, "not_found_app": as_str}


def _is_mount_key(key: str) -> bool:
    words = key.split()
    return key.startswith("/") or (bool(words) and words[0] in ("domain", "port"))


def _build(loader: Any, global_conf: dict[str, Any], local_conf: dict[str, str],
           not_found_default: str | None) -> Mount:
    mounts = {key: value for key, value in local_conf.items() if _is_mount_key(key)}
    rest = {key: value for key, value in local_conf.items() if key not in mounts}
    unknown = [key for key in rest if key not in OPTIONS]
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r}; {suggest(unknown[0], OPTIONS)} "
            f"(mount keys start with '/' or 'domain')", option=unknown[0], value=rest[unknown[0]])
    options = convert_options(rest, OPTIONS)
    not_found_name = options.pop("not_found_app", not_found_default)
    if not_found_name:
        options["not_found_app"] = loader.get_app(not_found_name, global_conf=global_conf)
    mapping = []
    for key, name in mounts.items():
        parse_key(key)  # reject a bad key before loading its app
        name = as_str(name, key)
        if not name:
            raise ConfigError(f"mount {key!r} names no app", option=key)
        mapping.append((key, loader.get_app(name, global_conf=global_conf)))
    return Mount(mapping, **options)


def composite_factory(loader: Any, global_conf: dict[str, Any], **local_conf: str) -> Mount:
    """``[composite:NAME] use = egg:stack#mount``: mount keys plus ``not_found_app``, ``debug``."""
    return _build(loader, global_conf, local_conf, None)


def urlmap_factory(loader: Any, global_conf: dict[str, Any], **local_conf: str) -> Mount:
    """``egg:stack#urlmap``: as ``mount``, and like Paste's ``urlmap`` it also takes
    ``not_found_app`` from ``[DEFAULT]`` when the section does not set it."""
    return _build(loader, global_conf, local_conf, global_conf.get("not_found_app"))


__all__ = ["Mount", "normalise_path", "parse_key", "mount_label", "request_host",
           "composite_factory", "urlmap_factory"]
